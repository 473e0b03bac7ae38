"""Events: logfmt for the journal (then Loki) and the run log, a short line for a person at a terminal.

Every event is one dict (`ts`, `event`, `msg`, `host`, `agent`, `unit`, `run_id`, `step`, `task_name`, then the
event's own fields). It is written

* to the run log (when there is one) always as logfmt — `logs --json` reads it back;
* to the stream (stderr) in the output format: `human` when the stream is a terminal, `logfmt` otherwise,
  overridden by `--log-format human|logfmt|json` (or `$KEYSTONE_AGENT_LOG_FORMAT`).

logfmt lines quote every value (`\\`, `\"`, `\n`, `\r`, `\t` escaped), so a real logfmt parser (Loki's
`| logfmt`) reads it whatever the value holds. Field order is stable: LEADING_FIELDS, then the event's own.

The logger has structlog's calling convention (`log.info("run_start", msg="…", status="started")`, `bind`,
`debug|info|warning|error`) and the same processor shape (`processor(logger, method, event_dict)`), but is not
structlog: importing structlog pulls in asyncio, about a fifth of the five-minute tick's cost
(docs/performance.md).

Verbosity (`-q`/`-v`): quiet prints only problems (warnings, errors, failed/blocked outcomes) and the run's
summary (`run_finish`); normal adds every other info event (for a person, `stage_start` lines are left to
`-v`, the matching `stage_finish` says the same); verbose adds debug events. The run log keeps every event.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import sqlite3
import sys
from pathlib import Path
from typing import Any, Callable, TextIO

LEADING_FIELDS = ("ts", "event", "msg", "host", "agent", "unit", "run_id", "step", "task_name")
FORMATS = ("human", "logfmt", "json")
FORMAT_ENV = "KEYSTONE_AGENT_LOG_FORMAT"
VERBOSITY_ENV = "KEYSTONE_AGENT_VERBOSITY"
HEARTBEAT_ENV = "KEYSTONE_AGENT_HEARTBEAT_SECONDS"
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
PROBLEM_STATUSES = frozenset({"error", "failed", "degraded", "blocked", "timeout", "stalled", "overdue"})
QUIET, NORMAL, VERBOSE = -1, 0, 1

_settings: dict[str, Any] = {"format": None, "verbosity": None}


def configure(fmt: str | None = None, verbosity: int | None = None) -> None:
    """What the CLI's --log-format, -q and -v chose, for every logger created afterwards in this process."""
    _settings["format"] = fmt
    _settings["verbosity"] = verbosity


def chosen_format(stream: TextIO) -> str:
    fmt = _settings["format"] or os.environ.get(FORMAT_ENV) or ""
    if fmt in FORMATS:
        return fmt
    return "human" if _isatty(stream) else "logfmt"


def chosen_verbosity() -> int:
    if _settings["verbosity"] is not None:
        return _settings["verbosity"]
    try:
        return int(os.environ.get(VERBOSITY_ENV) or 0)
    except ValueError:
        return NORMAL


def heartbeat_interval() -> float:
    try:
        return max(0.1, float(os.environ.get(HEARTBEAT_ENV) or 60))
    except ValueError:
        return 60.0


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def use_colour(stream: TextIO) -> bool:
    return _isatty(stream) and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


# ---------------------------------------------------------------- renderers


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


def ordered(event_dict: dict) -> list[str]:
    return [k for k in LEADING_FIELDS if k in event_dict] + [k for k in event_dict if k not in LEADING_FIELDS]


def render_logfmt(_logger: Any, _method: str, event_dict: dict) -> str:
    return " ".join(f"{key}={quote(event_dict[key])}" for key in ordered(event_dict) if event_dict[key] is not None)


def render_json(_logger: Any, _method: str, event_dict: dict) -> str:
    return json.dumps({k: event_dict[k] for k in ordered(event_dict) if event_dict[k] is not None}, default=str)


_LOGFMT_PAIR = re.compile(r'([A-Za-z0-9_.\-]+)=(?:"((?:[^"\\]|\\.)*)"|(\S*))')
_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def parse_logfmt(line: str) -> dict[str, str]:
    """One logfmt line (as `render_logfmt` writes it) back into its fields; values stay strings."""
    fields: dict[str, str] = {}
    for match in _LOGFMT_PAIR.finditer(line):
        key, quoted, bare = match.groups()
        if quoted is not None:
            fields[key] = re.sub(r"\\(.)", lambda m: _UNESCAPE.get(m.group(1), m.group(1)), quoted)
        else:
            fields[key] = bare or ""
    return fields


_COLOURS = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "dim": "2", "bold": "1"}
_STATUS_COLOUR = {
    "ok": "green", "success": "green", "completed": "green", "started": "blue", "skipped": "dim",
    "paused": "yellow", "degraded": "yellow", "blocked": "yellow", "pending": "yellow", "dry_run": "blue",
    "error": "red", "failed": "red", "timeout": "red", "stalled": "red", "overdue": "yellow",
}


def _paint(text: str, colour: str | None, on: bool) -> str:
    if not on or not colour or not text:
        return text
    return f"\x1b[{_COLOURS[colour]}m{text}\x1b[0m"


def _seconds(value: Any) -> str:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _local_time(ts: Any) -> str:
    try:
        return dt.datetime.fromisoformat(str(ts).replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return str(ts)[:8]


SUMMARY_COUNTERS = (
    ("tasks_created", "created"), ("tasks_executed", "executed"), ("tasks_completed", "completed"),
    ("tasks_failed", "failed"), ("tasks_blocked", "blocked"), ("tasks_recovered", "recovered"),
    ("sources_failed", "sources failed"), ("token_total", "tokens"),
)


def summary_text(event_dict: dict) -> str:
    """The run's one summary line: status, then its counters, tokens, cost and duration."""
    parts = []
    for key, label in SUMMARY_COUNTERS:
        value = event_dict.get(key)
        if value is None or (key in ("tasks_recovered", "sources_failed") and not value):
            continue
        parts.append(f"{label} {value}")
    if event_dict.get("cost_usd") is not None:
        parts.append(f"cost ${float(event_dict['cost_usd']):.4f}")
    if event_dict.get("duration_seconds") is not None:
        parts.append(_seconds(event_dict["duration_seconds"]))
    status = event_dict.get("status") or ""
    extra = " (dry run)" if event_dict.get("dry_run") else ""
    return f"{status}{extra}: " + ", ".join(parts) if parts else f"{status}{extra}: {event_dict.get('msg', '')}"


def render_human(event_dict: dict, colour: bool = False) -> str:
    """`HH:MM:SS step  task  outcome  duration  message` — one short line for a person."""
    stamp = _paint(_local_time(event_dict.get("ts", "")), "dim", colour)
    event = event_dict.get("event", "")
    if event == "run_finish":
        status = str(event_dict.get("status") or "")
        text = summary_text(event_dict)
        return f"{stamp} {_paint('summary', 'bold', colour)}  " + _paint(text, _STATUS_COLOUR.get(status), colour)
    if event == "task_heartbeat":
        return (f"{stamp} {'running':<10} {event_dict.get('task_name', '')}  still running after "
                f"{_seconds(event_dict.get('elapsed_seconds'))}, {event_dict.get('output_bytes', 0)} bytes of output")
    step = str(event_dict.get("step") or event_dict.get("stage_name") or "")
    cells = [stamp, f"{step:<10}"]
    if event_dict.get("task_name"):
        cells.append(str(event_dict["task_name"]))
    outcome = str(event_dict.get("outcome") or event_dict.get("status") or "")
    level = event_dict.get("level")
    if level in ("warning", "error", "critical") and not outcome:
        outcome = level
    if outcome:
        cells.append(_paint(outcome, _STATUS_COLOUR.get(outcome, "red" if level == "error" else None), colour))
    if event_dict.get("duration_seconds") is not None and event not in ("run_start",):
        cells.append(_seconds(event_dict["duration_seconds"]))
    message = " ".join(str(event_dict.get("msg") or event).split())
    if len(message) > 160:
        message = message[:159] + "…"
    cells.append(message)
    return cells[0] + " " + "  ".join(cells[1:])


# ---------------------------------------------------------------- the logger


def _timestamp(_logger: Any, _method: str, event_dict: dict) -> dict:
    event_dict.setdefault("ts", dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    return event_dict


class TeeLogger:
    """The sink: one line to a stream (in the chosen format, filtered by verbosity) and every line, as logfmt,
    appended to a log file when given."""

    def __init__(self, stream: TextIO | None = None, log_file: Path | None = None, fmt: str | None = None,
                 verbosity: int | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.log_file = log_file
        self.format = fmt or chosen_format(self.stream)
        self.verbosity = chosen_verbosity() if verbosity is None else verbosity
        self.colour = self.format == "human" and use_colour(self.stream)
        self.interactive = _isatty(self.stream)
        self.lines: list[str] = []  # the logfmt lines this logger emitted (tests and summaries read them)
        self._handle = None

    def shown(self, method: str, event_dict: dict) -> bool:
        level = LEVELS.get(method, 20)
        event = event_dict.get("event")
        if event == "run_finish":
            return True
        problem = level >= 30 or str(event_dict.get("status")) in PROBLEM_STATUSES \
            or str(event_dict.get("outcome")) in PROBLEM_STATUSES
        if self.verbosity <= QUIET:
            return problem
        if level < 20:
            return self.verbosity >= VERBOSE
        if self.format == "human" and event == "stage_start":
            return self.verbosity >= VERBOSE
        return True

    def emit(self, method: str, event_dict: dict) -> None:
        line = render_logfmt(None, method, event_dict)
        self.lines.append(line)
        if self.shown(method, event_dict):
            if self.format == "human":
                out = render_human({**event_dict, "level": method}, self.colour)
            elif self.format == "json":
                out = render_json(None, method, event_dict)
            else:
                out = line
            self.write_stream(out)
        if self.log_file is not None:
            try:
                if self._handle is None:  # opened once: a run can emit thousands of lines
                    self._handle = open(self.log_file, "a", encoding="utf-8", buffering=1)
                self._handle.write(line + "\n")
            except OSError as exc:  # a full disk or a lost directory: stderr (the journal) still has every line
                self.log_file = None
                self.write_stream(f"warning: cannot write the run log any more: {exc.strerror or exc}")

    def write_stream(self, text: str) -> None:
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed stderr must not stop the run; the run log still has the line


class EventLogger:
    """A bound logger: `log.info("run_start", msg="…", status="started")` emits one event."""

    def __init__(self, sink: TeeLogger, context: dict[str, Any],
                 processors: tuple[Callable[[Any, str, dict], dict], ...] = (_timestamp,)):
        self._sink, self._context, self._processors = sink, context, processors

    @property
    def sink(self) -> TeeLogger:
        return self._sink

    def bind(self, **fields: Any) -> "EventLogger":
        return EventLogger(self._sink, {**self._context, **fields}, self._processors)

    def _log(self, method: str, event: str, fields: dict[str, Any]) -> None:
        event_dict = {**self._context, **fields, "event": event}
        for processor in self._processors:
            event_dict = processor(self._sink, method, event_dict)
        self._sink.emit(method, event_dict)

    def debug(self, event: str, **fields: Any) -> None:
        self._log("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log("error", event, fields)

    def critical(self, event: str, **fields: Any) -> None:
        self._log("critical", event, fields)

    msg = info

    @property
    def interactive(self) -> bool:
        """Whether a person watches the stream (a terminal): heartbeats are for them only."""
        return self._sink.interactive and self._sink.verbosity > QUIET

    def heartbeat(self, task_name: str, elapsed_seconds: float, output_bytes: int) -> None:
        """A still-running line for the person at the terminal; never in the journal or the run log."""
        if not self.interactive:
            return
        event_dict = _timestamp(None, "info", {**self._context, "event": "task_heartbeat", "task_name": task_name,
                                               "elapsed_seconds": round(elapsed_seconds), "output_bytes": output_bytes})
        if self._sink.format == "human":
            self._sink.write_stream(render_human(event_dict, self._sink.colour))
        elif self._sink.format == "json":
            self._sink.write_stream(render_json(None, "info", event_dict))
        else:
            self._sink.write_stream(render_logfmt(None, "info", event_dict))


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


class BusEvents:
    """A structlog processor that also appends every event to the coordination bus's event table (PostgreSQL
    backend: keystone.events, sql/005), for `agentctl watch --all` across hosts. Connected on the first event;
    a bus that cannot be reached is one warning, and the run goes on (the local table and logfmt still have
    every event)."""

    def __init__(self, settings):
        self.settings = settings
        self.bus = None
        self.failed = False

    def __call__(self, _logger: Any, _method: str, event_dict: dict) -> dict:
        if self.failed:
            return event_dict
        try:
            if self.bus is None:
                from keystone_agents.coordination.postgres import PgBus

                pg = self.settings.postgresql
                self.bus = PgBus.connect(pg.host, pg.port, pg.database)
            data = {k: v for k, v in event_dict.items()
                    if k not in ("ts", "event", "host", "agent") and v is not None}
            self.bus.event_append(event_dict.get("host"), event_dict.get("ts"), event_dict.get("run_id") or None,
                                  event_dict.get("task_name") or None, str(event_dict.get("event")),
                                  json.loads(json.dumps(data, default=str)))
        except Exception as exc:  # noqa: BLE001 - a bus problem (or a missing psycopg) never stops the run
            self.failed = True
            self.close()
            try:
                sys.stderr.write(f"warning: events are not recorded on the coordination bus: "
                                 f"{getattr(exc, 'message', None) or exc}\n")
            except (OSError, ValueError):
                pass
        return event_dict

    def close(self) -> None:
        if self.bus is not None:
            self.bus.close()
            self.bus = None


def hostname() -> str:
    return socket.gethostname().split(".")[0]


def event_logger(
    *, agent: str, unit: str, run_id: str, log_file: Path | None = None, stream: TextIO | None = None,
    fmt: str | None = None, verbosity: int | None = None, event_db: Path | None = None, event_bus: Any = None,
    **fields: Any
) -> EventLogger:
    """A bound logger for one run: host, agent, unit and run_id on every event (and, with `event_db`, every event
    also a row of that database's event table, what `keystone-agent watch` reads; with `event_bus`, the
    agent's CoordinationSettings, also a row of the PostgreSQL bus's fleet event table)."""
    sink = TeeLogger(stream, log_file, fmt, verbosity)
    processors = (_timestamp,) + ((EventTable(event_db),) if event_db is not None else ())
    if event_bus is not None and getattr(event_bus, "backend", None) == "postgresql":
        processors += (BusEvents(event_bus),)
    return EventLogger(sink, {"host": hostname(), "agent": agent, "unit": unit, "run_id": run_id, **fields},
                       processors)
