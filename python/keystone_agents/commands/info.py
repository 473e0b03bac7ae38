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


MODE_TIMERS = {"proactive": "think", "tick": "tick"}


def current_run(space) -> dict | None:
    """What is executing now (state/running.json of a live loop), else None."""
    from keystone_agents.loop.state import read_json
    from keystone_agents.providers.process import group_alive

    running = read_json(space.state_dir / "running.json")
    if not isinstance(running, dict) or not isinstance(running.get("pid"), int):
        return None
    try:
        import os

        os.kill(running["pid"], 0)
        alive = True
    except ProcessLookupError:
        alive = False
    except PermissionError:
        alive = True
    pgid = running.get("pgid")
    return {"runId": running.get("run_id"), "task": running.get("task"), "startedAt": running.get("started_at"),
            "pid": running["pid"], "pgid": pgid, "loopAlive": alive,
            "providerAlive": bool(isinstance(pgid, int) and group_alive(pgid)), "logPath": running.get("log_path")}


def next_wake(config) -> dict:
    """unit → next elapse of the agent's timers (systemctl --user show; null where unknown)."""
    import subprocess

    from keystone_agents.agentctl.status import parse_next_elapse

    name = config.agent_name
    units = [f"agent-{name}-task-loop.timer"]
    if config.exec.mode in MODE_TIMERS:
        units.append(f"agent-{name}-{MODE_TIMERS[config.exec.mode]}.timer")
    wake = {}
    for unit in units:
        try:
            out = subprocess.run(["systemctl", "--user", "show", unit, "--property=NextElapseUSecRealtime",
                                  "--value", "--timestamp=unix"], capture_output=True, text=True, timeout=10,
                                 stdin=subprocess.DEVNULL)
            wake[unit] = parse_next_elapse(out.stdout) if out.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            wake[unit] = None
    return wake


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
    """Report the agent's execution mode and limits, execute-stage provider/model, pause state, last loop run (and
    why it failed), task counts, a run in progress, today's tokens and cost, whether a notes-sync conflict waits
    (what `agentctl show`/`list`/`status` read), and the next wake-up of its timers."""
    config = ctx.config
    runtime = profiles.resolve(ctx.config, "execute", {})
    ex = config.exec
    report = {
        "agent": ctx.config.agent_name,
        "provider": runtime.provider,
        "profile": runtime.profile,
        "model": runtime.model,
        "fallbackModel": runtime.fallback_model,
        "pause": pause.read(ctx.space.pause_file).as_dict(),
        "lastRun": last_run(ctx.space),
        "taskCounts": task_counts(ctx.space, project),
        "mode": ex.mode,
        "triggers": list(getattr(config, "triggers", None) or (["schedule", "manual"] + (
            [MODE_TIMERS[ex.mode]] if ex.mode in MODE_TIMERS else []))),
        "limits": {"maxIterations": config.max_iterations, "maxAutoTurns": ex.max_auto_turns,
                   "maxContextTokens": ex.max_context_tokens, "thinkInterval": ex.think_interval,
                   "maxQuietSeconds": ex.max_quiet_seconds, "timeout": ex.timeout,
                   "taskTimeoutSeconds": config.task_timeout_seconds, "maxTasks": config.max_tasks},
        "currentRun": current_run(ctx.space),
        "nextWake": next_wake(config),
        **activity(ctx.space),
    }
    if as_json:
        echo_json(report)
        return
    click.echo(f"agent: {report['agent']}  mode: {report['mode']}  triggers: {', '.join(report['triggers'])}")
    limits = report["limits"]
    click.echo("limits: " + ", ".join(f"{k} {v}" for k, v in limits.items() if v is not None))
    click.echo(f"provider: {runtime.provider}  model: {runtime.model or '-'}  fallback: {runtime.fallback_model or '-'}")
    click.echo(f"loop: {report['pause']['state']}")
    run = report["lastRun"]
    click.echo(f"last run: {run['status']} at {run['startedAt']}" if run else "last run: never")
    now = report["currentRun"]
    click.echo(f"running: task {now['task']} since {now['startedAt']} (run {now['runId']})" if now and now["loopAlive"]
               else "running: nothing")
    for unit, when in report["nextWake"].items():
        click.echo(f"next wake: {unit} {when or '-'}")
    click.echo("tasks: " + ", ".join(f"{n} {s}" for s, n in report["taskCounts"].items()))
