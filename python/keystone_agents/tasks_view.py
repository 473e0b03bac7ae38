"""The `tasks` listing: the queue as a table (or JSON), in the order a human reads it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Iterable

from keystone_agents.taskfile import TaskFile
from keystone_agents.timeutil import human_duration, parse_time, utc_now

STATUS_ORDER = ("in_progress", "pending", "blocked", "completed")
COLUMNS = ("#", "STATUS", "NAME", "PROJECT", "SOURCE", "MODEL", "DATE", "WORKFLOW", "DUR", "DESCRIPTION")
FOOTER_LABELS = (("in_progress", "running"), ("pending", "pending"), ("blocked", "blocked"), ("completed", "done"))


@dataclass(frozen=True)
class Row:
    position: int  # 1-based position in TASKS.yaml
    task: dict[str, Any]

    @property
    def status(self) -> str:
        return self.task.get("status", "")

    @property
    def date(self) -> dt.datetime | None:
        for key in ("completed_at", "started_at", "created_at"):
            moment = parse_time(self.task.get(key))
            if moment:
                return moment
        return None

    def duration(self, now: dt.datetime) -> float | None:
        started = parse_time(self.task.get("started_at"))
        if not started:
            return None
        if self.status == "in_progress":
            return (now - started).total_seconds()
        finished = parse_time(self.task.get("completed_at"))
        return (finished - started).total_seconds() if finished else None


def ordered_rows(tf: TaskFile, statuses: Iterable[str] = ()) -> list[Row]:
    """Valid tasks ordered in_progress, pending, blocked, completed; newest first within a status."""
    wanted = set(statuses)
    rows = [
        Row(index + 1, entry.data)
        for index, entry in enumerate(tf.entries)
        if entry.valid and (not wanted or entry.get("status") in wanted)
    ]
    oldest = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    rows.sort(key=lambda r: r.date or oldest, reverse=True)
    rows.sort(key=lambda r: STATUS_ORDER.index(r.status))  # stable: keeps newest-first within a status
    return rows


def counts(rows: Iterable[Row]) -> dict[str, int]:
    result = {status: 0 for status in STATUS_ORDER}
    for row in rows:
        result[row.status] += 1
    return result


def footer(rows: list[Row]) -> str:
    numbers = counts(rows)
    return ", ".join(f"{numbers[status]} {label}" for status, label in FOOTER_LABELS)


def _shorten(text: str, width: int | None) -> str:
    text = " ".join(str(text).split())
    if width is None or len(text) <= width:
        return text
    return text[: max(0, width - 1)] + "…" if width > 0 else ""


def _date(moment: dt.datetime | None, now: dt.datetime) -> str:
    if moment is None:
        return ""
    local = moment.astimezone()
    return local.strftime("%b %d %H:%M" if local.year == now.astimezone().year else "%Y-%m-%d %H:%M")


def ran_with(task: dict[str, Any], runtimes: dict[str, tuple[str | None, str | None]]) -> str:
    """provider/model the task's newest execution used (from history), else its own overrides."""
    provider, model = runtimes.get(task.get("name", ""), (None, None))
    if provider is None and model is None:
        provider, model = task.get("provider"), task.get("model")
    return "/".join(part for part in (provider, model) if part)


def render_table(rows: list[Row], now: dt.datetime | None = None, width: int | None = None,
                 runtimes: dict[str, tuple[str | None, str | None]] | None = None) -> str:
    """The table. `width`: fit the terminal (DESCRIPTION truncated to what is left, at least 20 characters);
    None (piped): plain columns with the whole description."""
    now = now or utc_now()
    runtimes = runtimes or {}
    table = [COLUMNS]
    for row in rows:
        task = row.task
        description = " ".join(str(task.get("description", "")).split())
        if row.status == "blocked" and task.get("blocked_reason"):
            description = f"[{' '.join(str(task['blocked_reason']).split())}] {description}"
        table.append(
            (
                str(row.position),
                row.status,
                task.get("name", ""),
                task.get("project", ""),
                task.get("source", ""),
                ran_with(task, runtimes),
                _date(row.date, now),
                task.get("workflow", ""),
                human_duration(row.duration(now)),
                description,
            )
        )
    widths = [max(len(str(line[i])) for line in table) for i in range(len(COLUMNS))]
    room = None
    if width is not None:
        room = max(20, width - sum(widths[:-1]) - 2 * (len(COLUMNS) - 1))
    lines = []
    for line in table:
        cells = [str(cell).ljust(widths[i]) for i, cell in enumerate(line[:-1])] + [_shorten(line[-1], room)]
        lines.append("  ".join(cells).rstrip())
    lines.append("")
    lines.append(footer(rows))
    return "\n".join(lines)
