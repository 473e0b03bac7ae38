"""keystone-agent tasks: the queue as a table or JSON."""

from __future__ import annotations

import click

from keystone_agents import tasks_view
from keystone_agents.cli.common import agent_command, echo_json
from keystone_agents.taskfile import TaskFile


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
    footer of counts. MODEL is the provider/model the task last ran with (from the history), else its
    overrides; a blocked task's reason leads its DESCRIPTION; dates carry the year when not this year. On a
    terminal the table fits its width (DESCRIPTION truncated); piped, the columns are plain and whole.
    Invalid entries are skipped with a warning; `validate` explains them."""
    tf = TaskFile.load(ctx.space.tasks_file)  # the loop's fast reader: a 10,000-task queue lists in a second
    rows = tasks_view.ordered_rows(tf, statuses)
    invalid = sum(1 for entry in tf.entries if not entry.valid)
    if invalid:
        click.echo(
            f"warning: {invalid} invalid task entr{'y' if invalid == 1 else 'ies'} skipped "
            f"(run `keystone-agent validate`)",
            err=True,
        )
    if as_json:
        echo_json([{"position": row.position, **row.task} for row in rows])
    else:
        import shutil
        import sys

        from keystone_agents import history

        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        click.echo(tasks_view.render_table(rows, width=width, runtimes=history.latest_runtimes(ctx.space.history_db)))
