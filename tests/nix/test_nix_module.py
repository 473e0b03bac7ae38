"""The NixOS module, evaluated by nixpkgs' lib.evalModules with stand-in NixOS options (tests/nix/stubs.nix):
users, units, timers, sudo, tmpfiles and the generated JSON (validated against the package's schemas and
loaded by the runtime's own config loader)."""

from __future__ import annotations

import os
import json
import subprocess
import sys
from pathlib import Path

import pytest

from keystone_agents import profiles
from keystone_agents.config import parse_config
from keystone_agents.schemas import validator

from tests.nix import nixeval

CONFIG = "/etc/keystone-agents/agents/{}.json"



def by_name(host_config: dict) -> dict:
    """agentctl's host config lists agents; index them by name."""
    return {agent["name"]: agent for agent in host_config["agents"]}

def ours(messages: list[str]) -> list[str]:
    """Our assertions (NixOS's own may fire beside them, as they do on a real host)."""
    return [m for m in messages if m.startswith("keystone.os.")]


def schema_errors(name: str, data: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(name).iter_errors(data)]


def valid_agent_config(ev, agent: str) -> dict:
    data = ev.agent_config(agent)
    assert schema_errors("config", data) == []
    parse_config(data, CONFIG.format(agent))  # the runtime's loader accepts it too
    return data


def test_no_agents_produce_nothing(evaluate):
    ev = evaluate('{ networking.hostName = "ocean"; }')
    assert ev["failedAssertions"] == []
    assert ev["users"] == {} and ev["services"] == {} and ev["userServices"] == {} and ev["userTimers"] == {}
    assert ev["sudoRules"] == [] and ev["tmpfiles"] == [] and ev["etc"] == {} and ev["systemPackages"] == []
    assert "agents" not in ev["groups"]


def test_one_agent_with_defaults(evaluate):
    ev = evaluate('{ networking.hostName = "ocean"; keystone.os.agents.drago = { }; }')
    assert ev["failedAssertions"] == [] and ev["warnings"] == []

    user = ev["users"]["agent-drago"]
    assert user["uid"] == 4001 and user["group"] == "agents" and user["isNormalUser"]
    assert user["home"] == "/home/agent-drago" and user["createHome"] is False  # created with group agent-admins
    assert user["linger"] is False and user["hashedPassword"] == "!"  # lingering: agent-drago-user-units
    assert user["description"] == "drago" and "keystone-agents-0.1.0" in user["packages"]
    assert set(ev["groups"]) == {"agents", "agent-admins"}
    assert "d /home/agent-drago 0750 agent-drago agent-admins -" in ev["tmpfiles"]
    assert "d /var/lib/prometheus-node-exporter 1775 root agents -" in ev["tmpfiles"]
    assert ev["activationScripts"] == {}  # homes come from tmpfiles (works with userborn and sysusers too)

    # user units: loop and scheduler on timers; no notes sync without a repo
    assert set(ev["userServices"]) == {"agent-drago-task-loop", "agent-drago-scheduler"}
    loop = ev["userServices"]["agent-drago-task-loop"]
    assert loop["unitConfig"]["ConditionUser"] == "agent-drago"
    assert loop["serviceConfig"]["Type"] == "oneshot"
    assert loop["serviceConfig"]["ExecStart"] == (
        "/stand-in/keystone-agents-0.1.0/bin/keystone-agent loop --config /etc/keystone-agents/agents/drago.json")
    assert loop["serviceConfig"]["TimeoutStartSec"] == 5 * 1800 + 900
    assert loop["serviceConfig"]["SuccessExitStatus"] == "3"  # degraded is reported by metrics, not a failed unit
    assert loop["environment"]["PATH"].split(":") == [
        "/etc/profiles/per-user/agent-drago/bin", "/run/wrappers/bin", "/run/current-system/sw/bin", "/stand-in/nix/bin"]
    assert loop["environment"]["KEYSTONE_AGENT_CONFIG"] == CONFIG.format("drago")
    assert loop["environment"]["PROMETHEUS_TEXTFILE_DIR"] == "/var/lib/prometheus-node-exporter"
    assert "SSH_AUTH_SOCK" not in loop["environment"]  # no key configured, no ssh-agent
    schedule = ev["userServices"]["agent-drago-scheduler"]["serviceConfig"]["ExecStart"]
    assert schedule.endswith("keystone-agent schedule --config /etc/keystone-agents/agents/drago.json")
    timers = ev["userTimers"]
    assert timers["agent-drago-task-loop"]["timerConfig"] == {
        "OnCalendar": "*:0/5", "Persistent": True, "Unit": "agent-drago-task-loop.service"}
    assert timers["agent-drago-scheduler"]["timerConfig"]["OnCalendar"] == "*-*-* 05:00:00"
    assert all(t["wantedBy"] == ["timers.target"] and t["unitConfig"]["ConditionUser"] == "agent-drago"
               for t in timers.values())

    # desktop and browser by default; VNC on loopback
    assert set(ev["services"]) == {"agent-drago-labwc", "agent-drago-wayvnc", "agent-drago-chromium",
                                   "agent-drago-user-units", "agent-drago-git-config"}
    assert ev["services"]["agent-drago-wayvnc"]["serviceConfig"]["ExecStart"].endswith("wayvnc 127.0.0.1 5901")
    chromium = ev["services"]["agent-drago-chromium"]["serviceConfig"]
    assert "--remote-debugging-port=9222" in chromium["ExecStart"]
    assert "--remote-debugging-address=127.0.0.1" in chromium["ExecStart"] and chromium["User"] == "agent-drago"
    assert ev["services"]["agent-drago-labwc"]["environment"]["WLR_BACKENDS"] == "headless"

    # sudo: agent-admins may run only the admin helper as the agent, and systemctl on its system units as root
    svc = "/stand-in/keystone-agents-0.1.0/bin/keystone-agent-svc"
    assert ev["sudoRules"][0] == {
        "groups": ["agent-admins"], "users": [], "host": "ALL", "runAs": "agent-drago",
        "commands": [{"command": svc, "options": ["NOPASSWD"]}],
    }
    [units] = ev["sudoRules"][1:]
    assert units["runAs"] == "root" and units["groups"] == ["agent-admins"]
    assert {c["command"] for c in units["commands"]} == {
        f"/stand-in/systemd/bin/systemctl {verb} agent-drago-{unit}.service"
        for verb in ("status", "start", "stop", "restart")
        for unit in ("labwc", "wayvnc", "chromium", "user-units", "git-config")}

    config = valid_agent_config(ev, "drago")
    assert config["agentName"] == "drago" and config["host"] == "ocean" and config["notesDir"] == "/home/agent-drago/notes"
    assert (config["maxTasks"], config["maxAttempts"], config["taskTimeoutSeconds"]) == (5, 3, 1800)
    assert config["mail"] is None and config["github"] is None and config["notes"]["repo"] is None
    assert "chrome-devtools" not in config["mcpServers"]  # the pinned nixpkgs has no chrome-devtools-mcp
    etc = ev["etc"]["keystone-agents/agents/drago.json"]
    assert (etc["mode"], etc["user"], etc["group"], etc["uid"], etc["gid"]) == ("0440", "agent-drago", "agent-admins", 4001, 4099)

    host = ev.host_config()
    assert schema_errors("host-config", host) == []
    drago = next(a for a in host["agents"] if a["name"] == "drago")
    assert drago["helper"] == svc and drago["configPath"].endswith("/agents/drago.json")
    assert drago["systemUnits"] == ["agent-drago-chromium", "agent-drago-git-config", "agent-drago-labwc",
                                    "agent-drago-user-units", "agent-drago-wayvnc"]
    assert drago["path"] == loop["environment"]["PATH"] and drago["sshAuthSock"] is None
    assert host["systemctl"] == "/stand-in/systemd/bin/systemctl"
    # agentctl itself accepts what the module writes
    from keystone_agents.agentctl import hostconfig
    parsed = hostconfig.parse(host)
    assert parsed.get("drago").helper == svc and parsed.is_local_host(parsed.get("drago").host)
    assert parsed.get("drago").system_unit("agent-drago-labwc") == "agent-drago-labwc.service"
    assert "keystone-agents-0.1.0" in ev["systemPackages"]


def test_two_agents_get_uids_and_ports_in_name_order(evaluate):
    ev = evaluate('''{
      networking.hostName = "ocean";
      users.users.alice = { isNormalUser = true; uid = 1000; };
      keystone.os.agentRuntime.admins = [ "alice" ];
      keystone.os.agents.zed = { notes.repo = "ssh://forgejo@git.example.com:2222/zed/notes.git"; };
      keystone.os.agents.alpha = { ssh.keyFile = "/run/agenix/agent-alpha-ssh-key"; };
    }''')
    assert ev["failedAssertions"] == []
    assert ev["users"]["agent-alpha"]["uid"] == 4001 and ev["users"]["agent-zed"]["uid"] == 4002
    assert ev["groups"]["agent-admins"]["members"] == ["alice"]
    host = ev.host_config()
    assert [(a, by_name(host)[a]["vncPort"], by_name(host)[a]["chromeDebugPort"]) for a in ("alpha", "zed")] == [
        ("alpha", 5901, 9222), ("zed", 5902, 9223)]
    assert {r["runAs"] for r in ev["sudoRules"]} == {"agent-alpha", "agent-zed", "root"}  # root: their system units
    # only zed has a notes repo, only alpha a key (hence an ssh-agent and SSH_AUTH_SOCK)
    assert "agent-zed-notes-sync" in ev["userServices"] and "agent-alpha-notes-sync" not in ev["userServices"]
    sync = ev["userServices"]["agent-zed-notes-sync"]["serviceConfig"]["ExecStart"]
    assert sync.endswith("keystone-agent sync --config /etc/keystone-agents/agents/zed.json")
    assert "agent-alpha-ssh-agent" in ev["services"] and "agent-zed-ssh-agent" not in ev["services"]
    ssh_agent = ev["services"]["agent-alpha-ssh-agent"]["serviceConfig"]
    assert ssh_agent["ExecStart"].endswith("ssh-agent -D -a /run/agent-alpha-ssh-agent/agent.sock")
    assert ev["userServices"]["agent-alpha-task-loop"]["environment"]["SSH_AUTH_SOCK"] == "/run/agent-alpha-ssh-agent/agent.sock"
    for agent in ("alpha", "zed"):
        valid_agent_config(ev, agent)


def test_explicit_uid_clash_is_an_assertion_that_says_how_to_fix_it(evaluate):
    ev = evaluate('''{
      networking.hostName = "ocean";
      keystone.os.agents.alpha.uid = 4002;
      keystone.os.agents.zed = { };
    }''')
    [message] = ours(ev["failedAssertions"])
    assert "UID 4002 is used by several agents (alpha (set explicitly), zed (automatic))" in message
    assert "keystone.os.agents.<name>.uid, e.g. 4001" in message


def test_uid_clash_with_another_user_is_an_assertion(evaluate):
    ev = evaluate('''{
      networking.hostName = "ocean";
      users.users.bob = { isNormalUser = true; uid = 4001; };
      keystone.os.agents.drago = { };
    }''')
    [message] = ours(ev["failedAssertions"])
    assert "UIDs and GIDs must be unique!" in ev["failedAssertions"]  # NixOS's own, which ours explains
    assert "UID 4001 (automatic) of agent-drago is also the UID of users.users.bob" in message
    assert "set keystone.os.agents.drago.uid to a free UID (e.g. 4002)" in message


def test_desktop_off(evaluate):
    ev = evaluate('''{
      networking.hostName = "ocean";
      keystone.os.agents.alpha.desktop.enable = false;
      keystone.os.agents.beta = { };
    }''')
    assert ev["failedAssertions"] == []
    # no desktop, no browser: the switch's user-units starter and the git identity's oneshot
    assert sorted(s for s in ev["services"] if s.startswith("agent-alpha-")) == ["agent-alpha-git-config",
                                                                              "agent-alpha-user-units"]
    assert ev["warnings"] == [
        "keystone.os.agents.alpha: chrome.enable needs desktop.enable; Chromium is not started. "
        "Set chrome.enable = false to silence this."]
    host = ev.host_config()
    assert (by_name(host)["alpha"]["vncPort"], by_name(host)["alpha"]["chromeDebugPort"]) == (None, None)
    # ports are allocated among the desktop agents only
    assert (by_name(host)["beta"]["vncPort"], by_name(host)["beta"]["chromeDebugPort"]) == (5901, 9222)
    assert "chrome-devtools" not in valid_agent_config(ev, "alpha")["mcpServers"]
    assert "agent-alpha-task-loop" in ev["userServices"]  # the work goes on without a desktop


def test_custom_profiles_and_stage_settings(evaluate):
    ev = evaluate('''{
      networking.hostName = "ocean";
      keystone.os.agents.researcher = {
        chrome.mcp.enable = false;
        notes.taskLoop = {
          onCalendar = "*:0/15";
          maxTasks = 2;
          maxAttempts = 4;
          timeout = 600;
          defaults = { provider = "claude"; profile = "medium"; };
          ingest = { provider = "gemini"; profile = "fast"; };
          execute = { profile = "max"; fallbackModel = "opus"; };
          profiles.max = { claude = { model = "opus"; effort = "max"; }; gemini.model = "auto-gemini-3"; };
          profiles.cheap.codex.model = "gpt-5-mini";
          sources = [ { name = "ci"; command = [ "ci-report" "--json" ]; timeout = 30; project = "infra"; } ];
          environment.TZ = "Europe/Berlin";
        };
        notes.scheduler = { onCalendar = "*-*-* 06:30:00"; horizonDays = 3; };
        mcp.servers.deepwork = { command = "deepwork"; args = [ "serve" ]; };
      };
    }''')
    assert ev["failedAssertions"] == []
    config = valid_agent_config(ev, "researcher")
    assert config["defaults"] == {"provider": "claude", "profile": "medium"}
    assert config["ingest"] == {"provider": "gemini", "profile": "fast"}
    assert config["prioritize"] == {}
    assert config["execute"] == {"profile": "max", "fallbackModel": "opus"}
    assert config["profiles"] == {
        "max": {"claude": {"model": "opus", "effort": "max"}, "gemini": {"model": "auto-gemini-3"}},
        "cheap": {"codex": {"model": "gpt-5-mini"}},
    }
    assert config["sources"] == [{"name": "ci", "command": ["ci-report", "--json"], "timeout": 30, "project": "infra"}]
    assert (config["maxTasks"], config["maxAttempts"], config["taskTimeoutSeconds"]) == (2, 4, 600)
    assert config["environment"] == {"TZ": "Europe/Berlin"} and config["scheduler"] == {"horizonDays": 3, "expectedIntervalSeconds": 86400}
    assert config["mcpServers"] == {"deepwork": {"command": "deepwork", "args": ["serve"], "env": {}}}

    # the runtime resolves the seed's example the way the seed says
    typed = parse_config(config)
    assert profiles.resolve(typed, "ingest").as_dict() == {
        "provider": "gemini", "profile": "fast", "model": "gemini-3-flash-preview", "fallback_model": None, "effort": None}
    assert profiles.resolve(typed, "prioritize").provider == "claude"
    execute = profiles.resolve(typed, "execute")
    assert (execute.provider, execute.profile, execute.model, execute.fallback_model, execute.effort) == (
        "claude", "max", "opus", "opus", "max")

    assert ev["userTimers"]["agent-researcher-task-loop"]["timerConfig"]["OnCalendar"] == "*:0/15"
    assert ev["userTimers"]["agent-researcher-scheduler"]["timerConfig"]["OnCalendar"] == "*-*-* 06:30:00"
    assert ev["userServices"]["agent-researcher-task-loop"]["serviceConfig"]["TimeoutStartSec"] == 2 * 600 + 900


def test_an_agent_on_another_host_is_known_to_agentctl_only(evaluate):
    ev = evaluate('''{
      networking.hostName = "ocean";
      keystone.os.agents.drago = { };
      keystone.os.agents.luce = { host = "vps1"; };
    }''')
    assert ev["failedAssertions"] == []
    assert set(ev["users"]) == {"agent-drago"}
    assert not any("luce" in name for name in [*ev["userServices"], *ev["services"], *ev["etc"]] if "agentctl" not in name)
    luce = next(a for a in ev.host_config()["agents"] if a["name"] == "luce")
    assert (luce["host"], luce["helper"], luce["uid"], luce["vncPort"]) == ("vps1", None, 4002, 5901)
    from keystone_agents.agentctl import hostconfig
    parsed = hostconfig.parse(ev.host_config())
    assert not parsed.is_local_host(parsed.get("luce").host)


def test_mail_without_servers_is_an_assertion(evaluate):
    ev = evaluate('{ networking.hostName = "h"; keystone.os.agents.drago.mail.address = "drago@example.com"; }')
    [message] = ev["failedAssertions"]
    assert message.startswith("keystone.os.agents.drago.mail.address is set, so mail.imap.host and mail.smtp.host")


def test_mail_settings_reach_the_config(evaluate):
    ev = evaluate('''{ networking.hostName = "h"; keystone.os.agents.drago.mail = {
      address = "drago@example.com"; passwordFile = "/run/agenix/agent-drago-mail-password";
      imap = { host = "127.0.0.1"; port = 10143; security = "starttls"; }; smtp.host = "mail.example.com"; }; }''')
    mail = valid_agent_config(ev, "drago")["mail"]
    assert mail["imap"] == {"host": "127.0.0.1", "port": 10143, "security": "starttls"}
    assert mail["smtp"] == {"host": "mail.example.com", "port": 465, "security": "tls"}
    assert mail["passwordFile"] == "/run/agenix/agent-drago-mail-password"
    assert valid_agent_config(ev, "drago")["email"] == "drago@example.com"


def test_secrets_are_paths_never_values(evaluate):
    ev = evaluate('{ networking.hostName = "h"; keystone.os.agents.drago.github = { username = "d"; tokenFile = "/nix/store/abc-token"; }; }')
    assert any("a secret file points into /nix/store" in m for m in ev["failedAssertions"])
    # a Nix path literal would be copied into the world-readable store: refused by the option's type
    with pytest.raises(nixeval.NixError, match="tokenFile"):
        evaluate('{ keystone.os.agents.drago.github = { username = "d"; tokenFile = ./token; }; }')


def test_the_package_is_built_from_pyproject(evaluate):
    import tomllib

    pyproject = tomllib.loads((nixeval.REPO / "pyproject.toml").read_text())["project"]
    package = evaluate('{ keystone.os.agents.drago = { }; }')["package"]
    assert (package["pname"], package["version"]) == (pyproject["name"], pyproject["version"])
    expected = []
    extras = pyproject["optional-dependencies"]
    for requirement in pyproject["dependencies"] + extras["postgres"] + extras["mcp"]:
        name = requirement.split(";")[0].strip()
        for sep in "<>=!~[ ":
            name = name.split(sep)[0]
        expected.append("python3-" + name.lower().replace(".", "-").replace("_", "-"))
    assert package["dependencies"] == expected
    assert package["buildSystem"] == ["python3-hatchling"]


def test_the_documented_example_evaluates_and_the_runtime_accepts_its_config(nixpkgs_lib, tmp_path):
    ev = nixeval.evaluate(nixeval.HERE / "eval.nix", nixpkgsLib=nixpkgs_lib,
                          scenario=nixeval.HERE / "scenarios/example.nix")
    assert ev["failedAssertions"] == [] and ev["warnings"] == []
    home = tmp_path / "home"
    (home / "notes").mkdir(parents=True)
    config = json.loads(ev["etc"]["keystone-agents/agents/drago.json"]["text"])
    config["notesDir"] = str(home / "notes")  # /home/agent-drago is not this test's to create
    config_file = tmp_path / "drago.json"
    config_file.write_text(json.dumps(config))
    # validate also checks that the commands the config names can run: the example's source and MCP server
    # commands as do-nothing executables, the provider CLIs as the stand-ins
    tools = tmp_path / "bin"
    tools.mkdir()
    commands = [s["command"] for s in config["sources"]] + [m["command"] for m in config["mcpServers"].values()]
    for command in [c[0] if isinstance(c, list) else c for c in commands]:
        if "/" not in command:
            (tools / command).write_text("#!/bin/sh\nexit 0\n")
            (tools / command).chmod(0o755)
    from tests.conftest import FAKEBIN

    script = Path(sys.executable).parent / "keystone-agent"
    env = {**os.environ, "PATH": os.pathsep.join([str(tools), str(FAKEBIN), str(script.parent), "/usr/bin", "/bin"])}
    result = subprocess.run([str(script), "validate", "--home", str(home), "--config", str(config_file)],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_sudo_rules_are_the_shared_expression(evaluate, nix):
    """users.nix passes exactly what modules/os/agents/sudo-rules.nix renders (the expression the real-host
    suite installs into a real sudoers file), with the host config's helper, systemctl and system units."""
    from tests.support import realhost

    ev = evaluate('{ networking.hostName = "h"; keystone.os.agents = { drago = { ssh.keyFile = "/run/agenix/k"; };'
                  ' luce.desktop.enable = false; far.host = "elsewhere"; }; }')
    host = by_name(ev.host_config())
    agents = [{"user": host[n]["user"], "systemUnits": host[n]["systemUnits"]} for n in ("drago", "luce")]
    expected = realhost.module_sudo_rules(host["drago"]["helper"], ev.host_config()["systemctl"], agents)
    defaults = {"users": [], "host": "ALL"}
    assert ev["sudoRules"] == [{**defaults, **rule} for rule in expected]
    assert host["drago"]["systemUnits"] == ["agent-drago-chromium", "agent-drago-git-config", "agent-drago-labwc",
                                            "agent-drago-ssh-agent", "agent-drago-user-units", "agent-drago-wayvnc"]
    assert host["luce"]["systemUnits"] == ["agent-luce-git-config", "agent-luce-user-units"]
    assert host["far"]["helper"] is None
    assert host["drago"]["sshAuthSock"] == "/run/agent-drago-ssh-agent/agent.sock"
    assert [r["runAs"] for r in ev["sudoRules"]] == ["agent-drago", "agent-luce", "root", "root"]


def test_settings_reach_the_runtime_config_merged_over_the_options(evaluate):
    """`settings` sets what has no dedicated option (here: the coding route, rules, archive age) and is merged
    recursively: the options' own values under the same key survive."""
    ev = evaluate('''{
      networking.hostName = "ocean";
      keystone.os.agents.drago = {
        notes.scheduler.horizonDays = 3;
        settings = {
          coding.workflows = [ "sweng/sweng" ];
          workflowRules = [ { keywords = [ "press release" ]; workflow = "press_release/write"; } ];
          archiveAfterDays = 7;
          scheduler.maxCatchUp = 10;
        };
      };
    }''')
    assert ev["failedAssertions"] == []
    config = valid_agent_config(ev, "drago")
    assert config["coding"] == {"workflows": ["sweng/sweng"]}
    assert config["workflowRules"] == [{"keywords": ["press release"], "workflow": "press_release/write"}]
    assert config["archiveAfterDays"] == 7
    assert config["scheduler"]["maxCatchUp"] == 10 and config["scheduler"]["horizonDays"] == 3
    typed = parse_config(config)
    assert typed.coding.workflows == ["sweng/sweng"] and typed.workflow_rules[0].workflow == "press_release/write"


def test_the_package_installs_completions_and_manual_pages(evaluate, tmp_path):
    """nix/package.nix's postInstall, run in bash with the installed CLIs as $out/bin and nixpkgs'
    installShellFiles functions (same destinations): completion scripts for both CLIs and every shell, and the
    manual pages generated from the click commands."""
    pytest.importorskip("click_man", reason="click-man (the man page generator) is not installed")
    package = evaluate('{ keystone.os.agents.drago = { }; }')["package"]
    assert package["nativeBuildInputs"] == ["installShellFiles", "python3-click-man"]
    out = tmp_path / "out"
    (out / "bin").mkdir(parents=True)
    for cli in ("keystone-agent", "agentctl"):
        (out / "bin" / cli).symlink_to(Path(sys.executable).parent / cli)
    # nixpkgs' installShellFiles: --cmd NAME --bash F → share/bash-completion/completions/NAME.bash,
    # --zsh F → share/zsh/site-functions/_NAME, --fish F → share/fish/vendor_completions.d/NAME.fish;
    # installManPage F.1 → share/man/man1/F.1
    hooks = """
installShellCompletion() {
  local cmd="" ; while [ $# -gt 0 ]; do case "$1" in
    --cmd) cmd="$2"; shift 2;;
    --bash) install -D -m644 "$2" "$out/share/bash-completion/completions/$cmd.bash"; shift 2;;
    --zsh) install -D -m644 "$2" "$out/share/zsh/site-functions/_$cmd"; shift 2;;
    --fish) install -D -m644 "$2" "$out/share/fish/vendor_completions.d/$cmd.fish"; shift 2;;
    *) echo "unexpected $1" >&2; return 1;; esac; done
}
installManPage() { for page in "$@"; do install -D -m644 "$page" "$out/share/man/man1/$(basename "$page")"; done; }
python3() { "$PYTHON" "$@"; }
set -euo pipefail
"""
    work = tmp_path / "build"
    work.mkdir()
    result = subprocess.run(["bash", "-c", hooks + package["postInstall"]], cwd=work, capture_output=True, text=True,
                            env={**os.environ, "out": str(out), "PYTHON": sys.executable}, timeout=300)
    assert result.returncode == 0, result.stderr
    for cli, func in (("keystone-agent", "_keystone_agent_completion"), ("agentctl", "_agentctl_completion")):
        assert func in (out / f"share/bash-completion/completions/{cli}.bash").read_text()
        assert (out / f"share/zsh/site-functions/_{cli}").read_text().startswith("#compdef")
        assert "complete" in (out / f"share/fish/vendor_completions.d/{cli}.fish").read_text()
    pages = {p.name for p in (out / "share/man/man1").iterdir()}
    assert {"keystone-agent.1", "keystone-agent-task-add.1", "agentctl.1", "agentctl-list.1"} <= pages
