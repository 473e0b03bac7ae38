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
    """`log` (an EventLogger, optional): every write, delete and conflict is also an event of the writer's
    event table — shared_set, shared_deleted, shared_conflict — which `keystone-agent watch` shows."""

    def __init__(self, bus, log=None):
        self.bus = bus
        self.log = log

    def _event(self, event: str, key: str, **fields) -> None:
        if self.log is not None:
            what = {"shared_set": "set", "shared_deleted": "deleted", "shared_conflict": "conflict"}[event]
            self.log.info(event, msg=f"shared key {key} {what}" + (f" (version {fields['version']})"
                                                                   if "version" in fields else ""),
                          status="conflict" if event == "shared_conflict" else "ok", key=key, **fields)

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
            self._event("shared_conflict", key, op="set", expected_version=expected_version,
                        current_version=int(result["current_version"]))
            raise VersionConflict(key, int(result["current_version"]))
        self._event("shared_set", key, version=int(result["version"]))
        return int(result["version"])

    def delete(self, key: str, expected_version: int) -> int:
        try:
            result = self.bus.shared_delete(key, expected_version)
        except BusError as exc:
            _raise(exc)
        if not result.get("ok"):
            self._event("shared_conflict", key, op="delete", expected_version=expected_version,
                        current_version=int(result["current_version"]))
            raise VersionConflict(key, int(result["current_version"]))
        self._event("shared_deleted", key, version=int(result["version"]))
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

