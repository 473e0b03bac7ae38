"""The loop's output for people and for machines: human lines on a terminal, logfmt when piped, --log-format,
-q/-v, the summary line, heartbeats and `loop --json` — as real subprocesses (a pty for the terminal)."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import installed_script
from tests.support.loop import events, make_home
from tests.support.pty import run_on_tty

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def lh(tmp_path):
    lh = make_home(tmp_path)
    lh.write_tasks("""
        tasks:
          - name: write-report
            description: "Write the weekly report"
            status: pending
    """)
    return lh


def loop_argv(lh, *args):
    return [installed_script("keystone-agent"), "loop", "--home", str(lh.home), *args]


def test_a_terminal_gets_one_short_coloured_line_per_event_and_a_summary(lh):
    code, out = run_on_tty(loop_argv(lh), lh.env(TERM="xterm"))
    assert code == 0, out
    assert "ts=" not in out and 'event="' not in out  # no logfmt for a person
    assert "\x1b[" in out  # colour on a terminal
    plain = ANSI.sub("", out)
    finish = [line for line in plain.splitlines() if "write-report" in line and "completed" in line]
    assert finish, plain
    assert re.match(r"^\d\d:\d\d:\d\d execute\s+write-report\s+completed\s+\d+\.\ds\s+Finished task", finish[0])
    summary = [line for line in plain.splitlines() if " summary " in line]
    assert len(summary) == 1, plain
    assert re.search(r"summary  success: created 0, executed 1, completed 1, failed 0, blocked 0, tokens \d+, "
                     r"cost \$\d+\.\d{4}, \d+\.\ds$", summary[0]), summary[0]
    assert all(len(line) < 240 for line in plain.splitlines())


def test_no_color_turns_colour_off_on_a_terminal(lh):
    code, out = run_on_tty(loop_argv(lh), lh.env(TERM="xterm", NO_COLOR="1"))
    assert code == 0, out
    assert "\x1b[" not in out
    assert " summary  success:" in out


def test_piped_output_is_logfmt_with_the_journal_field_names(lh):
    result = lh.loop()
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("ts=") for line in lines), result.stderr
    finish = events(result.stderr, "run_finish")[0]
    for key in ("host", "agent", "unit", "run_id", "step", "status", "exit_code", "duration_seconds",
                "tasks_completed", "tasks_failed", "tasks_blocked", "tasks_created", "token_total"):
        assert key in finish, key
    assert events(result.stderr, "stage_start")  # the journal keeps every event
    assert "\x1b[" not in result.stderr


def test_log_format_overrides_the_terminal_check(lh):
    code, out = run_on_tty(loop_argv(lh, "--log-format", "logfmt"), lh.env(TERM="xterm"))
    assert code == 0
    assert all(line.startswith("ts=") for line in out.splitlines() if line.strip()), out
    result = lh.loop("--log-format", "json")
    objects = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert objects[-1]["event"] == "run_finish" and objects[-1]["status"] == "success"
    assert objects[0]["event"] == "run_start" and objects[0]["agent"] == "demo"
    result = lh.loop("--log-format", "human")
    assert " summary  " in result.stderr and "ts=" not in result.stderr


def test_quiet_prints_only_problems_and_the_summary(lh):
    lh.write_tasks("""
        tasks:
          - name: will-fail
            description: "Fails [fake:exit=2]"
            status: pending
          - name: will-work
            description: "Works"
            status: pending
    """)
    result = lh.loop("-q", "--log-format", "human")
    assert result.returncode == 3, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert any("will-fail" in line and "failed" in line for line in lines), result.stderr
    assert not any("will-work" in line for line in lines), result.stderr  # a success is not a problem
    assert "summary  degraded:" in lines[-1]
    assert len(lines) <= 4, result.stderr


def test_verbose_adds_debug_events_and_stage_starts(lh):
    normal = lh.loop("--log-format", "human", "--max-tasks", "0")
    verbose = lh.loop("--log-format", "human", "-v", "--max-tasks", "0")
    assert "Pre-fetching" not in normal.stderr
    assert "Pre-fetching" in verbose.stderr and "unchanged-tick check" in verbose.stderr
    assert "unchanged-tick check" not in normal.stderr
    assert len(verbose.stderr.splitlines()) > len(normal.stderr.splitlines())
    both = lh.loop("-q", "-v")
    assert both.returncode == 2 and "exclude each other" in both.stderr


def test_a_long_task_prints_heartbeats_on_a_terminal_only(lh):
    lh.write_tasks("""
        tasks:
          - name: slow-task
            description: "Takes a while [fake:sleep=2]"
            status: pending
    """)
    code, out = run_on_tty(loop_argv(lh), lh.env(TERM="xterm", NO_COLOR="1", KEYSTONE_AGENT_HEARTBEAT_SECONDS="0.5"))
    assert code == 0, out
    beats = [line for line in out.splitlines() if "still running after" in line]
    assert len(beats) >= 2, out
    assert re.search(r"running\s+slow-task  still running after \d+\.\ds, \d+ bytes of output", beats[0])
    piped = lh.loop(KEYSTONE_AGENT_HEARTBEAT_SECONDS="0.5")
    assert "heartbeat" not in piped.stderr and "still running" not in piped.stderr
    run_logs = sorted((lh.home / ".local/state/agent-task-loop/logs").glob("*.log"))
    assert not any("heartbeat" in path.read_text() for path in run_logs)


def test_loop_json_is_one_object_for_the_run(lh):
    lh.write_tasks("""
        tasks:
          - name: write-report
            description: "Write the weekly report"
            status: pending
          - name: broken-one
            description: "Fails [fake:exit=2]"
            status: pending
    """)
    result = lh.loop("--json")
    assert result.returncode == 3, result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "degraded" and run["exit_code"] == 3
    assert run["run_id"].startswith("demo-task-loop-")
    assert (run["tasks_executed"], run["tasks_completed"], run["tasks_failed"]) == (2, 1, 1)
    assert {t["name"]: t["outcome"] for t in run["tasks"]} == {"write-report": "completed", "broken-one": "failed"}
    assert run["tasks"][0]["provider"] == "claude"
    # the same keys as `runs --json`
    runs = json.loads(lh.agent("runs", "--json").stdout)
    assert runs[0]["run_id"] == run["run_id"]
    for key in ("status", "exit_code", "tasks_completed", "tasks_failed", "tasks_created", "token_total"):
        assert runs[0][key] == run[key], key


def test_loop_json_when_another_run_holds_the_lock(lh):
    from keystone_agents.lock import try_lock

    with try_lock(lh.home / ".local/state/agent-task-loop/state/task-loop.lock") as held:
        assert held
        result = lh.loop("--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"status": "skipped", "exit_code": 0, "reason": "another run holds the lock"}


def test_a_dry_run_writes_exactly_what_docs_task_loop_md_says(lh):
    """The files a dry run creates or changes are the ones the dry-run section of docs/task-loop.md lists."""
    import os
    import time

    lh.loop("--max-tasks", "0")  # a first real run: the state exists, as on a live agent
    before = {p: p.stat().st_mtime_ns for p in lh.home.rglob("*") if p.is_file()}
    contents = {p: p.read_bytes() for p in before}
    time.sleep(0.05)
    result = lh.loop("--dry-run")
    assert result.returncode == 0, result.stderr
    changed = sorted(str(p.relative_to(lh.home / ".local/state/agent-task-loop")) for p in lh.home.rglob("*")
                     if p.is_file() and (p not in before or contents[p] != p.read_bytes()))
    locks = [name for name in changed if name.endswith(".lock")]
    assert set(locks) <= {"state/task-loop.lock", "state/tasks.lock"}  # the holder's pid
    changed = [name for name in changed if name not in locks]
    assert len(changed) == 2, changed
    assert changed[0].startswith("logs/") and changed[0].endswith(".log") and "/" not in changed[0][5:]
    assert changed[1].startswith("logs/tasks/") and changed[1].endswith("_write-report.log")
    assert "DRY RUN" in (lh.home / ".local/state/agent-task-loop" / changed[1]).read_text()
    documented = (__import__("pathlib").Path(__file__).resolve().parents[2] / "docs/task-loop.md").read_text()
    section = documented[documented.index("## Dry run"):documented.index("## Performance")]
    for name in ("logs/<stamp>.log", "logs/tasks/<stamp>_<task>.log", "state/task-loop.lock", "state/tasks.lock",
                 "state/config-validated.sha256", "state/projects-index.json", "state/history.sqlite3"):
        assert f"`{name}`" in section, name
    assert os.path.exists(lh.home / ".local/state/agent-task-loop/state/history.sqlite3")
