"""keystone-agent info: what the agent knows about itself, for `agentctl show` (which runs it as the agent)."""

from __future__ import annotations

import click

from keystone_agents import history, pause, profiles, tasks_view
from keystone_agents.cli.common import agent_command, echo_json

LOOP_KIND = "task-loop"


def last_run(space) -> dict | None:
    runs = history.recent_runs(space.history_db, kind=LOOP_KIND, limit=1)
    if not runs:
        return None
    run = runs[0]
    return {
        "runId": run.get("run_id"),
        "status": run.get("status"),
        "startedAt": run.get("started_at"),
        "finishedAt": run.get("finished_at"),
        "exitCode": run.get("exit_code"),
        "durationSeconds": run.get("duration_seconds"),
    }


def task_counts(space, project: str | None = None) -> dict:
    counts = {status: 0 for status in tasks_view.STATUS_ORDER}
    if not space.tasks_file.exists():
        return {**counts, "invalid": 0}
    from keystone_agents.taskfile import TaskFile

    tf = TaskFile.load(space.tasks_file)
    rows = tasks_view.ordered_rows(tf)
    if project:
        rows = [row for row in rows if row.task.get("project") == project]
    return {**tasks_view.counts(rows), "invalid": sum(1 for entry in tf.entries if not entry.valid)}


def loop_running(space) -> dict | None:
    """{"pid", "task"} while a loop run holds its lock (and the task it executes, if any), else None.

    Read from /proc/locks, never by trying the lock: a probe must not make a starting run skip its tick."""
    import os

    try:
        inode = os.stat(space.lock_file).st_ino
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            rows = [line.split() for line in handle]
    except OSError:
        return None
    for row in rows:
        # "1: FLOCK  ADVISORY  WRITE 2351 fd:01:1835143 0 EOF" (a blocked waiter's line starts "1: ->")
        if len(row) >= 6 and row[1] == "FLOCK" and row[5].rsplit(":", 1)[-1] == str(inode):
            from keystone_agents.loop.state import read_json

            running = read_json(space.state_dir / "running.json")
            task = running.get("task") if isinstance(running, dict) else None
            return {"pid": int(row[4]) if row[4].isdigit() else None, "task": task}
    return None


def activity(space) -> dict:
    """What the fleet view needs beyond the basics: a run in progress, today's spend, the last run's failure
    reason, a notes-sync conflict waiting for a human."""
    from keystone_agents.commands.runs import failure_reason

    spend = {"tokens": 0, "costUsd": 0.0}
    reason = None
    if space.history_db.exists():
        from contextlib import closing

        from keystone_agents.loop.budget import period_starts
        from keystone_agents.timeutil import utc_now

        with closing(history.connect(space.history_db)) as conn:
            tokens, cost = history.spend(conn, since=period_starts(utc_now())[0])
        spend = {"tokens": tokens, "costUsd": round(cost, 6)}
        runs = history.recent_runs(space.history_db, kind=LOOP_KIND, limit=1)
        if runs:
            reason = failure_reason(runs[0])
    return {"running": loop_running(space), "today": spend, "lastRunFailure": reason,
            "notesConflict": space.conflict_marker.exists()}


@click.command("info")
@click.option("--project", help="Count only this project's tasks.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@agent_command
def info_command(ctx, project, as_json):
    """Report the agent's execute-stage provider/model, pause state, last loop run (and why it failed), task
    counts, a run in progress, today's tokens and cost, and whether a notes-sync conflict waits (what
    `agentctl show`/`list`/`status` read)."""
    runtime = profiles.resolve(ctx.config, "execute", {})
    report = {
        "agent": ctx.config.agent_name,
        "provider": runtime.provider,
        "profile": runtime.profile,
        "model": runtime.model,
        "fallbackModel": runtime.fallback_model,
        "pause": pause.read(ctx.space.pause_file).as_dict(),
        "lastRun": last_run(ctx.space),
        "taskCounts": task_counts(ctx.space, project),
        **activity(ctx.space),
    }
    if as_json:
        echo_json(report)
        return
    click.echo(f"agent: {report['agent']}")
    click.echo(f"provider: {runtime.provider}  model: {runtime.model or '-'}  fallback: {runtime.fallback_model or '-'}")
    click.echo(f"loop: {report['pause']['state']}")
    run = report["lastRun"]
    click.echo(f"last run: {run['status']} at {run['startedAt']}" if run else "last run: never")
    click.echo("tasks: " + ", ".join(f"{n} {s}" for s, n in report["taskCounts"].items()))
