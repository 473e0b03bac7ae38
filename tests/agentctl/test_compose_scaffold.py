"""keystone-agent compose and the full agent-space scaffold (cronjob units checked by systemd-analyze)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from keystone_agents import compose, scaffold

from tests.conftest import FAKEBIN, installed_script


@pytest.fixture
def space(tmp_path) -> Path:
    home = tmp_path / "home"
    scaffold.init(home, scaffold.context("drago", "Kumquat Drago", "drago@example.com", archetype="engineer"))
    return home


def test_compose_order_archetype_and_dedup(space, run_agent):
    manifest = space / "notes/manifests/modes.yaml"
    result = run_agent("compose", str(manifest), "code-review", "--roles", "architect,code-reviewer", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [(f["kind"], f["name"]) for f in data["fragments"]] == [
        ("shared", "rfc2119-preamble"), ("shared", "output-format-rules"),
        ("role", "code-reviewer"), ("role", "architect"),
        ("convention", "process.version-control"), ("convention", "process.feature-delivery"),
        ("convention", "process.continuous-integration"), ("convention", "tool.nix-devshell"),
        ("convention", "process.code-review-ownership"),
    ]
    texts = [Path(f["path"]).read_text().strip() for f in data["fragments"]]
    assert data["prompt"] == "\n\n".join(texts) + "\n"
    plain = run_agent("compose", str(manifest), "code-review", "--roles", "architect")
    assert plain.output == data["prompt"]


def test_every_scaffolded_mode_composes(space):
    manifest = space / "notes/manifests/modes.yaml"
    for mode in ("implementation", "code-review", "architecture", "planning"):
        assert compose.compose(manifest, mode).text.strip()


def test_missing_fragment_is_named(space, run_agent):
    (space / "notes/.agents/conventions/process.pull-request.md").unlink()
    result = run_agent("compose", str(space / "notes/manifests/modes.yaml"), "implementation")
    assert result.exit_code == 1
    assert "convention fragment 'process.pull-request' not found at" in result.stderr
    assert "modes.implementation.conventions" in result.stderr
    result = run_agent("compose", str(space / "notes/manifests/modes.yaml"), "implementation", "--roles", "ghost")
    assert "role fragment 'ghost' not found" in result.stderr and "(named by --roles)" in result.stderr


def test_unknown_mode_archetype_and_bad_manifest(space, run_agent, tmp_path):
    manifest = space / "notes/manifests/modes.yaml"
    result = run_agent("compose", str(manifest), "dancing")
    assert result.exit_code == 1 and "mode 'dancing' is not defined" in result.stderr and "implementation" in result.stderr
    manifest.write_text(manifest.read_text().replace("archetype: engineer", "archetype: wizard"))
    result = run_agent("compose", str(manifest), "implementation")
    assert result.exit_code == 1 and "archetype 'wizard' is not defined" in result.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("modes:\n  x:\n    roles: [ok]\n    colour: blue\n")
    result = run_agent("compose", str(bad), "x")
    assert result.exit_code == 1 and f"{bad}:4: modes.x.colour" in result.stderr


def test_scaffold_has_the_seed_layout(space):
    notes = space / "notes"
    for rel in ("SOUL.md", "TEAM.md", "SERVICES.md", "HUMAN.md", "AGENTS.md", ".envrc", ".mcp.json", "flake.nix",
                "manifests/modes.yaml", ".agents/archetypes.yaml", ".agents/shared/rfc2119-preamble.md",
                ".agents/roles/software-engineer.md", ".agents/conventions/process.feature-delivery.md",
                ".cronjobs/shared/lib.sh", ".cronjobs/shared/config.sh", ".cronjobs/shared/setup.sh",
                ".cronjobs/validate-queue/run.sh", ".cronjobs/validate-queue/service.unit",
                ".cronjobs/validate-queue/timer.unit", ".claude/settings.json", "bin/claude_tasks"):
        assert (notes / rel).is_file(), rel
    for rel in ("TASKS.yaml", "PROJECTS.yaml", "SCHEDULES.yaml", "ISSUES.yaml"):
        assert (space / rel).is_file()
    assert os.readlink(notes / "CLAUDE.md") == "AGENTS.md" and (notes / "CLAUDE.md").read_text().startswith("# Kumquat Drago")
    assert os.readlink(notes / ".deepwork") == ".agents/.deepwork"
    for rel in (".cronjobs/shared/setup.sh", ".cronjobs/validate-queue/run.sh", "bin/claude_tasks"):
        assert os.access(notes / rel, os.X_OK), rel
    json.loads((notes / ".mcp.json").read_text())
    json.loads((notes / ".claude/settings.json").read_text())
    assert "archetype: engineer" in (notes / "manifests/modes.yaml").read_text()
    with pytest.raises(scaffold.ScaffoldExists):
        scaffold.init(space, scaffold.context("drago"))


def _cron_env(space: Path, tmp_path: Path, extra_path: str = "") -> dict:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    venv_bin = str(Path(installed_script("keystone-agent")).parent)
    return {"HOME": str(space), "XDG_RUNTIME_DIR": str(runtime), "LANG": "C.UTF-8",
            "PATH": os.pathsep.join(p for p in (extra_path, venv_bin, "/usr/bin", "/bin") if p)}


def test_cronjob_setup_installs_units_that_systemd_accepts(space, tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed (Debian systemd)")
    recorder = tmp_path / "bin"
    recorder.mkdir()
    (recorder / "systemctl").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {tmp_path}/systemctl.log\n')
    (recorder / "systemctl").chmod(0o755)
    env = _cron_env(space, tmp_path, str(recorder))
    result = subprocess.run([str(space / "notes/.cronjobs/shared/setup.sh")], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    units = space / ".config/systemd/user"
    service, timer = units / "validate-queue.service", units / "validate-queue.timer"
    assert service.resolve() == (space / "notes/.cronjobs/validate-queue/service.unit").resolve()
    assert (tmp_path / "systemctl.log").read_text().splitlines() == [
        "--user daemon-reload", "--user enable --now validate-queue.timer"]
    verify = subprocess.run(["systemd-analyze", "--user", "verify", str(service), str(timer)], env=env,
                            capture_output=True, text=True)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    # a broken ExecStart would be caught
    (space / "notes/.cronjobs/validate-queue/run.sh").rename(space / "notes/.cronjobs/validate-queue/gone.sh")
    broken = subprocess.run(["systemd-analyze", "--user", "verify", str(service)], env=env, capture_output=True, text=True)
    assert broken.returncode != 0 and "run.sh" in broken.stderr


def test_cronjob_run_logs_and_reports_invalid_queue(space, tmp_path):
    # the agent's provider CLI is installed (the stand-in): validate checks that the default provider can run
    env = _cron_env(space, tmp_path, extra_path=str(FAKEBIN))
    run = space / "notes/.cronjobs/validate-queue/run.sh"
    ok = subprocess.run([str(run)], env=env, capture_output=True, text=True, cwd=space / "notes")
    assert ok.returncode == 0, ok.stderr
    log = space / ".local/state/agent-cronjobs/logs/validate-queue.log"
    assert "queue files are valid" in log.read_text()
    (space / "TASKS.yaml").write_text("tasks:\n  - name: x\n    status: sleeping\n")
    bad = subprocess.run([str(run)], env=env, capture_output=True, text=True, cwd=space / "notes")
    assert bad.returncode == 1
    assert "queue files are invalid" in log.read_text() and "TASKS.yaml" in log.read_text()
