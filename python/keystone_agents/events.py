"""logfmt events, through structlog, to stderr (the journal, then Loki) and to the run log.

Every line is logfmt with every value double-quoted (`\\`, `\"`, `\n`, `\r`, `\t` escaped), so a real
logfmt parser (Loki's `| logfmt`) reads it whatever the value holds. Field order is stable:
ts, event, msg, host, agent, unit, run_id, step, task_name, then the event's own fields.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import sqlite3
import sys
from pathlib import Path
from typing import Any, TextIO

import structlog

LEADING_FIELDS = ("ts", "event", "msg", "host", "agent", "unit", "run_id", "step", "task_name")


def quote(value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (list, dict)):
        text = json.dumps(value, separators=(",", ":"), default=str)
    elif isinstance(value, float):
        text = f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    else:
        text = str(value)
    text = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    return f'"{text}"'


def render_logfmt(_logger: Any, _method: str, event_dict: dict) -> str:
    keys = [k for k in LEADING_FIELDS if k in event_dict] + [k for k in event_dict if k not in LEADING_FIELDS]
    return " ".join(f"{key}={quote(event_dict[key])}" for key in keys if event_dict[key] is not None)


def _timestamp(_logger: Any, _method: str, event_dict: dict) -> dict:
    event_dict.setdefault("ts", dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    return event_dict


class TeeLogger:
    """structlog's final logger: one line to a stream and, when given, appended to a log file."""

    def __init__(self, stream: TextIO | None = None, log_file: Path | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.log_file = log_file
        self.lines: list[str] = []  # what this logger emitted (tests and summaries read it)
        self._handle = None

    def msg(self, message: str) -> None:
        self.lines.append(message)
        try:
            self.stream.write(message + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed stderr must not stop the run; the run log still has the line
        if self.log_file is not None:
            if self._handle is None:  # opened once: a run can emit thousands of lines
                self._handle = open(self.log_file, "a", encoding="utf-8", buffering=1)
            self._handle.write(message + "\n")

    info = debug = warning = error = critical = msg


class EventTable:
    """A structlog processor that also writes every event to the `events` table of the agent's history
    database (what `keystone-agent watch` reads), under the same name and field names as the logfmt line.
    A database problem never stops the run: the logfmt line is still emitted."""

    def __init__(self, path: Path):
        self.path = path
        self.conn: sqlite3.Connection | None = None
        self.failed = False

    def __call__(self, _logger: Any, _method: str, event_dict: dict) -> dict:
        if self.failed:
            return event_dict
        try:
            if self.conn is None:
                from keystone_agents import history

                self.conn = history.connect(self.path)
                # WAL + NORMAL: a commit is not an fsync (a power cut may lose the newest events, never
                # corrupt the file); 2 ms → ~0.05 ms per event on this machine (benchmarks/modes_benchmark.py)
                self.conn.execute("PRAGMA synchronous=NORMAL")
            data = {k: v for k, v in event_dict.items() if k not in ("ts", "event") and v is not None}
            self.conn.execute(
                "INSERT INTO events (at, run_id, task, type, data) VALUES (?, ?, ?, ?, ?)",
                (event_dict.get("ts"), event_dict.get("run_id") or None, event_dict.get("task_name") or None,
                 str(event_dict.get("event")), json.dumps(data, default=str, separators=(",", ":"))))
        except (sqlite3.Error, OSError) as exc:
            self.failed = True
            try:
                sys.stderr.write(f"warning: events are not recorded in {self.path}: {exc}\n")
            except (OSError, ValueError):
                pass
        return event_dict

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def hostname() -> str:
    return socket.gethostname().split(".")[0]


def event_logger(
    *, agent: str, unit: str, run_id: str, log_file: Path | None = None, stream: TextIO | None = None,
    event_db: Path | None = None, **fields: Any
) -> structlog.BoundLogger:
    """A bound logger: `log.info("run_start", msg="…", status="started")` emits one logfmt line (and, with
    `event_db`, one row of that database's event table)."""
    processors = [_timestamp] + ([EventTable(event_db)] if event_db is not None else []) + [render_logfmt]
    return structlog.wrap_logger(
        TeeLogger(stream, log_file),
        processors=processors,
        context_class=dict,
        cache_logger_on_first_use=False,
    ).bind(host=hostname(), agent=agent, unit=unit, run_id=run_id, **fields)
