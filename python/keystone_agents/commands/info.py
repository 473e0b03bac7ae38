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


@click.command("info")
@click.option("--project", help="Count only this project's tasks.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@agent_command
def info_command(ctx, project, as_json):
    """Report the agent's execute-stage provider/model, pause state, last loop run and task counts."""
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
