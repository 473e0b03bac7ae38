"""`keystone-agent loop` as a real subprocess, with stand-in provider CLIs (tests/fakebin) on PATH that
record their argv and print what the real CLIs print."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time

import pytest
import yaml

from tests.support.loop import events, make_home
from keystone_agents.taskfile import TaskFile

CLAUDE_MEDIUM = ["--print", "--output-format", "json", "--dangerously-skip-permissions",
                 "--model=sonnet", "--fallback-model=opus", "--effort=medium", "--"]


@pytest.fixture
def lh(tmp_path, clean_env):
    return make_home(tmp_path)


def dead(pid: int) -> bool:
    """Gone or a zombie (an orphan whose reaper has not run yet is dead too)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def executions(lh) -> list[dict]:
    conn = sqlite3.connect(lh.state / "history.sqlite3")
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM task_executions ORDER BY id")]
    conn.close()
    return rows


def test_unchanged_sources_ingest_once_and_leave_tasks_yaml_byte_identical(lh):
    src = lh.script("items.sh", """
        echo '[{"title": "Fix the login bug", "url": "https://git.example.com/o/r/issues/1", "body": "Users cannot log in"},'
        echo ' {"title": "Write the docs", "id": 7}]'
    """)
    lh.write_projects(f"""
        projects: []
        sources:
          - name: tracker
            command: ["{src}"]
    """)
    first = lh.loop()
    assert first.returncode == 0, first.stderr
    tasks = lh.task_list()
    assert [t["name"] for t in tasks] == ["fix-the-login-bug", "write-the-docs"]
    assert [t["source_ref"] for t in tasks] == ["https://git.example.com/o/r/issues/1", "tracker-7"]
    assert all(t["status"] == "completed" and t["source"] == "tracker" for t in tasks)
    assert json.loads((lh.home / ".deepwork/sources.json").read_text())[0]["source"] == "tracker"
    after_first = lh.tasks.read_bytes()
    mtime = lh.tasks.stat().st_mtime_ns

    second = lh.loop()
    assert second.returncode == 0, second.stderr
    assert lh.tasks.read_bytes() == after_first
    assert lh.tasks.stat().st_mtime_ns == mtime  # not even rewritten with the same bytes
    assert len(lh.calls("claude")) == 2

    # Without the unchanged-tick shortcut the full path runs: ingest is skipped by the sources hash,
    # prioritize finds nothing to change, and the file is still not rewritten.
    (lh.state / "quiescent.json").unlink()
    third = lh.loop()
    assert third.returncode == 0, third.stderr
    assert "Inputs unchanged, skipping ingest" in third.stderr
    assert lh.tasks.read_bytes() == after_first and lh.tasks.stat().st_mtime_ns == mtime
    assert [e["event"] for e in events(third.stderr, "stage_finish")] == ["stage_finish"] * 3
    assert len(lh.calls("claude")) == 2


def test_per_task_overrides_reach_the_argv(lh):
    lh.config(commandProvider={"argv": ["fake-llm", "run", "{model}"]})
    lh.write_tasks("""
        tasks:
          - name: on-claude
            description: "Review the provider docs"
            status: pending
            profile: medium
            provider: claude
            model: claude-sonnet-4-5
            fallback_model: claude-opus-4-1
            effort: high
          - name: on-gemini
            description: "Summarize the notes"
            status: pending
            provider: gemini
            model: gemini-2.5-flash
          - name: on-codex
            description: "Tidy the parser"
            status: pending
            provider: codex
            model: gpt-5-codex
          - name: fast-profile
            description: "Answer the ping"
            status: pending
            profile: fast
            workflow: task_loop/run
          - name: on-local
            description: "Tidy the inbox"
            status: pending
            provider: command
            model: qwen3:4b
    """)
    result = lh.loop()
    assert result.returncode == 0, result.stderr
    by_task = {c["task"]: c for c in lh.calls()}
    assert by_task["on-claude"]["argv"] == [
        "--print", "--output-format", "json", "--dangerously-skip-permissions", "--model=claude-sonnet-4-5",
        "--fallback-model=claude-opus-4-1", "--effort=high", "--",
        "Execute this task.\n\nTask: on-claude\nDescription: Review the provider docs"]
    assert by_task["on-gemini"]["tool"] == "gemini"
    assert by_task["on-gemini"]["argv"] == [
        "--prompt=Execute this task.\n\nTask: on-gemini\nDescription: Summarize the notes", "--yolo",
        "--output-format", "json", "--model=gemini-2.5-flash"]
    assert by_task["on-codex"]["argv"] == [
        "exec", "--json", "--full-auto", "--model=gpt-5-codex", "--", "Execute this task.\n\nTask: on-codex\nDescription: Tidy the parser"]
    assert by_task["fast-profile"]["argv"] == [
        "--print", "--output-format", "json", "--dangerously-skip-permissions", "--model=haiku",
        "--fallback-model=sonnet", "--effort=low", "--",
        "/deepwork task_loop/run\n\nTask: fast-profile\nDescription: Answer the ping"]
    assert by_task["on-local"]["argv"] == ["run", "qwen3:4b"]
    assert by_task["on-local"]["stdin"] == "Execute this task.\n\nTask: on-local\nDescription: Tidy the inbox"
    assert {t["name"]: t["status"] for t in lh.task_list()} == dict.fromkeys(by_task, "completed")
    rows = {r["task"]: r for r in executions(lh)}
    assert rows["on-claude"]["input_tokens"] == 2000 and rows["on-claude"]["output_tokens"] == 456
    assert rows["on-claude"]["cost_usd"] == pytest.approx(0.0123)
    assert rows["on-codex"]["total_tokens"] == 2345
    assert (rows["on-local"]["input_tokens"], rows["on-local"]["output_tokens"]) == (42, 17)


def test_model_error_retries_once_with_the_fallback_model(lh):
    lh.write_tasks("""
        tasks:
          - name: needs-fallback
            description: "Do the thing"
            status: pending
    """)
    result = lh.loop(FAKE_BAD_MODELS="sonnet")
    assert result.returncode == 0, result.stderr
    calls = lh.calls("claude")
    assert [c["argv"][:-1] for c in calls] == [
        CLAUDE_MEDIUM,
        ["--print", "--output-format", "json", "--dangerously-skip-permissions", "--model=opus", "--effort=medium", "--"],
    ]
    assert lh.task("needs-fallback")["status"] == "completed"
    rows = executions(lh)
    assert [(r["outcome"], r["model"], r["fallback_used"]) for r in rows] == [
        ("model_error", "sonnet", 0), ("completed", "opus", 1)]

    # Both models bad: one retry only, then the failure is counted and the task waits for the next run.
    lh.write_tasks("""
        tasks:
          - name: both-bad
            description: "Do the other thing"
            status: pending
    """)
    result = lh.loop(FAKE_BAD_MODELS="sonnet,opus")
    assert result.returncode == 3, result.stderr
    assert len([c for c in lh.calls("claude") if c["task"] == "both-bad"]) == 2
    assert lh.task("both-bad")["status"] == "pending"
    assert executions(lh)[-1]["outcome"] == "model_error"


def test_a_child_ignoring_sigterm_is_killed_at_the_timeout(lh):
    lh.config(taskTimeoutSeconds=1, killGraceSeconds=0.5, maxAttempts=1)
    lh.write_tasks("""
        tasks:
          - name: stubborn
            description: "Never ends [fake:ignore-term]"
            status: pending
          - name: next-one
            description: "Runs after the stubborn one"
            status: pending
    """)
    started = time.monotonic()
    result = lh.loop(timeout=60)
    elapsed = time.monotonic() - started
    assert elapsed < 20, result.stderr
    assert result.returncode == 3
    stubborn = [c for c in lh.calls("claude") if c["task"] == "stubborn"]
    assert len(stubborn) == 1
    assert dead(stubborn[0]["pid"])
    task = lh.task("stubborn")
    assert task["status"] == "blocked"
    assert "timeout" in task["blocked_reason"] and "maxAttempts 1" in task["blocked_reason"]
    assert lh.task("next-one")["status"] == "completed"
    assert [r["outcome"] for r in executions(lh)] == ["timeout", "completed"]
    log = next((lh.home / ".local/state/agent-task-loop/logs/tasks").glob("*_stubborn.log")).read_text()
    assert "timeout after 1s" in log


def test_bad_entries_and_bad_sources_stay_isolated(lh, tmp_path):
    canary = tmp_path / "pwned"
    good = lh.script("good.sh", """echo '[{"title": "From the good source", "id": 1}]'""")
    bad = lh.script("bad.sh", """echo 'this is <html> not json'""")
    hang = lh.script("hang.sh", """sleep 60; echo '[{"title": "never", "id": 2}]'""")
    lh.write_projects(f"""
        projects:
          - name: Main
            slug: main
            description: The main project
            status: active
            priority: 1
            updated: "2026-01-01"
            sources:
              - name: hanging
                command: ["{hang}"]
                timeout: 1
        sources:
          - name: broken
            command: ["{bad}"]
          - name: good
            command: ["{good}"]
    """)
    lh.write_tasks(f"""
        tasks:
          - name: ""
            description: "empty name [fake:report=completed] $(touch {canary})"
            status: pending
          - name: "it's \\"quoted\\""
            description: "bad name"
            status: pending
          - name: shell-chars
            description: "Quote ' and \\" and $(touch {canary}) and `touch {canary}`\\nsecond line"
            status: pending
          - name: after-shell-chars
            description: "Needs the other one"
            status: pending
            needs:
              - shell-chars
    """)
    original = lh.tasks.read_text()
    started = time.monotonic()
    result = lh.loop(timeout=60)
    assert time.monotonic() - started < 30
    assert result.returncode == 3, result.stderr  # degraded: bad entries and bad sources
    skipped = {e["source"]: e for e in events(result.stderr, "log") if e.get("source") in ("broken", "hanging")}
    assert "not JSON" in skipped["broken"]["reason"] and "<html>" in skipped["broken"]["output_excerpt"]
    assert "timed out" in skipped["hanging"]["reason"]
    calls = lh.calls("claude")
    assert [c["task"] for c in calls] == ["shell-chars", "after-shell-chars", "from-the-good-source"]
    assert calls[0]["argv"][-1] == (
        f"Execute this task.\n\nTask: shell-chars\nDescription: Quote ' and \" and $(touch {canary}) and "
        f"`touch {canary}`\nsecond line")
    assert not canary.exists()
    text = lh.tasks.read_text()
    # the invalid entries are kept verbatim, untouched
    assert original.split("  - name: shell-chars")[0] in text
    by_name = {t["name"]: t for t in lh.task_list()}
    assert by_name[""]["status"] == "pending" and by_name["it's \"quoted\""]["status"] == "pending"
    assert by_name["after-shell-chars"]["status"] == "completed"
    assert by_name["from-the-good-source"]["source"] == "good" and "project" not in by_name["from-the-good-source"]
    problems = [e for e in events(result.stderr, "log") if e.get("step") == "validate"]
    assert {p["field"] for p in problems} == {"tasks[0].name", "tasks[1].name"}


def test_needs_on_blocked_or_unknown_tasks_block_and_unblock(lh):
    lh.write_tasks("""
        tasks:
          - name: waits-for-human
            description: "Blocked by the agent before [fake:report=blocked]"
            status: pending
          - name: dependent
            description: "Needs the blocked one"
            status: pending
            needs: [waits-for-human]
          - name: orphan
            description: "Needs a task that does not exist"
            status: pending
            needs: [no-such-task]
    """)
    result = lh.loop()
    assert result.returncode == 0, result.stderr
    assert lh.task("waits-for-human") == {**lh.task("waits-for-human"), "status": "blocked", "blocked_reason": "needs a human"}
    assert lh.task("dependent")["blocked_reason"] == "waiting on needs: waits-for-human is blocked"
    assert lh.task("orphan")["blocked_reason"] == "waiting on needs: no-such-task does not exist"
    # a human finishes the blocked task: the dependent returns to pending and runs
    tf = TaskFile.load(lh.tasks)
    tf.set_fields(tf.find("waits-for-human"), {"status": "completed", "blocked_reason": None})
    tf.save()
    result = lh.loop()
    assert result.returncode == 0, result.stderr
    assert lh.task("dependent")["status"] == "completed"
    assert lh.task("orphan")["status"] == "blocked"
    assert [c["task"] for c in lh.calls("claude")] == ["waits-for-human", "dependent"]


def test_sigkill_mid_execute_recovers_and_nothing_runs_twice(lh):
    lh.write_tasks("""
        tasks:
          - name: long-one
            description: "Takes a while the first time [fake:sleep-first=60]"
            status: pending
          - name: short-one
            description: "Quick"
            status: pending
    """)
    proc = lh.popen()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not lh.calls("claude"):
        time.sleep(0.1)
    assert lh.calls("claude"), "provider never started"
    first_pid = lh.calls("claude")[0]["pid"]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert yaml.safe_load(lh.tasks.read_text())["tasks"][0]["status"] == "in_progress"

    result = lh.loop()
    assert result.returncode == 0, result.stderr
    assert dead(first_pid)
    recovered = events(result.stderr, "task_recovered")
    assert [e["task_name"] for e in recovered] == ["long-one"]
    assert [c["task"] for c in lh.calls("claude")] == ["long-one", "long-one", "short-one"]
    assert {t["name"]: t["status"] for t in lh.task_list()} == {"long-one": "completed", "short-one": "completed"}
    assert TaskFile.load(lh.tasks).problems == []
    assert [(r["task"], r["outcome"]) for r in executions(lh)] == [
        ("long-one", "failed"), ("long-one", "completed"), ("short-one", "completed")]
    runs = json.loads(lh.agent("runs", "--json").stdout)
    assert [r["status"] for r in runs] == ["success", "error"]  # the killed run is not left "running"
    # a third run executes nothing again
    lh.loop()
    assert len(lh.calls("claude")) == 3


def test_two_loops_started_together_run_once(lh):
    lh.write_tasks("""
        tasks:
          - name: only-once
            description: "Takes two seconds [fake:sleep=2]"
            status: pending
    """)
    procs = [lh.popen(), lh.popen()]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert sorted(p.returncode for p in procs) == [0, 0]
    skipped = [err for _, err in outputs if "already running, skipping" in err]
    assert len(skipped) == 1
    assert "run_start" not in skipped[0]
    assert len(lh.calls("claude")) == 1
    metrics = lh.metrics()
    assert metrics["keystone_agent_task_loop_tasks_completed_total"] == 1
    assert metrics["keystone_agent_task_loop_last_exit_code"] == 0
    assert metrics["keystone_agent_task_loop_last_duration_seconds"] >= 2
    runs = json.loads(lh.agent("runs", "--json").stdout)
    assert len(runs) == 1 and runs[0]["tasks_completed"] == 1


def test_paused_run_writes_no_metrics_and_dry_run_writes_prompts_only(lh):
    lh.write_tasks("""
        tasks:
          - name: some-task
            description: "Something"
            status: pending
    """)
    assert lh.agent("pause", "maintenance").returncode == 0
    result = lh.loop()
    assert result.returncode == 0
    assert [e["event"] for e in events(result.stderr)] == ["run_start", "run_paused", "run_finish"]
    assert not lh.metrics_file.exists()
    assert lh.agent("resume").returncode == 0
    before = lh.tasks.read_bytes()
    result = lh.loop("--dry-run")
    assert result.returncode == 0, result.stderr
    assert lh.calls() == [] and lh.tasks.read_bytes() == before and not lh.metrics_file.exists()
    log = next((lh.home / ".local/state/agent-task-loop/logs/tasks").glob("*_some-task.log")).read_text()
    assert "DRY RUN" in log and "Task: some-task\nDescription: Something" in log and '"--model=sonnet"' in log


def test_agent_report_wins_and_runs_and_logs_commands_read_history(lh):
    lh.write_tasks("""
        tasks:
          - name: reported-blocked
            description: "Exits 0 but reports blocked [fake:report=blocked]"
            status: pending
          - name: makes-pr
            description: "Opens a PR [fake:pr=https://github.com/o/r/pull/12]"
            status: pending
          - name: crashes
            description: "Fails [fake:exit=1]"
            status: pending
    """)
    result = lh.loop()
    assert result.returncode == 3
    assert lh.task("reported-blocked")["status"] == "blocked"
    assert lh.task("reported-blocked")["blocked_reason"] == "needs a human"
    assert lh.task("makes-pr")["status"] == "completed" and "completed_at" in lh.task("makes-pr")
    assert lh.task("crashes")["status"] == "pending"
    assert "error" not in {t["status"] for t in lh.task_list()}
    runs = json.loads(lh.agent("runs", "--json", "--limit", "5").stdout)
    assert runs[0]["status"] == "degraded" and runs[0]["exit_code"] == 3
    outcomes = {e["task"]: e for e in runs[0]["executions"]}
    assert outcomes["makes-pr"]["pull_requests"] == ["https://github.com/o/r/pull/12"]
    assert outcomes["crashes"]["outcome"] == "failed"
    assert outcomes["reported-blocked"]["outcome"] == "blocked"
    text = lh.agent("runs").stdout
    assert "makes-pr: completed via claude/sonnet" in text and "https://github.com/o/r/pull/12" in text
    log = lh.agent("logs", "makes-pr")
    assert log.returncode == 0 and "Created pull request https://github.com/o/r/pull/12" in log.stdout
    run_log = lh.agent("logs")
    assert 'event="run_finish"' in run_log.stdout
    # failures count: after maxAttempts (3) the task is blocked naming the last failure
    lh.loop()
    lh.loop()
    assert lh.task("crashes")["status"] == "blocked"
    assert "failed 3 times" in lh.task("crashes")["blocked_reason"]
    assert "exit code 1" in lh.task("crashes")["blocked_reason"]
    metrics = lh.metrics()
    assert metrics["keystone_agent_task_loop_last_exit_code"] == 3
    assert metrics["keystone_agent_task_loop_tasks_blocked_total"] == 1


def test_llm_triage_archive_token_budget_and_log_rotation(lh):
    src = lh.script("mail.sh", """
        cat <<'JSON'
        ["Please send me the quarterly numbers",
         "Newsletter: nothing to do here [fake:not-actionable]",
         "Garbled request [fake:bad-triage]"]
        JSON
    """)
    lh.write_projects(f"""
        projects:
          - {{name: Main, slug: main, description: Main project, status: active, priority: 1, updated: "2026-01-01"}}
        sources:
          - name: mail
            command: ["{src}"]
    """)
    lh.config(llmTriage=True, maxTasks=0, keepRunLogs=2, keepTaskLogDays=1, taskTokenBudget=100)
    lh.write_tasks("""
        tasks:
          - name: old-done
            description: "Finished long ago"
            status: completed
            source_ref: "old-ref"
            completed_at: "2020-01-01T00:00:00Z"
          - name: recent-done
            description: "Finished yesterday"
            status: completed
            completed_at: "2999-01-01T00:00:00Z"
    """)
    old_log = lh.home / ".local/state/agent-task-loop/logs/tasks/2000-01-01_000000_ancient.log"
    old_log.parent.mkdir(parents=True, exist_ok=True)
    old_log.write_text("old")
    os.utime(old_log, (0, 0))
    result = lh.loop()
    assert result.returncode == 0, result.stderr
    names = {t["name"]: t for t in lh.task_list()}
    assert names["triaged-request"]["description"] == "Triaged: reply to it"
    assert names["triaged-request"]["project"] == "main" and names["triaged-request"]["source"] == "mail"
    assert "garbled-request-fake-bad-triage" in names  # invalid answer: deterministic ingest
    assert not any("newsletter" in n for n in names)  # not actionable: skipped
    assert any(e["msg"].startswith("triage answer invalid") for e in events(result.stderr, "log"))
    assert len(lh.calls("claude")) == 3 and all(c["parsed"]["model"] == "haiku" for c in lh.calls("claude"))
    # archive: the old completed task moved, the recent one stayed
    assert "old-done" not in names and "recent-done" in names
    archived = yaml.safe_load((lh.home / "TASKS.archive.yaml").read_text())["tasks"]
    assert [t["name"] for t in archived] == ["old-done"]
    assert not old_log.exists()
    # token budget: the fake claude reports 2,456 tokens > 100
    lh.config(maxTasks=1, taskTokenBudget=100, keepRunLogs=2)
    result = lh.loop()
    assert executions(lh)[-1]["outcome"] == "token_budget"
    assert lh.task("triaged-request")["status"] == "completed"
    lh.loop()
    lh.loop()
    assert len(list((lh.home / ".local/state/agent-task-loop/logs").glob("*.log"))) == 2
    # the archived item's source_ref still dedups: re-offering it creates nothing
    again = lh.script("again.sh", """echo '[{"title": "Finished long ago", "source_ref": "old-ref"}]'""")
    lh.write_projects(f"""
        projects: []
        sources:
          - name: again
            command: ["{again}"]
    """)
    lh.config(maxTasks=0)
    result = lh.loop()
    assert "Ingest created 0 task(s)" in result.stderr
