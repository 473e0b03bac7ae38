"""Units of unattended operation: the provider environment, the process watchdog and stdin, evidence parsing,
budgets against a real history database, and missed-run arithmetic."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from contextlib import closing

from keystone_agents import history, missed
from keystone_agents.config import Budgets
from keystone_agents.loop import budget
from keystone_agents.providers.base import ProviderResult
from keystone_agents.providers.claude import ClaudeProvider
from keystone_agents.providers.codex import CodexProvider
from keystone_agents.providers.environment import clean_env
from keystone_agents.providers.gemini import GeminiProvider
from keystone_agents.providers.process import RunOptions, run_process

UTC = dt.timezone.utc


def test_clean_env_keeps_the_allow_list_and_the_configured_variables_only():
    base = {"PATH": "/bin", "HOME": "/home/a", "LC_ALL": "C", "GH_TOKEN": "secret", "PYTHONBREAKPOINT": "pdb",
            "ANTHROPIC_LOG": "debug"}
    env = clean_env({"ANTHROPIC_LOG": "info", "MY_VAR": "x"}, base=base, KEYSTONE_TASK_NAME="t")
    assert env == {"PATH": "/bin", "HOME": "/home/a", "LC_ALL": "C", "ANTHROPIC_LOG": "info", "MY_VAR": "x",
                   "KEYSTONE_TASK_NAME": "t"}


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_child_reading_stdin_gets_eof(tmp_path):
    t0 = time.monotonic()
    result = run_process(_py("import sys; data = sys.stdin.read(); print('read', len(data))"), None,
                         RunOptions(log_path=tmp_path / "log", timeout=20, stall_timeout=10))
    assert result.exit_code == 0 and result.stdout.strip() == "read 0"
    assert time.monotonic() - t0 < 10
    fed = run_process(_py("import sys; print(sys.stdin.read().upper())"), "the prompt",
                      RunOptions(log_path=tmp_path / "log", timeout=20, stall_timeout=10))
    assert fed.stdout.strip() == "THE PROMPT"


def test_the_watchdog_kills_silence_but_not_steady_output(tmp_path):
    quiet = run_process(_py("import time; print('hello', flush=True); time.sleep(60)"), None,
                        RunOptions(log_path=tmp_path / "q.log", timeout=60, stall_timeout=0.8, kill_grace=0.2))
    assert quiet.timed_out and quiet.stalled and quiet.duration_seconds < 10
    assert "stalled: no output for 0.8s" in (tmp_path / "q.log").read_text()
    chatty = run_process(_py("import time\nfor i in range(8):\n    print(i, flush=True); time.sleep(0.3)"), None,
                         RunOptions(log_path=tmp_path / "c.log", timeout=60, stall_timeout=0.8))
    assert chatty.exit_code == 0 and not chatty.stalled
    wall = run_process(_py("import time\nwhile True:\n    print('.', flush=True); time.sleep(0.1)"), None,
                       RunOptions(log_path=tmp_path / "w.log", timeout=1, stall_timeout=5, kill_grace=0.2))
    assert wall.timed_out and not wall.stalled


def test_a_watched_transcript_counts_as_output(tmp_path):
    transcript = tmp_path / "transcripts"
    transcript.mkdir()
    code = (f"import time\nfor i in range(10):\n    open({str(transcript / 's.jsonl')!r}, 'a').write('x\\n')"
            "\n    time.sleep(0.2)")
    result = run_process(_py(code), None, RunOptions(log_path=tmp_path / "t.log", timeout=60, stall_timeout=0.8,
                                                     watch=[transcript]))
    assert result.exit_code == 0 and not result.stalled


def _parsed(provider, stdout: str, exit_code: int = 0) -> ProviderResult:
    result = ProviderResult(exit_code=exit_code, timed_out=False, duration_seconds=1.0, output=stdout)
    provider.parse(stdout, "", result)
    return result


def test_evidence_per_provider():
    claude = ClaudeProvider(max_turns=4)
    good = {"type": "result", "subtype": "success", "is_error": False, "num_turns": 3, "result": "done",
            "usage": {"input_tokens": 10, "output_tokens": 5}}
    assert _parsed(claude, json.dumps(good)).evidence
    assert not _parsed(claude, json.dumps({**good, "usage": {"input_tokens": 10, "output_tokens": 0}})).evidence
    assert not _parsed(claude, "").evidence
    assert not _parsed(claude, "not json").evidence
    capped = _parsed(claude, json.dumps({**good, "subtype": "error_max_turns", "num_turns": 5}))
    assert capped.reason == "max-turns" and capped.turns == 5 and not capped.evidence

    codex = CodexProvider()
    lines = [{"type": "thread.started", "thread_id": "t"}, {"type": "turn.started"},
             {"type": "item.completed", "item": {"type": "agent_message", "text": "All done"}},
             {"type": "turn.completed", "usage": {"input_tokens": 100, "cached_input_tokens": 40, "output_tokens": 7}}]
    ok = _parsed(codex, "\n".join(json.dumps(x) for x in lines))
    assert ok.evidence and ok.usage.total() == 107 and ok.answer == "All done"
    failed = _parsed(codex, "\n".join(json.dumps(x) for x in lines[:2] + [
        {"type": "turn.failed", "error": {"message": "stream disconnected"}}]))
    assert not failed.evidence and failed.is_error and failed.message == "stream disconnected"
    assert not _parsed(codex, "\n".join(json.dumps(x) for x in lines[:3])).evidence  # no turn.completed
    assert not _parsed(codex, "tokens used: 1,234").evidence  # human mode proves nothing

    gemini = GeminiProvider()
    stats = {"models": {"m": {"tokens": {"prompt": 5, "candidates": 3, "total": 8}}}}
    assert _parsed(gemini, json.dumps({"response": "hi", "stats": stats})).evidence
    assert not _parsed(gemini, json.dumps({"response": "", "stats": stats})).evidence
    assert not _parsed(gemini, json.dumps({"response": "x", "stats": stats, "error": {"message": "boom"}})).evidence
    assert _parsed(gemini, json.dumps({"response": "x", "stats": stats}), exit_code=53).reason == "max-turns"


def _execution(conn, task: str, started: str, tokens: int, cost: float | None) -> None:
    history.record_execution(conn, {"run_id": "r", "task": task, "outcome": "completed", "started_at": started,
                                    "total_tokens": tokens, "cost_usd": cost})


def test_budgets_are_checked_against_the_history(tmp_path):
    now = dt.datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
    with closing(history.connect(tmp_path / "h.sqlite3")) as conn:
        _execution(conn, "a", "2025-06-14T23:59:59Z", 5000, 3.0)  # yesterday, this month
        _execution(conn, "a", "2025-06-15T08:00:00Z", 400, 0.4)
        _execution(conn, "b", "2025-06-15T09:00:00Z", 300, None)  # no cost reported
        _execution(conn, "b", "2025-05-31T23:00:00Z", 99999, 99.0)  # last month
        assert budget.check(conn, Budgets(), "a", now) is None
        assert budget.check(conn, Budgets(daily_tokens=701), "a", now) is None
        refusal = budget.check(conn, Budgets(daily_tokens=700), "a", now)
        assert (refusal.scope, refusal.unit, refusal.used, refusal.agent_wide) == ("daily", "tokens", 700, True)
        assert budget.check(conn, Budgets(daily_cost_usd=0.4), "x", now).reason == "budget:daily-cost"
        assert budget.check(conn, Budgets(monthly_tokens=5700), "x", now).scope == "monthly"
        assert budget.check(conn, Budgets(monthly_tokens=5701), "x", now) is None
        task = budget.check(conn, Budgets(task_tokens=5400), "a", now)
        assert (task.scope, task.agent_wide) == ("task", False)
        assert budget.check(conn, Budgets(task_tokens=5400), "c", now) is None


def test_missed_runs_from_the_gap_since_the_previous_run():
    now = dt.datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
    previous = {"run_id": "p", "started_at": "2025-06-15T11:40:00Z", "finished_at": "2025-06-15T11:41:00Z"}
    assert missed.overdue(previous, now, None) is None
    assert missed.overdue(previous, now, 1200) is None  # 19 min gap, 20 min interval: on time
    assert missed.overdue(previous, now, 900) is None  # within 1.5 intervals: jitter or a long run
    found = missed.overdue(previous, now, 300)  # 19 min, every 5 min: the 3 runs between did not happen
    assert (found.missed, found.gap_seconds, found.previous_at) == (3, 1140, "2025-06-15T11:41:00Z")
    assert missed.overdue({"run_id": "p", "started_at": "2025-06-15T11:40:00Z"}, now, 300).missed == 3
    assert missed.overdue(None, now, 300) is None
