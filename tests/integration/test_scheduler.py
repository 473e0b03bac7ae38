"""keystone-agent schedule: SCHEDULES.yaml → tasks, deterministic with --now.

Every test runs with TZ=UTC unless it names a time zone, so dates and times below are what they say.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prometheus_client.parser import text_string_to_metric_families

from keystone_agents import queuefile
from keystone_agents.lock import try_lock
from keystone_agents.scheduler import schedules, wake
from keystone_agents.space import AgentSpace
from tests.support.scheduler import configure, tasks, utc  # noqa: F401 - utc is an autouse fixture




def write_schedules(home: Path, text: str) -> None:
    (home / "SCHEDULES.yaml").write_text(text)



def refs(home: Path) -> list[str]:
    return [t["source_ref"] for t in tasks(home)]


@pytest.fixture
def schedule(run_agent, agent_home):
    """schedule("2025-06-02T12:00:00Z", "--json") → click Result (JSON output parsed into .data)."""

    def invoke(now: str, *args: str):
        result = run_agent("schedule", "--home", str(agent_home), "--now", now, "--json", *args)
        result.data = json.loads(result.stdout)
        return result

    return invoke


FORMATS = """\
schedules:
  - name: daily-priorities
    description: Review the queue and send the daily status.
    schedule: daily
    time: "05:00"
    workflow: daily_status/send
  - name: monday-review
    description: Weekly review.
    schedule: weekly:monday
  - name: tuesday-review
    description: Not today.
    schedule: weekly:tuesday
  - name: month-start
    description: Second of the month.
    schedule: monthly:2
  - name: mid-month
    description: Not today.
    schedule: monthly:15
  - name: weekday-nine
    description: Cron, once a day on weekdays.
    schedule: "0 9 * * 1-5"
    workflow: research/run
  - name: half-hourly
    description: Cron, several times a day.
    schedule: "*/30 8-9 * * *"
  - name: evening
    description: Not yet due at noon.
    schedule: daily
    time: "20:00"
"""


def test_each_format_creates_exactly_the_due_tasks(schedule, agent_home):
    write_schedules(agent_home, FORMATS)
    result = schedule("2025-06-02T12:00:00Z")  # a Monday, the 2nd
    assert result.exit_code == 0, result.stderr
    assert sorted(refs(agent_home)) == sorted(
        [
            "schedule-daily-priorities-2025-06-02",
            "schedule-monday-review-2025-06-02",
            "schedule-month-start-2025-06-02",
            "schedule-weekday-nine-2025-06-02",
            "schedule-half-hourly-2025-06-02T08:00",
            "schedule-half-hourly-2025-06-02T08:30",
            "schedule-half-hourly-2025-06-02T09:00",
            "schedule-half-hourly-2025-06-02T09:30",
        ]
    )
    by_ref = {t["source_ref"]: t for t in tasks(agent_home)}
    daily = by_ref["schedule-daily-priorities-2025-06-02"]
    assert daily == {
        "name": "daily-priorities-2025-06-02",
        "description": "Review the queue and send the daily status.",
        "status": "pending",
        "source": "schedule",
        "source_ref": "schedule-daily-priorities-2025-06-02",
        "workflow": "daily_status/send",
        "created_at": "2025-06-02T12:00:00Z",
    }
    assert by_ref["schedule-weekday-nine-2025-06-02"]["workflow"] == "research/run"
    # no workflow in SCHEDULES.yaml → no workflow field at all (the original wrote the string "null")
    assert "workflow" not in by_ref["schedule-monday-review-2025-06-02"]
    assert "null" not in (agent_home / "TASKS.yaml").read_text()
    assert by_ref["schedule-half-hourly-2025-06-02T08:30"]["name"] == "half-hourly-2025-06-02-0830"
    # the written file passes the same validation the runtime uses everywhere
    assert queuefile.check(agent_home / "TASKS.yaml", queuefile.TASKS) == []
    assert result.data["tasks_created"] == 8


def test_time_of_day_and_other_days(schedule, agent_home):
    write_schedules(agent_home, FORMATS)
    schedule("2025-06-02T12:00:00Z")
    before = set(refs(agent_home))
    result = schedule("2025-06-03T21:00:00Z")  # Tuesday evening, after 20:00
    created = {t["source_ref"] for t in result.data["tasks"]}
    assert created == {
        "schedule-evening-2025-06-02",  # Monday 20:00 was missed at noon's run: caught up
        "schedule-evening-2025-06-03",
        "schedule-daily-priorities-2025-06-03",
        "schedule-tuesday-review-2025-06-03",
        "schedule-weekday-nine-2025-06-03",
        "schedule-half-hourly-2025-06-03T08:00",
        "schedule-half-hourly-2025-06-03T08:30",
        "schedule-half-hourly-2025-06-03T09:00",
        "schedule-half-hourly-2025-06-03T09:30",
    }
    assert before.isdisjoint(created)


def test_second_run_creates_nothing_and_leaves_the_file_alone(schedule, agent_home):
    write_schedules(agent_home, FORMATS)
    first = schedule("2025-06-02T12:00:00Z")
    assert first.data["tasks_created"] == 8
    text = (agent_home / "TASKS.yaml").read_text()
    second = schedule("2025-06-02T12:00:00Z")
    assert second.exit_code == 0
    assert second.data["tasks_created"] == 0
    assert (agent_home / "TASKS.yaml").read_text() == text
    # even a run for an earlier moment (before the stored last run) does not duplicate
    third = schedule("2025-06-02T11:00:00Z")
    assert third.data["tasks_created"] == 0
    assert len(refs(agent_home)) == len(set(refs(agent_home))) == 8


def test_dedup_survives_completion_and_archiving(schedule, agent_home):
    write_schedules(agent_home, "schedules:\n  - {name: daily-report, description: Report., schedule: daily}\n")
    (agent_home / "TASKS.yaml").write_text(
        "tasks:\n"
        "  - name: daily-report-2025-06-02\n    description: Report.\n    status: completed\n"
        "    source: schedule\n    source_ref: schedule-daily-report-2025-06-02\n"
    )
    (agent_home / "TASKS.archive.yaml").write_text(
        "tasks:\n  - name: daily-report-2025-06-01\n    description: Report.\n    status: completed\n"
        "    source_ref: schedule-daily-report-2025-06-01\n"
    )
    (agent_home / ".local/state/agent-task-loop/state").mkdir(parents=True, exist_ok=True)
    (agent_home / ".local/state/agent-task-loop/state/scheduler-last-run").write_text("2025-05-31T12:00:00Z\n")
    result = schedule("2025-06-03T12:00:00Z")
    assert [t["source_ref"] for t in result.data["tasks"]] == ["schedule-daily-report-2025-06-03"]


def test_a_taken_name_gets_a_suffix_not_a_duplicate(schedule, agent_home):
    write_schedules(agent_home, "schedules:\n  - {name: standup, description: Standup., schedule: daily}\n")
    (agent_home / "TASKS.yaml").write_text(
        "tasks:\n  - name: standup-2025-06-02\n    description: Hand-made.\n    status: pending\n"
    )
    result = schedule("2025-06-02T12:00:00Z")
    assert result.exit_code == 0, result.stderr
    assert [t["name"] for t in tasks(agent_home)] == ["standup-2025-06-02", "standup-2025-06-02-2"]
    assert queuefile.check(agent_home / "TASKS.yaml", queuefile.TASKS) == []


def test_catch_up_after_a_gap_creates_each_missed_occurrence_once(schedule, agent_home):
    write_schedules(
        agent_home,
        "schedules:\n"
        "  - {name: daily-report, description: Report., schedule: daily, time: '05:00'}\n"
        "  - {name: wednesday-sync, description: Sync., schedule: 'weekly:wednesday'}\n"
        "  - {name: fourth, description: Fourth., schedule: 'monthly:4'}\n",
    )
    assert [t["source_ref"] for t in schedule("2025-06-02T06:00:00Z").data["tasks"]] == [
        "schedule-daily-report-2025-06-02"
    ]
    # the machine is off for three days; the next run catches up, oldest first
    created = [t["source_ref"] for t in schedule("2025-06-05T06:00:00Z").data["tasks"]]
    assert created == [
        "schedule-daily-report-2025-06-03",
        "schedule-daily-report-2025-06-04",
        "schedule-daily-report-2025-06-05",
        "schedule-wednesday-sync-2025-06-04",
        "schedule-fourth-2025-06-04",
    ]
    assert schedule("2025-06-05T07:00:00Z").data["tasks_created"] == 0


def test_catch_up_stops_at_the_horizon(schedule, agent_home):
    configure(agent_home, scheduler={"horizonDays": 2})
    write_schedules(agent_home, "schedules:\n  - {name: daily-report, description: Report., schedule: daily, time: '05:00'}\n")
    schedule("2025-06-02T06:00:00Z")
    created = [t["source_ref"] for t in schedule("2025-06-12T06:00:00Z").data["tasks"]]
    # 06-10 05:00 is more than 2 days before now: not caught up
    assert created == ["schedule-daily-report-2025-06-11", "schedule-daily-report-2025-06-12"]


def test_horizon_zero_still_creates_todays_occurrences(schedule, agent_home):
    configure(agent_home, scheduler={"horizonDays": 0})
    write_schedules(agent_home, "schedules:\n  - {name: daily-report, description: Report., schedule: daily}\n")
    schedule("2025-06-01T06:00:00Z")
    created = [t["source_ref"] for t in schedule("2025-06-05T06:00:00Z").data["tasks"]]
    assert created == ["schedule-daily-report-2025-06-05"]


def test_max_catch_up_keeps_the_newest(schedule, agent_home):
    configure(agent_home, scheduler={"maxCatchUp": 10})
    write_schedules(agent_home, "schedules:\n  - {name: every-minute, description: Tick., schedule: '* * * * *'}\n")
    schedule("2025-06-02T10:00:00Z")
    result = schedule("2025-06-02T12:00:00Z")
    created = [t["source_ref"] for t in result.data["tasks"]]
    assert created == [f"schedule-every-minute-2025-06-02T11:{m:02d}" for m in range(51, 60)] + [
        "schedule-every-minute-2025-06-02T12:00"
    ]
    assert "maxCatchUp" in result.stderr


# ---------------------------------------------------------------- time zones and DST

BERLIN = ZoneInfo("Europe/Berlin")


def test_place_maps_skipped_and_repeated_wall_clock_times():
    # 2025-03-30 02:00 CET → 03:00 CEST: 02:30 does not exist and fires at 03:30 CEST (01:30 UTC)
    assert schedules.place(dt.datetime(2025, 3, 30, 2, 30), BERLIN) == dt.datetime(2025, 3, 30, 1, 30, tzinfo=dt.timezone.utc)
    # 2025-10-26 03:00 CEST → 02:00 CET: 02:30 happens twice; it fires at the first (00:30 UTC)
    assert schedules.place(dt.datetime(2025, 10, 26, 2, 30), BERLIN) == dt.datetime(2025, 10, 26, 0, 30, tzinfo=dt.timezone.utc)


def runs_across(schedule, dst_day: str) -> list[str]:
    """Run the scheduler at noon the day before, every hour through the DST night (as a timer would),
    then at noon on the DST day and the day after; return every source_ref created, in order."""
    day = dt.date.fromisoformat(dst_day)
    eve = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(12, 0), tzinfo=dt.timezone.utc)
    moments = [eve] + [eve + dt.timedelta(hours=h) for h in range(10, 19)]  # 22:00Z .. 06:00Z
    moments += [eve + dt.timedelta(hours=24), eve + dt.timedelta(hours=48)]
    created = []
    for moment in moments:
        result = schedule(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
        assert result.exit_code == 0, result.stderr
        created += [t["source_ref"] for t in result.data["tasks"]]
    return created


@pytest.mark.parametrize(
    "dst_day",
    ["2025-03-30", "2025-10-26"],
    ids=["spring-forward", "fall-back"],
)
def test_dst_neither_skips_nor_doubles(schedule, agent_home, dst_day):
    write_schedules(
        agent_home,
        "schedules:\n"
        "  - {name: night-job, description: At 02:30 local., schedule: daily, time: '02:30', timezone: Europe/Berlin}\n"
        "  - {name: hourly, description: Every hour at :30 local., schedule: '30 * * * *', timezone: Europe/Berlin}\n",
    )
    created = runs_across(schedule, dst_day)
    assert len(created) == len(set(created)), "an occurrence was created twice"
    night = [r for r in created if r.startswith("schedule-night-job-")]
    day_before = (dt.date.fromisoformat(dst_day) - dt.timedelta(days=1)).isoformat()
    day_after = (dt.date.fromisoformat(dst_day) + dt.timedelta(days=1)).isoformat()
    # the first run creates the day's occurrence already past; then exactly one per day
    assert night == [f"schedule-night-job-{d}" for d in (day_before, dst_day, day_after)]
    # one hourly task per wall-clock slot of the DST day: 24, including the 02:30 that spring skips
    # and only one 02:30 where autumn repeats it
    on_day = sorted(r for r in created if r.startswith(f"schedule-hourly-{dst_day}T"))
    assert on_day == [f"schedule-hourly-{dst_day}T{h:02d}:30" for h in range(24)]
    assert len([r for r in created if r.startswith("schedule-hourly-")]) == len(set(created)) - 3


def test_spring_forward_occurrence_fires_right_after_the_jump(schedule, agent_home):
    write_schedules(
        agent_home,
        "schedules:\n  - {name: night-job, description: x, schedule: daily, time: '02:30', timezone: Europe/Berlin}\n",
    )
    schedule("2025-03-29T12:00:00Z")
    assert schedule("2025-03-30T01:29:00Z").data["tasks_created"] == 0  # 02:29 CET, just before the jump
    assert [t["source_ref"] for t in schedule("2025-03-30T01:30:00Z").data["tasks"]] == [
        "schedule-night-job-2025-03-30"  # 03:30 CEST
    ]


def test_timezone_decides_the_date(schedule, agent_home):
    write_schedules(
        agent_home,
        "schedules:\n  - {name: tokyo-morning, description: x, schedule: 'weekly:tuesday', time: '08:00', timezone: Asia/Tokyo}\n",
    )
    # Monday 23:30 UTC is Tuesday 08:30 in Tokyo
    assert [t["source_ref"] for t in schedule("2025-06-02T23:30:00Z").data["tasks"]] == [
        "schedule-tokyo-morning-2025-06-03"
    ]


# ---------------------------------------------------------------- bad input


def test_bad_entries_are_reported_and_the_rest_still_runs(schedule, agent_home):
    write_schedules(
        agent_home,
        "schedules:\n"
        "  - {name: good, description: Fine., schedule: daily}\n"
        "  - name: bad-zone\n    description: Zone typo.\n    schedule: daily\n    timezone: Europe/Berln\n"
        "  - name: bad-cron\n    description: Minute 61.\n    schedule: '61 * * * *'\n"
        "  - name: bad-format\n    description: Unknown format.\n    schedule: fortnightly\n"
        "  - name: cron-with-time\n    description: Two times.\n    schedule: '0 9 * * *'\n    time: '10:00'\n",
    )
    result = schedule("2025-06-02T12:00:00Z")
    assert result.exit_code == 1
    assert result.data["status"] == "degraded"
    assert refs(agent_home) == ["schedule-good-2025-06-02"]
    errors = "\n".join(result.data["errors"])
    assert re.search(r"SCHEDULES\.yaml:6: schedules\[1\]\.timezone: unknown time zone 'Europe/Berln'", errors)
    assert re.search(r"SCHEDULES\.yaml:9: schedules\[2\]\.schedule: cron field minute '61' is out of range", errors)
    assert re.search(r"SCHEDULES\.yaml:12: schedules\[3\]\.schedule: 'fortnightly'", errors)
    assert re.search(r"SCHEDULES\.yaml:16: schedules\[4\]\.time: `time` applies to daily/weekly/monthly", errors)


def test_unreadable_schedules_file_writes_nothing_and_keeps_the_catch_up_start(schedule, agent_home):
    write_schedules(agent_home, "schedules:\n  - {name: daily-report, description: Report., schedule: daily}\n")
    schedule("2025-06-02T12:00:00Z")
    last_run = agent_home / ".local/state/agent-task-loop/state/scheduler-last-run"
    assert last_run.read_text().strip() == "2025-06-02T12:00:00Z"
    write_schedules(agent_home, "schedules: [unclosed\n")
    before = (agent_home / "TASKS.yaml").read_text()
    result = schedule("2025-06-04T12:00:00Z")
    assert result.exit_code == 1
    assert "SCHEDULES.yaml:" in result.stderr and "not valid YAML" in result.stderr
    assert (agent_home / "TASKS.yaml").read_text() == before
    assert last_run.read_text().strip() == "2025-06-02T12:00:00Z"
    # fixed: the missed days are caught up from where the last good run stopped
    write_schedules(agent_home, "schedules:\n  - {name: daily-report, description: Report., schedule: daily}\n")
    created = [t["source_ref"] for t in schedule("2025-06-04T13:00:00Z").data["tasks"]]
    assert created == ["schedule-daily-report-2025-06-03", "schedule-daily-report-2025-06-04"]


def test_unusable_tasks_file_is_never_overwritten(schedule, agent_home):
    write_schedules(agent_home, "schedules:\n  - {name: daily-report, description: Report., schedule: daily}\n")
    (agent_home / "TASKS.yaml").write_text("tasks: {not: a list}\n")
    result = schedule("2025-06-02T12:00:00Z")
    assert result.exit_code == 1 and result.data["status"] == "error"
    assert (agent_home / "TASKS.yaml").read_text() == "tasks: {not: a list}\n"
    assert "TASKS.yaml:1: tasks: expected a list" in result.stderr


def test_bad_now_is_a_usage_error(run_agent, agent_home):
    result = run_agent("schedule", "--home", str(agent_home), "--now", "next tuesday")
    assert result.exit_code == 2
    assert "not an ISO 8601 date-time" in result.stderr


def test_comments_and_existing_tasks_survive(schedule, agent_home):
    (agent_home / "TASKS.yaml").write_text(
        "# my queue\ntasks:\n  # urgent first\n  - name: fix-it   # really\n    description: Fix it.\n    status: pending\n"
    )
    write_schedules(agent_home, "schedules:\n  - {name: daily-report, description: Report., schedule: daily}\n")
    schedule("2025-06-02T12:00:00Z")
    text = (agent_home / "TASKS.yaml").read_text()
    assert text.startswith("# my queue\ntasks:\n  # urgent first\n  - name: fix-it   # really\n")
    assert [t["name"] for t in tasks(agent_home)] == ["fix-it", "daily-report-2025-06-02"]


def test_dry_run_writes_and_records_nothing(schedule, agent_home):
    write_schedules(agent_home, FORMATS)
    before = (agent_home / "TASKS.yaml").read_text()
    result = schedule("2025-06-02T12:00:00Z", "--dry-run")
    assert result.data["tasks_created"] == 8 and result.data["dry_run"] is True
    assert (agent_home / "TASKS.yaml").read_text() == before
    state = agent_home / ".local/state/agent-task-loop/state"
    assert not (state / "scheduler-last-run").exists()
    assert not (state / "keystone-agent-scheduler-demo.prom").exists()


# ---------------------------------------------------------------- telemetry, wake, lock


def logfmt(line: str) -> dict[str, str]:
    return {k: v.replace('\\"', '"') for k, v in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line)}


def metric_values(path: Path) -> dict[str, tuple[dict, float]]:
    return {
        s.name: (s.labels, s.value)
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }


def test_events_metrics_and_history(schedule, agent_home, tmp_path):
    textfiles = tmp_path / "textfiles"
    configure(agent_home, textfileDir=str(textfiles), host="box1")
    write_schedules(agent_home, FORMATS)
    result = schedule("2025-06-02T12:00:00Z")
    events = [logfmt(line) for line in result.stderr.splitlines() if "event=" in line]
    names = [e["event"] for e in events]
    assert names[0] == "run_start" and names[-1] == "run_finish"
    assert names.count("task_created") == 8
    start, finish = events[0], events[-1]
    assert start["unit"] == "agent-demo-scheduler" and start["agent"] == "demo"
    assert (start["date"], start["day_of_week"], start["day_of_month"]) == ("2025-06-02", "monday", "2")
    assert finish["status"] == "success" and finish["exit_code"] == "0" and finish["tasks_created"] == "8"
    created = [e for e in events if e["event"] == "task_created"]
    assert {e["source_ref"] for e in created} == set(refs(agent_home))
    assert len({e["run_id"] for e in events}) == 1

    values = metric_values(textfiles / "keystone-agent-scheduler-demo.prom")
    labels, count = values["keystone_agent_scheduler_tasks_created_total"]
    assert labels == {"host": "box1", "agent": "demo", "unit": "agent-demo-scheduler"}
    assert count == 8
    assert values["keystone_agent_scheduler_last_exit_code"][1] == 0
    success_at = values["keystone_agent_scheduler_last_success_timestamp_seconds"][1]
    assert success_at == values["keystone_agent_scheduler_last_run_timestamp_seconds"][1] > 1.6e9
    assert values["keystone_agent_scheduler_last_duration_seconds"][1] >= 0

    # the run log holds the same lines
    logs = list((agent_home / ".local/state/agent-task-loop/logs").glob("scheduler-*.log"))
    assert len(logs) == 1 and logs[0].read_text().count("event=\"task_created\"") == 8

    with sqlite3.connect(agent_home / ".local/state/agent-task-loop/state/history.sqlite3") as db:
        rows = db.execute("SELECT kind, status, exit_code, tasks_created, trigger_at, run_id FROM runs").fetchall()
    assert rows == [("scheduler", "success", 0, 8, "2025-06-02T12:00:00Z", start["run_id"])]

    # a failing run: exit code 1 recorded, the last success kept
    write_schedules(agent_home, "schedules: [broken\n")
    schedule("2025-06-03T12:00:00Z")
    values = metric_values(textfiles / "keystone-agent-scheduler-demo.prom")
    assert values["keystone_agent_scheduler_last_exit_code"][1] == 1
    assert values["keystone_agent_scheduler_tasks_created_total"][1] == 0
    assert values["keystone_agent_scheduler_last_success_timestamp_seconds"][1] == success_at
    with sqlite3.connect(agent_home / ".local/state/agent-task-loop/state/history.sqlite3") as db:
        statuses = [r[0] for r in db.execute("SELECT status FROM runs ORDER BY id")]
    assert statuses == ["success", "degraded"]  # TASKS.yaml was usable: degraded, not error


def test_wakes_the_loop_only_when_tasks_were_created(schedule, agent_home, tmp_path):
    record = tmp_path / "woken"
    waker = tmp_path / "waker.py"
    waker.write_text("import sys\nopen(sys.argv[1], 'a').write(' '.join(sys.argv[2:]) + '\\n')\n")
    configure(agent_home, scheduler={"wakeCommand": [sys.executable, str(waker), str(record), "start", "loop"]})
    write_schedules(agent_home, "schedules:\n  - {name: daily-report, description: Report., schedule: daily}\n")
    result = schedule("2025-06-02T12:00:00Z")
    assert result.data["woke"][-2:] == ["start", "loop"]
    assert record.read_text() == "start loop\n"
    schedule("2025-06-02T13:00:00Z")  # nothing new: no wake
    assert record.read_text() == "start loop\n"


def test_wake_command_does_not_wait_for_a_slow_command(tmp_path):
    started = dt.datetime.now()
    outcome = wake.wake([sys.executable, "-c", "import time; time.sleep(3)"], report_wait=0.5)
    waited = (dt.datetime.now() - started).total_seconds()
    assert outcome.exit_code is None and outcome.error is None
    assert waited < 5


def test_wake_argv_defaults(monkeypatch):
    monkeypatch.setattr(wake, "systemd_present", lambda: True)
    assert wake.wake_argv("drago", None) == [
        "systemctl", "--user", "start", "--no-block", "agent-drago-task-loop.service"
    ]
    assert wake.wake_argv("drago", []) is None  # explicitly disabled
    assert wake.wake_argv("drago", ["true"]) == ["true"]
    monkeypatch.setattr(wake, "systemd_present", lambda: False)
    assert wake.wake_argv("drago", None) is None
    failed = wake.wake([sys.executable, "-c", "raise SystemExit(3)"])
    assert failed.exit_code == 3 and "exited 3" in failed.error
    assert "cannot run" in wake.wake(["/nonexistent/waker"]).error


def test_a_held_lock_skips_quietly(schedule, agent_home, tmp_path):
    configure(agent_home, textfileDir=str(tmp_path / "textfiles"))
    write_schedules(agent_home, "schedules:\n  - {name: daily-report, description: Report., schedule: daily}\n")
    space = AgentSpace.from_home(agent_home)
    with try_lock(space.scheduler_lock_file) as held:
        assert held
        result = schedule("2025-06-02T12:00:00Z")
    assert result.exit_code == 0 and result.data["status"] == "skipped"
    assert tasks(agent_home) == []
    assert not (tmp_path / "textfiles").exists()


def test_installed_script_runs_end_to_end(agent_subprocess, agent_home):
    write_schedules(agent_home, "schedules:\n  - {name: daily-report, description: Report., schedule: daily}\n")
    done = agent_subprocess("schedule", "--home", str(agent_home), "--now", "2025-06-02T12:00:00Z", env={"TZ": "UTC"})
    assert done.returncode == 0, done.stderr
    assert "created daily-report-2025-06-02  (schedule-daily-report-2025-06-02)" in done.stdout
    assert 'event="run_finish"' in done.stderr
    assert refs(agent_home) == ["schedule-daily-report-2025-06-02"]


def test_calendar_config_needs_a_url_or_a_command(tmp_path):
    from keystone_agents.config import load_config
    from keystone_agents.problems import ValidationFailed

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"agentName": "demo", "calendar": {"command": ["calendula", "--json", "events", "list"]}}))
    config = load_config(path)
    assert config.calendar.command == ["calendula", "--json", "events", "list"]
    assert config.calendar.url is None and config.calendar.window_hours == 24
    assert config.scheduler.horizon_days == 7 and config.scheduler.max_catch_up == 100
    path.write_text(json.dumps({"agentName": "demo", "calendar": {"user": "x"}}))
    with pytest.raises(ValidationFailed):
        load_config(path)
