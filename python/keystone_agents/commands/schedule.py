"""keystone-agent schedule: what the scheduler timer runs."""

from __future__ import annotations

import sys

import click

from keystone_agents.cli.output import output_options
from keystone_agents.cli.common import agent_command, echo_json
from keystone_agents.scheduler import run as scheduler_run
from keystone_agents.timeutil import parse_time


def _parse_now(_ctx, _param, value):
    if value is None:
        return None
    moment = parse_time(value)
    if moment is None:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date-time (e.g. 2025-06-02T05:00:00Z)")
    return moment


@click.command("schedule")
@click.option(
    "--now",
    callback=_parse_now,
    metavar="ISO8601",
    help="Run as if it were this moment (default: the clock); a time without offset is UTC.",
)
@click.option("--dry-run", is_flag=True, help="Show what would be created; write nothing, wake nothing, record nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's outcome (tasks created, errors) as JSON.")
@output_options
@agent_command
def schedule_command(ctx, now, dry_run, as_json):
    """Turn SCHEDULES.yaml and the calendar into pending tasks in TASKS.yaml.

    Schedules (daily, weekly:<day>, monthly:<day>, 5-field cron; optional time and timezone) create one
    task per occurrence since the last run, catching up missed ones within scheduler.horizonDays. Calendar
    events in the next calendar.windowHours create one task per event and day. Each task is created once
    (dedup by source_ref, also against TASKS.archive.yaml). When tasks were created the task loop is woken
    without waiting. Events go to stderr and the run log; metrics to keystone-agent-scheduler-<agent>.prom.

    Exit codes: 0 success (or another run held the lock); 1 something was not read or written (the rest
    was still done).
    """
    result = scheduler_run.run(ctx.space, ctx.config, now, dry_run=dry_run)
    if as_json:
        echo_json(result.as_dict())
    else:
        verb = "would create" if dry_run else "created"
        for task in result.created:
            click.echo(f"{verb} {task['name']}  ({task['source_ref']})")
        if result.status == "skipped":
            click.echo("another scheduler run is in progress; nothing done")
        else:
            click.echo(f"{len(result.created)} task(s) {verb}; status {result.status}")
        for error in result.errors:
            click.echo(f"error: {error}", err=True)
    sys.exit(result.exit_code)
