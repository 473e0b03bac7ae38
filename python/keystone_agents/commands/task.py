"""keystone-agent task add|show|retry|cancel|edit: one task, changed under the TASKS.yaml lock.

Text from the command line is untrusted like any other: every field goes through sanitize.clean_task (the
one normalisation, issue 22) before it is validated and written.

Every change is a read-modify-write of TASKS.yaml under `state/tasks.lock` (the lock the loop and the scheduler
take), through the loop's own surgical editor (taskfile.py): comments and other entries keep their bytes, the
entry is validated against the tasks schema before anything is written, and a concurrent loop run sees the
change when it next takes the lock.
"""

from __future__ import annotations

import difflib
import getpass
import os
from typing import Any

import click

from keystone_agents.cli.common import EXIT_PROBLEMS, agent_command, echo_json
from keystone_agents.cli.complete import task_names
from keystone_agents.taskfile import KNOWN_FIELDS, NAME_RE, TaskFile, read_plain

PROVIDERS = ("claude", "gemini", "codex", "command", "openai")
EFFORTS = ("low", "medium", "high", "max")
EDITABLE = ("description", "project", "provider", "model", "fallback_model", "profile", "effort", "workflow", "needs")
CANCELLED_MARK = "cancelled: "


class TaskError(click.ClickException):
    """A refused task action: one clear line, exit 1."""

    exit_code = EXIT_PROBLEMS

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _clean(value: str, field: str, multiline: bool = False) -> str:
    """Untrusted text from the command line through the one normalisation (keystone_agents/sanitize.py)."""
    from keystone_agents.sanitize import UnsafeText, clean_text

    try:
        return clean_text(value, field=field, multiline=multiline)
    except UnsafeText as exc:
        raise click.BadParameter(exc.reason, param_hint=f"--{field.replace('_', '-')}") from None


def _clean_task(ctx, fields: dict[str, Any]) -> dict[str, Any]:
    """Every task field through sanitize.clean_task (long descriptions go to the agent space's texts dir)."""
    from keystone_agents.sanitize import UnsafeText, clean_task

    try:
        return clean_task(fields, spill_dir=ctx.space.task_texts_dir)
    except UnsafeText as exc:
        raise click.BadParameter(exc.reason, param_hint=exc.field) from None


def slugify(text: str) -> str:
    from keystone_agents.sanitize import slug

    return slug(text)


def did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _user() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _now() -> str:
    from keystone_agents.timeutil import iso_z

    return iso_z()


def _needs(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _transaction(ctx):
    """(lock, TaskFile) for a read-modify-write of TASKS.yaml; a busy lock is a clear error, not a hang."""
    from keystone_agents.lock import FileLock, LockTimeout

    space = ctx.space
    timeout = float(os.environ.get("KEYSTONE_AGENT_LOCK_TIMEOUT") or 120)
    lock = FileLock(space.tasks_lock_file, timeout=timeout)
    try:
        lock.acquire()
    except LockTimeout:
        raise TaskError(f"{space.tasks_file} is busy: another writer (a loop run) has held its lock for "
                        f"{timeout:.0f}s; try again") from None
    return lock, TaskFile.load(space.tasks_file)


def _find(tf: TaskFile, name: str, archived: list[dict] | None = None):
    entry = tf.find(name)
    if entry is None:
        known = [e.name for e in tf.entries if e.name] + [str(t.get("name")) for t in archived or []]
        where = "TASKS.yaml" + (" or TASKS.archive.yaml" if archived is not None else "")
        raise TaskError(f"no task {name!r} in {where}{did_you_mean(name, known)}")
    return entry


def _refuse_running(entry) -> None:
    if entry.get("status") == "in_progress":
        raise TaskError(f"task {entry.name!r} is running now (in_progress); wait for the run to finish")


def _print_task(task: dict, as_json: bool, verb: str) -> None:
    if as_json:
        echo_json(task)
    else:
        click.echo(f"{verb} task {task['name']} ({task['status']})")


@click.group("task")
def task_group():
    """Add, show, retry, cancel or edit one task (TASKS.yaml is changed under its lock, validated first)."""


@task_group.command("add")
@click.argument("name", required=False)
@click.option("--description", "-d", required=True, metavar="TEXT", help="What to do (required).")
@click.option("--name-from", metavar="TEXT", help="Make the NAME from this text (kebab-case slug), e.g. a title.")
@click.option("--project", metavar="SLUG", help="Project slug (from PROJECTS.yaml).")
@click.option("--provider", type=click.Choice(PROVIDERS), help="Provider override for this task.")
@click.option("--model", metavar="M", help="Model override.")
@click.option("--fallback-model", metavar="M", help="Model for one retry after a model error.")
@click.option("--profile", metavar="P", help="Profile override (embedding, fast, medium, max or custom).")
@click.option("--effort", type=click.Choice(EFFORTS), help="Effort (Claude only today).")
@click.option("--workflow", metavar="JOB/WORKFLOW", help="DeepWork workflow to invoke.")
@click.option("--needs", metavar="A,B", help="Comma-separated names of tasks that must be completed first.")
@click.option("--json", "as_json", is_flag=True, help="Print the new task as JSON.")
@agent_command
def add_command(ctx, name, description, name_from, project, provider, model, fallback_model, profile, effort,
                workflow, needs, as_json):
    """Add a pending task NAME (kebab-case: lowercase letters, digits, single dashes) at the end of the queue
    (source manual). Refused when a task of that name exists in TASKS.yaml or TASKS.archive.yaml."""
    if bool(name) == bool(name_from):
        raise click.UsageError("give either NAME or --name-from TEXT")
    if name_from is not None:
        name = slugify(_clean(name_from, "name_from"))
        if not name:
            raise click.BadParameter(f"{name_from!r} has no letters or digits to make a name from",
                                     param_hint="--name-from")
    if not NAME_RE.match(name):
        suggestion = slugify(name)
        hint = f"; try {suggestion!r}" if suggestion and NAME_RE.match(suggestion) else ""
        raise click.BadParameter(f"{name!r} is not kebab-case (lowercase letters, digits, single dashes){hint}",
                                 param_hint="NAME")
    task: dict[str, Any] = {"name": name, "description": description, "status": "pending"}
    for key, value in (("project", project), ("provider", provider), ("model", model),
                       ("fallback_model", fallback_model), ("profile", profile), ("effort", effort),
                       ("workflow", workflow), ("needs", _needs(needs))):
        if value:
            task[key] = value
    task.update(source="manual", source_ref=f"manual-{name}", created_at=_now())
    task = _clean_task(ctx, task)
    if not task["description"]:
        raise click.BadParameter("must not be empty", param_hint="--description")
    archived = read_plain(ctx.space.tasks_archive_file)
    lock, tf = _transaction(ctx)
    try:
        taken = {e.name for e in tf.entries if e.name} | {str(t.get("name")) for t in archived}
        if name in taken:
            where = "TASKS.yaml" if name in {e.name for e in tf.entries} else "TASKS.archive.yaml"
            raise TaskError(f"a task named {name!r} already exists in {where}; choose another name")
        missing = [n for n in task.get("needs", []) if n not in taken]
        if missing:
            raise TaskError("--needs names no task: " + ", ".join(
                f"{n!r}{did_you_mean(n, sorted(taken))}" for n in missing))
        tf.append(task)
        tf.save()
    finally:
        lock.release()
    _print_task(task, as_json, "added")


@task_group.command("show")
@click.argument("name", shell_complete=task_names)
@click.option("--limit", type=click.IntRange(min=1), default=5, show_default=True,
              help="How many of the last executions.")
@click.option("--json", "as_json", is_flag=True, help="Print the task, its attempts and executions as JSON.")
@agent_command
def show_command(ctx, name, limit, as_json):
    """Show every field of task NAME (from TASKS.yaml, else TASKS.archive.yaml), its failed attempts and its
    last executions from the history (provider, model, outcome, reason, tokens, cost)."""
    from keystone_agents import history

    space = ctx.space
    tf = TaskFile.load(space.tasks_file)
    archived = read_plain(space.tasks_archive_file)
    entry = tf.find(name)
    if entry is not None:
        task, where, position = dict(entry.data), "TASKS.yaml", tf.entries.index(entry) + 1
    else:
        match = next((t for t in archived if t.get("name") == name), None)
        if match is None:
            _find(tf, name, archived)  # raises with did-you-mean
        task, where, position = dict(match), "TASKS.archive.yaml", None
    attempts = 0
    if space.history_db.exists():
        from contextlib import closing

        with closing(history.connect(space.history_db)) as conn:
            attempts = history.failures(conn, name)
    executions = history.executions(space.history_db, task=name, limit=limit)
    result = {"task": task, "file": where, "position": position, "failed_attempts": attempts,
              "executions": executions}
    if as_json:
        echo_json(result)
        return
    width = max(len(k) for k in list(task) + ["failed_attempts"])
    click.echo(f"{name}  ({where}{f', position {position}' if position else ''})")
    for key in KNOWN_FIELDS:
        if key in task:
            value = ", ".join(task[key]) if isinstance(task[key], list) else task[key]
            click.echo(f"  {key:<{width}}  {value}")
    click.echo(f"  {'failed_attempts':<{width}}  {attempts}")
    if not executions:
        click.echo("  no executions recorded")
    for ex in executions:
        code = ex.get("exit_code")
        tokens = ex.get("total_tokens")
        click.echo(f"  {ex['started_at']}  {ex['outcome']}{' (' + ex['reason'] + ')' if ex.get('reason') else ''} via "
                   f"{ex.get('provider') or '?'}{'/' + ex['model'] if ex.get('model') else ''} "
                   f"{'exit ' + str(code) if code is not None else 'not started'} "
                   f"{round(ex.get('duration_seconds') or 0, 1)}s tokens={tokens if tokens is not None else '-'}"
                   f"{' cost=$%.4f' % ex['cost_usd'] if ex.get('cost_usd') is not None else ''}")
        if ex.get("message") and ex["outcome"] != "completed":
            click.echo(f"      {' '.join(str(ex['message']).split())[:200]}")


@task_group.command("retry")
@click.argument("name", shell_complete=task_names)
@click.option("--json", "as_json", is_flag=True, help="Print the task as JSON.")
@agent_command
def retry_command(ctx, name, as_json):
    """Put a completed or blocked (or cancelled) task back to pending: failed attempts reset, blocked reason
    and completion time cleared. The next loop run picks it up in its queue position."""
    from keystone_agents import history

    lock, tf = _transaction(ctx)
    try:
        entry = _find(tf, name)
        _refuse_running(entry)
        if entry.get("status") == "pending":
            raise TaskError(f"task {name!r} is already pending")
        tf.set_fields(entry, {"status": "pending", "blocked_reason": None, "completed_at": None})
        tf.save()
        task = dict(entry.data)
    finally:
        lock.release()
    from contextlib import closing

    with closing(history.connect(ctx.space.history_db)) as conn:
        history.reset_failures(conn, name)
    _print_task(task, as_json, "retrying")


@task_group.command("cancel")
@click.argument("name", shell_complete=task_names)
@click.option("--reason", metavar="TEXT", help="Why (kept in blocked_reason).")
@click.option("--json", "as_json", is_flag=True, help="Print the task as JSON.")
@agent_command
def cancel_command(ctx, name, reason, as_json):
    """Cancel a pending or blocked task: it becomes blocked with blocked_reason "cancelled: <reason> (by <user>
    at <time>)", so the loop never runs it and nothing is lost (`task retry` brings it back)."""
    lock, tf = _transaction(ctx)
    try:
        entry = _find(tf, name)
        _refuse_running(entry)
        if entry.get("status") == "completed":
            raise TaskError(f"task {name!r} is already completed")
        why = _clean(reason or "", "reason") or "no reason given"
        tf.set_fields(entry, {"status": "blocked",
                              "blocked_reason": f"{CANCELLED_MARK}{why} (by {_user()} at {_now()})"})
        tf.save()
        task = dict(entry.data)
    finally:
        lock.release()
    _print_task(task, as_json, "cancelled")


@task_group.command("edit")
@click.argument("name", shell_complete=task_names)
@click.option("--description", metavar="TEXT")
@click.option("--project", metavar="SLUG")
@click.option("--provider", type=click.Choice(PROVIDERS))
@click.option("--model", metavar="M")
@click.option("--fallback-model", metavar="M")
@click.option("--profile", metavar="P")
@click.option("--effort", type=click.Choice(EFFORTS))
@click.option("--workflow", metavar="JOB/WORKFLOW")
@click.option("--needs", metavar="A,B", help="Replace the needs (comma-separated; empty string removes them).")
@click.option("--unset", "unset", multiple=True, type=click.Choice(EDITABLE[1:]),
              help="Remove this field (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the task as JSON.")
@agent_command
def edit_command(ctx, name, unset, as_json, **fields):
    """Change fields of task NAME: --description, --project, --provider, --model, --fallback-model, --profile,
    --effort, --workflow, --needs; --unset FIELD removes one. Name, status and times are the runtime's:
    use `task retry` / `task cancel`. A running task is not edited."""
    updates: dict[str, Any] = {}
    for key, value in fields.items():
        if value is None:
            continue
        if key == "needs":
            updates["needs"] = _needs(value) or None
        else:
            if not value.strip():
                raise click.BadParameter("must not be empty (use --unset to remove a field)",
                                         param_hint=f"--{key.replace('_', '-')}")
            updates[key] = value
    for key in unset:
        if key in updates:
            raise click.UsageError(f"--{key.replace('_', '-')} and --unset {key} exclude each other")
        updates[key] = None
    if not updates:
        raise click.UsageError("nothing to change: give at least one --FIELD VALUE or --unset FIELD")
    updates = _clean_task(ctx, updates)
    archived = read_plain(ctx.space.tasks_archive_file)
    lock, tf = _transaction(ctx)
    try:
        entry = _find(tf, name)
        _refuse_running(entry)
        if updates.get("needs"):
            taken = {e.name for e in tf.entries if e.name} | {str(t.get("name")) for t in archived}
            missing = [n for n in updates["needs"] if n not in taken]
            if missing:
                raise TaskError("--needs names no task: " + ", ".join(
                    f"{n!r}{did_you_mean(n, sorted(taken))}" for n in missing))
            if name in updates["needs"]:
                raise TaskError(f"task {name!r} cannot need itself")
        from keystone_agents.problems import ValidationFailed

        try:
            tf.set_fields(entry, updates)
        except ValidationFailed as exc:
            raise TaskError("; ".join(p.message for p in exc.problems)) from None
        tf.save()
        task = dict(entry.data)
    finally:
        lock.release()
    _print_task(task, as_json, "edited")
