"""Parsed YAML/JSON values as plain JSON types: what validation and the runtime work with.

Shared by the round-trip loader (ruamel's scalar subclasses) and the fast loader (libyaml); it imports nothing
heavy, so the loop's hot path can use it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any


_EXACT = frozenset({str, int, float, bool, type(None)})


def to_plain(value: Any) -> Any:
    """ruamel/libyaml values as plain JSON types (timestamps become ISO 8601 strings)."""
    if type(value) in _EXACT:  # the common case first: the loop's hot path parses thousands of entries
        return value
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value
