"""One run of the task loop: lock → pause → recover → prefetch → ingest → archive → prioritize → execute →
history, metrics, rotation. Exit codes: 0 success (also: lock held, paused, dry run), 1 error (invalid
configuration or TASKS.yaml, or an unexpected failure), 3 degraded (a source, a task or an entry failed)."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from keystone_agents import history
from keystone_agents import pause as pausefile
from keystone_agents.events import event_logger, hostname
from keystone_agents.lock import try_lock
from keystone_agents.loop.prefetch import PrefetchResult, build_sources, commit, prefetch
from keystone_agents.loop.rotate import rotate
from keystone_agents.loop.settings import env_for_children, load_config_cached, load_projects
from keystone_agents.loop.state import canonical_hash, read_json, read_text, remove, sha256_file, write_json, write_text
from keystone_agents.problems import ValidationFailed
from keystone_agents.space import AgentSpace
from keystone_agents.timeutil import iso_z, utc_now

# The stage modules (YAML parsing, providers) are imported only when a run has work to do: an unchanged
# tick (the common case, every five minutes) skips them, see docs/performance.md.

EXIT_OK, EXIT_ERROR, EXIT_DEGRADED = 0, 1, 3
STATUS_EXIT = {"success": EXIT_OK, "paused": EXIT_OK, "degraded": EXIT_DEGRADED, "error": EXIT_ERROR}
QUIESCENT_VERSION = 1
INGEST_EVENTS_MAX = 100  # per-task ingest events per run; a flood of 10,000 lines helps nobody


@dataclass
class Counters:
    completed: int = 0
    failed: int = 0
    blocked: int = 0
    executed: int = 0
    tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class RunState:
    status: str = "success"
    counters: Counters = field(default_factory=Counters)
    tasks_created: int = 0
    sources_failed: int = 0
    recovered: int = 0
    archived: int = 0
    skipped_unchanged: bool = False
    problems: list[str] = field(default_factory=list)

    def degrade(self) -> None:
        if self.status == "success":
            self.status = "degraded"


def run(home: Path | None, config_path: Path | None, max_tasks: int | None = None, dry_run: bool = False) -> int:
    space = AgentSpace.from_home(home)
    try:
        space.ensure_state_dirs()
    except OSError as exc:
        print(f"error: cannot create {space.state_root}: {exc.strerror}", file=sys.stderr)
        return EXIT_ERROR
    with try_lock(space.lock_file) as held:
        if not held:
            print("Task loop already running, skipping", file=sys.stderr)
            return EXIT_OK
        try:
            config = load_config_cached(config_path, space.home, space.state_dir / "config-validated.sha256")
        except ValidationFailed as exc:
            for problem in exc.problems:
                print(f"error: {problem}", file=sys.stderr)
            return EXIT_ERROR
        space = AgentSpace.from_home(space.home, config.notes_dir)
        return Run(space, config, max_tasks, dry_run).execute()


class Run:
    def __init__(self, space: AgentSpace, config, max_tasks: int | None, dry_run: bool):
        self.space, self.config, self.dry_run = space, config, dry_run
        self.max_tasks = config.max_tasks if max_tasks is None else max_tasks
        self.started = time.time()
        now = dt.datetime.now()
        stamp = now.strftime("%Y-%m-%d_%H%M%S") + f"_{now.microsecond // 1000:03d}"
        self.agent = config.agent_name
        self.unit = f"agent-{self.agent}-task-loop"
        self.run_id = f"{self.agent}-task-loop-{stamp}"
        self.run_log = space.logs_dir / f"{stamp}.log"
        self.log = event_logger(agent=self.agent, unit=self.unit, run_id=self.run_id, log_file=self.run_log)
        self.state = RunState()
        self.step = "setup"
        self.env = env_for_children(config)

    # ------------------------------------------------------------ the run

    def execute(self) -> int:
        space, log = self.space, self.log
        log.info("run_start", msg="Task loop run started" + (" (dry run)" if self.dry_run else ""),
                 step=self.step, status="started", max_tasks=self.max_tasks, dry_run=self.dry_run)
        pause = pausefile.read(space.pause_file)
        if pause.paused:
            log.info("run_paused", msg="Task loop is paused; nothing done", step="pause", status="paused",
                     paused_at=pause.paused_at or "", paused_by=pause.paused_by or "", reason=pause.reason or "")
            self.state.status = "paused"
            return self.finish()
        try:
            with closing(history.connect(space.history_db)) as conn:
                self.conn = conn
                if not self.dry_run:
                    # a run still "running" in the history died (we hold the lock): it ended in error
                    conn.execute("UPDATE runs SET status = 'error', exit_code = -9 WHERE kind = 'task-loop' "
                                 "AND status = 'running' AND run_id != ?", (self.run_id,))
                    history.record_run(space.history_db, {"run_id": self.run_id, "kind": "task-loop",
                                                          "started_at": iso_z(), "status": "running"})
                self.stages()
        except ValidationFailed as exc:
            for problem in exc.problems:
                log.error("log", msg=f"invalid file: {problem}", step=self.step, status="error",
                          file=problem.file, line=problem.line or "", field=problem.field)
            self.state.status = "error"
        except Exception as exc:  # noqa: BLE001 - the run ends with status error, not a traceback only
            import traceback

            log.error("log", msg=f"run failed: {type(exc).__name__}: {exc}", step=self.step, status="error",
                      traceback=traceback.format_exc()[-2000:])
            self.state.status = "error"
        return self.finish()

    def stages(self) -> None:
        space, config, log = self.space, self.config, self.log
        projects = load_projects(space.projects_file, space.state_dir / "projects-index.json")
        for problem in projects.problems:
            log.warning("log", msg=f"PROJECTS.yaml: {problem}", step="setup", status="error")
            self.state.degrade()

        # recover (needs TASKS.yaml only when a run died: running.json or in_progress tasks)
        running_file = space.state_dir / "running.json"
        tasks_sha = sha256_file(space.tasks_file)
        quiescent = read_json(space.state_dir / "quiescent.json")

        # prefetch
        self.step = "prefetch"
        fetched = self.prefetch(projects)
        sources_hash = canonical_hash(fetched.sources_json())

        fingerprint = {
            "version": QUIESCENT_VERSION, "tasks": tasks_sha, "archive": sha256_file(space.tasks_archive_file),
            "projects": projects.sha, "config": read_text(space.state_dir / "config-validated.sha256") or "",
            "sources": sources_hash, "max_tasks": self.max_tasks,
        }
        if (isinstance(quiescent, dict) and not running_file.exists() and not self.dry_run
                and quiescent.get("fingerprint") == fingerprint
                and time.time() < (quiescent.get("next_due") or float("inf"))
                and not quiescent.get("problems")):
            commit(fetched, log)
            self.state.skipped_unchanged = True
            log.info("log", msg="Nothing changed since the last run (queue, projects, configuration, sources); "
                     "skipping ingest, prioritize and execute", step="check", status="skipped")
            return

        from keystone_agents.loop import archive as archiving
        from keystone_agents.loop import prioritize
        from keystone_agents.loop.execute import has_runnable, recover
        from keystone_agents.taskfile import TaskFile, read_plain

        self.step = "recover"
        tf = TaskFile.load(space.tasks_file)
        for problem in tf.problems:
            log.warning("log", msg=f"invalid task entry skipped: {problem}", step="validate", status="error",
                        file=problem.file, line=problem.line or "", field=problem.field)
        if tf.problems:
            self.state.degrade()
        if not self.dry_run:
            self.state.recovered = recover(space, tf, self.conn, log, config.kill_grace_seconds)

        archive_entries = read_plain(space.tasks_archive_file)
        archived_names = {e.get("name") for e in archive_entries if e.get("status") == "completed"}
        archived_refs = {e.get("source_ref") for e in archive_entries if e.get("source_ref")}

        # ingest
        self.step = "ingest"
        self.ingest(tf, fetched, sources_hash, archive_entries, archived_refs, projects)
        if not self.dry_run:
            commit(fetched, log)  # the items are in TASKS.yaml: sources may advance (IMAP UIDs)

        # archive
        self.step = "archive"
        ready, next_due = archiving.due(tf, utc_now(), config.archive_after_days)
        if ready and not self.dry_run:
            try:
                self.state.archived = archiving.archive(tf, space.tasks_archive_file, ready)
                archived_names |= {e.get("name") for e in ready}
                tf.save()
                log.info("log", msg=f"archived {self.state.archived} completed task(s) to TASKS.archive.yaml",
                         step="archive", status="ok", tasks_archived=self.state.archived)
            except ValidationFailed as exc:
                log.error("log", msg=f"archive skipped: {exc.problems[0]}", step="archive", status="error")
                self.state.degrade()

        # prioritize
        self.step = "prioritize"
        t0 = time.monotonic()
        log.info("stage_start", msg="Prioritizing pending tasks", step="prioritize", stage_name="prioritize")
        ruled = prioritize.apply_rules(tf, config.workflow_rules, config.runtime_rules)
        moved = prioritize.order(tf, projects.ranks)
        wrote = tf.save() if not self.dry_run else False
        log.info("stage_finish", msg="Prioritize " + ("rewrote TASKS.yaml" if wrote else "left TASKS.yaml unchanged"),
                 step="prioritize", stage_name="prioritize", status="ok", rules_applied=ruled, reordered=moved,
                 written=wrote, duration_seconds=round(time.monotonic() - t0, 3))

        # execute
        self.step = "execute"
        tf = self.execute_tasks(tf, archived_names)

        if not self.dry_run:
            fingerprint["tasks"] = sha256_file(space.tasks_file)
            fingerprint["archive"] = sha256_file(space.tasks_archive_file)
            if has_runnable(tf, archived_names) or tf.problems:
                remove(space.state_dir / "quiescent.json")
            else:
                _, next_due = archiving.due(tf, utc_now(), config.archive_after_days)
                write_json(space.state_dir / "quiescent.json",
                           {"fingerprint": fingerprint, "next_due": next_due, "problems": bool(tf.problems)})

    # ------------------------------------------------------------ stages

    def prefetch(self, projects) -> PrefetchResult:
        t0 = time.monotonic()
        log = self.log
        sources = build_sources(self.config, projects.sources, self.space.home, self.env, self.run_log,
                                self.space.state_dir, log)
        log.info("stage_start", msg=f"Pre-fetching {len(sources)} source(s)", step="prefetch", stage_name="prefetch")
        result = prefetch(sources, log)
        self.state.sources_failed = len(result.failed)
        if result.failed:
            self.state.degrade()
        log.info("stage_finish", msg="Pre-fetch done", step="prefetch", stage_name="prefetch",
                 status="ok" if not result.failed else "degraded", source_entries=len(result.fetched),
                 sources_failed=len(result.failed), duration_seconds=round(time.monotonic() - t0, 3))
        return result

    def ingest(self, tf, fetched: PrefetchResult, sources_hash, archive_entries, archived_refs, projects) -> None:
        space, log = self.space, self.log
        hash_file = space.state_dir / "ingest-inputs.sha256"
        if not fetched.fetched:
            log.info("log", msg="No source data to ingest, skipping", step="ingest", status="skipped")
            return
        if read_text(hash_file) == sources_hash:
            log.info("log", msg="Inputs unchanged, skipping ingest", step="ingest", status="skipped")
            return
        t0 = time.monotonic()
        log.info("stage_start", msg="Ingesting source items", step="ingest", stage_name="ingest")
        if not self.dry_run:
            space.deepwork_dir.mkdir(parents=True, exist_ok=True)
            import json

            write_text(space.sources_json, json.dumps(fetched.sources_json(), indent=2, ensure_ascii=False))
        from keystone_agents.loop import ingest

        items, unusable = ingest.collect(fetched.fetched)
        known = {e.get("source_ref") for e in tf.entries if isinstance(e.data, dict) and e.get("source_ref")}
        known |= archived_refs
        triaged_file = space.state_dir / "triage-skipped.json"
        triage = None
        if self.config.llm_triage and not self.dry_run:
            from keystone_agents.loop.triage import Triage

            skipped_before = read_json(triaged_file) or []
            known |= set(skipped_before)
            triage = Triage(self.config, sorted(projects.ranks), log,
                            space.task_logs_dir / f"{self.run_log.stem}_ingest-triage.log", self.env, space.home)
        names = {e.name for e in tf.entries if isinstance(e.name, str)} | {e.get("name") for e in archive_entries}
        new, not_actionable = ingest.new_tasks(items, known, ingest.Namer(n for n in names if n), iso_z(), triage)
        for number, entry in enumerate(new):
            tf.append(entry)
            if number < INGEST_EVENTS_MAX:
                log.info("log", msg=f"ingested task {entry['name']}", step="ingest", task_name=entry["name"],
                         source=entry["source"], source_ref=entry["source_ref"])
        if len(new) > INGEST_EVENTS_MAX:
            log.info("log", msg=f"ingested {len(new) - INGEST_EVENTS_MAX} more task(s) (one event each only for "
                     f"the first {INGEST_EVENTS_MAX})", step="ingest")
        if not self.dry_run:
            tf.save()
            if triage is not None and not_actionable:
                write_json(triaged_file, sorted(set(read_json(triaged_file) or []) | {i.source_ref for i in not_actionable}))
            write_text(hash_file, sources_hash)
        self.state.tasks_created = len(new)
        log.info("stage_finish", msg=f"Ingest created {len(new)} task(s)", step="ingest", stage_name="ingest",
                 status="ok", tasks_created=len(new), items_seen=len(items), items_unusable=unusable,
                 items_not_actionable=len(not_actionable), duration_seconds=round(time.monotonic() - t0, 3))

    def execute_tasks(self, tf, archived_names: set[str]):
        from keystone_agents.loop.execute import ExecContext, execute_one, next_runnable, unblock_ready

        log = self.log
        ctx = ExecContext(self.space, self.config, self.run_id, log, self.conn, self.env, archived_names,
                          dry_run=self.dry_run, counters=self.state.counters)
        t0 = time.monotonic()
        log.info("stage_start", msg="Executing tasks", step="execute", stage_name="execute", max_tasks=self.max_tasks)
        unblock_ready(tf, archived_names, log)
        blocked_on_needs = 0
        while ctx.counters.executed < self.max_tasks:
            entry, blocked = next_runnable(tf, ctx.attempted, archived_names, log)
            blocked_on_needs += blocked
            if entry is None:
                break
            if not self.dry_run and blocked:
                tf.save()
            tf = execute_one(ctx, tf, entry)
        if not self.dry_run:
            tf.save()
        ctx.counters.blocked += blocked_on_needs
        if ctx.counters.failed:
            self.state.degrade()
        log.info("stage_finish", msg=f"Executed {ctx.counters.executed} task(s)", step="execute",
                 stage_name="execute", status="ok", tasks_executed=ctx.counters.executed,
                 tasks_completed=ctx.counters.completed, tasks_failed=ctx.counters.failed,
                 tasks_blocked=ctx.counters.blocked, duration_seconds=round(time.monotonic() - t0, 3))
        return tf

    # ------------------------------------------------------------ the end

    def finish(self) -> int:
        state, c = self.state, self.state.counters
        duration = time.time() - self.started
        exit_code = STATUS_EXIT[state.status]
        self.log.info("run_finish", msg=f"Task loop run finished: {state.status}", step="finish", status=state.status,
                      exit_code=exit_code, duration_seconds=round(duration, 3), tasks_completed=c.completed,
                      tasks_failed=c.failed, tasks_blocked=c.blocked, tasks_created=state.tasks_created,
                      tasks_executed=c.executed, tasks_recovered=state.recovered, sources_failed=state.sources_failed,
                      token_total=c.tokens, dry_run=self.dry_run)
        if self.dry_run:
            return exit_code
        try:
            history.record_run(self.space.history_db, {
                "run_id": self.run_id, "kind": "task-loop", "started_at": iso_z(dt.datetime.fromtimestamp(self.started, dt.timezone.utc)),
                "finished_at": iso_z(), "status": state.status, "exit_code": exit_code,
                "duration_seconds": round(duration, 3), "tasks_completed": c.completed, "tasks_failed": c.failed,
                "tasks_blocked": c.blocked, "tasks_created": state.tasks_created, "tasks_executed": c.executed,
                "tasks_recovered": state.recovered, "sources_failed": state.sources_failed, "token_total": c.tokens,
                "cost_usd": round(c.cost_usd, 6), "skipped_unchanged": state.skipped_unchanged,
                "run_log": str(self.run_log),
            })
        except Exception as exc:  # noqa: BLE001 - history must not hide the run's own result
            self.log.error("log", msg=f"cannot record run history: {exc}", step="finish", status="error")
        if state.status != "paused":
            self.write_metrics(exit_code, duration)
        try:
            rotate(self.space.logs_dir, self.space.task_logs_dir, self.config.keep_run_logs,
                   self.config.keep_task_log_days, (self.space.state_dir / "results",))
        except OSError:
            pass
        return exit_code

    def write_metrics(self, exit_code: int, duration: float) -> None:
        from keystone_agents.metrics import metrics_path, textfile_dir, write_metrics

        c = self.state.counters
        now = time.time()
        success_file = self.space.state_dir / "last-success"
        if exit_code == EXIT_OK:
            write_text(success_file, f"{now:.3f}")
            last_success = now
        else:
            try:
                last_success = float(read_text(success_file) or 0)
            except ValueError:
                last_success = 0.0
        directory = textfile_dir(self.config.textfile_dir, self.space.state_dir / "metrics")
        prefix = "keystone_agent_task_loop_"
        samples = {
            prefix + "last_run_timestamp_seconds": ("Start time of the last task-loop run.", self.started),
            prefix + "last_success_timestamp_seconds": ("End time of the last run that exited 0.", last_success),
            prefix + "last_exit_code": ("Exit code of the last run (0 ok, 1 error, 3 degraded).", exit_code),
            prefix + "last_duration_seconds": ("Duration of the last run.", duration),
            prefix + "tasks_completed_total": ("Tasks completed in the last run.", c.completed),
            prefix + "tasks_failed_total": ("Task executions that failed in the last run.", c.failed),
            prefix + "tasks_blocked_total": ("Tasks blocked in the last run.", c.blocked),
            prefix + "tasks_created_total": ("Tasks ingested in the last run.", self.state.tasks_created),
            prefix + "sources_failed_total": ("Sources skipped in the last run.", self.state.sources_failed),
            prefix + "tokens_total": ("Model tokens used in the last run.", c.tokens),
            prefix + "cost_usd_total": ("Reported model cost in USD of the last run.", c.cost_usd),
        }
        try:
            write_metrics(metrics_path(directory, "task-loop", self.agent),
                          {"host": hostname(), "agent": self.agent, "unit": self.unit}, samples)
        except OSError as exc:
            self.log.error("log", msg=f"cannot write metrics to {directory}: {exc.strerror}", step="finish",
                           status="error")
