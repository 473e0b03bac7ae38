"""Unattended for months: `keystone-agent loop` as a real subprocess against stand-in CLIs that fail the way
hosted CLIs fail in the field (hang silently, wait on stdin, exit 0 having done nothing, overshoot their turn
limit, cost more than planned), and a timer that silently skipped runs."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time

import pytest

from tests.support.loop import events, make_home


@pytest.fixture
def lh(tmp_path, clean_env):
    return make_home(tmp_path)


def executions(lh) -> list[dict]:
    conn = sqlite3.connect(lh.state / "history.sqlite3")
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM task_executions ORDER BY id")]
    conn.close()
    return rows


def one_task(lh, description: str, name: str = "job", **extra) -> None:
    fields = "".join(f"\n    {k}: {v}" for k, v in extra.items())
    lh.write_tasks(f"""
        tasks:
          - name: {name}
            description: "{description}"
            status: pending{fields}
    """)


def test_a_silent_hung_cli_is_killed_by_the_stall_watchdog_not_the_wall_clock(lh):
    lh.config(stallTimeoutSeconds=1.5, taskTimeoutSeconds=120, killGraceSeconds=0.5)
    one_task(lh, "Hang [fake:hang]")
    t0 = time.monotonic()
    result = lh.loop(timeout=60)
    elapsed = time.monotonic() - t0
    assert result.returncode == 3, result.stderr
    assert elapsed < 20, f"took {elapsed:.1f}s: the wall clock (120s) would have been much later"
    [row] = executions(lh)
    assert (row["outcome"], row["reason"]) == ("timeout", "stalled")
    assert row["duration_seconds"] < 10
    assert lh.task("job")["status"] == "pending"  # retried like any failure
    [finish] = events(result.stderr, "task_finish")
    assert (finish["outcome"], finish["reason"]) == ("timeout", "stalled")
    log = open(row["log_path"]).read()
    assert "stalled: no output for 1.5s" in log
    assert lh.metrics()["keystone_agent_task_loop_tasks_stalled_total"] == 1


def test_a_cli_that_only_writes_its_transcript_is_not_stalled(lh):
    # claude --print prints nothing until it is done; its transcript file is what shows it is working
    lh.config(stallTimeoutSeconds=1, taskTimeoutSeconds=60)
    one_task(lh, "Think quietly [fake:transcript=3]")
    result = lh.loop(timeout=60)
    assert result.returncode == 0, result.stderr
    [row] = executions(lh)
    assert row["outcome"] == "completed", row
    assert row["duration_seconds"] >= 2.5
    assert list((lh.home / ".claude/projects").glob("*/session-*.jsonl")), "the stand-in wrote no transcript"


def test_a_cli_reading_stdin_gets_eof_instead_of_blocking(lh):
    lh.config(stallTimeoutSeconds=5, taskTimeoutSeconds=30)
    one_task(lh, "Read everything [fake:read-stdin]")
    result = lh.loop(timeout=60)
    assert result.returncode == 0, result.stderr
    assert executions(lh)[0]["outcome"] == "completed"
    rows = [json.loads(line) for line in lh.fake_log.read_text().splitlines()]
    assert [r["event"] for r in rows if r.get("event") in ("reading-stdin", "stdin-eof")] == ["reading-stdin", "stdin-eof"]


def test_the_command_provider_gets_the_prompt_then_eof_and_a_clean_environment(lh):
    script = lh.script("local-llm", """
        prompt=$(cat)
        echo "answer to: $prompt"
        echo "SECRET=${GH_TOKEN:-unset} CONFIGURED=${MY_SETTING:-unset} TASK=${KEYSTONE_TASK_NAME:-unset}"
        [ -n "$PATH" ] && echo "has PATH"
    """)
    lh.config(commandProvider={"argv": [str(script)]}, defaults={"provider": "command"},
              environment={"MY_SETTING": "from-config"}, stallTimeoutSeconds=5, taskTimeoutSeconds=30)
    one_task(lh, "Say hi")
    result = lh.loop(GH_TOKEN="ghp_loop_secret", timeout=60)
    assert result.returncode == 0, result.stderr
    [row] = executions(lh)
    assert row["outcome"] == "completed"
    log = open(row["log_path"]).read()
    assert "answer to: Execute this task." in log
    assert "SECRET=unset CONFIGURED=from-config TASK=job" in log
    assert "has PATH" in log


@pytest.mark.parametrize("provider,description", [
    ("claude", "Do nothing [fake:empty]"),
    ("claude", "No tokens [fake:output-tokens=0]"),
    ("codex", "Do nothing [fake:empty]"),
    ("gemini", "Do nothing [fake:empty]"),
    ("command", "anything"),
])
def test_exit_0_without_evidence_is_not_completed(lh, provider, description):
    silent = lh.script("silent-llm", "cat >/dev/null\nexit 0\n")
    lh.config(defaults={"provider": provider}, commandProvider={"argv": [str(silent)]}, maxAttempts=2)
    one_task(lh, description)
    result = lh.loop(timeout=60)
    assert result.returncode == 3, result.stderr
    [row] = executions(lh)
    assert row["exit_code"] == 0
    assert (row["outcome"], row["reason"]) == ("failed", "no-evidence")
    assert lh.task("job")["status"] == "pending"
    assert lh.metrics()["keystone_agent_task_loop_tasks_no_evidence_total"] == 1
    # retried like any failure: the second one blocks the task (maxAttempts 2)
    lh.loop(timeout=60)
    task = lh.task("job")
    assert task["status"] == "blocked"
    assert "without evidence" in task["blocked_reason"]


def test_more_turns_than_allowed_is_flagged_not_completed(lh):
    lh.config(maxTurns=5)
    one_task(lh, "Wander [fake:turns=9] [fake:report=completed]")
    result = lh.loop(timeout=60)
    assert result.returncode == 3, result.stderr
    [call] = lh.calls("claude")
    assert "--max-turns=5" in call["argv"] and call["parsed"]["max_turns"] == 5
    [row] = executions(lh)
    assert (row["outcome"], row["reason"], row["turns"]) == ("max_iterations", "max-turns", 9)
    assert lh.task("job")["status"] == "pending"
    assert lh.metrics()["keystone_agent_task_loop_tasks_max_turns_total"] == 1


def test_within_the_turn_limit_completes(lh):
    lh.config(maxTurns=5)
    one_task(lh, "Focus [fake:turns=4]")
    assert lh.loop(timeout=60).returncode == 0
    assert executions(lh)[0]["outcome"] == "completed"


def test_cost_crossing_the_daily_ceiling_stops_the_next_task_before_it_starts(lh):
    lh.config(budgets={"dailyCostUsd": 0.5}, maxTasks=5)
    lh.write_tasks("""
        tasks:
          - name: expensive
            description: "Big job [fake:cost=0.75]"
            status: pending
          - name: next-one
            description: "Small job"
            status: pending
    """)
    result = lh.loop(timeout=60)
    assert result.returncode == 0, result.stderr
    assert [c["task"] for c in lh.calls("claude")] == ["expensive"]  # next-one never started
    assert lh.task("expensive")["status"] == "completed"
    assert lh.task("next-one")["status"] == "pending"
    rows = {r["task"]: r for r in executions(lh)}
    assert rows["next-one"]["outcome"] == "token_budget"
    assert rows["next-one"]["reason"] == "budget:daily-cost"
    [refused] = events(result.stderr, "budget_exceeded")
    assert refused["task_name"] == "next-one" and refused["budget_scope"] == "daily"
    metrics = lh.metrics()
    assert metrics["keystone_agent_task_loop_tasks_budget_refused_total"] == 1
    assert metrics["keystone_agent_task_loop_budget_exhausted"] == 1
    assert metrics["keystone_agent_task_loop_cost_usd_today"] == pytest.approx(0.75)
    assert metrics["keystone_agent_task_loop_tokens_today"] == 1200 + 300 + 500 + 456
    # the next run refuses again, without calling the provider
    lh.loop(timeout=60)
    assert [c["task"] for c in lh.calls("claude")] == ["expensive"]
    assert lh.task("next-one")["status"] == "pending"


def test_a_task_over_its_own_token_budget_is_skipped_but_others_run(lh):
    lh.config(budgets={"taskTokens": 1000}, maxAttempts=5)
    lh.write_tasks("""
        tasks:
          - name: greedy
            description: "Fails after spending [fake:exit=1]"
            status: pending
          - name: modest
            description: "Fine"
            status: pending
    """)
    lh.loop(timeout=60)  # greedy fails having used 2456 tokens; modest completes
    lh.loop(timeout=60)  # greedy is refused before its second attempt
    assert [c["task"] for c in lh.calls("claude")] == ["greedy", "modest"]
    assert lh.task("greedy")["status"] == "pending"
    assert lh.task("modest")["status"] == "completed"
    assert executions(lh)[-1]["reason"] == "budget:task-tokens"


def test_a_gap_between_runs_raises_the_missed_run_count(lh):
    lh.config(expectedIntervalSeconds=300, maxTasks=0)
    lh.write_tasks("tasks: []\n")
    first = lh.loop(timeout=60)
    assert first.returncode == 0, first.stderr
    assert not events(first.stderr, "run_overdue")
    assert lh.metrics()["keystone_agent_task_loop_missed_runs_total"] == 0
    assert lh.metrics()["keystone_agent_task_loop_expected_interval_seconds"] == 300
    # simulate a timer that stopped for 20 minutes: the previous run ended that long ago
    past = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    conn = sqlite3.connect(lh.state / "history.sqlite3")
    with conn:
        conn.execute("UPDATE runs SET started_at = ?, finished_at = ?, trigger_at = ?", (past, past, past))
    conn.close()
    second = lh.loop(timeout=60)
    [overdue] = events(second.stderr, "run_overdue")
    assert overdue["missed_runs"] == "3"  # 1200 s / 300 s = 4 intervals: 3 runs did not happen
    assert overdue["previous_run_at"] == past
    assert lh.metrics()["keystone_agent_task_loop_missed_runs_total"] == 3
    # the count is cumulative; a run on time adds nothing
    third = lh.loop(timeout=60)
    assert not events(third.stderr, "run_overdue")
    assert lh.metrics()["keystone_agent_task_loop_missed_runs_total"] == 3
    conn = sqlite3.connect(lh.state / "history.sqlite3")
    triggers = [r[0] for r in conn.execute("SELECT trigger_at FROM runs ORDER BY id")]
    conn.close()
    assert all(triggers)


def test_a_failed_delivery_shows_apart_from_the_completed_status(lh):
    one_task(lh, "Reply to Alice [fake:report=completed] [fake:delivery-failed=email]")
    result = lh.loop(timeout=60)
    assert result.returncode == 0, result.stderr
    assert lh.task("job")["status"] == "completed"
    [row] = executions(lh)
    assert row["outcome"] == "completed" and row["delivery_failed"] == 1
    deliveries = json.loads(row["deliveries"])
    assert [(d["kind"], d["ok"]) for d in deliveries] == [("email", False), ("pull_request", True)]
    [failed] = events(result.stderr, "delivery_failed")
    assert failed["delivery_kind"] == "email" and "550" in failed["error"]
    metrics = lh.metrics()
    assert metrics["keystone_agent_task_loop_deliveries_failed_total"] == 1
    assert metrics["keystone_agent_task_loop_tasks_delivery_failed_total"] == 1
    shown = lh.agent("runs")
    assert "job: completed  DELIVERY FAILED" in shown.stdout
    assert "email → alice@example.com: FAILED: 550 mailbox unavailable" in shown.stdout
    as_json = json.loads(lh.agent("runs", "--json").stdout)
    [ex] = as_json[0]["executions"]
    assert ex["delivery_failed"] is True and ex["deliveries"][0]["error"] == "550 mailbox unavailable"


def test_a_gap_between_scheduler_runs_raises_its_missed_run_count(run_agent, agent_home, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    config = agent_home / ".config/keystone-agent/config.json"
    data = json.loads(config.read_text())
    data.update(textfileDir=str(tmp_path / "prom"), scheduler={"expectedIntervalSeconds": 86400})
    config.write_text(json.dumps(data))

    def metrics() -> dict:
        text = (tmp_path / "prom/keystone-agent-scheduler-demo.prom").read_text()
        return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}

    first = run_agent("schedule", "--home", str(agent_home))
    assert first.exit_code == 0, first.output
    assert metrics()["keystone_agent_scheduler_missed_runs_total"] == 0
    assert metrics()["keystone_agent_scheduler_expected_interval_seconds"] == 86400
    past = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    conn = sqlite3.connect(agent_home / ".local/state/agent-task-loop/state/history.sqlite3")
    with conn:
        conn.execute("UPDATE runs SET started_at = ?, finished_at = ?", (past, past))
    conn.close()
    second = run_agent("schedule", "--home", str(agent_home))
    overdue = [e for e in events(second.stderr, "run_overdue")]
    assert len(overdue) == 1 and overdue[0]["missed_runs"] == "2"
    assert metrics()["keystone_agent_scheduler_missed_runs_total"] == 2
