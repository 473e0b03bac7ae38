"""The task loop routes tasks of a coding workflow to `keystone-agent code`; the PR lands in the history."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

from tests.coding.conftest import make_upstream
from tests.coding.test_coding_flow import PASS_WITH_COMMENTS, commit
from tests.conftest import installed_script
from keystone_agents.providers.coding import repo_from_url


def test_repo_from_urls():
    assert repo_from_url("https://git.example.com/team/tool/issues/7") == "team/tool"
    assert repo_from_url("https://github.com/acme/widget/pull/12") == "acme/widget"
    assert repo_from_url("git@github.com:owner/repo-name.git") == "owner/repo-name"
    assert repo_from_url("ssh://forgejo@git.example.com:2222/owner/infra.git") == "owner/infra"
    assert repo_from_url("not a url") is None


def run_loop(coding_env, config):
    # the loop gives its task processes a clean environment (allow-list + config `environment`): the
    # stand-ins' settings and the tests' git identity reach `keystone-agent code` through the config
    data = json.loads(config.read_text())
    data["environment"] = {k: v for k, v in os.environ.items() if k.startswith(("FAKE_", "GIT_"))}
    data["forgejo"]["fetch"] = False  # the API stand-in serves the coding subagent, not the notifications source
    config.write_text(json.dumps(data))
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([installed_script("keystone-agent"), "loop", "--home", str(coding_env.home),
                           "--config", str(config)], capture_output=True, text=True, env=env, timeout=300)


def test_loop_routes_a_coding_workflow_task_to_the_coding_subagent(coding_env, forgejo_server):
    make_upstream(forgejo_server.repos_root, "team", "tool")
    config = coding_env.write_forgejo_config(
        forgejo_server.url, cloneUrl=f"file://{forgejo_server.repos_root}/{{owner}}/{{repo}}.git",
        workflows=["sweng/sweng"], provider="claude")
    (coding_env.home / "TASKS.yaml").write_text(
        "tasks:\n"
        "  - name: add-greeting\n"
        "    description: Add a greeting to the README\n"
        "    status: pending\n"
        "    workflow: sweng/sweng\n"
        f"    source_ref: {forgejo_server.url}/team/tool/issues/7\n"
        "  - name: write-notes\n"
        "    description: Not a code task\n"
        "    status: blocked\n"
        "    blocked_reason: waiting\n")
    coding_env.script([commit({"README.md": "# demo\nHello!\n"}), {"do": "review", "output": PASS_WITH_COMMENTS}])

    result = run_loop(coding_env, config)
    assert result.returncode == 0, result.stderr[-3000:]

    pull = forgejo_server.pulls[("team", "tool")][1]
    assert pull["title"] == "add-greeting: Add a greeting to the README"
    pr_url = f"{forgejo_server.url}/team/tool/pulls/1"
    tasks = (coding_env.home / "TASKS.yaml").read_text()
    assert "    status: completed\n" in tasks
    db = coding_env.home / ".local/state/agent-task-loop/state/history.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM task_executions")]
    [row] = rows
    assert row["task"] == "add-greeting" and row["outcome"] == "completed"
    assert pr_url in json.loads(row["pull_requests"])
    # the provider the coding subagent ran was the configured one; it only committed
    assert [(c["cli"], c["action"]) for c in coding_env.agent_calls()] == [("claude", "commit"), ("claude", "review")]


def test_coding_workflow_blocked_subagent_blocks_the_task(coding_env, forgejo_server):
    make_upstream(forgejo_server.repos_root, "team", "tool")
    config = coding_env.write_forgejo_config(
        forgejo_server.url, cloneUrl=f"file://{forgejo_server.repos_root}/{{owner}}/{{repo}}.git",
        workflows=["sweng/sweng"])
    (coding_env.home / "PROJECTS.yaml").write_text(
        "projects:\n  - name: Tool\n    slug: tool\n    description: d\n    status: active\n    priority: 1\n"
        "    updated: '2026-01-01'\n    repos:\n      - ssh://forgejo@git.example.com:2222/team/tool.git\n")
    (coding_env.home / "TASKS.yaml").write_text(
        "tasks:\n  - name: impossible\n    description: Do the impossible\n    status: pending\n"
        "    workflow: sweng/sweng\n    project: tool\n")
    coding_env.script([{"do": "blocked", "text": "Needs a decision about the API"}])
    result = run_loop(coding_env, config)
    assert result.returncode == 0, result.stderr[-3000:]
    text = (coding_env.home / "TASKS.yaml").read_text()
    assert "status: blocked" in text and "Needs a decision about the API" in text
    assert ("team", "tool") not in forgejo_server.pulls or not forgejo_server.pulls[("team", "tool")]
