"""An agent's private state: `keystone-agent state …`, in its own SQLite file under its state dir.

The file (<state dir>/private-state.sqlite3, with its -wal/-shm) is created 0600 in the agent's own state
dir: no other agent can open it, and no bus is needed. Each write is one `BEGIN IMMEDIATE` transaction, so
concurrent writers of the same agent are serialized and `expected_version` is exact. The last HISTORY_KEEP
versions of each key are kept (deletes are versions too).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from keystone_agents.kv.model import (
    HISTORY_KEEP, VALUE_MAX_BYTES, Entry, NoSuchKey, Version, VersionConflict, check_expected, check_key,
    value_text,
)

FILE_NAME = "private-state.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 1),
    owner_agent TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS state_history (
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    value TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    owner_agent TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (key, version)
);
"""


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class PrivateState:
    def __init__(self, path: Path, owner: str, max_value_bytes: int = VALUE_MAX_BYTES):
        self.path, self.owner, self.max_value_bytes = Path(path), owner, max_value_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        old = os.umask(0o077)  # the -wal and -shm files take the database file's mode; all 0600
        try:
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            os.chmod(self.path, 0o600)
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.conn.executescript(SCHEMA)
        finally:
            os.umask(old)

    @classmethod
    def for_space(cls, space, owner: str) -> "PrivateState":
        return cls(space.state_dir / FILE_NAME, owner)

    def close(self) -> None:
        self.conn.close()

    def _tx(self):
        return _Tx(self.conn)

    def get(self, key: str) -> Entry:
        row = self.conn.execute("SELECT key, value, version, owner_agent, updated_at FROM state WHERE key = ?",
                                (check_key(key),)).fetchone()
        if row is None:
            raise NoSuchKey(key)
        return Entry(row[0], json.loads(row[1]), row[2], row[3], row[4])

    def set(self, key: str, value: Any, expected_version: int) -> int:
        key, expected = check_key(key), check_expected(expected_version)
        text = value_text(value, self.max_value_bytes)
        at = now_iso()
        with self._tx():
            row = self.conn.execute("SELECT version FROM state WHERE key = ?", (key,)).fetchone()
            current = row[0] if row else 0
            if current != expected:
                raise VersionConflict(key, current)
            if row is None:
                last = self.conn.execute("SELECT max(version) FROM state_history WHERE key = ?", (key,)).fetchone()[0]
                version = (last or 0) + 1  # a re-created key continues its history
                self.conn.execute("INSERT INTO state (key, value, version, owner_agent, created_at, updated_at)"
                                  " VALUES (?, ?, ?, ?, ?, ?)", (key, text, version, self.owner, at, at))
            else:
                version = current + 1
                self.conn.execute("UPDATE state SET value = ?, version = ?, owner_agent = ?, updated_at = ?"
                                  " WHERE key = ?", (text, version, self.owner, at, key))
            self._record(key, version, text, False, at)
        return version

    def delete(self, key: str, expected_version: int) -> int:
        key, expected = check_key(key), check_expected(expected_version)
        at = now_iso()
        with self._tx():
            row = self.conn.execute("SELECT version FROM state WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise NoSuchKey(key)
            if row[0] != expected:
                raise VersionConflict(key, row[0])
            self.conn.execute("DELETE FROM state WHERE key = ?", (key,))
            self._record(key, row[0] + 1, None, True, at)
        return row[0] + 1

    def _record(self, key: str, version: int, text: str | None, deleted: bool, at: str) -> None:
        self.conn.execute("INSERT INTO state_history (key, version, value, deleted, owner_agent, at)"
                          " VALUES (?, ?, ?, ?, ?, ?)", (key, version, text, int(deleted), self.owner, at))
        self.conn.execute("DELETE FROM state_history WHERE key = ? AND version <= ?", (key, version - HISTORY_KEEP))

    def list(self, prefix: str = "") -> list[Entry]:
        rows = self.conn.execute(
            "SELECT key, value, version, owner_agent, updated_at FROM state WHERE substr(key, 1, ?) = ?"
            " ORDER BY key", (len(prefix), prefix)).fetchall()
        return [Entry(r[0], json.loads(r[1]), r[2], r[3], r[4]) for r in rows]

    def history(self, key: str) -> list[Version]:
        rows = self.conn.execute("SELECT key, version, value, deleted, owner_agent, at FROM state_history"
                                 " WHERE key = ? ORDER BY version", (check_key(key),)).fetchall()
        if not rows:
            raise NoSuchKey(key)
        return [Version(r[0], r[1], json.loads(r[2]) if r[2] is not None else None, bool(r[3]), r[4], r[5])
                for r in rows]


class _Tx:
    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb):
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        return False
