"""Run history in SQLite under the agent's state dir (the embedded default).

One table of runs for every component (task loop, scheduler, notes sync). The schema grows by numbered
migrations recorded in `PRAGMA user_version`; a component that needs more tables adds a migration.
"""

from __future__ import annotations

import json
import sqlite3
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
]


def connect(path: Path) -> sqlite3.Connection:
    """Open (and migrate) the history database."""
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


def recent_runs(path: Path, kind: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with closing(connect(path)) as conn:
        query = "SELECT * FROM runs" + (" WHERE kind = ?" if kind else "") + " ORDER BY started_at DESC, id DESC LIMIT ?"
        rows = conn.execute(query, ((kind,) if kind else ()) + (limit,)).fetchall()
    result = []
    for row in rows:
        item = dict(row)
        item.update(json.loads(item.pop("details") or "{}"))
        result.append(item)
    return result
