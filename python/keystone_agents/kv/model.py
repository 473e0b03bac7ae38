"""The one definition of a key-value entry, its history rows, its limits and its errors (private and shared)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from keystone_agents.coordination.base import BusError, InvalidRequest, NotAllowed, NotFound

KEY_MAX = 512
VALUE_MAX_BYTES = 64 * 1024  # default maximum size of one value (its compact JSON text, UTF-8)
HISTORY_KEEP = 100  # private state keeps the last 100 versions of each key


class VersionConflict(BusError):
    """The key is not at the expected version: re-read and retry. Exit code 5 on the command line."""

    code = "VersionConflict"

    def __init__(self, key: str, current_version: int):
        super().__init__(f"VersionConflict: {key} is at version {current_version}", key=key,
                         current_version=current_version)
        self.key, self.current_version = key, current_version

    def __reduce__(self):
        return (type(self), (self.key, self.current_version))

    def to_json(self) -> dict:
        return {"error": self.code, "current_version": self.current_version, "key": self.key,
                "message": self.message}


class NoSuchKey(NotFound):
    code = "NoSuchKey"

    def __init__(self, key: str):
        super().__init__(f"no such key: {key}", key=key)
        self.key = key

    def __reduce__(self):
        return (type(self), (self.key,))


class KeyRefused(NotAllowed):
    """Outside the writer's prefixes, too large, or over the quota."""

    code = "KeyRefused"


@dataclass
class Entry:
    key: str
    value: Any
    version: int
    owner_agent: str
    updated_at: str

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Version:
    key: str
    version: int
    value: Any
    deleted: bool
    owner_agent: str
    at: str

    def to_json(self) -> dict:
        return asdict(self)


def value_text(value: Any, max_bytes: int = VALUE_MAX_BYTES) -> str:
    """The compact JSON text stored for `value`; refuses a value larger than `max_bytes`."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"the value is not JSON: {exc}") from None
    size = len(text.encode())
    if size > max_bytes:
        raise KeyRefused(f"the value is {size} bytes; the maximum is {max_bytes} bytes", size=size,
                         max_bytes=max_bytes)
    return text


def check_key(key: Any) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= KEY_MAX:
        raise InvalidRequest(f"a key is text of 1 to {KEY_MAX} characters")
    if any(ord(ch) < 32 for ch in key):
        raise InvalidRequest("a key cannot contain control characters")
    return key


def check_expected(expected: Any) -> int:
    if isinstance(expected, bool) or not isinstance(expected, int) or expected < 0:
        raise InvalidRequest("expected_version is a whole number >= 0 (0 creates the key)")
    return expected


ERRORS = {cls.code: cls for cls in (NoSuchKey, KeyRefused)}
