"""One notes-sync run: clone if absent; else commit everything, fetch, rebase onto upstream, push.

Nothing is ever lost:
* a rebase conflict is aborted; the local commits stay on the local branch, are copied to a branch
  `conflict/<host>-<timestamp>` (pushed to the remote, or kept locally if that push fails), an ISSUES.yaml entry
  and a `conflict_pending` marker are left, and the run exits 1. Later runs keep committing locally (and
  back the work up to the conflict branch) until `keystone-agent sync --resolved`;
* an unreachable remote is an error (exit 1); the local commit stays and the next run pushes it;
* a rebase left unfinished by a killed run is aborted first, which restores the local commits.

Overlapping runs skip (flock); a skipped run writes no record and leaves the metrics untouched.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import sqlite3
import time
from dataclasses import dataclass
from typing import Mapping, TextIO

from keystone_agents.config import Config
from keystone_agents.events import event_logger, hostname
from keystone_agents.lock import try_lock
from keystone_agents.metrics import metrics_path, textfile_dir
from keystone_agents.notes_sync import conflict, credentials, report
from keystone_agents.git import Git, GitError, PushRejected, clone, redact
from keystone_agents.git_identity import git_environment
from keystone_agents.problems import ValidationFailed
from keystone_agents.space import AgentSpace
from keystone_agents.timeutil import iso_z

EXIT_OK = 0
EXIT_FAILED = 1
PUSH_ATTEMPTS = 6  # another clone pushing between our fetch and our push: fetch, rebase, try again
RETRY_DELAY = (0.2, 1.0)  # seconds, times the attempt number: jittered, so two racing clones fall apart


class SyncFailed(Exception):
    """The run cannot go on; the message says why and what was kept."""


@dataclass
class SyncOutcome:
    record: report.SyncRecord | None  # None: skipped (another run holds the lock)
    skipped: bool = False

    @property
    def exit_code(self) -> int:
        return self.record.exit_code if self.record else EXIT_OK


def unit_name(agent: str) -> str:
    return f"agent-{agent}-notes-sync"


def run_sync(
    space: AgentSpace,
    config: Config,
    *,
    resolved: bool = False,
    env: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
) -> SyncOutcome:
    """Run one sync under the notes-sync lock."""
    space.ensure_state_dirs()
    unit = unit_name(config.agent_name)
    with try_lock(space.notes_sync_lock_file) as held:
        if not held:
            log = event_logger(agent=config.agent_name, unit=unit, run_id="", stream=stream)
            log.info("run_skipped", msg="Notes sync already running, skipping", status="skipped")
            return SyncOutcome(None, skipped=True)
        return _locked_run(space, config, resolved=resolved, env=env, stream=stream)


def _locked_run(
    space: AgentSpace, config: Config, *, resolved: bool, env: Mapping[str, str] | None, stream: TextIO | None
) -> SyncOutcome:
    started = time.time()
    started_at = iso_z()
    records_dir = space.notes_sync_logs_dir
    records_dir.mkdir(parents=True, exist_ok=True)
    stem = report.unique_stem(records_dir, dt.datetime.now(dt.timezone.utc).strftime(report.STEM_FORMAT))
    run_id = f"{config.agent_name}-notes-sync-{stem}"
    unit = unit_name(config.agent_name)
    log = event_logger(
        agent=config.agent_name, unit=unit, run_id=run_id, log_file=records_dir / f"{stem}.log", stream=stream
    )
    record = report.SyncRecord(timestamp=started_at, run_id=run_id)
    log.info("run_start", msg="Notes sync started", status="started", notes_dir=str(space.notes_dir))
    try:
        # ssh records accepted host keys there but does not create the directory itself
        (space.home / ".ssh").mkdir(mode=0o700, parents=True, exist_ok=True)
        git_env = credentials.apply(git_environment(config, space.home, env), space, config)
        _Run(space, config, record, log, git_env).sync(resolved)
    except (SyncFailed, GitError, OSError) as exc:
        record.status, record.exit_code = "error", EXIT_FAILED
        record.error = redact(str(exc))
        log.error("sync_error", msg=record.error, status="error")
    record.duration_seconds = round(time.time() - started, 3)
    record.conflict_pending = record.conflict_pending or space.conflict_marker.exists()

    _report(space, config, record, stem, started, started_at, log)
    log.info(
        "run_finish",
        msg=record.error or "Notes sync finished",
        status=record.status,
        exit_code=record.exit_code,
        duration_seconds=record.duration_seconds,
        committed=record.committed,
        rebased=record.rebased,
        pushed=record.pushed,
        conflict=record.conflict,
        conflict_pending=record.conflict_pending,
        branch=record.branch,
    )
    return SyncOutcome(record)


def _report(space: AgentSpace, config: Config, record: report.SyncRecord, stem: str, started: float,
            started_at: str, log) -> None:
    """Record, history row, metrics: each attempted on its own, so one unwritable place does not hide the rest."""
    labels = {"host": config.host or hostname(), "agent": config.agent_name, "unit": unit_name(config.agent_name)}
    directory = textfile_dir(config.textfile_dir, space.state_dir / "metrics")
    steps = (
        ("record", lambda: report.write_record(space.notes_sync_logs_dir, stem, record, config.notes.keep_records)),
        ("history", lambda: report.record_history(space.history_db, record, started_at, iso_z())),
        ("metrics", lambda: report.write_sync_metrics(
            metrics_path(directory, "notes-sync", config.agent_name), labels, record, started,
            # this run's own success is now (the history keeps whole seconds, which can be before `started`)
            time.time() if record.exit_code == 0 else report.last_success(space.history_db),
        )),
    )
    for name, step in steps:
        try:
            step()
        except (OSError, sqlite3.Error) as exc:
            log.error("sync_report_failed", msg=f"Could not write the run's {name}: {exc}", step=name)


def _ref_safe(text: str) -> str:
    """A host name as a safe part of a git branch name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "host"


class _Run:
    def __init__(self, space: AgentSpace, config: Config, record: report.SyncRecord, log, env: dict[str, str]):
        self.space = space
        self.config = config
        self.record = record
        self.log = log
        self.notes = space.notes_dir
        self.git = Git(self.notes, env)
        self.host = config.host or hostname()

    def say(self, message: str) -> None:
        self.record.messages.append(message)

    # ------------------------------------------------------------------ the run

    def sync(self, resolved: bool) -> None:
        if resolved:
            self.clear_conflict()
        if self.needs_clone():
            self.clone()
            return
        if not self.git.is_repository():
            raise SyncFailed(
                f"{self.notes} exists but is not the top of a git repository; move it aside (sync clones "
                f"notes.repo there when the path is absent) or make it a clone of the notes repo"
            )
        if self.git.rebase_in_progress():
            # a run was killed mid-rebase; aborting puts the local commits back exactly as they were
            self.git.rebase_abort()
            self.log.warning("sync_rebase_aborted", msg="Aborted an unfinished rebase left by an interrupted run")
            self.say("aborted an unfinished rebase left by an interrupted run")
        branch = self.git.current_branch()
        if branch is None:
            raise SyncFailed(f"{self.notes} has a detached HEAD; check out the notes branch (for example main)")
        self.record.branch = branch
        remote, remote_branch = self.upstream_of(branch)
        self.check_remote_url(remote)

        self.commit()
        marker = conflict.read_marker(self.space.conflict_marker)
        if marker is not None:
            self.conflict_pending(marker, remote)
            return
        try:
            self.git.fetch(remote)
        except GitError as exc:
            raise self.unreachable(remote, exc) from None
        self.integrate_and_push(remote, remote_branch)
        if self.record.status == "success" and not (
            self.record.committed or self.record.rebased or self.record.pushed
        ):
            self.record.status = "nothing_to_do"
            self.say("nothing to do")
        self.record.commit = self.git.rev_parse("HEAD")

    def needs_clone(self) -> bool:
        return not self.notes.exists() or (self.notes.is_dir() and not any(self.notes.iterdir()))

    def clone(self) -> None:
        url = self.config.notes.repo
        if not url:
            source = self.config.source_path or "the configuration"
            raise SyncFailed(f"{self.notes} does not exist and notes.repo is not set in {source}; nothing to clone")
        self.notes.parent.mkdir(parents=True, exist_ok=True)
        url = credentials.clean(url)  # the token reaches git through the credential helper, never .git/config
        try:
            clone(url, self.notes, self.git.env)
        except GitError as exc:
            raise SyncFailed(f"cannot clone the notes repo {redact(url)} into {self.notes}: {exc.detail}") from None
        self.record.cloned = True
        self.record.status = "cloned"
        self.record.branch = self.git.current_branch()
        self.record.commit = self.git.rev_parse("HEAD")
        self.log.info("sync_cloned", msg=f"Cloned notes repo into {self.notes}", branch=self.record.branch)
        self.say(f"cloned {redact(url)} into {self.notes}")

    def upstream_of(self, branch: str) -> tuple[str, str]:
        """(remote, branch on the remote): the configured upstream, else origin/<same name>."""
        remote = self.git.config_get(f"branch.{branch}.remote")
        merge = self.git.config_get(f"branch.{branch}.merge")
        if remote and remote != "." and merge:
            return remote, merge.removeprefix("refs/heads/")
        if self.git.remote_url("origin") is None:
            raise SyncFailed(f"{self.notes} has no remote 'origin' and branch {branch!r} has no upstream")
        return "origin", branch

    def check_remote_url(self, remote: str) -> None:
        configured = credentials.clean(self.config.notes.repo) if self.config.notes.repo else None
        actual = self.git.remote_url(remote)
        if actual and credentials.clean(actual) != actual:
            # a clone made before: its .git/config holds a token; keep the URL, drop the secret
            self.git.run("remote", "set-url", remote, credentials.clean(actual))
            self.log.warning("sync_credentials_removed", msg=f"Removed the credentials from {remote}'s URL in "
                             f"{self.notes}/.git/config; the token now comes from the credential helper")
            self.say(f"removed the credentials from {remote}'s URL in .git/config")
            actual = credentials.clean(actual)
        if configured and actual and configured != actual:
            self.log.warning(
                "sync_remote_mismatch",
                msg=f"{self.notes} syncs with {redact(actual)}, not the configured notes.repo {redact(configured)}",
            )

    def commit(self) -> None:
        if not self.git.has_changes():
            return
        message = f"{self.config.notes.commit_prefix}: {dt.datetime.now().strftime('%Y-%m-%d %H:%M:%S')}"
        commit_id = self.git.commit_all(message)
        self.record.committed = True
        self.log.info("sync_committed", msg=f"Committed local changes: {message}", commit=commit_id)
        self.say(f"committed {commit_id[:12]} {message!r}")

    def integrate_and_push(self, remote: str, remote_branch: str) -> None:
        tracking = f"refs/remotes/{remote}/{remote_branch}"
        upstream = f"{remote}/{remote_branch}"
        for attempt in range(1, PUSH_ATTEMPTS + 1):
            if self.git.rev_parse("HEAD") is None:
                return  # an empty clone with nothing written yet
            has_upstream = self.git.rev_parse(tracking) is not None
            if has_upstream:
                behind = self.git.count(f"HEAD..{tracking}")
                if behind:
                    if not self.git.rebase(tracking):
                        self.handle_conflict(remote, upstream)
                        return
                    self.record.rebased = True
                    self.log.info("sync_rebased", msg=f"Rebased onto {upstream} ({behind} new upstream commit(s))")
                    self.say(f"rebased onto {upstream} ({behind} new commit(s))")
                ahead = self.git.count(f"{tracking}..HEAD")
            else:
                ahead = self.git.count("HEAD")
            if not ahead:
                return
            set_upstream = self.git.config_get(f"branch.{self.record.branch}.merge") is None
            try:
                self.git.push(remote, f"HEAD:refs/heads/{remote_branch}", set_upstream=set_upstream)
            except PushRejected as exc:
                if attempt == PUSH_ATTEMPTS:
                    raise SyncFailed(
                        f"the push to {upstream} lost a race with other pushes {PUSH_ATTEMPTS} times (the remote "
                        f"branch moved or was locked: {exc.detail}); the local commits are kept and the next run "
                        "pushes them"
                    ) from None
                delay = random.uniform(*RETRY_DELAY) * attempt
                self.log.info("sync_push_retry", msg=f"{upstream} moved on or was locked by another push meanwhile "
                              f"({exc.detail}); fetching, rebasing and pushing again in {delay:.1f}s",
                              attempt=attempt, delay_seconds=round(delay, 2))
                time.sleep(delay)
                try:
                    self.git.fetch(remote)
                except GitError as exc:
                    raise self.unreachable(remote, exc) from None
                continue
            except GitError as exc:
                raise self.unreachable(remote, exc) from None
            self.record.pushed = True
            self.log.info("sync_pushed", msg=f"Pushed {ahead} commit(s) to {upstream}", commits=ahead)
            self.say(f"pushed {ahead} commit(s) to {upstream}")
            return

    def unreachable(self, remote: str, exc: GitError) -> SyncFailed:
        url = redact(self.git.remote_url(remote) or remote)
        kept = " (local commits are kept; the next run pushes them)" if self.git.rev_parse("HEAD") else ""
        return SyncFailed(f"cannot reach the notes remote {url}: {exc.detail}{kept}")

    # ------------------------------------------------------------------ conflicts

    def handle_conflict(self, remote: str, upstream: str) -> None:
        files = self.git.conflicted_files()
        self.git.rebase_abort()  # HEAD is the local work again, untouched
        now = dt.datetime.now(dt.timezone.utc)
        stamp = now.strftime("%Y%m%d-%H%M%S")
        branch = f"conflict/{_ref_safe(self.host)}-{stamp}"
        self.git.create_branch(branch)
        tracking = f"refs/remotes/{upstream}"
        local_commits = self.git.count(f"{tracking}..HEAD")
        remote_pushed = self.backup_push(remote, branch, f"refs/heads/{branch}")
        marker = conflict.ConflictMarker(
            since=iso_z(now),
            branch=branch,
            upstream=upstream,
            remote_pushed=remote_pushed,
            issue=conflict.issue_name(self.host, stamp),
        )
        conflict.write_marker(self.space.conflict_marker, marker)  # first: the marker is what stops later pushes
        try:
            conflict.add_issue(
                self.space.issues_file,
                name=marker.issue,
                notes_dir=self.notes,
                marker=marker,
                files=files,
                local_commits=local_commits,
            )
        except ValidationFailed as exc:
            problems = "; ".join(str(p) for p in exc.problems)
            self.log.error("sync_issue_not_recorded", msg=f"Could not add the conflict to ISSUES.yaml: {problems}")
            self.say(f"could not add the conflict to {self.space.issues_file}: {problems}")
        self.record.conflict = True
        self.record.conflict_pending = True
        self.record.conflict_branch = branch
        self.record.status = "conflict"
        self.record.exit_code = EXIT_FAILED
        self.record.commit = self.git.rev_parse("HEAD")
        where = "pushed to the remote" if remote_pushed else "kept locally only (pushing it failed)"
        self.record.error = (
            f"rebase conflict with {upstream} in {', '.join(files) or 'unknown files'}: local work is on branch "
            f"{branch} ({where}); merge it, then run `keystone-agent sync --resolved`"
        )
        self.log.error(
            "sync_conflict",
            msg=self.record.error,
            conflict_branch=branch,
            remote_pushed=remote_pushed,
            files=files,
            local_commits=local_commits,
        )
        self.say(self.record.error)

    def backup_push(self, remote: str, branch: str, source: str) -> bool:
        try:
            self.git.push(remote, f"{source}:refs/heads/{branch}")
            return True
        except GitError as exc:
            self.log.warning("sync_conflict_push_failed", msg=f"Could not push {branch}: {exc.detail}")
            return False

    def conflict_pending(self, marker: conflict.ConflictMarker, remote: str) -> None:
        """A human has not merged yet: keep the local commit, back it up to the conflict branch, push nothing else."""
        self.record.conflict_pending = True
        self.record.conflict_branch = marker.branch
        self.record.status = "conflict_pending"
        self.record.exit_code = EXIT_FAILED
        self.record.commit = self.git.rev_parse("HEAD")
        if marker.branch and self.record.commit:
            if self.backup_push(remote, marker.branch, "HEAD") and not marker.remote_pushed:
                marker.remote_pushed = True
                conflict.write_marker(self.space.conflict_marker, marker)
        self.record.error = (
            f"a notes-sync conflict is pending since {marker.since or 'an earlier run'} "
            f"(local work on branch {marker.branch or 'unknown'}); committed locally only. Merge it into "
            f"{marker.upstream or 'the upstream branch'}, then run `keystone-agent sync --resolved`"
        )
        self.log.warning("sync_conflict_pending", msg=self.record.error, conflict_branch=marker.branch)
        self.say(self.record.error)

    def clear_conflict(self) -> None:
        marker = conflict.read_marker(self.space.conflict_marker)
        if marker is None:
            self.say("no conflict was pending")
            return
        conflict.clear_marker(self.space.conflict_marker)
        if marker.issue:
            try:
                conflict.resolve_issue(self.space.issues_file, marker.issue, iso_z())
            except ValidationFailed as exc:
                self.say(f"could not mark {marker.issue} resolved in ISSUES.yaml: {exc.problems[0]}")
        self.log.info("sync_conflict_resolved", msg="Conflict marked resolved by a human", conflict_branch=marker.branch)
        self.say(f"conflict on {marker.branch or 'an earlier run'} marked resolved")
