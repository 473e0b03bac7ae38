"""keystone-agent tasks: the queue as a table or JSON."""

from __future__ import annotations

import click

from keystone_agents import queuefile, tasks_view
from keystone_agents.cli.common import agent_command, echo_json


@click.command("tasks")
@click.option("--json", "as_json", is_flag=True, help="Print the tasks as a JSON list.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(tasks_view.STATUS_ORDER),
    help="Only tasks with this status (repeatable).",
)
@agent_command
def tasks_command(ctx, as_json, statuses):
    """List the tasks: in progress, pending, blocked, completed (newest first within each), with a
    footer of counts. Invalid entries are skipped with a warning; `validate` explains them."""
    doc = queuefile.load(ctx.space.tasks_file, queuefile.TASKS)
    rows = tasks_view.ordered_rows(doc, statuses)
    if doc.problems:
        click.echo(
            f"warning: {len(doc.invalid)} invalid task entr{'y' if len(doc.invalid) == 1 else 'ies'} skipped "
            f"(run `keystone-agent validate`)",
            err=True,
        )
    if as_json:
        echo_json([{"position": row.position, **row.task} for row in rows])
    else:
        click.echo(tasks_view.render_table(rows))
