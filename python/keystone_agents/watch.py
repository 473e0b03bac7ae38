"""The agent's event stream as NDJSON: rows of the `events` table of its history database, oldest first,
one JSON object per line: {"v": 1, "id", "ts", "agent", "event", …the event's fields under their logfmt
names}. The id is the cursor: SQLite assigns and commits ids under its single write lock, so reading
`id > last` never skips a row another writer commits later (gap-free across concurrent writers).

The PostgreSQL backend's fleet table (bus migration 005, keystone.events) holds the same events of every
agent of every host; `read_bus` reads it for `agentctl watch --all`.

`--journal` merges the agent's unit output from `journalctl --user -o json` as
{"v": 1, "source": "journal", "ts", "agent", "unit", "message", "cursor"}.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

VERSION = 1
BATCH = 500


@dataclass
class Cursor:
    after_id: int = 0
    since_time: str | None = None  # ISO 8601: the first event at or after it
    types: list[str] = field(default_factory=list)


def parse_since(value: str | None) -> Cursor:
    """`--since ID` (events after that id) or `--since TIME` (ISO 8601, events at or after it)."""
    if value is None or value == "":
        return Cursor()
    if value.isdigit():
        return Cursor(after_id=int(value))
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since must be an event id or an ISO 8601 time, not {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    stamp = moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Cursor(since_time=stamp)


def line(row: sqlite3.Row, agent: str) -> dict:
    data = json.loads(row["data"] or "{}")
    return {"v": VERSION, "id": row["id"], "ts": row["at"], "agent": data.pop("agent", agent), "event": row["type"],
            **data}


def _open(path: Path) -> sqlite3.Connection | None:
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("SELECT 1 FROM events LIMIT 1")
    except sqlite3.OperationalError:  # an older database: no event table yet
        conn.close()
        return None
    return conn


def read(path: Path, agent: str, cursor: Cursor, follow: bool = False, interval: float = 0.2,
         stop: Callable[[], bool] = lambda: False) -> Iterator[dict]:
    """Events after the cursor; with `follow`, keep waiting for new ones until `stop()`."""
    conn = None
    try:
        while True:
            if conn is None:
                conn = _open(path)
            if conn is not None:
                if cursor.since_time is not None:
                    row = conn.execute("SELECT COALESCE(MIN(id), 0) - 1 FROM events WHERE at >= ?",
                                       (cursor.since_time,)).fetchone()
                    first = row[0]
                    if first < 0:  # nothing that new yet: start after the newest
                        first = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
                    cursor.after_id, cursor.since_time = max(first, 0), None
                query = "SELECT * FROM events WHERE id > ?"
                args: list = [cursor.after_id]
                if cursor.types:
                    query += f" AND type IN ({', '.join('?' for _ in cursor.types)})"
                    args += cursor.types
                rows = conn.execute(query + " ORDER BY id LIMIT ?", (*args, BATCH)).fetchall()
                for row in rows:
                    cursor.after_id = row["id"]
                    yield line(row, agent)
                if len(rows) == BATCH:
                    continue
            if not follow or stop():
                return
            time.sleep(interval)
    finally:
        if conn is not None:
            conn.close()


def bus_line(row: dict) -> dict:
    """A row of the PostgreSQL bus's event table (sql/005) as the same NDJSON line, with its host."""
    data = dict(row.get("data") or {})
    return {"v": VERSION, "id": row["id"], "ts": row["ts"], "host": row.get("host") or None, "agent": row["agent"],
            "event": row["event"], **data}


def read_bus(bus, cursor: Cursor, agents: list[str] | None = None, follow: bool = False, wait: float = 2.0,
             stop: Callable[[], bool] = lambda: False) -> Iterator[dict]:
    """Events of the bus's fleet table after the cursor (gap-free: see sql/005); with `follow`, keep waiting
    (LISTEN keystone_events, re-read at least every `wait` seconds) until `stop()`."""
    if cursor.since_time is not None:
        cursor.after_id, cursor.since_time = bus.events_cursor(cursor.since_time), None
    while True:
        rows = bus.events_after(cursor.after_id, agents, cursor.types, BATCH, wait if follow else 0.0)
        for row in rows:
            cursor.after_id = row["id"]
            yield bus_line(row)
        if len(rows) == BATCH:
            continue
        if not follow or stop():
            return


def journal_lines(agent: str, follow: bool, emit: Callable[[dict], None], argv_prefix: list[str] | None = None
                  ) -> subprocess.Popen | None:
    """Start `journalctl --user -u 'agent-<agent>-*' -o json [--follow]`; every entry goes to `emit` (from a
    thread). → the process (None when journalctl is missing)."""
    argv = (argv_prefix or ["journalctl", "--user"]) + ["-u", f"agent-{agent}-*", "-o", "json", "--no-pager"]
    if follow:
        argv.append("--follow")
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                text=True)
    except OSError:
        return None

    def pump() -> None:
        for raw in proc.stdout:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            micros = entry.get("__REALTIME_TIMESTAMP")
            ts = (dt.datetime.fromtimestamp(int(micros) / 1e6, dt.timezone.utc).isoformat(timespec="milliseconds")
                  .replace("+00:00", "Z") if str(micros or "").isdigit() else None)
            emit({"v": VERSION, "source": "journal", "ts": ts, "agent": agent,
                  "unit": entry.get("_SYSTEMD_USER_UNIT") or entry.get("SYSLOG_IDENTIFIER"),
                  "message": entry.get("MESSAGE"), "cursor": entry.get("__CURSOR")})

    threading.Thread(target=pump, daemon=True).start()
    return proc
