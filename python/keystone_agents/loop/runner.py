"""One run of the task loop: lock → pause → recover → prefetch → ingest → archive → prioritize → execute →
history, metrics, rotation. Exit codes: 0 success (also: lock held, paused, dry run), 1 error (invalid
configuration or TASKS.yaml, or an unexpected failure), 3 degraded (a source, a task or an entry failed)."""

from __future__ import annotations

import datetime as dt
import sqlite3
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from keystone_agents import history
from keystone_agents import pause as pausefile
from keystone_agents.events import event_logger, hostname
from keystone_agents.lock import FileLock, try_lock, wait_lock
from keystone_agents.loop import observe
from keystone_agents.loop.failed_start import CONFIG_VALID_HELP
from keystone_agents.loop.prefetch import PrefetchResult, build_sources, commit, prefetch
from keystone_agents.loop.rotate import rotate
from keystone_agents.loop.settings import env_for_children, load_config_cached, load_projects
from keystone_agents.loop.state import canonical_hash, read_json, read_text, remove, sha256_file, write_json, write_text
from keystone_agents.problems import ValidationFailed
from keystone_agents.space import AgentSpace
from keystone_agents.timeutil import iso_z, utc_now

# The stage modules (YAML parsing, providers) are imported only when a run has work to do: an unchanged
# tick (the common case, every five minutes) skips them, see docs/performance.md.

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DEGRADED = 0, 1, 2, 3
EXIT_TEMPFAIL = 75  # EX_TEMPFAIL: a human's request could not run now (lock held too long, paused); retry
DEFAULT_WAIT = 1800.0  # seconds a `--task`/`--prompt` request waits for a running loop
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
    # unattended operation (issue 10): why executions did not count as done, and what was not delivered
    stalled: int = 0
    no_evidence: int = 0
    max_turns: int = 0
    budget_refused: int = 0
    deliveries_failed: int = 0
    tasks_delivery_failed: int = 0
    # environmental faults (issue 21): tasks not started because their provider or environment was unavailable
    unavailable: int = 0
    tasks: list = field(default_factory=list)  # the executions of this run: name, outcome, provider, ...


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
    # observability: each stage's outcome and duration in this run, and the queue's task counts after it
    stages: dict[str, tuple[str, float]] = field(default_factory=dict)
    queue: dict[str, int] | None = None
    budget_stopped: bool = False  # an agent-wide budget ended the execute stage
    missed_runs: int = 0  # runs the timer should have started since the previous one (this run's finding)
    spend: dict[str, float] = field(default_factory=dict)  # tokens/cost today and this month (budget metrics)
    invalid_input: bool = False  # the configuration or TASKS.yaml could not be loaded (config_valid 0)

    def degrade(self) -> None:
        if self.status == "success":
            self.status = "degraded"


def run(home: Path | None, config_path: Path | None, max_tasks: int | None = None, dry_run: bool = False,
        only_task: str | None = None, prompt: str | None = None, report: dict | None = None,
        wait_timeout: float | None = DEFAULT_WAIT, force: bool = False, trigger: str | None = None,
        resume: dict | None = None) -> int:
    """See `_run`; a fault of the machine anywhere (a full disk, a lost directory) ends it with one line."""
    report = {} if report is None else report
    try:
        return _run(home, config_path, max_tasks, dry_run, only_task, prompt, report, wait_timeout, force, trigger,
                    resume)
    except (OSError, sqlite3.Error) as exc:
        print(f"error: {machine_error(exc)}", file=sys.stderr)
        report.update(status="error", exit_code=EXIT_ERROR, error=machine_error(exc))
        return EXIT_ERROR


def _run(home: Path | None, config_path: Path | None, max_tasks: int | None = None, dry_run: bool = False,
        only_task: str | None = None, prompt: str | None = None, report: dict | None = None,
        wait_timeout: float | None = DEFAULT_WAIT, force: bool = False, trigger: str | None = None,
        resume: dict | None = None) -> int:
    """One run. `only_task` executes just that task; `prompt` first adds an ad-hoc task and executes just it.
    `report`, when given, is filled with the run's summary (what `loop --json` prints). `trigger` think|tick
    runs a proactive think cycle or a tick (modes/cycles.py) instead of the queue; `resume` {"task", "prompt"}
    continues that task's stored CLI session (modes/continuation.py).

    A timer's run skips quietly when another run holds the lock. A human's request (`only_task`/`prompt`) is
    never dropped: it waits up to `wait_timeout` seconds (0: not at all) for the running loop, else exits 75
    (EX_TEMPFAIL) without having run; a paused agent refuses it with 75 unless `force`. A `home` that is not
    an agent home is refused before anything is created in it."""
    report = {} if report is None else report
    if home is not None:
        from keystone_agents.home_check import home_problem

        problem = home_problem(AgentSpace.from_home(home).home, config_path)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            report.update(status="error", exit_code=EXIT_ERROR, error=problem)
            return EXIT_ERROR
    space = AgentSpace.from_home(home)
    manual = bool(only_task or prompt)
    try:
        space.ensure_state_dirs()
    except OSError as exc:
        print(f"error: cannot create {space.state_root}: {exc.strerror}", file=sys.stderr)
        report.update(status="error", exit_code=EXIT_ERROR, error=f"cannot create {space.state_root}: {exc.strerror}")
        return EXIT_ERROR
    if manual and not force:
        refused = _refuse_paused(space)
        if refused is not None:
            return refused

    def say_waiting(holder: str) -> None:
        limit = "" if wait_timeout is None else f" (at most {wait_timeout:g}s; --no-wait not to wait)"
        print(f"Waiting for the running task loop{' (pid ' + holder + ')' if holder else ''} to finish{limit}",
              file=sys.stderr, flush=True)

    lock = wait_lock(space.lock_file, wait_timeout, say_waiting) if manual else try_lock(space.lock_file)
    with lock as held:
        if not held:
            if not manual:
                print("Task loop already running, skipping", file=sys.stderr)
                report.update(status="skipped", exit_code=EXIT_OK, reason="another run holds the lock")
                return EXIT_OK
            why = "another task-loop run holds the lock" + (
                f" (waited {wait_timeout:g}s)" if wait_timeout else "")
            print(f"error: {why}; the request was not run and is not kept: try again later", file=sys.stderr)
            report.update(status="not_run", exit_code=EXIT_TEMPFAIL, reason=why)
            return EXIT_TEMPFAIL
        if manual and not force:  # paused while we waited
            refused = _refuse_paused(space)
            if refused is not None:
                report.update(status="not_run", exit_code=EXIT_TEMPFAIL, reason="paused")
                return refused
        # a run request (comms drain) is served by this run; one made while it runs starts the next
        remove(space.state_dir / "run-requested")
        started = time.time()
        try:
            config = load_config_cached(config_path, space.home, space.state_dir / "config-validated.sha256")
        except ValidationFailed as exc:
            for problem in exc.problems:
                print(f"error: {problem}", file=sys.stderr)
            if not dry_run:  # monitoring must see a run that cannot start (history, event, metrics)
                from keystone_agents.loop import failed_start

                failed_start.record(space, exc.problems, started)
            report.update(status="error", exit_code=EXIT_ERROR, error="; ".join(str(p) for p in exc.problems))
            return EXIT_ERROR
        space = AgentSpace.from_home(space.home, config.notes_dir)
        if not dry_run:
            from keystone_agents.home_check import ensure_queue_files

            try:
                ensure_queue_files(space.home)  # a home provisioned with only its configuration
            except OSError as exc:
                print(f"error: cannot write the empty queue files in {space.home}: {exc.strerror}", file=sys.stderr)
                return EXIT_ERROR
        if only_task:
            problem = _only_task_problem(space, only_task)
            if problem:  # a usage error, not a run: no history row, no metrics
                print(f"error: {problem}", file=sys.stderr)
                report.update(status="usage_error", exit_code=EXIT_USAGE, error=problem)
                return EXIT_USAGE
        current = Run(space, config, max_tasks, dry_run, only_task, prompt, force=force, trigger=trigger,
                      resume=resume)
        code = current.execute()
        report.update(current.summary(code))
        return code


def _refuse_paused(space: AgentSpace) -> int | None:
    pause = pausefile.read(space.pause_file)
    if not pause.paused:
        return None
    details = ", ".join(x for x in (f"since {pause.paused_at}" if pause.paused_at else "",
                                     f"by {pause.paused_by}" if pause.paused_by else "",
                                     f"reason: {pause.reason}" if pause.reason else "") if x)
    print(f"error: the task loop is paused{' (' + details + ')' if details else ''}; the request was not run. "
          "Resume it (keystone-agent resume) or pass --force to run it anyway", file=sys.stderr)
    return EXIT_TEMPFAIL


def _only_task_problem(space: AgentSpace, name: str) -> str | None:
    """Why `--task NAME` names no task that can run (unknown name, wrong status), or None."""
    import difflib

    from keystone_agents.taskfile import TaskFile

    try:
        tf = TaskFile.load(space.tasks_file)
    except (ValidationFailed, OSError):
        return None  # the run reports an unreadable queue itself
    entry = tf.find(name)
    if entry is None:
        names = [e.name for e in tf.valid() if isinstance(e.name, str)]
        close = difflib.get_close_matches(name, names, n=1)
        return (f"task {name!r} is not in {space.tasks_file}" + (f"; did you mean {close[0]!r}?" if close else ""))
    if entry.get("status") not in ("pending", "blocked"):
        return f"task {name!r} is {entry.get('status')}; only pending or blocked tasks can be run"
    return None


class Run:
    def __init__(self, space: AgentSpace, config, max_tasks: int | None, dry_run: bool,
                 only_task: str | None = None, prompt: str | None = None, force: bool = False,
                 trigger: str | None = None, resume: dict | None = None):
        self.space, self.config, self.dry_run, self.force = space, config, dry_run, force
        self.only_task, self.prompt = only_task, prompt
        self.trigger, self.resume = trigger, resume
        self.adhoc = ("adhoc", "manual")  # name prefix and source of the task a prompt becomes
        self.tick_ended = False
        self.max_tasks = config.max_tasks if max_tasks is None else max_tasks
        if only_task or prompt:
            self.max_tasks = 1
        self.started = time.time()
        self.started_iso = iso_z(dt.datetime.fromtimestamp(self.started, dt.timezone.utc))
        now = dt.datetime.now()
        stamp = now.strftime("%Y-%m-%d_%H%M%S") + f"_{now.microsecond // 1000:03d}"
        self.agent = config.agent_name
        self.unit = f"agent-{self.agent}-task-loop"
        self.run_id = f"{self.agent}-task-loop-{stamp}"
        self.run_log = space.logs_dir / f"{stamp}.log"
        self.log = event_logger(agent=self.agent, unit=self.unit, run_id=self.run_id, log_file=self.run_log,
                                event_db=None if dry_run else space.history_db,
                                event_bus=None if dry_run else config.coordination)
        self.state = RunState()
        self.step = "setup"
        self.env = env_for_children(config)
        # TASKS.yaml is ours from loading it until the run ends, except while a provider executes a task
        self.tasks_lock = FileLock(space.tasks_lock_file)
        from keystone_agents.providers.environment import clean_env

        from keystone_agents.git_identity import identity_env

        # provider processes get the allow-list only, and the agent's git identity (their commits are its own)
        self.provider_env = clean_env({**identity_env(config, space.home), **config.environment})

    # ------------------------------------------------------------ the run

    def execute(self) -> int:
        space, log = self.space, self.log
        log.info("run_start", msg="Task loop run started" + (" (dry run)" if self.dry_run else ""),
                 step=self.step, status="started", max_tasks=self.max_tasks, dry_run=self.dry_run)
        pause = pausefile.read(space.pause_file)
        if pause.paused and self.force:
            log.warning("log", msg=f"Task loop is paused ({pause.reason or 'no reason'}); running this request "
                        "anyway (--force)", step="pause", status="forced")
        elif pause.paused:
            log.info("run_paused", msg="Task loop is paused; nothing done", step="pause", status="paused",
                     paused_at=pause.paused_at or "", paused_by=pause.paused_by or "", reason=pause.reason or "")
            self.state.status = "paused"
            return self.finish()
        try:
            with closing(history.connect(space.history_db)) as conn:
                self.conn = conn
                for aside, why in history.RECREATED:
                    log.warning("history_recreated", msg=f"the history database was corrupt ({why}); moved aside "
                                f"to {aside.name} and recreated", step="setup", status="recreated",
                                corrupt_file=str(aside))
                history.RECREATED.clear()
                if not self.dry_run:
                    # a run still "running" in the history died (we hold the lock): it ended in error
                    conn.execute("UPDATE runs SET status = 'error', exit_code = -9 WHERE kind = 'task-loop' "
                                 "AND status = 'running' AND run_id != ?", (self.run_id,))
                    self.check_overdue(conn)
                    history.record_run(space.history_db, {"run_id": self.run_id, "kind": "task-loop",
                                                          "started_at": self.started_iso, "trigger_at": self.started_iso,
                                                          "status": "running"})
                try:
                    if self.trigger in ("think", "tick"):
                        self.cycle()
                    else:
                        self.stages()
                finally:
                    self.tasks_lock.release()
                if not self.dry_run:
                    self.state.spend = spend_now(conn)
        except ValidationFailed as exc:
            from keystone_agents.taskfile import EditRefused

            refused = isinstance(exc, EditRefused)  # the file was left as it was: nothing lost, nothing damaged
            self.state.invalid_input = not refused
            for problem in exc.problems:
                log.error("tasks_edit_refused" if refused else "log",
                          msg=f"{'TASKS.yaml edit not written' if refused else 'invalid file'}: {problem}",
                          step=self.step, status="error", file=problem.file, line=problem.line or "",
                          field=problem.field)
            self.state.status = "error"
            self.state.stages.setdefault(self.step, ("error", 0.0))
        except (OSError, sqlite3.Error) as exc:  # the machine (full disk, lost directory): one clear line
            log.error("log", msg=f"run failed: {machine_error(exc)}", step=self.step, status="error",
                      error=type(exc).__name__)
            self.state.status = "error"
            self.state.stages.setdefault(self.step, ("error", 0.0))
        except Exception as exc:  # noqa: BLE001 - the run ends with status error, not a traceback only
            import traceback

            log.error("log", msg=f"run failed: {type(exc).__name__}: {exc}", step=self.step, status="error",
                      traceback=traceback.format_exc()[-2000:])
            self.state.status = "error"
            self.state.stages.setdefault(self.step, ("error", 0.0))
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
        previous = quiescent.get("fingerprint") if isinstance(quiescent, dict) else None
        changed = sorted(k for k in fingerprint if not isinstance(previous, dict) or previous.get(k) != fingerprint[k])
        log.debug("log", msg="unchanged-tick check: " + (f"changed since the last quiet run: {', '.join(changed)}"
                                                       if changed else "nothing changed"),
                  step="check", changed=changed)
        if (isinstance(quiescent, dict) and not running_file.exists() and not self.dry_run
                and not (self.only_task or self.prompt)
                and quiescent.get("fingerprint") == fingerprint
                and time.time() < (quiescent.get("next_due") or float("inf"))
                and not quiescent.get("problems")):
            commit(fetched, log)
            self.state.skipped_unchanged = True
            for stage in ("ingest", "prioritize", "execute"):
                self.state.stages[stage] = ("skipped", 0.0)
            self.state.queue = observe.cached_queue_counts(space.state_dir, tasks_sha)
            log.info("log", msg="Nothing changed since the last run (queue, projects, configuration, sources); "
                     "skipping ingest, prioritize and execute", step="check", status="skipped")
            return

        from keystone_agents.loop import archive as archiving
        from keystone_agents.loop import prioritize
        from keystone_agents.loop.execute import has_runnable, recover
        from keystone_agents.taskfile import TaskFile, read_entries

        self.resolve_auto_provider()
        self.step = "recover"
        self.tasks_lock.acquire()
        tf = TaskFile.load(space.tasks_file)
        for problem in tf.problems:
            log.warning("log", msg=f"invalid task entry skipped: {problem}", step="validate", status="error",
                        file=problem.file, line=problem.line or "", field=problem.field)
        if tf.problems:
            self.state.degrade()
        if not self.dry_run:
            self.state.recovered = recover(space, tf, self.conn, log, config.kill_grace_seconds, config)
        if self.prompt:
            self.only_task = self.add_adhoc_task(tf)

        archive_entries, archive_problems = read_entries(space.tasks_archive_file)
        archive_entries = [e for e in archive_entries if isinstance(e.get("name"), str)]
        archived_names = {e["name"] for e in archive_entries if e.get("status") == "completed"}
        archived_refs = {e["source_ref"] for e in archive_entries if isinstance(e.get("source_ref"), str)}
        for problem in archive_problems:
            log.warning("log", msg=f"TASKS.archive.yaml cannot be read; ingest skipped (no deduplication "
                        f"against it): {problem}", step="ingest", status="error",
                        file=problem.file, line=problem.line or "", field=problem.field)
        if archive_problems:
            self.state.degrade()

        # ingest
        self.step = "ingest"
        if not archive_problems:  # else: the sources keep their items for a later run
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
        ruled = prioritize.apply_rules(tf, prioritize.workflow_rules(config), config.runtime_rules, projects.facts)
        moved = prioritize.order(tf, projects.ranks)
        wrote = tf.save() if not self.dry_run else False
        log.info("stage_finish", msg="Prioritize " + ("rewrote TASKS.yaml" if wrote else "left TASKS.yaml unchanged"),
                 step="prioritize", stage_name="prioritize", status="ok", rules_applied=ruled, reordered=moved,
                 written=wrote, duration_seconds=round(time.monotonic() - t0, 3))
        self.state.stages["prioritize"] = ("ok", time.monotonic() - t0)

        # execute
        self.step = "execute"
        tf = self.execute_tasks(tf, archived_names)

        self.state.queue = observe.queue_counts(tf)
        if not self.dry_run:
            fingerprint["tasks"] = sha256_file(space.tasks_file)
            observe.cache_queue_counts(space.state_dir, fingerprint["tasks"], self.state.queue)
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
        outcome = "ok" if not result.failed else "degraded"
        log.info("stage_finish", msg="Pre-fetch done", step="prefetch", stage_name="prefetch",
                 status=outcome, source_entries=len(result.fetched),
                 sources_failed=len(result.failed), duration_seconds=round(time.monotonic() - t0, 3))
        self.state.stages["prefetch"] = (outcome, time.monotonic() - t0)
        return result

    def ingest(self, tf, fetched: PrefetchResult, sources_hash, archive_entries, archived_refs, projects) -> None:
        space, log = self.space, self.log
        hash_file = space.state_dir / "ingest-inputs.sha256"
        if not fetched.fetched:
            log.info("log", msg="No source data to ingest, skipping", step="ingest", status="skipped")
            self.state.stages["ingest"] = ("skipped", 0.0)
            return
        if read_text(hash_file) == sources_hash:
            log.info("log", msg="Inputs unchanged, skipping ingest", step="ingest", status="skipped")
            self.state.stages["ingest"] = ("skipped", 0.0)
            return
        t0 = time.monotonic()
        log.info("stage_start", msg="Ingesting source items", step="ingest", stage_name="ingest")
        if not self.dry_run:
            space.deepwork_dir.mkdir(parents=True, exist_ok=True)
            import json

            text = json.dumps(fetched.sources_json(), indent=2, ensure_ascii=False)
            if not text.isascii() and _has_surrogate(text):  # a lone surrogate cannot be UTF-8: escape it
                text = json.dumps(fetched.sources_json(), indent=2)
            write_text(space.sources_json, text)
        from keystone_agents.loop import ingest

        rejected: list[str] = []
        items, unusable = ingest.collect(fetched.fetched, rejected)
        for reason in rejected[:INGEST_EVENTS_MAX]:
            log.warning("log", msg=reason, step="ingest", status="error")
        known = {e.get("source_ref") for e in tf.entries if isinstance(e.get("source_ref"), str)}
        known |= archived_refs
        triaged_file = space.state_dir / "triage-skipped.json"
        triage = None
        if self.config.llm_triage and not self.dry_run:
            from keystone_agents.loop.triage import Triage

            skipped_before = read_json(triaged_file) or []
            known |= set(skipped_before)
            triage = Triage(self.config, sorted(projects.ranks), log,
                            space.task_logs_dir / f"{self.run_log.stem}_ingest-triage.log", self.provider_env,
                            space.notes_dir)
        names = {e.name for e in tf.entries if isinstance(e.name, str)} | {e.get("name") for e in archive_entries}
        new, not_actionable = ingest.new_tasks(items, known, ingest.Namer(n for n in names if n), iso_z(), triage,
                                               spill_dir=None if self.dry_run else space.task_texts_dir)
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
            from keystone_agents.mail.reply import record_tasks

            record_tasks(space.email_replies_file, new, items)
            if triage is not None and not_actionable:
                write_json(triaged_file, sorted(set(read_json(triaged_file) or []) | {i.source_ref for i in not_actionable}))
            write_text(hash_file, sources_hash)
        self.state.tasks_created = len(new)
        log.info("stage_finish", msg=f"Ingest created {len(new)} task(s)", step="ingest", stage_name="ingest",
                 status="ok", tasks_created=len(new), items_seen=len(items), items_unusable=unusable,
                 items_not_actionable=len(not_actionable), duration_seconds=round(time.monotonic() - t0, 3))
        self.state.stages["ingest"] = ("ok", time.monotonic() - t0)

    def cycle(self) -> None:
        """`--trigger think|tick`: a proactive think cycle or one tick (modes/cycles.py)."""
        from keystone_agents.modes import cycles, local_provider_problem

        space, config, log, trigger = self.space, self.config, self.log, self.trigger
        self.step = trigger
        if trigger == "tick" and (space.state_dir / cycles.TICK_ENDED).exists():
            log.info("log", msg="the tick session has ended (state/tick-ended); nothing to do", step="tick",
                     status="skipped")
            return
        if trigger == "tick":
            why = local_provider_problem(config)
            if why:
                log.error("log", msg=f"tick refused: exec.mode tick needs a local provider: {why}", step="tick",
                          status="error")
                self.state.status = "error"
                return
        if cycles.deadline_passed(space, config, trigger):
            log.info("log", msg=f"exec.timeout {config.exec.timeout}s passed: the {trigger} session is over",
                     step=trigger, status="ok")
            cycles.stop_timer(self.agent, trigger, space, log)
            return
        if trigger == "think":
            brief, state = self.think_briefing(cycles)
            if brief.empty:
                cycles.save_think(space, state, thought=False)
                self.state.stages["think"] = ("skipped", 0.0)
                log.info("think_skipped", msg="Empty briefing: no model called" + (
                    " (first cycle: baseline recorded)" if brief.baseline else ""), step="think", status="skipped",
                    baseline=brief.baseline)
                return
            log.info("think", msg=f"Briefing has {len(brief.items)} item(s): thinking", step="think",
                     status="started", briefing=brief.items)
            self.prompt, self.adhoc = cycles.think_prompt(space, config, brief), ("think", "think")
        else:
            number = cycles.next_tick(space)
            log.info("tick", msg=f"Tick {number}", step="tick", status="started", tick=number)
            self.prompt, self.adhoc = cycles.tick_prompt(space, config, number), ("tick", "tick")
        self.max_tasks = 1
        self.stages()
        if trigger == "think":
            _, after = cycles.briefing(space, config)  # the think's own changes are not news next time
            # the bus sections keep the cursors read before the think: what others did meanwhile is news
            after.update({key: state[key] for key in cycles.BUS_STATE if key in state})
            cycles.save_think(space, after, thought=True)
        elif self.tick_ended:
            cycles.stop_timer(self.agent, "tick", space, log)

    def think_briefing(self, cycles):
        """The think cycle's briefing; with a coordination bus, its messages, watched shared keys and decided
        approvals too (a bus that cannot be reached is a warning: the rest of the briefing still counts)."""
        from keystone_agents.coordination.base import BusError

        bus = None
        if self.config.coordination.backend != "none":
            from keystone_agents.coordination.factory import open_bus

            try:
                bus = open_bus(self.config.coordination)
            except BusError as exc:
                self.log.warning("log", msg=f"think: the coordination bus is unavailable ({exc.message}); "
                                 "briefing without messages, shared keys and approvals", step="think", status="error")
        try:
            return cycles.briefing(self.space, self.config, bus=bus, log=self.log)
        finally:
            if bus is not None:
                bus.close()

    def add_adhoc_task(self, tf) -> str:
        """`loop --prompt TEXT`: the prompt becomes a task (so it is bookkept like any other) and runs now.
        A think cycle's or tick's prompt likewise becomes task think-…/tick-… (source think/tick)."""
        prefix, source = self.adhoc
        base = f"{prefix}-" + utc_now().strftime("%Y%m%d-%H%M%S")
        name, n = base, 2
        while tf.find(name) is not None:
            name, n = f"{base}-{n}", n + 1
        tf.append({"name": name, "description": self.prompt, "status": "pending", "source": source,
                   "source_ref": f"{source}-{name}", "created_at": iso_z()})
        if not self.dry_run:
            tf.save()
        self.log.info("log", msg=f"ad-hoc prompt added as task {name}", step="recover", task_name=name)
        return name

    def pick_only_task(self, tf, archived_names: set[str]):
        """`--task NAME`: that task if it may run now (pending or blocked, its needs completed), else None."""
        from keystone_agents.loop.execute import needs_pending

        entry = tf.find(self.only_task)
        problem = None
        if entry is None:
            import difflib

            close = difflib.get_close_matches(self.only_task, [e.name for e in tf.entries if e.name], n=3)
            problem = (f"task {self.only_task!r} is not in TASKS.yaml (or is an invalid entry)"
                       + (f"; did you mean {', '.join(close)}?" if close else ""))
        elif entry.get("status") not in ("pending", "blocked"):
            problem = f"task {self.only_task!r} is {entry.get('status')}; only pending or blocked tasks can be run"
        else:
            waiting = needs_pending(entry, tf, archived_names)
            if waiting:
                problem = f"task {self.only_task!r} needs {', '.join(waiting)} to be completed first"
        if problem:
            self.log.error("log", msg=problem, step="execute", task_name=self.only_task, status="error")
            self.state.status = "error"
            return None
        if entry.get("status") == "blocked" and not self.dry_run:
            tf.set_fields(entry, {"status": "pending", "blocked_reason": None})
        return entry

    def resolve_auto_provider(self) -> None:
        """`provider: auto` → the first usable provider, once per run with work (providers/auto.py)."""
        from keystone_agents.providers import auto

        if not auto.uses_auto(self.config):
            return
        try:
            found = auto.resolve(self.config, path=self.provider_env.get("PATH"))
        except auto.ProviderError as exc:
            self.log.error("provider_resolved", msg=str(exc), step="setup", status="error", provider="")
            self.state.degrade()
            return
        self.config = auto.apply(self.config, found)
        self.log.info("provider_resolved", msg=f"provider auto resolved to {found.provider}: {found.reason}",
                      step="setup", status="ok", provider=found.provider, model=found.model or "",
                      reason=found.reason, tried="; ".join(found.tried))

    def execute_tasks(self, tf, archived_names: set[str]):
        from keystone_agents.loop.execute import ExecContext, execute_one, next_runnable, unblock_ready
        from keystone_agents.providers.preflight import Preflight

        log = self.log
        ctx = ExecContext(self.space, self.config, self.run_id, log, self.conn, self.provider_env, archived_names,
                          dry_run=self.dry_run, counters=self.state.counters, tasks_lock=self.tasks_lock,
                          preflight=Preflight(self.config, self.provider_env, self.space), resume=self.resume)
        t0 = time.monotonic()
        log.info("stage_start", msg="Executing tasks", step="execute", stage_name="execute", max_tasks=self.max_tasks)
        unblock_ready(tf, archived_names, log)
        blocked_on_needs = 0
        if not self.dry_run and not self.agent_space_ready(tf, archived_names):
            self.state.stages["execute"] = ("error", time.monotonic() - t0)
            return tf
        if self.only_task:
            entry = self.pick_only_task(tf, archived_names)
            if entry is not None:
                tf = execute_one(ctx, tf, entry)
        while ctx.counters.executed < self.max_tasks and not self.only_task:
            entry, blocked = next_runnable(tf, ctx.attempted, archived_names, log)
            blocked_on_needs += blocked
            if entry is None:
                break
            if not self.dry_run and blocked:
                tf.save()
            tf = execute_one(ctx, tf, entry)
            if ctx.budget_stop is not None:
                self.state.budget_stopped = True
                break
        if not self.dry_run:
            tf.save()
        self.tick_ended = ctx.tick_ended
        ctx.counters.blocked += blocked_on_needs
        if ctx.counters.failed or ctx.rejected_files:
            self.state.degrade()
        if ctx.unavailable:
            # the machine, not the work: degraded while other tasks could run, error when nothing could
            if ctx.counters.executed == 0:
                self.state.status = "error"
            else:
                self.state.degrade()
        log.info("stage_finish", msg=f"Executed {ctx.counters.executed} task(s)", step="execute",
                 stage_name="execute", status="ok", tasks_executed=ctx.counters.executed,
                 tasks_completed=ctx.counters.completed, tasks_failed=ctx.counters.failed,
                 tasks_blocked=ctx.counters.blocked, duration_seconds=round(time.monotonic() - t0, 3))
        self.state.stages["execute"] = ("degraded" if ctx.counters.failed or ctx.rejected_files else "ok", time.monotonic() - t0)
        return tf

    def agent_space_ready(self, tf, archived_names: set[str]) -> bool:
        """Providers run in the agent space: without it no task starts (none is charged a failed attempt)."""
        from keystone_agents.loop.execute import has_runnable
        from keystone_agents.space import agent_space_problem

        problem = agent_space_problem(self.space)
        if problem is None or not (self.only_task or has_runnable(tf, archived_names)):
            return True
        self.log.error("agent_space_missing", msg=f"no task executed: {problem}", step="execute", status="error",
                       path=str(problem.path))
        print(f"error: {problem}", file=sys.stderr)
        self.state.status = "error"
        return False

    # ------------------------------------------------------------ the end

    def finish(self) -> int:
        state, c = self.state, self.state.counters
        duration = time.time() - self.started
        exit_code = STATUS_EXIT[state.status]
        self.log.info("run_finish", msg=f"Task loop run finished: {state.status}", step="finish", status=state.status,
                      exit_code=exit_code, duration_seconds=round(duration, 3), tasks_completed=c.completed,
                      tasks_failed=c.failed, tasks_blocked=c.blocked, tasks_created=state.tasks_created,
                      tasks_executed=c.executed, tasks_recovered=state.recovered, sources_failed=state.sources_failed,
                      token_total=c.tokens, cost_usd=round(c.cost_usd, 6), tasks_unavailable=c.unavailable,
                      dry_run=self.dry_run)
        if self.dry_run:
            return exit_code
        try:
            history.record_run(self.space.history_db, {
                "run_id": self.run_id, "kind": "task-loop", "started_at": self.started_iso,
                "trigger_at": self.started_iso, "missed_runs": self.state.missed_runs,
                "tasks_stalled": c.stalled, "tasks_no_evidence": c.no_evidence, "tasks_max_turns": c.max_turns,
                "tasks_budget_refused": c.budget_refused, "deliveries_failed": c.deliveries_failed,
                "tasks_unavailable": c.unavailable,
                "finished_at": iso_z(), "status": state.status, "exit_code": exit_code,
                "duration_seconds": round(duration, 3), "tasks_completed": c.completed, "tasks_failed": c.failed,
                "tasks_blocked": c.blocked, "tasks_created": state.tasks_created, "tasks_executed": c.executed,
                "tasks_recovered": state.recovered, "sources_failed": state.sources_failed, "token_total": c.tokens,
                "cost_usd": round(c.cost_usd, 6), "skipped_unchanged": state.skipped_unchanged,
                "run_log": str(self.run_log), "errors": self.error_messages()[:5],
            })
        except Exception as exc:  # noqa: BLE001 - history must not hide the run's own result
            self.log.error("log", msg=f"cannot record run history: {exc}", step="finish", status="error")
        try:
            if state.status != "paused":
                self.write_metrics(exit_code, duration)
            self.write_pause_metric(state.status == "paused")
        except (OSError, sqlite3.Error) as exc:  # a full disk: the metrics stay as they were, the cause is said
            self.log.error("log", msg=f"cannot write the metrics: {machine_error(exc)}", step="finish",
                           status="error")
        try:
            rotate(self.space, self.config.keep_run_logs, self.config.keep_task_log_days,
                   (self.space.state_dir / "results",))
        except OSError:
            pass
        if not self.dry_run:
            self.prune_events()
        return exit_code

    def prune_events(self) -> None:
        """Events older than keepEventDays leave the event table (at most once an hour)."""
        import sqlite3

        from keystone_agents.timeutil import iso_z as stamp

        marker = self.space.state_dir / "events-pruned"
        try:
            if marker.exists() and time.time() - marker.stat().st_mtime < 3600:
                return
            cutoff = stamp(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=self.config.keep_event_days))
            with closing(history.connect(self.space.history_db)) as conn:
                history.prune_events(conn, cutoff)
            marker.touch()
        except (OSError, sqlite3.Error):
            pass
        else:
            if self.config.coordination.backend == "postgresql":  # the agent's rows of the fleet table too
                from keystone_agents.coordination.base import BusError
                from keystone_agents.coordination.factory import open_bus

                try:
                    bus = open_bus(self.config.coordination)
                    try:
                        bus.events_prune(self.config.keep_event_days)
                    finally:
                        bus.close()
                except BusError as exc:
                    self.log.warning("log", msg=f"cannot prune the bus's events: {exc.message}", step="finish",
                                     status="error")

    def summary(self, exit_code: int) -> dict:
        """The run as `loop --json` prints it (the keys of `runs --json`)."""
        state, c = self.state, self.state.counters
        return {
            "run_id": self.run_id, "kind": "task-loop", "started_at": self.started_iso, "status": state.status,
            "exit_code": exit_code, "duration_seconds": round(time.time() - self.started, 3),
            "dry_run": self.dry_run, "skipped_unchanged": state.skipped_unchanged,
            "tasks_created": state.tasks_created, "tasks_executed": c.executed, "tasks_completed": c.completed,
            "tasks_failed": c.failed, "tasks_blocked": c.blocked, "tasks_recovered": state.recovered,
            "tasks_archived": state.archived, "sources_failed": state.sources_failed, "token_total": c.tokens,
            "cost_usd": round(c.cost_usd, 6), "missed_runs": state.missed_runs, "run_log": str(self.run_log),
            "tasks": list(c.tasks), "queue": state.queue, "trigger": self.trigger or "schedule",
            "errors": self.error_messages(),
        }

    def error_messages(self) -> list[str]:
        """The messages of this run's error events (why it failed)."""
        return [_msg_of(line) for line in self.log.sink.lines if 'status="error"' in line]

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
            prefix + "config_valid": (CONFIG_VALID_HELP, 0 if self.state.invalid_input else 1),
        }
        samples.update(observe.samples(self.space.state_dir, self.state, exit_code))  # issue 11's block
        samples.update(self.unattended_samples(prefix))
        try:
            write_metrics(metrics_path(directory, "task-loop", self.agent),
                          {"host": hostname(), "agent": self.agent, "unit": self.unit}, samples)
        except OSError as exc:
            self.log.error("log", msg=f"cannot write metrics to {directory}: {exc.strerror}", step="finish",
                           status="error")

    def write_pause_metric(self, paused: bool) -> None:
        from keystone_agents.metrics import textfile_dir

        directory = textfile_dir(self.config.textfile_dir, self.space.state_dir / "metrics")
        try:
            observe.write_pause_metric(directory, {"host": hostname(), "agent": self.agent, "unit": self.unit},
                                       self.agent, paused)
        except OSError as exc:
            self.log.error("log", msg=f"cannot write metrics to {directory}: {exc.strerror}", step="finish",
                           status="error")

    # ------------------------------------------------------------ unattended operation (issue 10)

    def check_overdue(self, conn) -> None:
        """Say so when the previous run is longer ago than the timer's interval; count the missed runs."""
        from keystone_agents import missed

        interval = self.config.expected_interval_seconds
        found = missed.overdue(history.previous_run(conn, "task-loop", self.run_id),
                               dt.datetime.fromtimestamp(self.started, dt.timezone.utc), interval)
        if found is None:
            return
        self.state.missed_runs = found.missed
        missed.add(self.space.state_dir / "missed-runs", found.missed)
        self.log.warning("run_overdue", msg=f"the previous run ended {found.gap_seconds:.0f}s ago, expected every "
                         f"{interval:g}s: {found.missed} run(s) missed", step="setup", status="overdue",
                         previous_run_id=found.previous_run_id, previous_run_at=found.previous_at,
                         gap_seconds=found.gap_seconds, expected_interval_seconds=interval,
                         missed_runs=found.missed)

    def unattended_samples(self, prefix: str) -> dict[str, tuple[str, float]]:
        from keystone_agents import missed

        c, spend = self.state.counters, self.state.spend
        samples = {
            prefix + "missed_runs_total": ("Runs the timer should have started but did not (cumulative, from the "
                                           "gaps between runs).", missed.read_total(self.space.state_dir / "missed-runs")),
            prefix + "tasks_stalled_total": ("Executions killed by the stall watchdog in the last run.", c.stalled),
            prefix + "tasks_no_evidence_total": ("Executions that exited 0 without evidence of work in the last run.",
                                                 c.no_evidence),
            prefix + "tasks_max_turns_total": ("Executions flagged for more turns than maxTurns in the last run.",
                                               c.max_turns),
            prefix + "tasks_budget_refused_total": ("Tasks not started in the last run because a budget was used up.",
                                                    c.budget_refused),
            prefix + "budget_exhausted": ("1 if an agent-wide (daily or monthly) budget stopped the last run.",
                                          1 if self.state.budget_stopped else 0),
            prefix + "deliveries_failed_total": ("Reported deliveries (email, pull request, ...) that failed in the "
                                                 "last run.", c.deliveries_failed),
            prefix + "tasks_delivery_failed_total": ("Tasks with at least one failed delivery in the last run.",
                                                     c.tasks_delivery_failed),
            prefix + "tasks_unavailable_total": ("Tasks not started in the last run because their provider or the "
                                                 "environment was unavailable (provider_unavailable / "
                                                 "environment_error events); they are left untouched.",
                                                 c.unavailable),
        }
        if "tokens_today" in spend:
            samples.update({
                prefix + "tokens_today": ("Tokens used by task executions since 00:00 UTC.", spend["tokens_today"]),
                prefix + "cost_usd_today": ("Reported USD of task executions since 00:00 UTC.", spend["cost_today"]),
                prefix + "tokens_this_month": ("Tokens used by task executions this UTC month.", spend["tokens_month"]),
                prefix + "cost_usd_this_month": ("Reported USD of task executions this UTC month.", spend["cost_month"]),
            })
        if self.config.expected_interval_seconds:
            samples[prefix + "expected_interval_seconds"] = (
                "How often the timer should start a run (alert when time() - last_run_timestamp_seconds exceeds a "
                "few of these).", self.config.expected_interval_seconds)
        return samples


def machine_error(exc: BaseException) -> str:
    """What went wrong with the machine, for one line: the cause and the file."""
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        if exc.errno == 28:  # ENOSPC
            return f"no space left on the device{where}: the files written before stay as they were; free space"
        return f"{exc.strerror or exc}{where}"
    if "disk is full" in str(exc):
        return "no space left on the device (history database): free space"
    return f"history database: {exc}"


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def spend_now(conn) -> dict[str, float]:
    from keystone_agents.loop.budget import period_starts

    day, month = period_starts(dt.datetime.now(dt.timezone.utc))
    tokens_today, cost_today = history.spend(conn, since=day)
    tokens_month, cost_month = history.spend(conn, since=month)
    return {"tokens_today": tokens_today, "cost_today": cost_today, "tokens_month": tokens_month,
            "cost_month": cost_month}



def _msg_of(line: str) -> str:
    from keystone_agents.events import parse_logfmt

    return parse_logfmt(line).get("msg", line)
