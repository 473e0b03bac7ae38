"""`validate` checks everything the runtime checks (issue 21), each problem at its line with the fix and a
"did you mean" for unknown keys and names; a directory that is not an agent home is refused by every
command except `init`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest


PROJECT = ("projects:\n  - slug: {slug}\n    name: Web\n    description: the site\n    priority: 1\n"
           "    status: active\n    updated: \"2026-01-01\"\n")


def write_config(home: Path, **values) -> Path:
    path = home / ".config/keystone-agent/config.json"
    data = json.loads(path.read_text())
    data.update(values)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def problems_of(result) -> list[dict]:
    return json.loads(result.stdout)


def one(problems: list[dict], field: str) -> dict:
    [found] = [p for p in problems if p["field"] == field]
    return found


def test_schedules_cron_field_time_zone_and_time_with_cron(run_agent, agent_home):
    (agent_home / "SCHEDULES.yaml").write_text(
        "schedules:\n"
        "  - name: bad-hour\n    description: d\n    schedule: \"0 25 * * *\"\n"
        "  - name: bad-zone\n    description: d\n    schedule: daily\n    timezone: Europe/Berln\n"
        "  - name: time-and-cron\n    description: d\n    schedule: \"0 9 * * 1\"\n    time: \"10:00\"\n"
        "  - name: fine\n    description: d\n    schedule: \"*/15 9-17 * * 1-5\"\n")
    result = run_agent("validate", "--home", str(agent_home), "--json")
    assert result.exit_code == 1
    found = problems_of(result)
    hour = one(found, "schedules[0].schedule")
    assert hour["line"] == 4 and "cron field hour '25'" in hour["message"] and "0-23" in hour["message"]
    zone = one(found, "schedules[1].timezone")
    assert zone["line"] == 8 and "unknown time zone 'Europe/Berln'" in zone["message"]
    assert "did you mean 'Europe/Berlin'?" in zone["message"] and "fix:" in zone["message"]
    both = one(found, "schedules[2].time")
    assert both["line"] == 12 and "cron expression has its own" in both["message"]
    assert len(found) == 3


def test_task_project_provider_and_workflow(run_agent, agent_home, monkeypatch):
    (agent_home / "PROJECTS.yaml").write_text(PROJECT.format(slug="website"))
    (agent_home / "TASKS.yaml").write_text(
        "tasks:\n"
        "  - name: a\n    description: d\n    status: pending\n    project: webiste\n"
        "  - name: b\n    description: d\n    status: pending\n    provider: openai\n"
        "  - name: c\n    description: d\n    status: pending\n    provider: codex\n"
        "  - name: d\n    description: d\n    status: pending\n    workflow: nosuchjob/run\n"
        "  - name: e\n    description: d\n    status: completed\n    provider: codex\n")
    write_config(agent_home, openaiProvider={"baseUrl": "http://127.0.0.1:9/v1"})
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}/usr/bin{os.pathsep}/bin")
    result = run_agent("validate", "--home", str(agent_home), "--json", "--no-connect")
    assert result.exit_code == 1
    found = problems_of(result)
    project = one(found, "tasks[0].project")
    assert project["line"] == 5 and "'webiste' is not in PROJECTS.yaml" in project["message"]
    assert "did you mean 'website'?" in project["message"]
    openai = one(found, "tasks[1].provider")
    assert openai["line"] == 9 and "provider_unavailable" in openai["message"] and "no model" in openai["message"]
    codex = one(found, "tasks[2].provider")
    assert codex["line"] == 13 and "'codex') is not on PATH" in codex["message"]  # not reported for completed e
    workflow = one(found, "tasks[3].workflow")  # a warning (issue 15): the task still runs
    assert workflow["severity"] == "warning" and "DeepWork job 'nosuchjob'" in workflow["message"]
    claude = one(found, "tasks[0].name")  # a and d use the default provider: one line for both
    assert claude["line"] == 2 and "(and 1 more task(s))" in claude["message"]
    default = one(found, "defaults.provider")  # claude, the default, is not on this PATH either
    assert default["file"].endswith("config.json") and default["line"] == 8
    # the summary names only the files with problems
    text = run_agent("validate", "--home", str(agent_home), "--no-connect")
    summary = text.stderr.strip().splitlines()[-1]
    assert summary.startswith("5 problem(s) in ") and "TASKS.yaml" in summary and "config.json" in summary
    assert "SCHEDULES.yaml" not in summary and "PROJECTS.yaml" not in summary


def test_sources_and_mcp_commands_and_unknown_keys(run_agent, agent_home):
    write_config(agent_home, sources=[{"name": "inbox", "command": "no-such-fetcher --json"},
                                      {"name": "ok", "command": ["true"]}],
                 mcpServers={"files": {"command": "no-such-mcp-server", "args": []}})
    (agent_home / "PROJECTS.yaml").write_text(PROJECT.format(slug="web") + 
        "    sources:\n      - name: tickets\n        command: [\"./bin/missing-tickets\"]\n")
    (agent_home / "TASKS.yaml").write_text("tasks:\n  - name: a\n    descripton: d\n    status: pending\n")
    result = run_agent("validate", "--home", str(agent_home), "--json")
    found = problems_of(result)
    source = one(found, "sources[0].command")
    assert "command 'no-such-fetcher' is not installed" in source["message"] and source["line"]
    mcp = one(found, "mcpServers.files.command")
    assert "MCP server 'files'" in mcp["message"] and mcp["line"]
    project_source = one(found, "projects[0].sources[0].command")
    assert project_source["line"] == 10 and "./bin/missing-tickets" in project_source["message"]
    unknown = one(found, "tasks[0].descripton")
    assert "did you mean 'description'?" in unknown["message"] and unknown["line"] == 3
    assert not [p for p in found if p["field"] == "sources[1].command"]


def test_a_clean_home_is_ok(run_agent, agent_home):
    result = run_agent("validate", "--home", str(agent_home))
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("ok: ")


@pytest.mark.parametrize("command", [
    ["validate"], ["tasks"], ["pause"], ["resume"], ["paused"], ["runs"], ["logs"], ["schedule"], ["sync"],
    ["info"], ["loop"], ["loop", "--dry-run"], ["mail", "send", "--to", "a@b.c", "--subject", "s"],
])
def test_a_directory_that_is_not_an_agent_home_is_refused(run_agent, tmp_path, command):
    empty = tmp_path / "not-a-home"
    empty.mkdir()
    (empty / "notes.txt").write_text("mine\n")
    result = run_agent(*command, "--home", str(empty))
    assert result.exit_code == 1, result.output
    assert f"no agent home at {empty}" in result.stderr
    assert sorted(p.name for p in empty.iterdir()) == ["notes.txt"]  # nothing created there


def test_init_makes_a_home_and_a_config_only_home_is_a_home(run_agent, tmp_path):
    target = tmp_path / "fresh"
    assert run_agent("init", str(target), "--name", "fresh").exit_code == 0
    assert run_agent("validate", "--home", str(target)).exit_code == 0
    provisioned = tmp_path / "provisioned"
    (provisioned / ".config/keystone-agent").mkdir(parents=True)
    (provisioned / "notes").mkdir()  # the agent space the module provisions
    (provisioned / ".config/keystone-agent/config.json").write_text(
        '{"agentName": "prov", "defaults": {"provider": "claude"}}')
    assert run_agent("validate", "--home", str(provisioned)).exit_code == 0
    result = run_agent("loop", "--home", str(provisioned), "--max-tasks", "0")
    assert result.exit_code == 0, result.output
    for name, key in (("TASKS.yaml", "tasks"), ("PROJECTS.yaml", "projects"), ("SCHEDULES.yaml", "schedules"),
                      ("ISSUES.yaml", "issues")):
        assert f"{key}: []" in (provisioned / name).read_text()
