"""Archive: completed tasks whose completed_at is older than archiveAfterDays move to TASKS.archive.yaml
(same schema), which ingest still reads for dedup, so TASKS.yaml stays small. The archive is written
first: a crash in between leaves a task in both files (harmless), never in neither."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from keystone_agents.taskfile import TaskFile
from keystone_agents.timeutil import parse_time


def due(tf: TaskFile, now: dt.datetime, max_age_days: float) -> tuple[list, float | None]:
    """→ (entries to archive now, epoch seconds when the next one becomes due or None)."""
    limit = dt.timedelta(days=max_age_days)
    ready, next_due = [], None
    for entry in tf.valid():
        if entry.get("status") != "completed":
            continue
        done = parse_time(entry.get("completed_at"))
        if done is None:
            continue
        try:
            if now - done >= limit:
                ready.append(entry)
                continue
            moment = (done + limit).timestamp()
        except (OverflowError, ValueError):  # completed near the end of time: never due
            continue
        next_due = moment if next_due is None else min(next_due, moment)
    return ready, next_due


def archive(tf: TaskFile, archive_path: Path, entries: list) -> int:
    if not entries:
        return 0
    store = TaskFile.load(archive_path)
    present = {(e.get("name"), e.get("source_ref"), e.get("completed_at")) for e in store.entries}
    for entry in entries:
        if (entry.get("name"), entry.get("source_ref"), entry.get("completed_at")) not in present:
            store.append_raw(entry)
    store.save()
    tf.remove(entries)
    return len(entries)
