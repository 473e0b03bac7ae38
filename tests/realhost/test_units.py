"""The units the module renders (tests/realhost/units.snapshot.json, kept current by tests/nix/test_units.py),
laid out on this host for a real agent user: every unit passes `systemd-analyze verify`, every system unit
scores at most 5.0 in `systemd-analyze security --offline=true`, and the ExecStart of each user unit (task
loop, scheduler, notes sync) runs to completion as the agent through runuser, against its real home and the
runtime configuration the module generates.

Laying out: the snapshot's placeholders become this host's paths (SUBSTITUTIONS); programs the module takes
from nixpkgs come from Debian where Debian has them (ssh-agent, git, coreutils, systemctl) and the package
from the session's copy; labwc, wayvnc and chromium are not installed here, so for `verify` (which checks
that executables exist) they are placeholders that exit 1 — their units are verified and scored, not run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import units

NOT_INSTALLED = ("labwc", "wayvnc", "chromium", "wlr-randr")
DEBIAN = {"ssh-agent": "/usr/bin/ssh-agent", "ssh-add": "/usr/bin/ssh-add", "cat": "/usr/bin/cat",
          "seq": "/usr/bin/seq", "sleep": "/usr/bin/sleep", "systemctl": "/usr/bin/systemctl",
          "loginctl": "/usr/bin/loginctl", "journalctl": "/usr/bin/journalctl", "nix": "/usr/bin/nix"}
MAX_EXPOSURE = 5.0


@pytest.fixture(scope="module")
def laid_out(host):
    """{"system": {unit: path}, "user": {unit: path}, "agent": RealAgent} for host.agents["a"]."""
    agent = host.agents["a"]
    snap = units.load_snapshot()
    base = host.root / "units"
    pkgs = base / "pkgs"
    remote = host.root / "remotes" / agent.name / "notes.git"
    module_config = host.root / "etc/agents" / f"{agent.name}-module.json"
    subst = [
        (units.PKGS_PLACEHOLDER, str(pkgs)),
        ("/etc/keystone-agents/agents/drago.json", str(module_config)),
        ("/var/lib/prometheus-node-exporter", str(host.textfile_dir)),
        ("/ks-notes-remote/notes.git", str(remote)),
        ("/home/agent-drago", str(agent.home)),
        # Debian's equivalent of NixOS's system profile
        ("/run/current-system/sw/bin", f"{host.bin}:/usr/bin:/bin"),
        ("Group=agents", f"Group={host.agents_group}"),
        ("agent-drago", agent.user.name),
        ("drago", agent.name),
    ]

    def localize(text: str) -> str:
        for old, new in subst:
            text = text.replace(old, new)
        return text

    # programs the units name
    everything = "\n".join([*snap["system"].values(), *snap["user"].values(), *snap["scripts"].values()])
    for prog_path in sorted(set(re.findall(re.escape(units.PKGS_PLACEHOLDER) + r"/[^\s\"';]+", everything))):
        target = Path(localize(prog_path))
        if str(target).startswith(str(pkgs) + "/") and "/bin/" in str(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            name = target.name
            if target.exists():
                continue
            if name in ("keystone-agent", "keystone-agent-svc"):
                target.symlink_to(host.bin / name)
            elif name in DEBIAN and Path(DEBIAN[name]).exists():
                target.symlink_to(DEBIAN[name])
            else:
                assert name in NOT_INSTALLED, f"unexpected program in the units: {prog_path}"
                target.write_text(f"#!/bin/sh\necho '{name} is not installed on this test host' >&2\nexit 1\n")
                target.chmod(0o755)
    for path, text in snap["scripts"].items():
        script = Path(localize(path))
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text("#!/bin/bash\n" + localize(text))
        script.chmod(0o755)
    laid = {"system": {}, "user": {}, "agent": agent, "module_config": module_config}
    for kind in ("system", "user"):
        directory = base / kind
        directory.mkdir(parents=True, exist_ok=True)
        for unit, text in snap[kind].items():
            path = directory / localize(unit)
            path.write_text(localize(text))
            laid[kind][localize(unit)] = path
    for path in [base, *base.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)

    # the runtime configuration the module generated, owned as the module declares (0440 agent:agent-admins)
    import grp

    module_config.write_text(localize(snap["agentConfig"]))
    os.chown(module_config, agent.user.uid, grp.getgrnam(host.admins_group).gr_gid)
    module_config.chmod(0o440)
    # the notes remote: a bare repository the agent owns
    remote.parent.mkdir(parents=True)
    os.chown(remote.parent, agent.user.uid, -1)
    git = ["git", "-c", "user.name=Setup", "-c", "user.email=setup@example.com", "-C", str(agent.home / "notes")]
    for argv in (["git", "init", "-q", "--bare", "-b", "main", str(remote)], [*git, "init", "-q", "-b", "main"],
                 [*git, "add", "-A"], [*git, "commit", "-q", "-m", "scaffold"],
                 [*git, "remote", "add", "origin", str(remote)], [*git, "push", "-q", "-u", "origin", "main"]):
        result = host.run_as(agent.user, argv, env={"PATH": "/usr/bin:/bin", "HOME": str(agent.home)})
        assert result.returncode == 0, (argv, result.stderr)
    return laid


def test_the_snapshot_has_every_kind_of_unit():
    snap = units.load_snapshot()
    assert {u.rsplit("-", 1)[-1] for u in snap["system"]} >= {"agent.service", "labwc.service", "wayvnc.service",
                                                              "chromium.service", "units.service"}
    assert set(snap["user"]) == {f"agent-drago-{j}.{k}" for j in ("task-loop", "scheduler", "notes-sync")
                                 for k in ("service", "timer")}


def test_every_unit_passes_systemd_analyze_verify(laid_out):
    for kind, flag in (("system", []), ("user", ["--user"])):
        paths = [str(p) for p in laid_out[kind].values()]
        # a user manager needs a runtime directory to load units in (no real one runs here)
        env = {"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(laid_out["agent"].home), "HOME": "/root"}
        result = subprocess.run(["systemd-analyze", *flag, "verify", *paths], capture_output=True, text=True,
                                timeout=120, env=env)
        output = (result.stdout + result.stderr).splitlines()
        print(f"--- systemd-analyze {' '.join(flag)} verify:", *output, sep="\n")
        problems = [line for line in output if line.strip()]  # verify prints nothing for sound units
        assert result.returncode == 0 and problems == [], "\n".join(problems)


def exposure(path: Path) -> float:
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(path)], capture_output=True,
                            text=True, timeout=120)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


def test_every_system_unit_scores_at_most_medium_exposure(laid_out):
    scores = {unit: exposure(path) for unit, path in sorted(laid_out["system"].items())}
    print("\n".join(f"{unit}: {score}" for unit, score in scores.items()))
    assert scores and all(score <= MAX_EXPOSURE for score in scores.values()), scores


def _exec_start(path: Path) -> tuple[list[str], dict[str, str]]:
    argv, env = None, {}
    for line in path.read_text().splitlines():
        if line.startswith("ExecStart="):
            argv = shlex.split(line.split("=", 1)[1])
        elif line.startswith("Environment="):
            key, _, value = json.loads(line.split("=", 1)[1]).partition("=")
            env[key] = value
    assert argv, path
    return argv, env


@pytest.mark.parametrize("job", ["task-loop", "scheduler", "notes-sync"])
def test_the_user_units_exec_start_runs_as_the_agent(host, laid_out, job):
    agent = laid_out["agent"]
    argv, env = _exec_start(laid_out["user"][f"{agent.user.name}-{job}.service"])
    env = {**env, "HOME": str(agent.home), "USER": agent.user.name, "LANG": "C.UTF-8"}
    env.pop("SSH_AUTH_SOCK", None)  # no ssh-agent runs here; the notes remote is a local path
    if job == "notes-sync":
        host.run_as(agent.user, ["sh", "-c", f"echo today > {agent.home}/notes/journal-entry.md"])
    result = host.run_as(agent.user, argv, env=env, cwd=agent.home, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "run_finish" in result.stdout + result.stderr or job != "task-loop"
    # everything it wrote belongs to the agent
    for path in agent.home.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert path.stat().st_uid == agent.user.uid, path
    if job == "notes-sync":
        remote = str(host.root / "remotes" / agent.name / "notes.git")
        files = subprocess.run(["git", "-c", f"safe.directory={remote}", "--git-dir", remote, "ls-tree", "-r",
                                "--name-only", "main"], capture_output=True, text=True, timeout=30)
        assert files.returncode == 0 and "journal-entry.md" in files.stdout.split(), files.stderr  # pushed


def test_the_system_units_run_as_the_agent_with_its_home_only(laid_out):
    agent = laid_out["agent"]
    for unit, path in laid_out["system"].items():
        text = path.read_text()
        if unit.endswith("-user-units.service"):
            assert "User=" not in text and "ProtectHome=read-only" in text
            continue
        assert f"User={agent.user.name}" in text and "NoNewPrivileges=true" in text
        if "ProtectHome=tmpfs" in text:
            assert f"BindPaths={agent.home}" in text
