"""Bad local state is an error message, not a traceback (issue 21): every command of both CLIs, run against a
set of broken homes, ends with clear lines and a documented exit code — never a Python traceback. And the
specific repairs: a corrupt history database is moved aside and recreated with an event; a full disk leaves
the old TASKS.yaml in place and ends the run `error` with the cause."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from keystone_agents import scaffold
from keystone_agents.agentctl.hostconfig import current_user
from keystone_agents.cli.agent import cli as agent_cli
from keystone_agents.cli.ctl import cli as ctl_cli
from tests.conftest import FAKEBIN

DOCUMENTED_EXITS = {0, 1, 2, 3, 75}
STATE = Path(".local/state/agent-task-loop/state")


def _state(home: Path) -> Path:
    (home / STATE).mkdir(parents=True, exist_ok=True)
    return home / STATE


def _replace_with_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "inside.txt").write_text("x")


BREAKAGES = {
    "corrupt-history": lambda h: (_state(h) / "history.sqlite3").write_bytes(b"this is not sqlite\x00" * 200),
    "tasks-is-a-directory": lambda h: _replace_with_dir(h / "TASKS.yaml"),
    "tasks-symlink-loop": lambda h: ((h / "TASKS.yaml").unlink(), (h / "TASKS.yaml").symlink_to(h / "TASKS.yaml")),
    "tasks-not-utf8": lambda h: (h / "TASKS.yaml").write_bytes(b"tasks:\n  - name: \xff\xfe\n"),
    "tasks-not-yaml": lambda h: (h / "TASKS.yaml").write_text("tasks: [\n  - {name: a\n"),
    "projects-is-a-directory": lambda h: _replace_with_dir(h / "PROJECTS.yaml"),
    "schedules-wrong-types": lambda h: (h / "SCHEDULES.yaml").write_text("schedules:\n  - name: 5\n    schedule: [1]\n"),
    "config-is-a-directory": lambda h: _replace_with_dir(h / ".config/keystone-agent/config.json"),
    "config-not-utf8": lambda h: (h / ".config/keystone-agent/config.json").write_bytes(b"{\xff\xfe}"),
    "config-not-json": lambda h: (h / ".config/keystone-agent/config.json").write_text("{maxTasks: 5"),
    "state-dir-is-a-file": lambda h: (shutil.rmtree(h / ".local", ignore_errors=True),
                                      (h / ".local/state").mkdir(parents=True),
                                      (h / ".local/state/agent-task-loop").write_text("not a dir")),
    "pause-file-garbage": lambda h: (_state(h) / "paused").write_bytes(b"\xff\x00\xfe garbage"),
    "notes-is-a-file": lambda h: (shutil.rmtree(h / "notes"), (h / "notes").write_text("not a dir")),
    "logs-is-a-file": lambda h: (_state(h), (h / ".local/state/agent-task-loop/logs").write_text("x")),
}

AGENT_COMMANDS = [
    ["validate"], ["validate", "--json"], ["tasks"], ["tasks", "--json"], ["paused"], ["pause", "--", "why"],
    ["resume"], ["loop"], ["loop", "--dry-run"], ["loop", "--task", "nope", "--no-wait"],
    ["loop", "--prompt", "hello", "--no-wait"], ["runs"], ["runs", "--json"], ["logs"], ["logs", "--kind", "scheduler"],
    ["logs", "some-task"], ["schedule"], ["schedule", "--dry-run"], ["sync"], ["info"], ["info", "--json"],
    ["code", "--repo", "acme/app", "--task", "t", "--json"],
    ["mail", "send", "--to", "a@example.com", "--subject", "s", "--body", "b"],
]
CTL_VERBS = [
    ["list"], ["list", "--json"], ["show", "{agent}"], ["{agent}", "tasks"], ["{agent}", "paused"],
    ["{agent}", "runs"], ["{agent}", "logs"], ["{agent}", "pause", "why"], ["{agent}", "resume"],
    ["{agent}", "run", "--task", "nope", "--no-wait"], ["{agent}", "status"],
]


def broken_home(root: Path, breakage: str) -> Path:
    home = root / breakage
    scaffold.init(home, scaffold.context("demo", "Demo Agent", "demo@example.com"))
    BREAKAGES[breakage](home)
    return home


def no_traceback(output: str, exit_code, context) -> None:
    assert "Traceback (most recent call last)" not in output, (context, output[-3000:])
    assert exit_code in DOCUMENTED_EXITS, (context, exit_code, output[-2000:])


@pytest.fixture
def env(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", os.pathsep.join([str(FAKEBIN), str(Path(sys.executable).parent),
                                                os.environ.get("PATH", "")]))


@pytest.mark.slow
@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_every_keystone_agent_command_against_a_broken_home(tmp_path, env, breakage):
    home = broken_home(tmp_path, breakage)
    runner = CliRunner()
    for command in AGENT_COMMANDS:
        args = [*command[:1], "--home", str(home), *command[1:]] if "--" not in command else \
            [command[0], "--home", str(home), *command[1:]]
        result = runner.invoke(agent_cli, args, catch_exceptions=True)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            pytest.fail(f"{breakage}: keystone-agent {' '.join(command)} raised "
                        + "".join(traceback.format_exception(result.exception))[-3000:])
        no_traceback(result.output, result.exit_code, (breakage, command))
    init = runner.invoke(agent_cli, ["init", str(home)], catch_exceptions=True)
    no_traceback(init.output, init.exit_code, (breakage, "init"))


@pytest.mark.slow
@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_every_agentctl_command_against_a_broken_home(tmp_path, env, monkeypatch, breakage):
    home = broken_home(tmp_path, breakage)
    agent = "broken-" + uuid.uuid4().hex[:6]
    host_config = tmp_path / "agentctl.json"
    host_config.write_text(json.dumps({"hostName": "here", "agents": [{
        "name": agent, "user": current_user(), "home": str(home), "notesDir": str(home / "notes"),
        "configPath": str(home / ".config/keystone-agent/config.json")}]}))
    monkeypatch.setenv("AGENTCTL_CONFIG", str(host_config))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    runner = CliRunner()
    for verb in CTL_VERBS:
        args = [part.replace("{agent}", agent) for part in verb]
        result = runner.invoke(ctl_cli, args, catch_exceptions=True)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            pytest.fail(f"{breakage}: agentctl {' '.join(args)} raised "
                        + "".join(traceback.format_exception(result.exception))[-3000:])
        no_traceback(result.output, result.exit_code, (breakage, args))


def test_a_corrupt_history_is_moved_aside_and_recreated(tmp_path, env):
    from tests.support.loop import events

    home = broken_home(tmp_path, "corrupt-history")
    state = home / STATE
    proc = subprocess.run([str(Path(sys.executable).parent / "keystone-agent"), "loop", "--home", str(home)],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    [event] = events(proc.stderr, "history_recreated")
    aside = Path(event["corrupt_file"])
    assert aside.name.startswith("history.sqlite3.corrupt-") and aside.read_bytes().startswith(b"this is not sqlite")
    import sqlite3

    rows = sqlite3.connect(state / "history.sqlite3").execute("SELECT status FROM runs").fetchall()
    assert rows == [("success",)]


def test_tasks_yaml_a_directory_is_one_clear_line(tmp_path, env):
    home = broken_home(tmp_path, "tasks-is-a-directory")
    result = CliRunner().invoke(agent_cli, ["tasks", "--home", str(home)], catch_exceptions=False)
    assert result.exit_code == 1
    assert f"{home / 'TASKS.yaml'}: is a directory, not a file" in result.stderr


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (a real full disk), unique to this test; skipped where mounting is not allowed."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:8]}"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_keeps_the_old_tasks_yaml_and_ends_the_run_in_error(tiny_disk, env):
    from tests.support.loop import events

    home = tiny_disk / "home"
    (home / ".config/keystone-agent").mkdir(parents=True)
    (home / ".config/keystone-agent/config.json").write_text(json.dumps(
        {"agentName": "demo", "defaults": {"provider": "claude"}, "textfileDir": str(home / "metrics")}))
    original = "tasks:\n  - name: job\n    description: \"a task [fake:sleep=0]\"\n    status: pending\n"
    (home / "TASKS.yaml").write_text(original)
    for name, key in (("PROJECTS.yaml", "projects"), ("SCHEDULES.yaml", "schedules"), ("ISSUES.yaml", "issues")):
        (home / name).write_text(f"{key}: []\n")
    (home / ".local/state/agent-task-loop/state").mkdir(parents=True)
    (home / ".local/state/agent-task-loop/logs/tasks").mkdir(parents=True)
    fd = os.open(tiny_disk / "filler", os.O_WRONLY | os.O_CREAT)  # fill the disk to the last byte
    for size in (65536, 4096, 1):
        try:
            while True:
                os.write(fd, b"\0" * size)
        except OSError:
            pass
    os.close(fd)
    proc = subprocess.run([str(Path(sys.executable).parent / "keystone-agent"), "loop", "--home", str(home)],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "no space left on the device" in proc.stderr.lower()
    assert (home / "TASKS.yaml").read_text() == original  # the old file stays
    finish = events(proc.stderr, "run_finish")
    assert finish and finish[-1]["status"] == "error"
