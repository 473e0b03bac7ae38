"""`keystone-agent task add|show|retry|cancel|edit` and the `tasks` table, through click's runner."""

from __future__ import annotations

import json
import textwrap

import pytest
import yaml

from keystone_agents import history

QUEUE = textwrap.dedent("""\
    # the queue (this comment must survive every edit)
    tasks:
      - name: write-report
        description: Write the weekly report
        status: completed
        created_at: "2025-03-01T09:00:00Z"
        started_at: "2025-03-01T10:00:00Z"
        completed_at: "2025-03-01T10:05:00Z"
      - name: fix-login
        description: Fix the login page
        status: blocked
        blocked_reason: failed 3 times (exit 2)
      - name: running-one
        description: Busy
        status: in_progress
      - name: later
        description: Later
        status: pending
""")


@pytest.fixture
def home(agent_home):
    (agent_home / "TASKS.yaml").write_text(QUEUE)
    return agent_home


def tasks(home) -> dict:
    return {t["name"]: t for t in yaml.safe_load((home / "TASKS.yaml").read_text())["tasks"]}


def test_add_validates_and_appends_under_the_lock(run_agent, home):
    h = str(home)
    result = run_agent("task", "add", "new-thing", "--description", "Do\x07 the new thing\n", "--project", "web",
                       "--provider", "codex", "--model", "gpt-5", "--effort", "high", "--needs", "later,fix-login",
                       "--home", h, "--json")
    assert result.exit_code == 0, result.output
    added = tasks(home)["new-thing"]
    assert added == {**json.loads(result.stdout)}
    assert added["description"] == "Do the new thing" and added["status"] == "pending"
    assert added["needs"] == ["later", "fix-login"] and added["source"] == "manual"
    assert added["source_ref"] == "manual-new-thing" and added["created_at"].endswith("Z")
    text = (home / "TASKS.yaml").read_text()
    assert text.startswith(QUEUE)  # every other byte (and the comment) kept
    again = run_agent("task", "add", "new-thing", "-d", "x", "--home", h)
    assert again.exit_code == 1 and "a task named 'new-thing' already exists in TASKS.yaml" in again.stderr
    bad = run_agent("task", "add", "New Thing!", "-d", "x", "--home", h)
    assert bad.exit_code == 2 and "not kebab-case" in bad.output and "try 'new-thing'" in bad.output
    missing = run_agent("task", "add", "other", "-d", "x", "--needs", "fix-logn", "--home", h)
    assert missing.exit_code == 1 and "'fix-logn' (did you mean fix-login?)" in missing.stderr
    slugged = run_agent("task", "add", "--name-from", "Ünïcode: Reply to Bob's e-mail!", "-d", "reply", "--home", h)
    assert slugged.exit_code == 0, slugged.output
    assert "unicode-reply-to-bob-s-e-mail" in tasks(home)
    assert run_agent("task", "add", "-d", "no name", "--home", h).exit_code == 2
    assert (home / "TASKS.yaml").read_text().count("name:") == 6


def test_add_refuses_a_name_in_the_archive(run_agent, home):
    (home / "TASKS.archive.yaml").write_text("tasks:\n  - name: old-task\n    description: x\n    status: completed\n")
    result = run_agent("task", "add", "old-task", "-d", "again", "--home", str(home))
    assert result.exit_code == 1 and "TASKS.archive.yaml" in result.stderr


def test_show_prints_fields_attempts_and_executions(run_agent, home):
    db = home / ".local/state/agent-task-loop/state/history.sqlite3"
    with history.connect(db) as conn:
        history.record_execution(conn, {"run_id": "r1", "task": "fix-login", "provider": "claude", "model": "opus",
                                        "outcome": "failed", "exit_code": 2, "started_at": "2026-11-30T08:00:00Z",
                                        "total_tokens": 1200, "cost_usd": 0.5, "message": "crashed"})
        history.add_failure(conn, "fix-login", "exit 2", "2026-11-30T08:01:00Z")
    data = json.loads(run_agent("task", "show", "fix-login", "--home", str(home), "--json").stdout)
    assert data["task"]["blocked_reason"] == "failed 3 times (exit 2)" and data["position"] == 2
    assert data["failed_attempts"] == 1 and data["executions"][0]["model"] == "opus"
    text = run_agent("task", "show", "fix-login", "--home", str(home)).stdout
    assert "blocked_reason" in text and "failed via claude/opus exit 2" in text and "crashed" in text
    unknown = run_agent("task", "show", "fix-logn", "--home", str(home))
    assert unknown.exit_code == 1 and "did you mean fix-login?" in unknown.stderr
    # the tasks table shows what it ran with, the blocked reason and the year of an old date
    table = run_agent("tasks", "--home", str(home)).stdout
    row = next(line for line in table.splitlines() if "fix-login" in line)
    assert "claude/opus" in row and "[failed 3 times (exit 2)] Fix the login page" in row
    assert "2025-03-01" in next(line for line in table.splitlines() if "write-report" in line)


def test_retry_resets_a_blocked_or_completed_task(run_agent, home):
    db = home / ".local/state/agent-task-loop/state/history.sqlite3"
    with history.connect(db) as conn:
        history.add_failure(conn, "fix-login", "exit 2", "2026-11-30T08:01:00Z")
    assert run_agent("task", "retry", "fix-login", "--home", str(home)).exit_code == 0
    task = tasks(home)["fix-login"]
    assert task["status"] == "pending" and "blocked_reason" not in task
    with history.connect(db) as conn:
        assert history.failures(conn, "fix-login") == 0
    assert run_agent("task", "retry", "write-report", "--home", str(home)).exit_code == 0
    task = tasks(home)["write-report"]
    assert task["status"] == "pending" and "completed_at" not in task
    again = run_agent("task", "retry", "later", "--home", str(home))
    assert again.exit_code == 1 and "already pending" in again.stderr
    busy = run_agent("task", "retry", "running-one", "--home", str(home))
    assert busy.exit_code == 1 and "running now" in busy.stderr


def test_cancel_and_edit(run_agent, home, monkeypatch):
    monkeypatch.setenv("USER", "ops")
    h = str(home)
    assert run_agent("task", "cancel", "later", "--reason", "not needed", "--home", h).exit_code == 0
    task = tasks(home)["later"]
    assert task["status"] == "blocked" and task["blocked_reason"].startswith("cancelled: not needed (by ops at ")
    assert run_agent("task", "cancel", "write-report", "--home", h).exit_code == 1
    result = run_agent("task", "edit", "fix-login", "--model", "sonnet", "--effort", "low", "--home", h, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == "sonnet" and tasks(home)["fix-login"]["effort"] == "low"
    assert run_agent("task", "edit", "fix-login", "--unset", "model", "--home", h).exit_code == 0
    assert "model" not in tasks(home)["fix-login"]
    assert run_agent("task", "edit", "fix-login", "--home", h).exit_code == 2
    bad = run_agent("task", "edit", "fix-login", "--effort", "huge", "--home", h)
    assert bad.exit_code == 2
    assert run_agent("task", "edit", "running-one", "--model", "x", "--home", h).exit_code == 1
    assert run_agent("task", "edit", "fix-login", "--needs", "fix-login", "--home", h).exit_code == 1
    assert (home / "TASKS.yaml").read_text().startswith("# the queue (this comment must survive every edit)\n")


def test_a_busy_lock_is_one_clear_line(run_agent, home, monkeypatch):
    from keystone_agents.lock import hold

    monkeypatch.setenv("KEYSTONE_AGENT_LOCK_TIMEOUT", "0.3")
    with hold(home / ".local/state/agent-task-loop/state/tasks.lock"):
        result = run_agent("task", "add", "blocked-out", "-d", "x", "--home", str(home))
    assert result.exit_code == 1 and "is busy" in result.stderr and "Traceback" not in result.output


def test_add_passes_text_through_the_one_sanitizer(run_agent, home):
    h = str(home)
    result = run_agent("task", "add", "odd-text", "-d", "line one\r\nline two\x00",
                       "--home", h)
    assert result.exit_code == 0, result.output
    task = tasks(home)["odd-text"]
    assert task["description"] == "line one\nline two"
    model = run_agent("task", "add", "odd-model", "-d", "x", "--model", "--dangerously-skip", "--home", h)
    assert model.exit_code == 1 and "tasks[5].model" in model.stderr and "never read as an option" in model.stderr
    bad = run_agent("task", "add", "bad-text", "-d", "broken \ud800 surrogate", "--home", h)
    assert bad.exit_code == 2 and "lone surrogate" in bad.output
    long = run_agent("task", "add", "long-text", "-d", "x" * 20000, "--home", h)
    assert long.exit_code == 0, long.output
    description = tasks(home)["long-text"]["description"]
    assert len(description.encode()) <= 16 * 1024 and "The full text (20000 bytes) is in" in description
