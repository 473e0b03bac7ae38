"""Run history in SQLite under the agent's state dir (the embedded default).

One table of runs for every component (task loop, scheduler, notes sync). The schema grows by numbered
migrations recorded in `PRAGMA user_version`; a component that needs more tables adds a migration.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

MIGRATIONS: list[str] = [
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,               -- task-loop | scheduler | notes-sync
        started_at TEXT NOT NULL,         -- ISO 8601 UTC
        finished_at TEXT,
        trigger_at TEXT,                  -- when the timer meant the run to happen
        status TEXT,                      -- success | degraded | error | paused | ...
        exit_code INTEGER,
        duration_seconds REAL,
        tasks_completed INTEGER NOT NULL DEFAULT 0,
        tasks_failed INTEGER NOT NULL DEFAULT 0,
        tasks_blocked INTEGER NOT NULL DEFAULT 0,
        tasks_created INTEGER NOT NULL DEFAULT 0,
        details TEXT NOT NULL DEFAULT '{}' -- JSON: what else the component wants to keep
    );
    CREATE INDEX runs_kind_started ON runs (kind, started_at);
    """,
    # 2: the task loop's executions (one row per provider invocation) and per-task failure counters
    """
    CREATE TABLE task_executions (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        task TEXT NOT NULL,
        source_ref TEXT,
        attempt INTEGER NOT NULL DEFAULT 1,
        provider TEXT,
        model TEXT,
        profile TEXT,
        fallback_used INTEGER NOT NULL DEFAULT 0,
        outcome TEXT NOT NULL,            -- completed | blocked | failed | timeout | model_error | token_budget
        exit_code INTEGER,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        duration_seconds REAL,
        input_tokens INTEGER,
        output_tokens INTEGER,
        total_tokens INTEGER,
        cost_usd REAL,
        pull_requests TEXT NOT NULL DEFAULT '[]',
        issues TEXT NOT NULL DEFAULT '[]',
        log_path TEXT,
        message TEXT
    );
    CREATE INDEX task_executions_task ON task_executions (task, started_at);
    CREATE INDEX task_executions_run ON task_executions (run_id);
    CREATE TABLE task_attempts (
        task TEXT PRIMARY KEY,
        failures INTEGER NOT NULL DEFAULT 0,
        last_failure TEXT,
        updated_at TEXT
    )
    """,
    # 3: why an execution failed (stalled, no-evidence, max-turns, budget), the turns it reported, and what it
    # had to deliver (kept apart from its status: a completed task whose email reply bounced is not fine)
    """
    ALTER TABLE task_executions ADD COLUMN reason TEXT;
    ALTER TABLE task_executions ADD COLUMN turns INTEGER;
    ALTER TABLE task_executions ADD COLUMN deliveries TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE task_executions ADD COLUMN delivery_failed INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX task_executions_started ON task_executions (started_at)
    """,
    # 4: execution modes (the CLI session an execution used, its continuation turn, the tool calls counted in the
    # event stream, the agent's mode) and the event table `keystone-agent watch` reads (ids are the cursor:
    # AUTOINCREMENT never reuses one, and SQLite's single writer commits them in order)
    """
    ALTER TABLE task_executions ADD COLUMN session_id TEXT;
    ALTER TABLE task_executions ADD COLUMN auto_turn INTEGER;
    ALTER TABLE task_executions ADD COLUMN tool_calls INTEGER;
    ALTER TABLE task_executions ADD COLUMN mode TEXT;
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,                 -- ISO 8601 UTC with milliseconds
        run_id TEXT,
        task TEXT,
        type TEXT NOT NULL,               -- the logfmt event name (run_start, task_finish, ...)
        data TEXT NOT NULL DEFAULT '{}'   -- JSON: the event's fields, under their logfmt names
    );
    CREATE INDEX events_type ON events (type, id);
    CREATE INDEX events_at ON events (at)
    """,
]


# Databases found corrupt and moved aside by this process: (the corrupt file's new path, sqlite's message).
# The loop reports them as `history_recreated` events; every caller gets a working database either way.
RECREATED: list[tuple[Path, str]] = []
CORRUPT_MARKERS = ("file is not a database", "database disk image is malformed", "malformed database schema")


def connect(path: Path) -> sqlite3.Connection:
    """Open (and migrate) the history database. A corrupt one is moved aside to
    `history.sqlite3.corrupt-<YYYYmmddTHHMMSSZ>` (with its -wal/-shm) and a new one is created."""
    try:
        return _connect(path)
    except sqlite3.DatabaseError as exc:
        if not any(marker in str(exc) for marker in CORRUPT_MARKERS):
            raise
        aside = _move_aside(path)
        RECREATED.append((aside, str(exc)))
        print(f"warning: {path} was corrupt ({exc}); moved aside to {aside.name}, started a new history",
              file=sys.stderr)
        return _connect(path)


def _move_aside(path: Path) -> Path:
    import datetime as dt

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 2
    while aside.exists():
        aside, n = path.with_name(f"{path.name}.corrupt-{stamp}-{n}"), n + 1
    os.replace(path, aside)
    for suffix in ("-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            os.replace(extra, aside.with_name(aside.name + suffix))
    return aside


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current >= number:  # another process migrated meanwhile
                conn.execute("ROLLBACK")
                continue
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
    return conn


RUN_COLUMNS = (
    "run_id", "kind", "started_at", "finished_at", "trigger_at", "status", "exit_code", "duration_seconds",
    "tasks_completed", "tasks_failed", "tasks_blocked", "tasks_created",
)


def record_run(path: Path, row: dict[str, Any]) -> None:
    """Insert or update one run (keyed by run_id); keys outside RUN_COLUMNS go to `details`."""
    details = {k: v for k, v in row.items() if k not in RUN_COLUMNS}
    values = {k: row[k] for k in RUN_COLUMNS if k in row}
    values["details"] = json.dumps(details, default=str)
    columns = ", ".join(values)
    placeholders = ", ".join(f":{k}" for k in values)
    updates = ", ".join(f"{k}=excluded.{k}" for k in values if k != "run_id")
    with closing(connect(path)) as conn:
        conn.execute(
            f"INSERT INTO runs ({columns}) VALUES ({placeholders}) ON CONFLICT(run_id) DO UPDATE SET {updates}",
            values,
        )


def recent_runs(path: Path, kind: str | None = None, limit: int = 20, status: str | None = None,
                since: str | None = None) -> list[dict[str, Any]]:
    """The newest runs (of one kind, with one status, started at or after `since`: ISO 8601 UTC), newest first."""
    if not path.exists():
        return []
    clause, args = _where(("kind = ?", kind), ("status = ?", status), ("started_at >= ?", since))
    with closing(connect(path)) as conn:
        query = "SELECT * FROM runs" + clause + " ORDER BY started_at DESC, id DESC LIMIT ?"
        rows = conn.execute(query, (*args, limit)).fetchall()
    result = []
    for row in rows:
        item = dict(row)
        item.update(json.loads(item.pop("details") or "{}"))
        result.append(item)
    return result


EXECUTION_COLUMNS = (
    "run_id", "task", "source_ref", "attempt", "provider", "model", "profile", "fallback_used", "outcome",
    "exit_code", "started_at", "finished_at", "duration_seconds", "input_tokens", "output_tokens", "total_tokens",
    "cost_usd", "pull_requests", "issues", "log_path", "message", "reason", "turns", "deliveries", "delivery_failed",
    "session_id", "auto_turn", "tool_calls", "mode",
)


def record_execution(conn: sqlite3.Connection, row: dict[str, Any]) -> None:
    """One provider invocation of one task (lists are stored as JSON)."""
    values = {k: row.get(k) for k in EXECUTION_COLUMNS}
    for key in ("pull_requests", "issues", "deliveries"):
        values[key] = json.dumps(list(values[key] or []))
    values["fallback_used"] = 1 if values["fallback_used"] else 0
    values["delivery_failed"] = 1 if values["delivery_failed"] else 0
    values["attempt"] = values["attempt"] or 1
    columns = ", ".join(values)
    conn.execute(
        f"INSERT INTO task_executions ({columns}) VALUES ({', '.join(':' + k for k in values)})", values
    )


def _where(*conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """` WHERE a AND b` of the conditions whose value is given, and their arguments."""
    given = [(sql, value) for sql, value in conditions if value]
    clause = " WHERE " + " AND ".join(sql for sql, _ in given) if given else ""
    return clause, [value for _, value in given]


def executions(path: Path, task: str | None = None, run_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    clause, args = _where(("task = ?", task), ("run_id = ?", run_id))
    query = "SELECT * FROM task_executions" + clause
    query += " ORDER BY started_at DESC, id DESC LIMIT ?"
    with closing(connect(path)) as conn:
        rows = conn.execute(query, (*args, limit)).fetchall()
    result = []
    for row in rows:
        item = dict(row)
        for key in ("pull_requests", "issues", "deliveries"):
            item[key] = json.loads(item[key] or "[]")
        item["fallback_used"] = bool(item["fallback_used"])
        item["delivery_failed"] = bool(item["delivery_failed"])
        result.append(item)
    return result


def latest_runtimes(path: Path) -> dict[str, tuple[str | None, str | None]]:
    """{task: (provider, model)} of each task's newest execution: what it effectively ran with."""
    if not path.exists():
        return {}
    with closing(connect(path)) as conn:
        rows = conn.execute("SELECT task, provider, model FROM task_executions WHERE id IN "
                            "(SELECT MAX(id) FROM task_executions GROUP BY task)").fetchall()
    return {row["task"]: (row["provider"], row["model"]) for row in rows}


def failures(conn: sqlite3.Connection, task: str) -> int:
    row = conn.execute("SELECT failures FROM task_attempts WHERE task = ?", (task,)).fetchone()
    return int(row[0]) if row else 0


def add_failure(conn: sqlite3.Connection, task: str, reason: str, now: str) -> int:
    conn.execute(
        "INSERT INTO task_attempts (task, failures, last_failure, updated_at) VALUES (?, 1, ?, ?) "
        "ON CONFLICT(task) DO UPDATE SET failures = failures + 1, last_failure = excluded.last_failure, "
        "updated_at = excluded.updated_at",
        (task, reason, now),
    )
    return failures(conn, task)


def reset_failures(conn: sqlite3.Connection, task: str) -> None:
    conn.execute("DELETE FROM task_attempts WHERE task = ?", (task,))


def spend(conn: sqlite3.Connection, since: str | None = None, task: str | None = None) -> tuple[int, float]:
    """(tokens, reported dollars) of the task executions started at or after `since` (ISO 8601 UTC, the
    format the rows use), of one task or all."""
    clause, args = _where(("started_at >= ?", since), ("task = ?", task))
    query = "SELECT COALESCE(SUM(total_tokens), 0), COALESCE(SUM(cost_usd), 0.0) FROM task_executions"
    row = conn.execute(query + clause, args).fetchone()
    return int(row[0]), float(row[1])


def previous_run(conn: sqlite3.Connection, kind: str, exclude_run_id: str | None = None) -> dict[str, Any] | None:
    """The newest recorded run of `kind` (other than `exclude_run_id`): run_id, started_at, finished_at, trigger_at."""
    row = conn.execute(
        "SELECT run_id, started_at, finished_at, trigger_at FROM runs WHERE kind = ? AND run_id != ? "
        "ORDER BY started_at DESC, id DESC LIMIT 1", (kind, exclude_run_id or "")).fetchone()
    return dict(row) if row else None


def prune_events(conn: sqlite3.Connection, before: str) -> int:
    """Delete events older than `before` (ISO 8601 UTC); ids are never reused, so readers' cursors stay valid."""
    return conn.execute("DELETE FROM events WHERE at < ?", (before,)).rowcount
