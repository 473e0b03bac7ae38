"""agentctl's lifecycle verbs: AGENT info|kill|resume TASK|watch, and `agentctl watch` over every local agent
(alpha runs directly, beta through sudo and its helper; the real keystone-agent answers)."""

from __future__ import annotations

import json
from pathlib import Path

from keystone_agents.events import event_logger


def _events(home: Path, agent: str, count: int) -> None:
    db = home / ".local/state/agent-task-loop/state/history.sqlite3"
    log = event_logger(agent=agent, unit=f"agent-{agent}-task-loop", run_id=f"{agent}-run", event_db=db,
                       stream=open("/dev/null", "w"))
    for n in range(count):
        log.info("task_finish", msg="done", task_name=f"{agent}-task-{n}", status="completed")


def test_info_reports_mode_limits_and_next_wake(fleet):
    config = fleet.homes["beta"] / ".config/keystone-agent/config.json"
    data = json.loads(config.read_text())
    config.write_text(json.dumps({**data, "exec": {"mode": "proactive", "thinkInterval": 60, "maxIterations": 30}}))
    for agent in ("alpha", "beta"):
        result = fleet.run(agent, "info", "--json")
        assert result.returncode == 0, result.stderr
        info = json.loads(result.stdout)
        assert info["currentRun"] is None and info["pause"]["state"] == "active"
    assert (info["mode"], info["limits"]["maxIterations"], info["limits"]["thinkInterval"]) == ("proactive", 30, 60)
    assert info["nextWake"] == {"agent-beta-task-loop.timer": "2026-01-01T00:00:00Z",
                                "agent-beta-think.timer": "2026-01-01T00:00:00Z"}
    assert ["info", "--json"] in [argv[4:] for argv in fleet.argvs("sudo")]  # beta: through its helper
    text = fleet.run("alpha", "info")
    assert "mode: timer" in text.stdout and "running: nothing" in text.stdout


def test_kill_with_nothing_running_says_so(fleet):
    result = fleet.run("beta", "kill")
    assert result.returncode == 1 and "nothing is executing" in result.stderr
    assert ["kill"] in [argv[4:] for argv in fleet.argvs("sudo")]


def test_resume_with_and_without_a_task(fleet):
    alpha = str(fleet.homes["alpha"])
    cfg = f"{alpha}/.config/keystone-agent/config.json"
    assert fleet.run("alpha", "resume").returncode == 0  # the loop's resume, as before
    fleet.run("alpha", "resume", "fix-the-bug", "--prompt", "Use the new API; $(whoami)")
    assert ["continue", "--home", alpha, "--config", cfg, "fix-the-bug", "--prompt", "Use the new API; $(whoami)"] \
        in fleet.argvs("keystone-agent")
    refused = fleet.run("alpha", "resume", "--prompt", "x")
    assert refused.returncode == 2 and "TASK [--prompt TEXT]" in refused.stderr
    fleet.run("beta", "resume", "fix-the-bug")  # the helper expands the same verb the same way
    assert ["resume", "fix-the-bug"] in [argv[4:] for argv in fleet.argvs("sudo")]
    beta = str(fleet.homes["beta"])
    assert ["continue", "--home", beta, "--config", f"{beta}/.config/keystone-agent/config.json", "fix-the-bug"] \
        in fleet.argvs("keystone-agent")


def test_agent_watch_and_fleet_watch(fleet):
    _events(fleet.homes["alpha"], "alpha", 3)
    _events(fleet.homes["beta"], "beta", 2)
    result = fleet.run("alpha", "watch", "--types", "task_finish")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(x["agent"], x["task_name"]) for x in lines] == [("alpha", f"alpha-task-{n}") for n in range(3)]
    merged = fleet.run("watch", "--types", "task_finish")
    assert merged.returncode == 0, merged.stderr
    rows = [json.loads(line) for line in merged.stdout.splitlines()]
    by_agent = {}
    for row in rows:
        by_agent.setdefault(row["agent"], []).append(row["task_name"])
    assert by_agent == {"alpha": [f"alpha-task-{n}" for n in range(3)], "beta": [f"beta-task-{n}" for n in range(2)]}
    only = fleet.run("watch", "--agent", "beta", "--since", str(lines[0]["id"]))
    assert [json.loads(x)["task_name"] for x in only.stdout.splitlines()] == ["beta-task-1"]
