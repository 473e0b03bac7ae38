"""Logs are rotated per kind (issue 21): the scheduler's logs never push the loop's out; `logs --kind`
selects a kind, with the same names as the history's `kind` and `runs --kind`."""

from __future__ import annotations

import json

from keystone_agents import kinds


def test_25_scheduler_and_25_loop_runs_keep_the_newest_loop_log(run_agent, agent_home):
    config = agent_home / ".config/keystone-agent/config.json"
    data = json.loads(config.read_text())
    data.update(keepRunLogs=20)
    config.write_text(json.dumps(data))
    logs = agent_home / ".local/state/agent-task-loop/logs"
    newest_loop = None
    for _ in range(25):
        assert run_agent("schedule", "--home", str(agent_home)).exit_code == 0
        result = run_agent("loop", "--home", str(agent_home))
        assert result.exit_code == 0, result.output
        newest_loop = max((p for p in logs.glob("*.log") if p.name[0].isdigit()), key=lambda p: p.name)
    loop_logs = [p for p in logs.glob("*.log") if p.name[0].isdigit()]
    scheduler_logs = list(logs.glob("scheduler-*.log"))
    assert newest_loop.exists() and len(loop_logs) == 20 and len(scheduler_logs) == 20
    # every history row of the newest runs points at a log that exists
    runs = json.loads(run_agent("runs", "--home", str(agent_home), "--json", "--kind", "task-loop",
                               "--limit", "20").stdout)
    assert runs and all((run.get("run_log") and __import__("os").path.exists(run["run_log"])) for run in runs)
    shown = run_agent("logs", "--home", str(agent_home))
    assert shown.exit_code == 0 and shown.stdout == newest_loop.read_text()
    scheduler = run_agent("logs", "--home", str(agent_home), "--kind", "scheduler")
    assert scheduler.exit_code == 0 and scheduler.stdout == sorted(scheduler_logs)[-1].read_text()
    assert '"run_start"' not in scheduler.stdout or "scheduler" in scheduler.stdout


def test_logs_kind_names_are_the_history_kinds_and_an_absent_kind_is_a_clear_error(run_agent, agent_home):
    assert kinds.KINDS == ("task-loop", "scheduler", "notes-sync", "coding")
    result = run_agent("logs", "--home", str(agent_home), "--kind", "coding")
    assert result.exit_code == 1 and "no log of any coding run" in result.stderr
    bad = run_agent("logs", "--home", str(agent_home), "--kind", "loop")
    assert bad.exit_code == 2 and "task-loop" in bad.output
