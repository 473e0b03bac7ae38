"""--json and the data commands through click's runner: runs --kind/--status/--since with failure reasons and
folded idle ticks, logs --json (NDJSON), paused's exit code (like `systemctl is-active`)."""

from __future__ import annotations

import json

import pytest

from keystone_agents import history

STATE = ".local/state/agent-task-loop"


def _run(db, run_id, kind, started, status="success", exit_code=0, **extra):
    history.record_run(db, {"run_id": run_id, "kind": kind, "started_at": started, "status": status,
                            "exit_code": exit_code, "duration_seconds": 0.2, **extra})


@pytest.fixture
def db(agent_home):
    path = agent_home / STATE / "state/history.sqlite3"
    # newest last: two busy runs around a stretch of five idle ticks, a failing scheduler, a died loop run
    _run(path, "loop-1", "task-loop", "2026-11-30T08:00:00Z", tasks_completed=1, tasks_executed=1)
    for minute in range(5, 30, 5):
        _run(path, f"idle-{minute}", "task-loop", f"2026-11-30T08:{minute:02d}:00Z", skipped_unchanged=True)
    _run(path, "sched-1", "scheduler", "2026-11-30T08:31:00Z", status="error", exit_code=1,
         errors=["SCHEDULES.yaml:3: schedule: 'fortnightly' is not a schedule"])
    _run(path, "loop-died", "task-loop", "2026-11-30T08:35:00Z", status="error", exit_code=-9)
    _run(path, "sync-1", "notes-sync", "2026-11-30T08:36:00Z", status="error", exit_code=1,
         error="git fetch: could not read from remote repository")
    _run(path, "loop-running", "task-loop", "2026-11-30T08:40:00Z", status="running", exit_code=None)
    return path


def test_runs_fold_idle_ticks_unless_all(run_agent, agent_home, db):
    out = run_agent("runs", "--home", str(agent_home), "--limit", "20").stdout
    assert "5 runs with nothing to do" in out
    assert "idle-10" not in out and "loop-1" in out
    every = run_agent("runs", "--home", str(agent_home), "--all", "--limit", "20").stdout
    assert all(f"idle-{m}" in every for m in range(5, 30, 5))
    assert "nothing to do" not in every


def test_runs_show_failure_reasons_and_never_exit_none(run_agent, agent_home, db):
    out = run_agent("runs", "--home", str(agent_home), "--limit", "20").stdout
    assert "None" not in out
    assert "reason: SCHEDULES.yaml:3: schedule: 'fortnightly' is not a schedule" in out
    assert "reason: the run died (a later run found it still marked running)" in out
    assert "reason: git fetch: could not read from remote repository" in out
    running = next(line for line in out.splitlines() if "loop-running" in line)
    assert " running " in running and "exit" not in running


def test_runs_filters_by_kind_status_and_since(run_agent, agent_home, db):
    home = str(agent_home)
    runs = json.loads(run_agent("runs", "--home", home, "--json", "--kind", "scheduler").stdout)
    assert [r["run_id"] for r in runs] == ["sched-1"]
    assert runs[0]["failure_reason"].startswith("SCHEDULES.yaml:3")
    runs = json.loads(run_agent("runs", "--home", home, "--json", "--status", "error", "--limit", "50").stdout)
    assert [r["run_id"] for r in runs] == ["sync-1", "loop-died", "sched-1"]
    runs = json.loads(run_agent("runs", "--home", home, "--json", "--since", "2026-11-30T08:33:00Z").stdout)
    assert [r["run_id"] for r in runs] == ["loop-running", "sync-1", "loop-died"]
    assert json.loads(run_agent("runs", "--home", home, "--json", "--since", "1h").stdout) == []  # all in the past
    bad = run_agent("runs", "--home", home, "--since", "last tuesday")
    assert bad.exit_code == 2 and "neither an ISO 8601" in bad.output
    assert run_agent("runs", "--home", home, "--kind", "backup").exit_code == 2
    # json lists every run, idle ones included (scripts fold themselves)
    runs = json.loads(run_agent("runs", "--home", home, "--json", "--kind", "task-loop", "--limit", "50").stdout)
    assert len(runs) == 8 and all("failure_reason" in r and "executions" in r for r in runs)


def test_logs_json_is_ndjson_of_the_run_log(run_agent, agent_home):
    logs = agent_home / STATE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "2026-11-30_080000_000.log").write_text(
        'ts="2026-11-30T08:00:00.000Z" event="run_start" msg="Task loop run started" run_id="r1"\n'
        "some source's stderr line\n"
        'ts="2026-11-30T08:00:01.000Z" event="task_finish" msg="Finished \\"x\\"\\nok" task_name="fix-it" '
        'status="completed"\n')
    out = run_agent("logs", "--home", str(agent_home), "--json").stdout
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events] == ["run_start", "task_finish"]
    assert events[1]["msg"] == 'Finished "x"\nok' and events[1]["task_name"] == "fix-it"
    only = [json.loads(line) for line in run_agent("logs", "fix-it", "--home", str(agent_home), "--json").stdout.splitlines()]
    assert [e["event"] for e in only] == ["task_finish"]
    missing = run_agent("logs", "nope", "--home", str(agent_home), "--json")
    assert missing.exit_code == 1 and "no run log with events of task 'nope'" in missing.stderr


def test_paused_exits_0_when_active_and_1_when_paused(run_agent, agent_home):
    home = str(agent_home)
    assert run_agent("paused", "--home", home).exit_code == 0
    assert run_agent("paused", "--home", home, "--json").exit_code == 0
    run_agent("pause", "--home", home, "maintenance")
    result = run_agent("paused", "--home", home)
    assert result.exit_code == 1 and "paused" in result.stdout
    result = run_agent("paused", "--home", home, "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)["state"] == "paused"


def test_paused_ticks_fold_with_idle_ones(run_agent, agent_home):
    path = agent_home / STATE / "state/history.sqlite3"
    for minute in range(0, 30, 5):
        _run(path, f"paused-{minute}", "task-loop", f"2026-11-30T09:{minute:02d}:00Z", status="paused")
    _run(path, "busy", "task-loop", "2026-11-30T09:31:00Z", tasks_executed=1, tasks_completed=1)
    out = run_agent("runs", "--home", str(agent_home)).stdout.splitlines()
    assert len(out) == 2 and "busy" in out[0]
    assert "6 runs with nothing to do (6 paused)" in out[1]
