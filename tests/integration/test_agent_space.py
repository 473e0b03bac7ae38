"""Issue 15: the agent works inside its agent space, the way the operator configured it. `keystone-agent loop`
runs as a real subprocess with stand-in provider CLIs (tests/fakebin) that record their working directory,
argv and the MCP configuration they were given."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tests.support.loop import events, make_home


@pytest.fixture
def lh(tmp_path, clean_env):
    return make_home(tmp_path)


def one_task(lh, description="Do it", name="do-it", **fields):
    extra = "".join(f"    {k}: {json.dumps(v)}\n" for k, v in fields.items())
    lh.write_tasks(f"""
        tasks:
          - name: {name}
            description: {json.dumps(description)}
            status: pending
    """ + extra)


SERVERS = {
    "deepwork": {"command": "deepwork", "args": ["serve", "--path", "."], "env": {"LOG_LEVEL": "info"}},
    "forge": {"command": "/opt/forge-mcp", "args": [], "env": {}, "envFiles": {"FORGE_TOKEN": "SECRET_FILE"}},
}


def servers_with_secret(lh):
    secret = lh.root / "forge-token"
    secret.write_text("s3cret-value\n")
    servers = json.loads(json.dumps(SERVERS))
    servers["forge"]["envFiles"]["FORGE_TOKEN"] = str(secret)
    return servers


# ------------------------------------------------------------------ working directory


@pytest.mark.parametrize("provider", ["claude", "codex", "gemini"])
def test_providers_run_in_the_agent_space(lh, provider):
    lh.config(defaults={"provider": provider})
    one_task(lh)
    result = lh.loop()
    assert result.returncode == 0, result.stderr
    [call] = lh.calls(provider)
    assert call["cwd"] == str(lh.home / "notes")
    assert lh.task("do-it")["status"] == "completed"


def test_a_configured_notes_dir_is_the_working_directory(lh):
    (lh.home / "space").mkdir()
    lh.config(notesDir="~/space")
    one_task(lh)
    assert lh.loop().returncode == 0
    assert lh.calls("claude")[0]["cwd"] == str(lh.home / "space")


def test_a_missing_agent_space_is_a_clear_error_and_charges_no_attempt(lh):
    shutil.rmtree(lh.home / "notes")
    one_task(lh)
    result = lh.loop()
    assert result.returncode == 1
    assert f"agent space {lh.home / 'notes'} does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    [event] = events(result.stderr, "agent_space_missing")
    assert event["path"] == str(lh.home / "notes")
    assert lh.calls() == []
    assert lh.task("do-it")["status"] == "pending"


# ------------------------------------------------------------------ MCP servers


def test_claude_gets_exactly_the_configured_servers_in_a_private_file_removed_afterwards(lh):
    lh.config(mcpServers=servers_with_secret(lh))
    one_task(lh)
    result = lh.loop()
    assert result.returncode == 0, result.stderr
    [call] = lh.calls("claude")
    argv = call["argv"]
    [index] = [i for i, a in enumerate(argv) if a.startswith("--mcp-config=")]
    path = argv[index].split("=", 1)[1]
    assert argv[index + 1] == "--strict-mcp-config"  # never the prompt right after --mcp-config's values
    assert argv[-2] == "--" and argv[-1].startswith("Execute this task.")
    assert call["strict_mcp"] is True
    given = call["mcp"][path]
    assert given["mode"] == "0o600"
    assert set(given["config"]["mcpServers"]) == {"deepwork", "forge"}
    assert given["config"]["mcpServers"]["deepwork"] == {
        "type": "stdio", "command": "deepwork", "args": ["serve", "--path", "."], "env": {"LOG_LEVEL": "info"}}
    assert given["config"]["mcpServers"]["forge"]["env"] == {"FORGE_TOKEN": "s3cret-value"}
    assert path.startswith(str(lh.state / "mcp"))
    assert not (lh.state / "mcp" / path.rsplit("/", 1)[1]).exists()
    # the secret is in no argv, log or event
    assert "s3cret-value" not in json.dumps(argv)
    assert "s3cret-value" not in result.stderr
    for log in (lh.home / ".local/state/agent-task-loop/logs").rglob("*.log"):
        assert "s3cret-value" not in log.read_text()


def test_no_configured_servers_means_no_mcp_flags(lh):
    one_task(lh)
    assert lh.loop().returncode == 0
    argv = lh.calls("claude")[0]["argv"]
    assert not any(a.startswith("--mcp-config") for a in argv) and "--strict-mcp-config" not in argv


def test_codex_gets_the_servers_as_config_overrides_with_secrets_only_in_its_environment(lh):
    lh.config(defaults={"provider": "codex"}, mcpServers=servers_with_secret(lh))
    one_task(lh)
    result = lh.loop()
    assert result.returncode == 0, result.stderr
    [call] = lh.calls("codex")
    assert call["overrides"] == {
        "mcp_servers.deepwork.command": "deepwork",
        "mcp_servers.deepwork.args": ["serve", "--path", "."],
        "mcp_servers.deepwork.env": {"LOG_LEVEL": "info"},
        "mcp_servers.forge.command": "/opt/forge-mcp",
        "mcp_servers.forge.args": [],
        "mcp_servers.forge.env_vars": ["FORGE_TOKEN"],
    }
    assert call["forwarded_env_present"] == {"FORGE_TOKEN": True}
    assert "s3cret-value" not in json.dumps(call["argv"])


def test_gemini_gets_a_settings_file_and_only_these_servers(lh):
    lh.config(defaults={"provider": "gemini"}, mcpServers=servers_with_secret(lh))
    one_task(lh)
    result = lh.loop()
    assert result.returncode == 0, result.stderr
    [call] = lh.calls("gemini")
    assert sorted(call["allowed_mcp"]) == ["deepwork", "forge"]
    assert call["settings"]["mcpServers"]["forge"] == {"command": "/opt/forge-mcp", "args": [],
                                                       "env": {"FORGE_TOKEN": "s3cret-value"}}
    assert not list((lh.state / "mcp").glob("*.json"))


def test_a_missing_secret_file_fails_the_task_naming_the_server_and_file(lh):
    servers = json.loads(json.dumps(SERVERS))
    servers["forge"]["envFiles"]["FORGE_TOKEN"] = str(lh.root / "absent")
    lh.config(mcpServers=servers)
    one_task(lh)
    result = lh.loop()
    assert result.returncode == 3
    assert lh.calls("claude") == []
    [finish] = events(result.stderr, "task_finish")
    assert f"MCP server 'forge': envFiles.FORGE_TOKEN: secret file {lh.root / 'absent'} does not exist" in finish["message"]


# ------------------------------------------------------------------ the workflow decision tree


def test_the_default_decision_tree_assigns_the_seed_workflows_and_keeps_existing_ones(lh):
    (lh.home / "notes/.deepwork/jobs/press_release").mkdir(parents=True)
    lh.write_projects("""
        projects:
          - name: Enclosure
            slug: enclosure
            description: A printed case, designed in FreeCAD
            status: active
            priority: 1
            updated: "2026-01-01"
          - name: Service
            slug: service
            description: The backend
            status: active
            priority: 2
            updated: "2026-01-01"
            repos: ["ssh://forgejo@git.example.com:2222/o/service.git"]
    """)
    lh.write_tasks("""
        tasks:
          - name: launch-announcement
            description: Draft the Press Release for the launch
            status: pending
          - name: bracket
            description: Model the mounting bracket in OpenSCAD
            status: pending
          - name: login-issue
            description: Users cannot log in
            status: pending
            source: forgejo-issue
            source_ref: https://git.example.com/o/r/issues/1
          - name: lid
            description: Make the lid thicker
            status: pending
            project: enclosure
          - name: endpoint
            description: Add the health endpoint
            status: pending
            project: service
          - name: crash-report
            description: Look at the crash when saving
            status: pending
          - name: decade-review
            description: Prepare the press kit for the decade review
            status: pending
          - name: mine
            description: Fix the build
            status: pending
            workflow: custom/own
    """)
    result = lh.loop("--max-tasks", "0")
    assert result.returncode == 0, result.stderr
    workflows = {t["name"]: t.get("workflow") for t in lh.task_list()}
    assert workflows == {
        "launch-announcement": "press_release/write",
        "bracket": "cadeng/cadeng",
        "login-issue": "sweng/sweng",
        "lid": "cadeng/cadeng",  # from its project's description
        "endpoint": "sweng/sweng",  # its project has code repositories
        "crash-report": "sweng/sweng",  # a code keyword
        "decade-review": None,  # "press" is not PR, "decade" is not CAD
        "mine": "custom/own",  # a pre-existing workflow is never changed
    }


def test_the_prompt_starts_with_deepwork_even_when_the_job_is_missing_with_a_warning(lh):
    one_task(lh, "Fix the login bug", name="login")
    assert lh.loop("--max-tasks", "0").returncode == 0  # prioritize only
    report = lh.agent("validate", "--json")
    assert report.returncode == 0, report.stderr
    [item] = json.loads(report.stdout)
    assert item["severity"] == "warning" and item["field"] == "tasks[0].workflow"
    assert "'sweng'" in item["message"]
    result = lh.loop()
    assert result.returncode == 0, result.stderr
    [call] = lh.calls("claude")
    assert call["argv"][-1].startswith("/deepwork sweng/sweng\n")
    [warning] = events(result.stderr, "workflow_job_missing")
    assert warning["workflow"] == "sweng/sweng" and warning["path"] == str(lh.home / "notes/.deepwork/jobs/sweng")


def test_configured_rules_come_first_and_the_default_tree_can_be_switched_off(lh):
    lh.write_tasks("""
        tasks:
          - name: a
            description: Fix the printer driver
            status: pending
          - name: b
            description: Write the press release
            status: pending
    """)
    lh.config(workflowRules=[{"keywords": ["printer"], "workflow": "ops/printer"}])
    assert lh.loop("--max-tasks", "0").returncode == 0
    assert {t["name"]: t.get("workflow") for t in lh.task_list()} == {"a": "ops/printer", "b": "press_release/write"}
    lh.write_tasks("""
        tasks:
          - name: c
            description: Write the press release
            status: pending
    """)
    lh.config(defaultWorkflowRules=False)
    assert lh.loop("--max-tasks", "0").returncode == 0
    assert "workflow" not in lh.task("c")


# ------------------------------------------------------------------ what the agent says about its task


def test_a_provider_that_blocks_its_task_in_tasks_yaml_leaves_it_blocked(lh):
    lh.write_tasks("""
        tasks:
          - name: ask-first
            description: "Decide the name [fake:set-status=blocked]"
            status: pending
          - name: other
            description: "Later"
            status: pending
            needs: [ask-first]
    """)
    result = lh.loop()
    assert result.returncode == 0, result.stderr
    task = lh.task("ask-first")
    assert task["status"] == "blocked"
    assert task["blocked_reason"] == "the agent needs a decision from a human"
    [finish] = events(result.stderr, "task_finish")[:1]
    assert finish["outcome"] == "blocked"


def test_a_provider_that_completes_its_task_in_tasks_yaml_leaves_it_completed(lh):
    one_task(lh, "Quick one [fake:set-status=completed] [fake:empty]")
    result = lh.loop()  # no output at all: only its own edit says it did the work
    assert result.returncode == 0, result.stderr
    assert lh.task("do-it")["status"] == "completed"


def test_the_report_file_wins_over_an_edit_in_tasks_yaml(lh):
    one_task(lh, "Both [fake:set-status=blocked] [fake:report=completed]")
    assert lh.loop().returncode == 0
    task = lh.task("do-it")
    assert task["status"] == "completed" and "blocked_reason" not in task


# ------------------------------------------------------------------ a provider cannot break the queue


def test_a_provider_that_breaks_tasks_yaml_cannot_break_the_queue(lh):
    lh.write_tasks("""
        tasks:
          - name: breaker
            description: "Tidy up [fake:break-tasks]"
            status: pending
          - name: innocent
            description: "Runs next time"
            status: pending
    """)
    result = lh.loop("--max-tasks", "1")
    assert result.returncode == 3, result.stderr  # degraded
    [rejected] = list(lh.home.glob("TASKS.yaml.rejected-*"))
    assert rejected.read_text() == "tasks: [unclosed\n"
    import re

    assert re.fullmatch(r"TASKS\.yaml\.rejected-\d{8}T\d{6}Z", rejected.name)
    tasks = {t["name"]: t for t in lh.task_list()}  # valid YAML again
    assert tasks["breaker"]["status"] == "completed"  # the outcome of the task that ran
    assert tasks["innocent"]["status"] == "pending"
    [event] = events(result.stderr, "tasks_file_rejected")
    assert event["task_name"] == "breaker" and event["rejected_file"] == str(rejected)
    issues = yaml.safe_load((lh.home / "ISSUES.yaml").read_text())["issues"]
    [issue] = [i for i in issues if i["name"] == event["issue"]]
    assert issue["discovered_during"] == "breaker" and issue["status"] == "open"
    assert lh.agent("validate").returncode == 0

    again = lh.loop()
    assert again.returncode == 0, again.stderr
    assert lh.task("innocent")["status"] == "completed"


def test_a_provider_that_drops_a_task_is_rejected_too(lh):
    lh.write_tasks("""
        tasks:
          - name: dropper
            description: "Clean the queue [fake:drop-others]"
            status: pending
          - name: keep-me
            description: "Must survive"
            status: pending
    """)
    result = lh.loop("--max-tasks", "1")
    assert result.returncode == 3, result.stderr
    assert {t["name"] for t in lh.task_list()} == {"dropper", "keep-me"}
    [event] = events(result.stderr, "tasks_file_rejected")
    assert "keep-me" in event["reason"]


def test_a_valid_edit_of_other_tasks_is_kept(lh):
    lh.write_tasks("""
        tasks:
          - name: planner
            description: "Plan [fake:add-task]"
            status: pending
    """)
    assert lh.loop("--max-tasks", "1").returncode == 0
    names = [t["name"] for t in lh.task_list()]
    assert names == ["planner", "follow-up-by-agent"]
    assert lh.task("planner")["status"] == "completed"
