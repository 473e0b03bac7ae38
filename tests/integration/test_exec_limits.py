"""maxIterations and autonomous continuation, end to end: `keystone-agent loop` as a real subprocess against
the stand-in CLIs, which print their real event streams (claude stream-json, codex --json items, gemini
stream-json) and honour their resume flags."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.support.loop import events, make_home

LIMIT = 3


@pytest.fixture
def lh(tmp_path, clean_env):
    return make_home(tmp_path)


def executions(lh) -> list[dict]:
    conn = sqlite3.connect(lh.state / "history.sqlite3")
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM task_executions ORDER BY id")]
    conn.close()
    return rows


def fake_events(lh, event: str) -> list[dict]:
    if not lh.fake_log.exists():
        return []
    rows = [json.loads(line) for line in lh.fake_log.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("event") == event]


def one_task(lh, description: str, name: str = "job") -> None:
    lh.write_tasks(f"""
        tasks:
          - name: {name}
            description: "{description}"
            status: pending
    """)


@pytest.mark.parametrize("provider", ["claude", "codex", "gemini"])
def test_a_run_making_n_plus_5_tool_calls_is_stopped_at_n(lh, provider):
    lh.config(defaults={"provider": provider}, exec={"maxIterations": LIMIT})
    one_task(lh, f"Explore everything [fake:tools={LIMIT + 5}] [fake:report=completed]")
    result = lh.loop(timeout=90)
    assert result.returncode == 3, result.stderr
    ran = fake_events(lh, "tool-ran")
    assert [r["n"] for r in ran] == list(range(1, LIMIT + 1))  # the (N+1)th call never ran
    assert not fake_events(lh, "finished") or fake_events(lh, "finished")[-1]["exit_code"] == 53
    [row] = executions(lh)
    assert (row["outcome"], row["reason"]) == ("max_iterations", "max-turns")
    assert row["tool_calls"] == LIMIT
    assert lh.task("job")["status"] == "pending"  # a failure counted, retried next run
    [finish] = events(result.stderr, "task_finish")
    assert finish["outcome"] == "max_iterations" and finish["tool_calls"] == str(LIMIT)
    [call] = lh.calls(provider)
    if provider == "claude":
        argv = call["argv"]
        assert argv[argv.index("--output-format") + 1] == "stream-json" and "--verbose" in argv
        assert f"--max-turns={LIMIT}" in argv
    if provider == "gemini":
        assert fake_events(lh, "settings")[0]["max_session_turns"] == LIMIT


@pytest.mark.parametrize("provider", ["claude", "codex", "gemini"])
def test_within_the_limit_completes_and_counts_tool_calls(lh, provider):
    lh.config(defaults={"provider": provider}, exec={"maxIterations": LIMIT})
    one_task(lh, f"Small job [fake:tools={LIMIT}]")
    result = lh.loop(timeout=90)
    assert result.returncode == 0, result.stderr
    [row] = executions(lh)
    assert (row["outcome"], row["tool_calls"]) == ("completed", LIMIT)
    assert row["session_id"]  # every CLI named its session


def test_max_context_tokens_is_the_task_token_budget(lh):
    lh.config(exec={"maxContextTokens": 100})  # the stand-in reports 2,456 tokens
    one_task(lh, "Read the whole repository")
    lh.loop(timeout=60)
    [row] = executions(lh)
    assert row["outcome"] == "token_budget"  # as taskTokenBudget: the work is kept, the overrun flagged
    lh.config(exec={"maxContextTokens": 10_000})
    one_task(lh, "Read one file", name="small")
    lh.loop(timeout=60)
    assert executions(lh)[-1]["outcome"] == "completed"


@pytest.mark.parametrize("provider", ["claude", "codex", "gemini"])
def test_autonomous_continuation_resumes_the_same_session_and_stops_at_max_auto_turns(lh, provider):
    lh.config(defaults={"provider": provider}, exec={"mode": "autonomous", "maxAutoTurns": 2})
    description = "Migrate the billing module step by step [fake:report=continue]"
    one_task(lh, description)
    result = lh.loop(timeout=90)
    assert result.returncode == 0, result.stderr
    calls = lh.calls(provider)
    assert len(calls) == 3  # the first run and maxAutoTurns continuations
    rows = executions(lh)
    session = rows[0]["session_id"]
    assert session and all(r["session_id"] == session for r in rows)
    assert [r["outcome"] for r in rows] == ["continue", "continue", "blocked"]
    assert [r["auto_turn"] for r in rows] == [0, 1, 2]
    resumed = fake_events(lh, "resumed")
    assert [r["session_id"] for r in resumed] == [session, session] and [r["turn"] for r in resumed] == [1, 2]
    for row in resumed:  # continuation guidance only: the task is not sent again
        assert "billing" not in row["prompt"] and "Continue where you left off" in row["prompt"]
    for call in calls[1:]:
        argv = call["argv"]
        if provider == "codex":
            assert argv[argv.index("resume") + 1] == session
        else:
            assert f"--resume={session}" in argv
    task = lh.task("job")
    assert task["status"] == "blocked" and task["blocked_reason"].startswith("max-auto-turns")
    assert [e["auto_turn"] for e in events(result.stderr, "turn")] == ["1", "2"]


def test_autonomous_task_that_finishes_within_its_turns_completes(lh):
    lh.config(exec={"mode": "autonomous", "maxAutoTurns": 5})
    one_task(lh, "Two more steps [fake:continue=2]")
    assert lh.loop(timeout=60).returncode == 0
    assert [r["outcome"] for r in executions(lh)] == ["continue", "continue", "completed"]
    assert lh.task("job")["status"] == "completed"


def test_continue_outside_autonomous_mode_is_not_done(lh):
    one_task(lh, "Endless [fake:report=continue]")
    lh.loop(timeout=60)
    [row] = executions(lh)
    assert (row["outcome"], row["reason"]) == ("failed", "continue")
    assert lh.task("job")["status"] == "pending"
    assert len(lh.calls("claude")) == 1


def test_resume_continues_the_stored_session_with_the_operators_words(lh):
    lh.config(exec={"mode": "autonomous", "maxAutoTurns": 1})
    one_task(lh, "Port the parser [fake:continue=3]")
    lh.loop(timeout=60)
    assert lh.task("job")["status"] == "blocked"
    session = executions(lh)[0]["session_id"]
    result = lh.agent("continue", "job", "--prompt", "Try the streaming approach")
    assert result.returncode == 0, result.stderr
    resumed = fake_events(lh, "resumed")
    assert [r["session_id"] for r in resumed] == [session] * 3 and [r["turn"] for r in resumed] == [1, 2, 3]
    assert "Try the streaming approach" in resumed[1]["prompt"] and "parser" not in resumed[1]["prompt"]
    assert lh.task("job")["status"] == "completed"
    assert [r["outcome"] for r in executions(lh)] == ["continue", "blocked", "continue", "completed"]


def test_kill_stops_a_hanging_execution_and_returns_the_task_to_pending(lh):
    import os
    import time

    lh.config(killGraceSeconds=1)
    one_task(lh, "Hang forever [fake:hang]")
    loop = lh.popen()
    running = lh.state / "running.json"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            data = json.loads(running.read_text()) if running.exists() else {}
        except ValueError:  # being rewritten
            data = {}
        if data.get("pgid") and fake_events(lh, "hanging"):
            break
        time.sleep(0.1)
    pgid = data["pgid"]
    result = lh.agent("kill", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["killed"] and report["recorded"] and report["task"] == "job" and not report["processesLeft"]
    loop.communicate(timeout=30)
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)  # nothing of the execution is left
    assert lh.task("job")["status"] == "pending"
    [row] = executions(lh)
    assert (row["outcome"], row["reason"]) == ("failed", "killed")
    conn = sqlite3.connect(lh.state / "history.sqlite3")
    assert conn.execute("SELECT COUNT(*) FROM task_attempts").fetchone()[0] == 0  # not held against maxAttempts
    conn.close()
    again = lh.agent("kill")
    assert again.returncode == 1 and "nothing is executing" in again.stderr
