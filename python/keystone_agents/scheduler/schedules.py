"""SCHEDULES.yaml entries and the moments they fire.

Formats: `daily`, `weekly:<day>`, `monthly:<1-31>` (at `time`, default 00:00) and 5-field cron
expressions (croniter). Every occurrence is computed on the schedule's local wall clock and only then
placed on the real time line, so daylight-saving changes neither skip nor double an occurrence:

* a wall-clock time that does not exist (the hour skipped in spring) fires at the equivalent moment just
  after the jump (02:30 → 03:30), as cron does;
* a wall-clock time that exists twice (the hour repeated in autumn) fires once, at its first instance.

An occurrence is named by its wall-clock date (and `HH:MM` for schedules that can fire more than once a
day), which is also what the task's `source_ref` dedups on.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class ScheduleError(ValueError):
    """An entry that cannot be scheduled; `field` names the offending key."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class Schedule:
    name: str
    description: str
    schedule: str
    zone: ZoneInfo
    workflow: str | None = None
    time: dt.time = dt.time(0, 0)

    @property
    def is_cron(self) -> bool:
        return " " in self.schedule.strip()

    @property
    def fires_more_than_once_a_day(self) -> bool:
        if not self.is_cron:
            return False
        minutes, hours = croniter(self.schedule).expanded[:2]
        count = (60 if minutes == ["*"] else len(minutes)) * (24 if hours == ["*"] else len(hours))
        return count > 1

    def wall_clock_slots(self, first_day: dt.date, last_day: dt.date) -> Iterator[dt.datetime]:
        """Naive local wall-clock times the schedule names, on the days first_day..last_day inclusive."""
        if self.is_cron:
            it = croniter(self.schedule, dt.datetime.combine(first_day, dt.time(0, 0)) - dt.timedelta(minutes=1))
            end = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(0, 0))
            while True:
                try:
                    slot = it.get_next(dt.datetime)
                except CroniterBadDateError:  # nothing more within croniter's search range
                    return
                if slot >= end:
                    return
                yield slot
            return
        day = first_day
        while day <= last_day:
            if self._due_on(day):
                yield dt.datetime.combine(day, self.time)
            day += dt.timedelta(days=1)

    def _due_on(self, day: dt.date) -> bool:
        kind, _, arg = self.schedule.partition(":")
        if kind == "daily":
            return True
        if kind == "weekly":
            return WEEKDAYS[day.weekday()] == arg
        if kind == "monthly":  # like cron: monthly:31 does not fire in shorter months
            return day.day == int(arg)
        return False


@dataclass(frozen=True)
class Occurrence:
    schedule: Schedule
    wall_clock: dt.datetime  # naive, in schedule.zone
    at: dt.datetime  # aware UTC: when it fires

    @property
    def date(self) -> str:
        return self.wall_clock.strftime("%Y-%m-%d")

    @property
    def source_ref(self) -> str:
        ref = f"schedule-{self.schedule.name}-{self.date}"
        if self.schedule.fires_more_than_once_a_day:
            ref += self.wall_clock.strftime("T%H:%M")
        return ref

    @property
    def task_name(self) -> str:
        name = f"{self.schedule.name}-{self.date}"
        if self.schedule.fires_more_than_once_a_day:  # names must stay unique and kebab-case
            name += self.wall_clock.strftime("-%H%M")
        return name


def local_zone() -> ZoneInfo:
    """The machine's time zone: $TZ, else /etc/timezone, else the /etc/localtime link, else UTC."""
    candidates = []
    tz_env = os.environ.get("TZ", "").lstrip(":")
    if tz_env:
        candidates.append(tz_env)
    try:
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for name in candidates:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


def zone_named(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        import difflib
        from zoneinfo import available_timezones

        close = difflib.get_close_matches(name, sorted(available_timezones()), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        raise ScheduleError("timezone", f"unknown time zone {name!r}{hint} fix: use an IANA name such as "
                            "Europe/Berlin or UTC") from None


CRON_FIELDS = (("minute", "0-59"), ("hour", "0-23"), ("day-of-month", "1-31"), ("month", "1-12"),
               ("day-of-week", "0-6"))


def cron_problem(spec: str) -> str:
    """What is wrong with a cron expression croniter refuses, naming the field (minute, hour, …)."""
    fields = spec.split()
    if len(fields) != 5:
        return (f"{spec!r} has {len(fields)} fields; a cron expression has 5 (minute hour day-of-month month "
                "day-of-week)")
    for index, (name, allowed) in enumerate(CRON_FIELDS):
        probe = ["*"] * 5
        probe[index] = fields[index]
        if not croniter.is_valid(" ".join(probe)):
            return f"cron field {name} {fields[index]!r} is out of range or malformed (allowed: {allowed})"
    return f"{spec!r} is not a valid 5-field cron expression"


def never_fires(spec: str) -> bool:
    """Whether a valid cron expression names no real moment at all (`0 0 30 2 *`). The rarest real one,
    29 February on a given weekday, fires within 28 years; croniter gives up after 50."""
    try:
        croniter(spec, dt.datetime(2000, 1, 1), max_years_between_matches=50).get_next(dt.datetime)
    except CroniterBadDateError:
        return True
    return False


def parse_schedule(entry: Any, default_zone: ZoneInfo) -> Schedule:
    """A schema-valid SCHEDULES.yaml entry → Schedule; ScheduleError for what the schema cannot check."""
    spec = str(entry["schedule"]).strip()
    if " " in spec:
        if len(spec.split()) != 5 or not croniter.is_valid(spec):
            raise ScheduleError("schedule", f"{cron_problem(spec)}; fix: correct the cron expression "
                                "(minute hour day-of-month month day-of-week, see `man 5 crontab`)")
        if never_fires(spec):
            raise ScheduleError("schedule", f"{spec!r} never fires (no such date, e.g. 30 February); "
                                "fix the day or month")
        if "time" in entry:
            raise ScheduleError("time", "`time` applies to daily/weekly/monthly schedules; a cron expression has its "
                                "own; fix: remove `time` and put the hour and minute into the cron expression")
    zone = zone_named(str(entry["timezone"])) if entry.get("timezone") else default_zone
    time = dt.time(0, 0)
    if entry.get("time"):
        hour, minute = str(entry["time"]).split(":")
        time = dt.time(int(hour), int(minute))
    workflow = entry.get("workflow")
    return Schedule(
        name=str(entry["name"]),
        description=str(entry["description"]),
        schedule=spec,
        zone=zone,
        workflow=str(workflow) if workflow else None,
        time=time,
    )


def check_document(doc) -> list:
    """Problems of a loaded SCHEDULES.yaml (queuefile.QueueDocument) beyond its schema: what `parse_schedule`
    refuses (an invalid or never-firing cron expression, an unknown time zone), one Problem per entry."""
    from keystone_agents import queuefile
    from keystone_agents.problems import Problem

    problems = []
    zone = local_zone()
    for index, entry in enumerate(doc.entries()):
        if not doc.is_valid(entry):
            continue
        try:
            parse_schedule(entry, zone)
        except ScheduleError as exc:
            line = queuefile._line_of(doc.data, ["schedules", index, exc.field])
            problems.append(Problem(str(doc.path), line, f"schedules[{index}].{exc.field}", str(exc)))
    return problems


def place(wall_clock: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """A naive wall-clock time in `zone` → the aware UTC moment it fires (see the module doc for DST)."""
    # fold=0 is the first instance of a repeated time; for a skipped time it applies the offset from
    # before the jump, which lands just after the jump.
    return wall_clock.replace(tzinfo=zone, fold=0).astimezone(dt.timezone.utc)


def occurrences(
    schedule: Schedule, start: dt.datetime, end: dt.datetime, *, include_start: bool = False
) -> list[Occurrence]:
    """The occurrences firing in (start, end] — [start, end] with include_start — oldest first."""
    first_day = start.astimezone(schedule.zone).date() - dt.timedelta(days=1)
    last_day = end.astimezone(schedule.zone).date() + dt.timedelta(days=1)
    found = []
    for slot in schedule.wall_clock_slots(first_day, last_day):
        at = place(slot, schedule.zone)
        if (start < at or (include_start and at == start)) and at <= end:
            found.append(Occurrence(schedule, slot, at))
    return found


def local_midnight(moment: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """Start of the local day containing `moment`, as an aware UTC moment."""
    day = moment.astimezone(zone).date()
    return place(dt.datetime.combine(day, dt.time(0, 0)), zone)
