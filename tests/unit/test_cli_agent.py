"""`keystone-agent` init, validate, tasks, pause/resume/paused — through click's runner and as a real process."""

from __future__ import annotations

import json
import re
from pathlib import Path

from keystone_agents import queuefile

QUEUE = """\
# a queue with every status
tasks:
  - name: old-done
    description: Finished long ago
    status: completed
    started_at: 2026-11-01T10:00:00Z
    completed_at: 2026-11-01T10:05:30Z
  - name: first-pending
    description: Oldest pending
    status: pending
    project: webapp
    source: email
    created_at: 2026-11-10T08:00:00Z
  - name: running-now
    description: In flight
    status: in_progress
    model: sonnet
    started_at: 2026-11-21T09:00:00Z
  - name: waiting
    description: Needs something
    status: blocked
    blocked_reason: needs review
    created_at: 2026-11-15T08:00:00Z
  - name: new-done
    description: Finished today
    status: completed
    workflow: sweng/sweng
    started_at: 2026-11-21T07:00:00Z
    completed_at: 2026-11-21T08:30:00Z
  - name: second-pending
    description: Newest pending
    status: pending
    created_at: 2026-11-20T08:00:00Z
"""


def test_init_scaffolds_and_refuses_to_overwrite(run_agent, tmp_path):
    home = tmp_path / "h"
    result = run_agent("init", str(home), "--name", "drago", "--full-name", "Kumquat Drago",
                       "--email", "drago@example.com", "--json")
    assert result.exit_code == 0, result.output
    written = {Path(p).relative_to(home).as_posix() for p in json.loads(result.output)["written"]}
    assert {"TASKS.yaml", "PROJECTS.yaml", "SCHEDULES.yaml", "ISSUES.yaml", "notes/SOUL.md", "notes/TEAM.md",
            "notes/SERVICES.md", "notes/HUMAN.md", ".config/keystone-agent/config.json"} <= written
    assert "**Name:** Kumquat Drago" in (home / "notes/SOUL.md").read_text()
    assert json.loads((home / ".config/keystone-agent/config.json").read_text())["agentName"] == "drago"
    # every scaffolded queue file is valid and empty
    for path, kind in ((home / "TASKS.yaml", queuefile.TASKS), (home / "PROJECTS.yaml", queuefile.PROJECTS),
                       (home / "SCHEDULES.yaml", queuefile.SCHEDULES), (home / "ISSUES.yaml", queuefile.ISSUES)):
        doc = queuefile.load(path, kind)
        assert doc.problems == [] and list(doc.valid_entries()) == []

    (home / "TASKS.yaml").write_text("tasks:\n  - {name: mine, description: keep me, status: pending}\n")
    again = run_agent("init", str(home), "--name", "drago")
    assert again.exit_code == 1
    assert "refusing to overwrite existing files (use --force)" in again.output
    assert "keep me" in (home / "TASKS.yaml").read_text()

    forced = run_agent("init", str(home), "--name", "drago", "--force")
    assert forced.exit_code == 0 and "keep me" not in (home / "TASKS.yaml").read_text()


def test_validate_reports_every_problem(run_agent, agent_home):
    assert run_agent("validate", "--home", str(agent_home)).exit_code == 0
    (agent_home / "TASKS.yaml").write_text("tasks:\n  - name: x\n    description: d\n    status: done\n")
    (agent_home / "SCHEDULES.yaml").write_text("schedules:\n  - name: s\n    description: d\n    schedule: hourly\n")
    config = agent_home / ".config/keystone-agent/config.json"
    config.write_text('{\n  "agentName": "demo",\n  "maxTasks": "lots"\n}\n')
    result = run_agent("validate", "--home", str(agent_home), "--json")
    assert result.exit_code == 1
    problems = json.loads(result.stdout)
    fields = {(Path(p["file"]).name, p["line"], p["field"]) for p in problems}
    assert ("TASKS.yaml", 4, "tasks[0].status") in fields
    assert ("SCHEDULES.yaml", 4, "schedules[0].schedule") in fields
    assert ("config.json", 3, "maxTasks") in fields


def test_validate_reports_a_broken_file(run_agent, agent_home):
    (agent_home / "PROJECTS.yaml").write_text("projects: [\n")
    result = run_agent("validate", "--home", str(agent_home))
    assert result.exit_code == 1
    assert re.search(r"PROJECTS\.yaml:\d+: not valid YAML", result.stdout)


def test_tasks_table_order_and_footer(run_agent, agent_home):
    (agent_home / "TASKS.yaml").write_text(QUEUE)
    result = run_agent("tasks", "--home", str(agent_home))
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["#", "STATUS", "NAME", "PROJECT", "SOURCE", "MODEL", "DATE", "WORKFLOW", "DUR",
                                "DESCRIPTION"]
    names = [line.split()[2] for line in lines[1:7]]
    assert names == ["running-now", "second-pending", "first-pending", "waiting", "new-done", "old-done"]
    assert lines[-1] == "1 running, 2 pending, 1 blocked, 2 done"
    new_done = next(line for line in lines if "new-done" in line)
    assert "sweng/sweng" in new_done and "1h30m" in new_done and new_done.split()[0] == "5"
    assert "5m" in next(line for line in lines if "old-done" in line)


def test_tasks_json_status_filter_and_invalid_entries(run_agent, agent_home):
    (agent_home / "TASKS.yaml").write_text(QUEUE + "  - name: ''\n    description: broken\n    status: pending\n")
    result = run_agent("tasks", "--home", str(agent_home), "--json", "--status", "pending")
    assert result.exit_code == 0
    tasks = json.loads(result.stdout)
    assert [t["name"] for t in tasks] == ["second-pending", "first-pending"]
    assert tasks[1]["project"] == "webapp" and tasks[1]["position"] == 2
    assert "1 invalid task entry skipped" in result.stderr


def test_pause_resume_paused(run_agent, agent_home, monkeypatch):
    monkeypatch.setenv("USER", "nicholas")
    home = str(agent_home)
    assert "active" in run_agent("paused", "--home", home).output
    result = run_agent("pause", "--home", home, "deploying", "new", "model")
    assert result.exit_code == 0 and "Paused task loop for 'demo'" in result.output
    text = (agent_home / ".local/state/agent-task-loop/state/paused").read_text()
    assert re.fullmatch(r"paused_at=\S+\npaused_by=nicholas\nreason=deploying new model\n", text)
    state = json.loads(run_agent("paused", "--home", home, "--json").output)
    assert state["state"] == "paused" and state["pausedBy"] == "nicholas" and state["reason"] == "deploying new model"
    human = run_agent("paused", "--home", home).output
    assert "paused" in human and "reason: deploying new model" in human
    assert "Resumed task loop for 'demo'" in run_agent("resume", "--home", home).output
    assert "is not paused" in run_agent("resume", "--home", home).output
    assert json.loads(run_agent("paused", "--home", home, "--json").output)["state"] == "active"


def test_pause_reason_cannot_forge_keys(run_agent, agent_home):
    run_agent("pause", "--home", str(agent_home), "x\npaused_by=mallory")
    state = json.loads(run_agent("paused", "--home", str(agent_home), "--json").output)
    assert state["pausedBy"] != "mallory" and state["reason"] == "x paused_by=mallory"


def test_pause_file_written_by_hand_in_seed_format(run_agent, agent_home):
    pause = agent_home / ".local/state/agent-task-loop/state/paused"
    pause.parent.mkdir(parents=True, exist_ok=True)
    pause.write_text("paused_at=2026-01-01T00:00:00Z\npaused_by=ops\nreason=first\nreason=second\n")
    state = json.loads(run_agent("paused", "--home", str(agent_home), "--json").output)
    assert state == {"state": "paused", "pausedAt": "2026-01-01T00:00:00Z", "pausedBy": "ops", "reason": "second"}


def test_installed_script_as_a_real_process(agent_subprocess, tmp_path):
    home = tmp_path / "real"
    init = agent_subprocess("init", str(home), "--name", "realagent")
    assert init.returncode == 0, init.stderr
    (home / "TASKS.yaml").write_text(QUEUE)
    tasks = agent_subprocess("tasks", "--home", str(home), "--json")
    assert tasks.returncode == 0, tasks.stderr
    assert len(json.loads(tasks.stdout)) == 6
    # KEYSTONE_AGENT_HOME selects the home too, and a bad file gives exit 1 and the message on stdout
    (home / "TASKS.yaml").write_text("tasks:\n  - name: a\n    description: b\n    status: nope\n")
    bad = agent_subprocess("validate", env={"KEYSTONE_AGENT_HOME": str(home)})
    assert bad.returncode == 1 and "TASKS.yaml:4: tasks[0].status: 'nope' is not allowed" in bad.stdout
    helptext = agent_subprocess("--help")
    assert helptext.returncode == 0 and "validate" in helptext.stdout
    assert agent_subprocess("tasks", "--status", "weird", "--home", str(home)).returncode == 2
