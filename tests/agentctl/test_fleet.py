"""The fleet view tells the truth: `agentctl list` probes in parallel and exits 1 naming an unreachable agent,
`agentctl status` shows three agents in different states and who needs a human, unknowns are "unknown";
`agentctl AGENT task …` and `paused` are forwarded; `agentctl AGENT status` is about the agent's own units."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from keystone_agents import history
from keystone_agents.lock import try_lock
from keystone_agents.space import AgentSpace

from tests.agentctl.conftest import STANDINS


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def add_agent(fleet, entry: dict, ssh_extra: str = "") -> None:
    data = json.loads(fleet.config.read_text())
    data["agents"].append(entry)
    if ssh_extra:
        config = fleet.root / "ssh_config_extra"
        config.write_text(f"Include {data['sshCommand'][2]}\n\n" + ssh_extra)
        data["sshCommand"] = ["ssh", "-F", str(config)]
    fleet.config.write_text(json.dumps(data))


def add_unreachable_agent(fleet) -> None:
    add_agent(fleet, {"name": "delta", "user": "agent-delta", "home": "/home/agent-delta", "host": "deadhost"},
              ssh_extra=f"Host deadhost\n  HostName 127.0.0.1\n  Port {_closed_port()}\n  BatchMode yes\n"
                        "  ConnectTimeout 5\n\n")


def test_list_names_an_agent_behind_an_unreachable_host_and_exits_1(fleet):
    add_unreachable_agent(fleet)
    result = fleet.run("list")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["AGENT", "HOST", "STATE"]
    delta = next(line for line in lines if line.startswith("delta "))
    assert "unreachable" in delta and "unknown" in delta
    assert "None" not in result.stdout and "never" not in delta
    reason = next(line for line in lines if line.startswith("delta: "))
    assert "host deadhost unreachable" in reason and "refused" in reason.lower()
    for name in ("alpha", "beta", "gamma"):  # the others are still there, and fine
        row = next(line for line in lines if line.startswith(name + " "))
        assert " idle " in row
    rows = json.loads(fleet.run("list", "--json").stdout)
    assert [r["agent"] for r in rows] == ["alpha", "beta", "gamma", "delta"]
    assert rows[3]["probe"]["ok"] is False and rows[3]["state"] == "unreachable"
    assert "lastRun" in rows[3]["unknown"] and "nextTimer" in rows[3]["unknown"]
    assert all(r["probe"]["ok"] for r in rows[:3])


def test_probes_run_in_parallel_each_within_its_timeout(fleet):
    hang = fleet.root / "hanging-helper"
    hang.write_text("#!/bin/sh\nsleep 30\n")
    hang.chmod(0o755)
    for name in ("eps", "zeta"):
        add_agent(fleet, {"name": name, "user": f"agent-{name}", "home": f"/home/agent-{name}", "helper": str(hang)})
    started = time.monotonic()
    result = fleet.run("list", "--timeout", "2", timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert elapsed < 12, elapsed  # two hanging agents cost one timeout, not two (and not 30 s)
    assert "eps: keystone-agent info did not answer within 2s" in result.stdout
    assert "zeta: keystone-agent info did not answer within 2s" in result.stdout


def test_an_unreadable_next_timer_is_unknown_not_a_failure(fleet, monkeypatch):
    stand_in = STANDINS / "systemctl"
    failing = fleet.root / "bin" / "systemctl"
    failing.parent.mkdir()
    failing.write_text("#!/bin/sh\necho 'Failed to connect to bus: No medium found' >&2\nexit 1\n")
    failing.chmod(0o755)
    fleet.env["PATH"] = f"{failing.parent}:{fleet.env['PATH']}"
    assert stand_in.exists()
    result = fleet.run("list")
    assert result.returncode == 0, result.stdout + result.stderr
    alpha = next(line for line in result.stdout.splitlines() if line.startswith("alpha "))
    assert " unknown " in alpha and "None" not in result.stdout
    report = json.loads(fleet.run("show", "alpha", "--json").stdout)
    assert report["probe"]["ok"] and report["nextTimer"] is None and report["unknown"] == ["nextTimer"]
    assert "No medium found" in report["warnings"][0]
    text = fleet.run("show", "alpha")
    assert text.returncode == 0 and "next timer:     unknown" in text.stdout


def test_status_shows_a_fleet_of_three_in_different_states(fleet):
    alpha, beta = (AgentSpace.from_home(fleet.homes[n]) for n in ("alpha", "beta"))
    assert fleet.run("alpha", "pause", "maintenance").returncode == 0
    (fleet.homes["beta"] / "TASKS.yaml").write_text(
        "tasks:\n  - {name: stuck, description: S, status: blocked, blocked_reason: needs a human}\n"
        "  - {name: next-one, description: N, status: pending}\n")
    history.record_run(beta.history_db, {"run_id": "beta-1", "kind": "task-loop", "started_at": "2026-11-30T08:00:00Z",
                                         "status": "error", "exit_code": 1,
                                         "errors": ["TASKS.yaml:3: tasks[1].status: 'done' is not one of …"]})
    with history.connect(beta.history_db) as conn:
        history.record_execution(conn, {"run_id": "beta-1", "task": "next-one", "outcome": "failed",
                                        "started_at": history_now(), "total_tokens": 1500, "cost_usd": 0.25})
    beta.conflict_marker.parent.mkdir(parents=True, exist_ok=True)
    beta.conflict_marker.write_text("branch=conflict/x\n")
    gamma = AgentSpace.from_home(fleet.ssh.remote_home)
    gamma.ensure_state_dirs()
    with try_lock(gamma.lock_file) as held:  # gamma's loop is running (on its own host)
        assert held
        result = fleet.run("status")
        as_json = json.loads(fleet.run("status", "--json").stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:4]}
    assert rows["alpha"].split()[1] == "paused"
    assert rows["beta"].split()[1] == "failing" and "1 pending, 1 blocked" in rows["beta"]
    assert "1500 tok $0.25" in rows["beta"]
    assert rows["gamma"].split()[1] == "running"
    assert "never" in rows["alpha"] and "unknown" not in result.stdout
    assert "3 agent(s): 1 failing, 1 paused, 1 running" in result.stdout
    attention = result.stdout[result.stdout.index("Needs a human:"):]
    assert "beta: 1 blocked task(s); notes sync conflict" in attention
    assert "last run error: TASKS.yaml:3" in attention
    assert "alpha" not in attention and "gamma" not in attention
    states = {a["agent"]: a["state"] for a in as_json["agents"]}
    assert states == {"alpha": "paused", "beta": "failing", "gamma": "running"}
    assert list(as_json["needsHuman"]) == ["beta"] and as_json["probesFailed"] == []
    listed = fleet.run("list")
    assert listed.returncode == 0  # a failing agent is shown with its reason, but its probe worked
    assert "beta: last run error: TASKS.yaml:3" in listed.stdout
    fleet.run("alpha", "resume")


def history_now() -> str:
    from keystone_agents.timeutil import iso_z

    return iso_z()


def test_status_exits_1_when_a_probe_failed(fleet):
    add_unreachable_agent(fleet)
    result = fleet.run("status")
    assert result.returncode == 1
    assert "delta: unreachable: host deadhost unreachable" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("delta "))
    assert row.split()[1:] == ["unreachable", "unknown", "unknown", "unknown", "unknown"]


def test_task_and_paused_are_forwarded(fleet):
    for agent in ("alpha", "beta", "gamma"):
        name = f"from-agentctl-{agent}"
        added = fleet.run(agent, "task", "add", name, "--description", "Added through agentctl", "--json")
        assert added.returncode == 0, added.stderr
        assert json.loads(added.stdout)["name"] == name
        shown = json.loads(fleet.run(agent, "task", "show", name, "--json").stdout)
        assert shown["task"]["status"] == "pending"
        assert fleet.run(agent, "task", "cancel", name, "--reason", "test").returncode == 0
        assert fleet.run(agent, "task", "retry", name).returncode == 0
        assert fleet.run(agent, "paused").returncode == 0  # active
        assert fleet.run(agent, "pause", "why").returncode == 0
        paused = fleet.run(agent, "paused", "--json")
        assert paused.returncode == 1 and json.loads(paused.stdout)["state"] == "paused"
        assert fleet.run(agent, "resume").returncode == 0
    refused = fleet.run("alpha", "task", "delete", "x")
    assert refused.returncode == 2 and "task takes one of add, show, retry, cancel, edit" in refused.stderr
    assert ["gamma", "task", "add", "from-agentctl-gamma", "--description", "Added through agentctl", "--json"] \
        in fleet.ssh.remote_argvs()
    gamma_tasks = (fleet.ssh.remote_home / "TASKS.yaml").read_text()
    assert "from-agentctl-gamma" in gamma_tasks
    task_file = Path(fleet.homes["beta"]) / "TASKS.yaml"
    assert "from-agentctl-beta" in task_file.read_text()


def test_agent_status_without_a_unit_shows_its_own_units(fleet):
    fleet.clear()
    assert fleet.run("alpha", "status").returncode == 0
    assert fleet.run("beta", "status", "--no-pager").returncode == 0
    assert fleet.run("alpha", "status", "other.timer").returncode == 0
    calls = fleet.argvs("systemctl")
    assert ["--user", "status", "--", "agent-alpha-*"] in calls
    assert ["--user", "status", "--no-pager", "--", "agent-beta-*"] in calls
    assert ["--user", "status", "other.timer"] in calls


def test_unknown_agent_did_you_mean(fleet):
    result = fleet.run("alpah", "tasks")
    assert result.returncode == 1 and "unknown agent 'alpah' (did you mean 'alpha'?)" in result.stderr
    result = fleet.run("show", "gama")
    assert result.returncode == 1 and "did you mean 'gamma'?" in result.stderr
