"""Missed-run detection for timer-driven components (task loop, scheduler).

A timer that silently stops leaves no run to complain; two things catch it: the metrics (`…_last_run_timestamp_seconds`
and `…_expected_interval_seconds`, so an alert can compare `time()` with them) and each run, which compares
the gap since the previous run's end with the timer's expected interval and counts the runs that did not
happen (`…_missed_runs_total`, kept in a small state file, and a `run_overdue` event).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from keystone_agents.atomic import write_atomic
from keystone_agents.timeutil import iso_z, parse_time

OVERDUE_FACTOR = 1.5  # a gap up to 1.5 intervals is timer jitter or a long previous run, not a miss


@dataclass(frozen=True)
class Overdue:
    previous_run_id: str
    previous_at: str  # when the previous run ended (or started, if it never ended)
    gap_seconds: float
    missed: int


def overdue(previous: dict | None, now: dt.datetime, interval: float | None) -> Overdue | None:
    """Whether the previous run (history row) is longer ago than the timer allows, and how many runs that misses."""
    if not previous or not interval:
        return None
    moment = parse_time(previous.get("finished_at")) or parse_time(previous.get("started_at"))
    if moment is None:
        return None
    gap = (now - moment).total_seconds()
    if gap <= OVERDUE_FACTOR * interval:
        return None
    missed = max(1, int(gap / interval + 0.5) - 1)
    return Overdue(previous.get("run_id") or "", iso_z(moment), round(gap, 3), missed)


def read_total(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def add(path: Path, count: int) -> int:
    """Add `count` to the running total in `path`; returns the new total."""
    total = read_total(path) + count
    if count:
        write_atomic(path, f"{total}\n")
    return total
