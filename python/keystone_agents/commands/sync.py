"""keystone-agent sync: one notes-sync run (what the agent-<name>-notes-sync timer calls)."""

from __future__ import annotations

import sys

import click

from keystone_agents.cli.output import output_options
from keystone_agents.cli.common import agent_command, echo_json
from keystone_agents.notes_sync.sync import run_sync


@click.command("sync")
@click.option(
    "--resolved",
    is_flag=True,
    help="A human merged the conflict branch: clear the conflict_pending marker (and mark the ISSUES.yaml "
    "entry resolved), then sync as usual.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run's record as JSON.")
@output_options
@agent_command
def sync_command(ctx, resolved, as_json):
    """Sync the notes repo with its remote (config notes.repo, path notesDir).

    Clones the repo when the path is absent. Otherwise commits every change as "<notes.commitPrefix>:
    <YYYY-MM-DD HH:MM:SS>", fetches, rebases onto the upstream branch and pushes; with nothing to do it
    neither commits nor pushes. A run that overlaps another one skips (exit 0).

    On a rebase conflict nothing is lost: the rebase is aborted, the local commits are pushed to a branch
    conflict/<host>-<timestamp> (kept locally if that push fails), ISSUES.yaml gets an entry, and later runs
    only commit locally until `keystone-agent sync --resolved`.

    Exit codes: 0 synced, cloned, nothing to do or skipped; 1 error (remote unreachable, bad configuration),
    conflict, or conflict still pending.
    """
    outcome = run_sync(ctx.space, ctx.config, resolved=resolved)
    if outcome.skipped:
        if as_json:
            echo_json({"skipped": True, "exit_code": 0})
        else:
            click.echo("Notes sync already running, skipping")
        return
    record = outcome.record
    if as_json:
        echo_json(record.as_dict())
    else:
        for message in record.messages:
            click.echo(message)
        if record.exit_code:
            click.echo(f"error: {record.error}", err=True)
    sys.exit(record.exit_code)
