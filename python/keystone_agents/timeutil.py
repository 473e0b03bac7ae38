"""Timestamps as the queue files write them (UTC, ISO 8601, `Z`) and as humans wrote them."""

from __future__ import annotations

import datetime as dt
from typing import Any


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso_z(moment: dt.datetime | None = None) -> str:
    moment = (moment or utc_now()).astimezone(dt.timezone.utc)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(value: Any) -> dt.datetime | None:
    """A queue-file timestamp (string, datetime or date) as an aware datetime; None if absent, unreadable or
    outside the years 2..9998 (where adding a day or converting to local time could overflow)."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip().replace(" ", "T", 1)
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    try:  # a moment at the edge of what datetime holds (0001-01-01T00:00+01:00, 9999-12-31T23:59Z) is no moment
        utc = moment.astimezone(dt.timezone.utc)
    except (OverflowError, ValueError):
        return None
    if not _SAFE_YEARS[0] <= utc.year <= _SAFE_YEARS[1]:
        return None
    return moment


# Arithmetic on moments (ages, archive deadlines, local time) must not overflow: years 2..9998 are safe.
_SAFE_YEARS = (2, 9998)


def human_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return ""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60}m"
