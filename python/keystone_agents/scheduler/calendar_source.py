"""Calendar events in a time window, from a CalDAV server (the `caldav` library) or a command printing
JSON (`calendula --json events list`, for compatibility).

Only events overlapping the window [start, end) count; recurring events are expanded to their instances
in the window (RRULE, RDATE, EXDATE and changed or cancelled single instances, via recurring-ical-events);
cancelled events and cancelled instances are skipped. An event's date is the date its instance starts on:
the date itself for all-day events, the local date (the scheduler's time zone) for timed ones.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from keystone_agents import sanitize

COMMAND_TIMEOUT_SECONDS = 60
HTTP_TIMEOUT_SECONDS = 30


class CalendarError(RuntimeError):
    """The calendar could not be read; the message never holds the password."""


@dataclass(frozen=True)
class CalendarEvent:
    uid: str
    summary: str
    description: str | None
    start: dt.date | dt.datetime  # the instance's start (a date for all-day events)
    date: str  # YYYY-MM-DD

    @property
    def source_ref(self) -> str:
        return f"calendar-{self.uid}-{self.date}"

    @property
    def task_description(self) -> str:
        return (self.description or "").strip() or self.summary.strip()

    @property
    def task_name(self) -> str:
        return sanitize.bounded_name(f"calendar-{slug(self.summary)}", f"-{self.date}")


def slug(text: str, limit: int = 60) -> str:
    """kebab-case of `text`: lowercase ASCII letters and digits joined by single dashes ('event' if none).
    Accented letters lose their accents (Ü → u) rather than the whole letter."""
    return sanitize.slug(text, limit) or "event"


def make_event(uid: Any, summary: Any, description: Any, start: dt.date | dt.datetime,
               zone: ZoneInfo) -> CalendarEvent | None:
    """An event with every text field made safe (sanitize.clean_text: one line for UID and SUMMARY, the
    description multi-line); None when it has no UID or summary, or a field holds a lone surrogate."""
    try:
        uid = sanitize.clean_text(uid, field="UID", limit=255)
        summary = sanitize.clean_text(summary, field="SUMMARY")
        description = sanitize.clean_text(description, field="DESCRIPTION", multiline=True, limit=1 << 62) or None
    except sanitize.UnsafeText:
        return None
    if not uid or not summary:
        return None
    return CalendarEvent(uid, summary, description, start, event_date(start, zone))


def event_date(start: dt.date | dt.datetime, zone: ZoneInfo) -> str:
    if isinstance(start, dt.datetime):
        if start.tzinfo is not None:  # floating times are already local
            start = start.astimezone(zone)
        return start.strftime("%Y-%m-%d")
    return start.isoformat()


# ---------------------------------------------------------------- iCalendar


def events_from_ical(texts: Iterable[str | bytes], start: dt.datetime, end: dt.datetime, zone: ZoneInfo) -> list[CalendarEvent]:
    """VEVENT instances overlapping [start, end) in iCalendar documents, expanded, cancelled ones dropped."""
    import icalendar
    import recurring_ical_events

    found: dict[str, CalendarEvent] = {}
    for text in texts:
        try:
            calendar = icalendar.Calendar.from_ical(text)
            components = recurring_ical_events.of(calendar).between(start, end)
        except Exception:  # noqa: BLE001 - one unreadable document stays one (the others are still read)
            continue
        for component in components:
            if component.name != "VEVENT":
                continue
            if str(component.get("STATUS", "")).upper() == "CANCELLED":
                continue
            description = component.get("DESCRIPTION")
            event = make_event(str(component.get("UID", "")), str(component.get("SUMMARY", "")),
                               str(description) if description is not None else None,
                               component.decoded("DTSTART"), zone)
            if event is not None:
                found.setdefault(event.source_ref, event)
    return sorted(found.values(), key=lambda e: (_sort_key(e.start, zone), e.uid))


def _sort_key(value: dt.date | dt.datetime, zone: ZoneInfo) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=zone)
    return dt.datetime.combine(value, dt.time(0, 0), tzinfo=zone)


# ---------------------------------------------------------------- CalDAV


def read_password(path: str | None) -> str | None:
    if not path:
        return None
    try:
        # a trailing newline is not part of the password (servers reject it)
        return Path(path).expanduser().read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise CalendarError(f"cannot read calendar passwordFile {path}: {exc.strerror}") from None


def _redact(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, "***")
    return text


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        parts = parts._replace(netloc=host)
    return urlunsplit(parts)


def fetch_caldav(
    url: str, user: str | None, password_file: str | None, start: dt.datetime, end: dt.datetime, zone: ZoneInfo
) -> list[CalendarEvent]:
    """Events overlapping [start, end) on the calendar at `url`. A calendar collection URL reads that
    calendar; any other URL (server root, principal, calendar home) reads every calendar of the user."""
    import caldav

    password = read_password(password_file)
    try:
        with caldav.DAVClient(url=url, username=user, password=password, timeout=HTTP_TIMEOUT_SECONDS) as client:
            texts = [text for calendar in _calendars(client, url) for text in _event_texts(client, calendar, start, end)]
    except CalendarError:
        raise
    except Exception as exc:  # noqa: BLE001 - any client/server failure is this source's failure
        message = _redact(f"{type(exc).__name__}: {exc}".strip(), password)
        raise CalendarError(f"CalDAV {_safe_url(url)}: {message[:300]}") from None
    return events_from_ical(texts, start, end, zone)


def _event_texts(client: Any, calendar: Any, start: dt.datetime, end: dt.datetime) -> list[str | bytes]:
    """The iCalendar texts of the calendar's events in [start, end): a time-range REPORT, or — when the server's
    answer cannot be parsed (an event holding a control character makes Radicale send XML no parser accepts) —
    every object of the calendar fetched one by one (the window is applied when they are expanded)."""
    try:
        return [obj.data for obj in calendar.search(start=start, end=end, event=True)]
    except Exception as exc:  # noqa: BLE001 - one hostile event must not hide the whole calendar
        if "XMLSyntaxError" not in type(exc).__name__ and "XML" not in str(exc)[:200]:
            raise
    texts = []
    for obj in calendar.objects(load_objects=False):
        response = client.request(str(obj.url))
        if response.status == 200 and response.raw:
            texts.append(response.raw)
    return texts


def _calendars(client: Any, url: str) -> list[Any]:
    wanted = url.rstrip("/") + "/"
    try:
        calendars = client.principal().calendars()
    except Exception:  # noqa: BLE001 - no principal discovery: treat the URL as the calendar itself
        return [client.calendar(url=url)]
    urls = [str(calendar.url).rstrip("/") + "/" for calendar in calendars]
    for calendar, calendar_url in zip(calendars, urls):
        if calendar_url == wanted:
            return [calendar]
    below = [calendar for calendar, calendar_url in zip(calendars, urls) if _path(calendar_url).startswith(_path(wanted))]
    if below:  # the URL is the server, the principal or the calendar home: every calendar under it
        return below
    return [client.calendar(url=url)]  # a calendar the principal does not list (shared with the user)


def _path(url: str) -> str:
    return urlsplit(url).path


# ---------------------------------------------------------------- command (calendula)


def fetch_command(argv: list[str], start: dt.datetime, end: dt.datetime, zone: ZoneInfo) -> list[CalendarEvent]:
    """Events from a command printing JSON: a list (or {"events": [...]}) of objects with uid, summary,
    description?, start (ISO date or date-time), end?, status?. Events outside [start, end) are dropped."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        raise CalendarError(f"calendar command not found: {argv[0]}") from None
    except subprocess.TimeoutExpired:
        raise CalendarError(f"calendar command {argv[0]} timed out after {COMMAND_TIMEOUT_SECONDS}s") from None
    if done.returncode != 0:
        raise CalendarError(f"calendar command {argv[0]} exited {done.returncode}: {done.stderr.strip()[:300]}")
    try:
        data = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise CalendarError(f"calendar command {argv[0]} printed no JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, dict):
        data = data.get("events", data.get("items"))
    if not isinstance(data, list):
        raise CalendarError(f"calendar command {argv[0]} printed JSON that is not a list of events")
    events: dict[str, CalendarEvent] = {}
    for item in data:
        event = _event_from_json(item, start, end, zone)
        if event is not None:
            events.setdefault(event.source_ref, event)
    return sorted(events.values(), key=lambda e: (_sort_key(e.start, zone), e.uid))


def _event_from_json(item: Any, start: dt.datetime, end: dt.datetime, zone: ZoneInfo) -> CalendarEvent | None:
    if not isinstance(item, dict):
        return None
    uid, summary = str(item.get("uid") or ""), str(item.get("summary") or "")
    if not uid.strip() or not summary.strip() or str(item.get("status") or "").upper() == "CANCELLED":
        return None
    begin = _parse_moment(item.get("start"))
    if begin is None:
        return None
    finish = _parse_moment(item.get("end"))
    if finish is None:
        finish = begin + dt.timedelta(days=1) if not isinstance(begin, dt.datetime) else begin
    lo, hi = _as_aware(begin, zone), _as_aware(finish, zone)
    if not (lo < end and (hi > start or (hi == lo and lo >= start))):
        return None
    description = item.get("description")
    return make_event(uid, summary, str(description) if description else None, begin, zone)


def _parse_moment(value: Any) -> dt.date | dt.datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return dt.date.fromisoformat(text)
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _as_aware(value: dt.date | dt.datetime, zone: ZoneInfo) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=zone)
    return dt.datetime.combine(value, dt.time(0, 0), tzinfo=zone)
