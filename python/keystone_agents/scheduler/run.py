"""One scheduler run: SCHEDULES.yaml and the calendar → new pending tasks in TASKS.yaml, once each.

    lock (non-blocking; held = skip quietly, nothing recorded)
    run_start
    schedules  occurrences since the last run (at most horizonDays back; today's always), dedup by source_ref
    calendar   events in [now, now + windowHours), dedup by source_ref — read even without SCHEDULES.yaml
    save       TASKS.yaml, validated and atomic; then task_created per task
    wake       the task loop, without waiting
    run_finish metrics file, history row, last-run moment (only when schedules were read and tasks saved)

Deduplication looks at every entry of TASKS.yaml (valid or not) and at TASKS.archive.yaml.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from prometheus_client.parser import text_string_to_metric_families

from keystone_agents import history, queuefile, sanitize
from keystone_agents.atomic import write_atomic
from keystone_agents.config import Config
from keystone_agents.events import event_logger, hostname
from keystone_agents.lock import hold, try_lock
from keystone_agents.metrics import metrics_path, textfile_dir, write_metrics
from keystone_agents.problems import Problem, ValidationFailed
from keystone_agents.scheduler import calendar_source, schedules, wake
from keystone_agents.space import AgentSpace
from keystone_agents.timeutil import iso_z, parse_time, utc_now

METRIC_PREFIX = "keystone_agent_scheduler_"


@dataclass
class RunResult:
    run_id: str
    status: str  # success | degraded | error | skipped
    exit_code: int
    now: dt.datetime
    created: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duration_seconds: float = 0.0
    woke: list[str] | None = None
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "exit_code": self.exit_code,
            "now": iso_z(self.now),
            "dry_run": self.dry_run,
            "tasks_created": len(self.created),
            "tasks": self.created,
            "errors": self.errors,
            "woke": self.woke,
            "duration_seconds": round(self.duration_seconds, 3),
        }


@dataclass
class _Queue:
    """TASKS.yaml plus what dedup needs: every source_ref and name already taken."""

    problems: list[Problem]  # isolated TASKS.yaml entries, reported (they stay as they are)
    refs: set[str]
    names: set[str]
    new: list[dict[str, Any]] = field(default_factory=list)
    spill_dir: Path | None = None  # where descriptions over sanitize.DESCRIPTION_MAX go
    refused: list[str] = field(default_factory=list)

    def add(self, task: dict[str, Any]) -> dict[str, Any] | None:
        """Queue a new task (made safe by sanitize.clean_task) unless its source_ref is known; None if not added."""
        try:
            task = sanitize.clean_task(task, spill_dir=self.spill_dir)
        except sanitize.UnsafeText as exc:
            self.refused.append(f"{task.get('source_ref')}: not created: {exc}")
            return None
        if task["source_ref"] in self.refs:
            return None
        name, n = task["name"], 2
        while name in self.names:  # another task already has the name: keep names unique
            name, n = sanitize.bounded_name(task["name"], f"-{n}"), n + 1
        task = {**task, "name": name}
        self.refs.add(task["source_ref"])
        self.names.add(name)
        self.new.append(task)
        return task


def _archive_refs(path: Path) -> tuple[set[str], list[Problem]]:
    """source_refs in TASKS.archive.yaml, read leniently (it is append-only history, never rewritten here)."""
    from keystone_agents.taskfile import read_entries

    entries, problems = read_entries(path)
    return {str(t["source_ref"]) for t in entries if isinstance(t.get("source_ref"), (str, int))}, problems


def _load_queue(space: AgentSpace) -> _Queue:
    from keystone_agents.taskfile import TaskFile

    tf = TaskFile.load(space.tasks_file)
    refs = {str(e.get("source_ref")) for e in tf.entries if e.get("source_ref")}
    names = {str(e.name) for e in tf.entries if e.name}
    archive_refs, problems = _archive_refs(space.tasks_archive_file)
    if problems:  # dedup against the archive is impossible: create nothing rather than duplicates
        raise ValidationFailed([Problem(p.file, p.line, p.field, f"cannot read for deduplication: {p.message}")
                                for p in problems])
    refs |= archive_refs
    return _Queue(tf.problems, refs, names, spill_dir=space.task_texts_dir)


def _save_queue(space: AgentSpace, queue: _Queue) -> list[dict[str, Any]]:
    """Append the new tasks to TASKS.yaml as it is *now*: under the tasks lock, re-read the file (the loop or a
    human may have written it since we read it, calendar fetches take seconds), dedup again, append, save.
    Returns the tasks actually added."""
    from keystone_agents.taskfile import TaskFile

    with hold(space.tasks_lock_file):
        tf = TaskFile.load(space.tasks_file)
        refs = {str(e.get("source_ref")) for e in tf.entries if e.get("source_ref")}
        names = {str(e.name) for e in tf.entries if e.name}
        added = []
        for task in queue.new:
            if task["source_ref"] in refs:
                continue
            name, n = task["name"], 2
            while name in names:
                name, n = sanitize.bounded_name(task["name"], f"-{n}"), n + 1
            task = {**task, "name": name}
            tf.append(task)
            refs.add(task["source_ref"])
            names.add(name)
            added.append(task)
        tf.save()
    return added


def _read_last_run(path: Path) -> dt.datetime | None:
    try:
        return parse_time(path.read_text(encoding="utf-8").strip())
    except OSError:
        return None


def _window_start(
    last_run: dt.datetime | None, now: dt.datetime, horizon_days: float, zone: schedules.ZoneInfo
) -> tuple[dt.datetime, bool]:
    """(start, include_start) of the catch-up window ending at now."""
    midnight = schedules.local_midnight(now, zone)
    floor = min(now - dt.timedelta(days=horizon_days), midnight)  # today's occurrences always count
    if last_run is None or last_run > now:  # first run (or a clock/--now before the last run): today
        return max(midnight, floor), True
    if last_run < floor:
        return floor, True
    return last_run, False


def _schedule_tasks(space, config, now, last_run, queue, log, errors) -> tuple[list[dict], bool]:
    """New tasks from SCHEDULES.yaml, and whether the file was read (absent counts as read)."""
    if not space.schedules_file.exists():
        return [], True
    try:
        doc = queuefile.load(space.schedules_file, queuefile.SCHEDULES)
    except ValidationFailed as exc:
        for problem in exc.problems:
            errors.append(str(problem))
            log.error("log", msg=f"SCHEDULES.yaml not used: {problem}", level="error", file=problem.file, line=problem.line, field=problem.field)
        return [], False
    for problem in doc.problems:
        errors.append(str(problem))
        log.warning("log", msg=f"schedule skipped: {problem}", level="warning", file=problem.file, line=problem.line, field=problem.field)
    default_zone = schedules.local_zone()
    created = []
    for index, entry in enumerate(doc.entries()):
        if not doc.is_valid(entry):
            continue
        try:
            schedule = schedules.parse_schedule(entry, default_zone)
        except schedules.ScheduleError as exc:
            line = queuefile._line_of(doc.data, ["schedules", index, exc.field])
            problem = Problem(str(space.schedules_file), line, f"schedules[{index}].{exc.field}", str(exc))
            errors.append(str(problem))
            log.warning("log", msg=f"schedule skipped: {problem}", level="warning", file=problem.file, line=line, field=problem.field)
            continue
        start, include_start = _window_start(last_run, now, config.scheduler.horizon_days, schedule.zone)
        due = schedules.occurrences(schedule, start, now, include_start=include_start)
        due = [o for o in due if o.source_ref not in queue.refs]
        if len(due) > config.scheduler.max_catch_up:
            dropped = due[: len(due) - config.scheduler.max_catch_up]
            due = due[len(dropped):]
            log.warning(
                "log", msg=f"schedule {schedule.name}: {len(dropped)} older missed occurrences not created (maxCatchUp)",
                level="warning", schedule=schedule.name, dropped=len(dropped),
            )
        for occurrence in due:
            task = {
                "name": occurrence.task_name,
                "description": schedule.description,
                "status": "pending",
                "source": "schedule",
                "source_ref": occurrence.source_ref,
            }
            if schedule.workflow:
                task["workflow"] = schedule.workflow
            task["created_at"] = iso_z(now)
            added = queue.add(task)
            if added:
                created.append(added)
    return created, True


def _calendar_tasks(config: Config, now: dt.datetime, queue: _Queue, log, errors: list[str]) -> list[dict]:
    settings = config.calendar
    if settings is None:
        return []
    zone = schedules.local_zone()
    end = now + dt.timedelta(hours=settings.window_hours)
    try:
        if settings.command:
            events = calendar_source.fetch_command(list(settings.command), now, end, zone)
        elif settings.url:
            events = calendar_source.fetch_caldav(settings.url, settings.user, settings.password_file, now, end, zone)
        else:
            raise calendar_source.CalendarError("calendar has neither url nor command")
    except calendar_source.CalendarError as exc:
        errors.append(f"calendar: {exc}")
        log.error("log", msg=f"calendar not read: {exc}", level="error", source="calendar")
        return []
    created = []
    for event in events:
        added = queue.add(
            {
                "name": event.task_name,
                "description": event.task_description,
                "status": "pending",
                "source": "calendar",
                "source_ref": event.source_ref,
                "created_at": iso_z(now),
            }
        )
        if added:
            created.append(added)
    return created


def _previous_success(path: Path) -> float:
    """The last success timestamp of the previous metrics file, so a failed run does not erase it."""
    try:
        text = path.read_text(encoding="utf-8")
        for family in text_string_to_metric_families(text):
            if family.name == METRIC_PREFIX + "last_success_timestamp_seconds":
                return max((sample.value for sample in family.samples), default=0.0)
    except (OSError, ValueError):
        pass
    return 0.0


def _write_metrics(config: Config, space: AgentSpace, unit: str, result: RunResult, finished: float) -> None:
    path = metrics_path(textfile_dir(config.textfile_dir, space.state_dir), "scheduler", config.agent_name)
    last_success = finished if result.exit_code == 0 else _previous_success(path)
    write_metrics(
        path,
        {"host": config.host or hostname(), "agent": config.agent_name, "unit": unit},
        {
            METRIC_PREFIX + "last_run_timestamp_seconds": ("When the scheduler last finished a run (Unix time).", finished),
            METRIC_PREFIX + "last_success_timestamp_seconds": ("When a scheduler run last exited 0 (Unix time).", last_success),
            METRIC_PREFIX + "last_exit_code": ("Exit code of the last scheduler run.", result.exit_code),
            METRIC_PREFIX + "last_duration_seconds": ("Duration of the last scheduler run.", result.duration_seconds),
            METRIC_PREFIX + "tasks_created_total": ("Tasks created by the last scheduler run.", len(result.created)),
            **_missed_samples(config, space),
        },
    )


# ---------------------------------------------------------------- missed runs (issue 10)


def _missed_file(space: AgentSpace) -> Path:
    return space.state_dir / "scheduler-missed-runs"


def _check_overdue(space: AgentSpace, config: Config, run_id: str, started: dt.datetime, log) -> int:
    """A run that finds the previous one longer ago than the timer allows says so and counts the misses."""
    from contextlib import closing

    from keystone_agents import missed

    interval = config.scheduler.expected_interval_seconds
    if not interval:
        return 0
    with closing(history.connect(space.history_db)) as conn:
        previous = history.previous_run(conn, "scheduler", run_id)
    found = missed.overdue(previous, started, interval)
    if found is None:
        return 0
    missed.add(_missed_file(space), found.missed)
    log.warning("run_overdue", msg=f"the previous scheduler run ended {found.gap_seconds:.0f}s ago, expected every "
                f"{interval:g}s: {found.missed} run(s) missed", status="overdue", previous_run_id=found.previous_run_id,
                previous_run_at=found.previous_at, gap_seconds=found.gap_seconds, expected_interval_seconds=interval,
                missed_runs=found.missed)
    return found.missed


def _missed_samples(config: Config, space: AgentSpace) -> dict:
    from keystone_agents import missed

    samples = {METRIC_PREFIX + "missed_runs_total": (
        "Scheduler runs the timer should have started but did not (cumulative, from the gaps between runs).",
        missed.read_total(_missed_file(space)))}
    if config.scheduler.expected_interval_seconds:
        samples[METRIC_PREFIX + "expected_interval_seconds"] = (
            "How often the scheduler's timer should start a run.", config.scheduler.expected_interval_seconds)
    return samples


def _prune_logs(space: AgentSpace, keep: int) -> None:
    from keystone_agents import kinds

    kinds.prune(space, kinds.SCHEDULER, keep)


def run(
    space: AgentSpace,
    config: Config,
    now: dt.datetime | None = None,
    *,
    dry_run: bool = False,
    stream: TextIO | None = None,
) -> RunResult:
    """One scheduler run for the moment `now` (default: the clock)."""
    clock_start = time.monotonic()
    started = utc_now()
    now = (now or started).astimezone(dt.timezone.utc)
    stamp = started.strftime("%Y%m%dT%H%M%S%fZ")
    agent = config.agent_name
    unit = f"agent-{agent}-scheduler"
    run_id = f"{agent}-scheduler-{stamp}"
    space.ensure_state_dirs()
    log_file = None if dry_run else space.scheduler_log_file(stamp)
    log = event_logger(agent=agent, unit=unit, run_id=run_id, log_file=log_file, stream=stream,
                       event_db=None if dry_run else space.history_db,
                       event_bus=None if dry_run else config.coordination)
    result = RunResult(run_id=run_id, status="success", exit_code=0, now=now, dry_run=dry_run)

    with try_lock(space.scheduler_lock_file) as locked:
        if not locked:
            log.info("log", msg="another scheduler run holds the lock; skipping", level="info", status="skipped")
            result.status = "skipped"
            return result
        local_now = now.astimezone(schedules.local_zone())
        log.info(
            "run_start", msg="scheduler run started", status="started", now=iso_z(now),
            date=local_now.strftime("%Y-%m-%d"), day_of_week=local_now.strftime("%A").lower(),
            day_of_month=str(local_now.day), dry_run=dry_run or None,
        )
        missed_runs = 0 if dry_run else _check_overdue(space, config, run_id, started, log)
        errors: list[str] = []
        queue: _Queue | None = None
        schedules_read = False
        try:
            queue = _load_queue(space)
            if dry_run:
                queue.spill_dir = None  # a dry run writes nothing, long descriptions are only cut
        except ValidationFailed as exc:
            for problem in exc.problems:
                errors.append(str(problem))
                log.error("log", msg=f"TASKS.yaml unusable: {problem}", level="error", file=problem.file, line=problem.line, field=problem.field)
        if queue is not None:
            for problem in queue.problems:  # isolated entries: kept verbatim, reported
                log.warning("log", msg=f"invalid task entry kept as is: {problem}", level="warning", file=problem.file, line=problem.line, field=problem.field)
            last_run = _read_last_run(space.scheduler_last_run_file)
            schedule_created, schedules_read = _schedule_tasks(space, config, now, last_run, queue, log, errors)
            calendar_created = _calendar_tasks(config, now, queue, log, errors)
            for reason in queue.refused:
                errors.append(reason)
                log.warning("log", msg=reason, level="warning")
            created = schedule_created + calendar_created
            saved = True
            if created and not dry_run:
                try:
                    created = _save_queue(space, queue)
                except ValidationFailed as exc:
                    saved = False
                    for problem in exc.problems:
                        errors.append(str(problem))
                        log.error("log", msg=f"TASKS.yaml not written: {problem}", level="error", file=problem.file, line=problem.line, field=problem.field)
            if saved:
                result.created = created
                for task in created:
                    log.info(
                        "task_created", msg=f"created task {task['name']}", task_name=task["name"],
                        source=task["source"], source_ref=task["source_ref"], workflow=task.get("workflow"),
                    )
                if schedules_read and not dry_run:
                    previous = _read_last_run(space.scheduler_last_run_file)
                    if previous is None or now > previous:
                        write_atomic(space.scheduler_last_run_file, iso_z(now) + "\n")
            else:
                queue = None

        if result.created and not dry_run:
            outcome = wake.wake(wake.wake_argv(agent, config.scheduler.wake_command))
            result.woke = outcome.argv
            if outcome.argv:
                log.info("log", msg="woke the task loop" if not outcome.error else f"waking the task loop failed: {outcome.error}",
                         level="info" if not outcome.error else "warning", command=outcome.argv, exit_code=outcome.exit_code)
            else:
                log.info("log", msg="no systemd and no wakeCommand: the task loop's timer will pick the tasks up", level="info")

        result.errors = errors
        if queue is None:
            result.status, result.exit_code = "error", 1
        elif errors:
            result.status, result.exit_code = "degraded", 1
        result.duration_seconds = time.monotonic() - clock_start
        log.info(
            "run_finish", msg=f"scheduler run finished: {len(result.created)} task(s) created", status=result.status,
            exit_code=result.exit_code, duration_seconds=round(result.duration_seconds, 3), tasks_created=len(result.created),
        )
        if dry_run:
            return result
        finished = time.time()
        _write_metrics(config, space, unit, result, finished)
        history.record_run(
            space.history_db,
            {
                "run_id": run_id,
                "kind": "scheduler",
                "started_at": iso_z(started),
                "finished_at": iso_z(utc_now()),
                "trigger_at": iso_z(now),
                "status": result.status,
                "exit_code": result.exit_code,
                "duration_seconds": result.duration_seconds,
                "tasks_created": len(result.created),
                "created": [t["name"] for t in result.created],
                "errors": errors,
                "missed_runs": missed_runs,
            },
        )
        _prune_logs(space, config.keep_run_logs)
    return result
