"""The scheduler's calendar: a real Radicale CalDAV server on loopback, and the calendula command source.

The server (started once per session) holds, relative to NOW = Monday 2025-06-02 05:00 UTC:
a single event today, a weekly recurring event (every Monday 09:00 UTC since May, with the 2025-06-09
instance cancelled), an all-day event today, a cancelled event today, and an event on 2025-06-20
(outside any window used here). A second calendar holds one more event, to tell one calendar from all.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.radicale import free_port
from tests.support.scheduler import configure, tasks, utc  # noqa: F401 - utc is an autouse fixture

NOW = "2025-06-02T05:00:00Z"
USER, PASSWORD = "agent", "s3cret-Passw0rd"

EVENTS = {
    "single-1": """BEGIN:VEVENT
UID:single-1
DTSTAMP:20250101T000000Z
DTSTART:20250602T140000Z
DTEND:20250602T150000Z
SUMMARY:Quarterly review prep
DESCRIPTION:Prepare the slides for the quarterly review.
END:VEVENT""",
    "weekly-1": """BEGIN:VEVENT
UID:weekly-1
DTSTAMP:20250101T000000Z
DTSTART:20250505T090000Z
DTEND:20250505T093000Z
RRULE:FREQ=WEEKLY;BYDAY=MO
SUMMARY:Team sync
END:VEVENT
BEGIN:VEVENT
UID:weekly-1
DTSTAMP:20250101T000000Z
RECURRENCE-ID:20250609T090000Z
DTSTART:20250609T090000Z
DTEND:20250609T093000Z
STATUS:CANCELLED
SUMMARY:Team sync
END:VEVENT""",
    "allday-1": """BEGIN:VEVENT
UID:allday-1
DTSTAMP:20250101T000000Z
DTSTART;VALUE=DATE:20250602
DTEND;VALUE=DATE:20250603
SUMMARY:Company holiday: Ünïcode & co!
END:VEVENT""",
    "cancelled-1": """BEGIN:VEVENT
UID:cancelled-1
DTSTAMP:20250101T000000Z
DTSTART:20250602T100000Z
DTEND:20250602T110000Z
STATUS:CANCELLED
SUMMARY:Cancelled standup
END:VEVENT""",
    "far-1": """BEGIN:VEVENT
UID:far-1
DTSTAMP:20250101T000000Z
DTSTART:20250620T100000Z
DTEND:20250620T110000Z
SUMMARY:Far future offsite
END:VEVENT""",
}
OTHER_CALENDAR_EVENT = """BEGIN:VEVENT
UID:other-1
DTSTAMP:20250101T000000Z
DTSTART:20250602T160000Z
DTEND:20250602T170000Z
SUMMARY:Other calendar
END:VEVENT"""


def vcalendar(body: str) -> str:
    return f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//keystone-agents tests//EN\n{body}\nEND:VCALENDAR\n"


@pytest.fixture(scope="session")
def radicale(tmp_path_factory):
    """A Radicale server on 127.0.0.1:<free port> with user agent/PASSWORD and calendars default + other."""
    from tests.support.radicale import Unavailable, start

    root = tmp_path_factory.mktemp("radicale")
    try:
        base, stop = start(root, USER, PASSWORD)
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        import caldav

        with caldav.DAVClient(url=base, username=USER, password=PASSWORD) as client:
            principal = client.principal()
            default = principal.make_calendar(name="Default", cal_id="default")
            for body in EVENTS.values():
                default.save_event(vcalendar(body))
            other = principal.make_calendar(name="Other", cal_id="other")
            other.save_event(vcalendar(OTHER_CALENDAR_EVENT))
        password_file = root / "password"
        password_file.write_text(PASSWORD + "\n")  # as secret files usually are: with a newline
        yield {"base": base, "calendar": base + "default/", "password_file": str(password_file)}
    finally:
        stop()


@pytest.fixture
def schedule(run_agent, agent_home):
    def invoke(now: str = NOW, *args: str):
        result = run_agent("schedule", "--home", str(agent_home), "--now", now, "--json", *args)
        result.data = json.loads(result.stdout)
        return result

    return invoke


def caldav_config(radicale, url=None, password_file=None, **extra) -> dict:
    return {
        "url": url or radicale["calendar"],
        "user": USER,
        "passwordFile": password_file or radicale["password_file"],
        **extra,
    }


def test_events_in_the_next_24_hours_become_tasks(radicale, schedule, agent_home):
    (agent_home / "SCHEDULES.yaml").unlink()  # the calendar is read even without SCHEDULES.yaml
    configure(agent_home, calendar=caldav_config(radicale))
    result = schedule()
    assert result.exit_code == 0, result.stderr
    by_ref = {t["source_ref"]: t for t in tasks(agent_home)}
    assert set(by_ref) == {
        "calendar-single-1-2025-06-02",
        "calendar-weekly-1-2025-06-02",
        "calendar-allday-1-2025-06-02",
    }  # not the cancelled event, not the far one, not the other calendar's
    assert by_ref["calendar-single-1-2025-06-02"] == {
        "name": "calendar-quarterly-review-prep-2025-06-02",
        "description": "Prepare the slides for the quarterly review.",
        "status": "pending",
        "source": "calendar",
        "source_ref": "calendar-single-1-2025-06-02",
        "created_at": NOW,
    }
    # no DESCRIPTION: the summary is the description; calendar tasks never get a workflow
    assert by_ref["calendar-weekly-1-2025-06-02"]["description"] == "Team sync"
    assert by_ref["calendar-allday-1-2025-06-02"]["name"] == "calendar-company-holiday-unicode-co-2025-06-02"
    assert all("workflow" not in t for t in by_ref.values())
    from keystone_agents import queuefile

    assert queuefile.check(agent_home / "TASKS.yaml", queuefile.TASKS) == []


def test_recurring_events_expand_and_cancelled_instances_are_skipped(radicale, schedule, agent_home):
    configure(agent_home, calendar=caldav_config(radicale, windowHours=24 * 15))  # to 2025-06-17 05:00
    result = schedule()
    assert result.exit_code == 0, result.stderr
    weekly = sorted(t["source_ref"] for t in tasks(agent_home) if t["source_ref"].startswith("calendar-weekly-1-"))
    assert weekly == ["calendar-weekly-1-2025-06-02", "calendar-weekly-1-2025-06-16"]  # 06-09 is cancelled
    assert "calendar-far-1-2025-06-20" not in {t["source_ref"] for t in tasks(agent_home)}


def test_events_already_over_are_outside_the_window(radicale, schedule, agent_home):
    configure(agent_home, calendar=caldav_config(radicale))
    result = schedule("2025-06-02T15:30:00Z")  # the single event ended at 15:00, the weekly one at 09:30
    assert {t["source_ref"] for t in result.data["tasks"]} == {"calendar-allday-1-2025-06-02"}


def test_second_run_creates_nothing(radicale, schedule, agent_home):
    configure(agent_home, calendar=caldav_config(radicale))
    assert schedule().data["tasks_created"] == 3
    text = (agent_home / "TASKS.yaml").read_text()
    again = schedule("2025-06-02T06:00:00Z")
    assert again.exit_code == 0 and again.data["tasks_created"] == 0
    assert (agent_home / "TASKS.yaml").read_text() == text


def test_a_server_url_reads_every_calendar(radicale, schedule, agent_home):
    configure(agent_home, calendar=caldav_config(radicale, url=radicale["base"]))
    refs = {t["source_ref"] for t in schedule().data["tasks"]}
    assert "calendar-other-1-2025-06-02" in refs and "calendar-single-1-2025-06-02" in refs


def test_a_wrong_password_is_reported_without_the_password_and_schedules_still_run(
    radicale, schedule, agent_home, tmp_path
):
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-Passw0rd\n")
    configure(agent_home, calendar=caldav_config(radicale, password_file=str(wrong)))
    (agent_home / "SCHEDULES.yaml").write_text("schedules:\n  - {name: daily-report, description: Report., schedule: daily}\n")
    result = schedule()
    assert result.exit_code == 1 and result.data["status"] == "degraded"
    assert [t["source_ref"] for t in tasks(agent_home)] == ["schedule-daily-report-2025-06-02"]
    assert any(e.startswith("calendar: CalDAV http://127.0.0.1:") for e in result.data["errors"])
    assert "not-the-Passw0rd" not in result.stderr + result.stdout
    assert 'event="log"' in result.stderr and 'source="calendar"' in result.stderr


def test_a_missing_password_file_is_a_clear_error(radicale, schedule, agent_home, tmp_path):
    configure(agent_home, calendar=caldav_config(radicale, password_file=str(tmp_path / "nope")))
    result = schedule()
    assert result.exit_code == 1
    assert "cannot read calendar passwordFile" in "\n".join(result.data["errors"])


def test_an_unreachable_server_does_not_hang_or_crash(schedule, agent_home):
    configure(agent_home, calendar={"url": f"http://127.0.0.1:{free_port()}/agent/default/", "user": USER})
    result = schedule()
    assert result.exit_code == 1 and result.data["status"] == "degraded"
    assert result.data["errors"][0].startswith("calendar: CalDAV http://127.0.0.1:")


# ---------------------------------------------------------------- calendula (command source)

CALENDULA = Path(__file__).parents[1] / "fakebin" / "calendula"


def test_calendula_command_source(schedule, agent_home, tmp_path, monkeypatch):
    events = [
        {"uid": "c-1", "summary": "Dentist", "description": "Bring the form", "start": "2025-06-02T08:00:00Z", "end": "2025-06-02T09:00:00Z"},
        {"uid": "c-2", "summary": "Holiday", "start": "2025-06-02"},
        {"uid": "c-3", "summary": "Called off", "start": "2025-06-02T10:00:00Z", "status": "CANCELLED"},
        {"uid": "c-4", "summary": "Next month", "start": "2025-07-02T10:00:00Z"},
        {"uid": "c-5", "summary": "Yesterday", "start": "2025-06-01T10:00:00Z", "end": "2025-06-01T11:00:00Z"},
        {"summary": "no uid", "start": "2025-06-02T10:00:00Z"},
    ]
    fixture = tmp_path / "events.json"
    fixture.write_text(json.dumps(events))
    argv_log = tmp_path / "argv"
    monkeypatch.setenv("CALENDULA_FIXTURE", str(fixture))
    monkeypatch.setenv("CALENDULA_ARGV_LOG", str(argv_log))
    configure(agent_home, calendar={"command": [str(CALENDULA), "--json", "events", "list", "default"]})
    result = schedule()
    assert result.exit_code == 0, result.stderr
    assert json.loads(argv_log.read_text()) == ["--json", "events", "list", "default"]
    by_ref = {t["source_ref"]: t for t in tasks(agent_home)}
    assert set(by_ref) == {"calendar-c-1-2025-06-02", "calendar-c-2-2025-06-02"}
    assert by_ref["calendar-c-1-2025-06-02"]["description"] == "Bring the form"
    assert by_ref["calendar-c-2-2025-06-02"]["name"] == "calendar-holiday-2025-06-02"


def test_calendula_printing_garbage_is_one_error(schedule, agent_home, tmp_path, monkeypatch):
    fixture = tmp_path / "events.json"
    fixture.write_text("Error: no account configured\n")
    monkeypatch.setenv("CALENDULA_FIXTURE", str(fixture))
    configure(agent_home, calendar={"command": [str(CALENDULA), "--json", "events", "list"]})
    (agent_home / "SCHEDULES.yaml").write_text("schedules:\n  - {name: daily-report, description: Report., schedule: daily}\n")
    result = schedule()
    assert result.exit_code == 1
    assert "printed no JSON" in "\n".join(result.data["errors"])
    assert [t["source_ref"] for t in tasks(agent_home)] == ["schedule-daily-report-2025-06-02"]


# ---------------------------------------------------------------- parsing without a server


def test_timed_events_are_dated_in_local_time_and_all_day_events_by_their_date():
    import datetime as dt
    from zoneinfo import ZoneInfo

    from keystone_agents.scheduler.calendar_source import events_from_ical

    body = """BEGIN:VEVENT
UID:late-1
DTSTAMP:20250101T000000Z
DTSTART:20250602T223000Z
DTEND:20250602T233000Z
SUMMARY:Late call
END:VEVENT
BEGIN:VEVENT
UID:berlin-1
DTSTAMP:20250101T000000Z
DTSTART;TZID=Europe/Berlin:20250603T090000
DTEND;TZID=Europe/Berlin:20250603T100000
RRULE:FREQ=DAILY;COUNT=3
EXDATE;TZID=Europe/Berlin:20250604T090000
SUMMARY:Berlin standup
END:VEVENT"""
    start = dt.datetime(2025, 6, 2, 12, tzinfo=dt.timezone.utc)
    events = events_from_ical([vcalendar(body)], start, start + dt.timedelta(days=4), ZoneInfo("Europe/Berlin"))
    assert [e.source_ref for e in events] == [
        "calendar-late-1-2025-06-03",  # 22:30 UTC is 00:30 the next day in Berlin
        "calendar-berlin-1-2025-06-03",
        "calendar-berlin-1-2025-06-05",  # 06-04 excluded by EXDATE
    ]
    utc = events_from_ical([vcalendar(body)], start, start + dt.timedelta(days=1), ZoneInfo("UTC"))
    assert utc[0].source_ref == "calendar-late-1-2025-06-02"
