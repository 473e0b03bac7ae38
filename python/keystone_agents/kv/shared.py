"""Shared state over the coordination bus, with the same shapes and errors as private state."""

from __future__ import annotations

from typing import Any

from keystone_agents.coordination.base import BusError
from keystone_agents.kv.model import ERRORS, Entry, NoSuchKey, Version, VersionConflict, check_key


def _raise(exc: BusError):
    cls = ERRORS.get(exc.code)
    if cls is not None and not isinstance(exc, cls):
        if cls is NoSuchKey:
            raise NoSuchKey(str(exc.detail.get("key", ""))) from None
        raise cls(exc.message, **exc.detail) from None
    raise exc


class SharedState:
    def __init__(self, bus):
        self.bus = bus

    def get(self, key: str) -> Entry:
        data = self.bus.shared_get(check_key(key))
        if data is None:
            raise NoSuchKey(key)
        return Entry(**data)

    def set(self, key: str, value: Any, expected_version: int) -> int:
        try:
            result = self.bus.shared_set(key, value, expected_version)
        except BusError as exc:
            _raise(exc)
        if not result.get("ok"):
            raise VersionConflict(key, int(result["current_version"]))
        return int(result["version"])

    def delete(self, key: str, expected_version: int) -> int:
        try:
            result = self.bus.shared_delete(key, expected_version)
        except BusError as exc:
            _raise(exc)
        if not result.get("ok"):
            raise VersionConflict(key, int(result["current_version"]))
        return int(result["version"])

    def list(self, prefix: str = "") -> list[Entry]:
        return [Entry(**e) for e in self.bus.shared_list(prefix)]

    def history(self, key: str) -> list[Version]:
        rows = self.bus.shared_history(check_key(key))
        if not rows:
            raise NoSuchKey(key)
        return [Version(r["key"], r["version"], r["value"], r["deleted"], r["owner_agent"], r["at"]) for r in rows]

    def changes(self, prefix: str = "", after_seq: int = 0, limit: int = 1000, timeout: float = 0.0) -> list[dict]:
        return self.bus.shared_changes(prefix, after_seq, limit, timeout)

