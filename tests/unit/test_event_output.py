"""The event renderers: logfmt round-trips through parse_logfmt; human lines are short; verbosity filters."""

from __future__ import annotations

import io

from keystone_agents import events


def test_logfmt_round_trips_awkward_values():
    event = {"ts": "2026-11-30T10:00:00.000Z", "event": "log", "msg": 'a "quoted"\nline\twith \\ tabs',
             "task_name": "x", "count": 3, "flag": True, "items": ["a", "b"]}
    line = events.render_logfmt(None, "info", event)
    back = events.parse_logfmt(line)
    assert back["msg"] == event["msg"]
    assert back["count"] == "3" and back["flag"] == "true" and back["items"] == '["a","b"]'
    assert list(back)[:3] == ["ts", "event", "msg"]


def test_human_line_has_time_step_task_outcome_duration_message():
    line = events.render_human({"ts": "2026-11-30T10:00:00.000Z", "event": "task_finish", "step": "execute",
                                "task_name": "fix-login", "status": "completed", "outcome": "completed",
                                "duration_seconds": 75.2, "msg": "Finished task fix-login: completed"})
    assert line.endswith("execute     fix-login  completed  1m15s  Finished task fix-login: completed")


def test_summary_of_a_run_finish():
    text = events.summary_text({"status": "degraded", "tasks_created": 2, "tasks_executed": 3, "tasks_completed": 1,
                                "tasks_failed": 1, "tasks_blocked": 1, "token_total": 1200, "cost_usd": 0.25,
                                "duration_seconds": 12.04})
    assert text == ("degraded: created 2, executed 3, completed 1, failed 1, blocked 1, tokens 1200, cost $0.2500, "
                    "12.0s")


def test_quiet_and_verbose_filter_the_stream_but_not_the_run_log(tmp_path):
    for verbosity, expected in ((events.QUIET, ["warn", "run_finish"]),
                                (events.NORMAL, ["info", "warn", "run_finish"]),
                                (events.VERBOSE, ["dbg", "info", "warn", "run_finish"])):
        stream, log_file = io.StringIO(), tmp_path / f"run-{verbosity}.log"
        log = events.event_logger(agent="a", unit="u", run_id="r", stream=stream, log_file=log_file,
                                  fmt="logfmt", verbosity=verbosity)
        log.debug("dbg", msg="debug")
        log.info("info", msg="info")
        log.warning("warn", msg="warning")
        log.info("run_finish", msg="done", status="success")
        shown = [events.parse_logfmt(line)["event"] for line in stream.getvalue().splitlines()]
        assert shown == expected
        assert [events.parse_logfmt(line)["event"] for line in log_file.read_text().splitlines()] == \
            ["dbg", "info", "warn", "run_finish"]


def test_a_stringio_is_not_a_terminal_so_logfmt_is_the_default(monkeypatch):
    monkeypatch.delenv(events.FORMAT_ENV, raising=False)
    stream = io.StringIO()
    log = events.event_logger(agent="a", unit="u", run_id="r", stream=stream)
    log.info("run_start", msg="hello")
    assert stream.getvalue().startswith('ts="')
    log.heartbeat("t", 61, 10)  # nobody watches: no heartbeat
    assert stream.getvalue().count("\n") == 1
