"""keystone-agent pause|resume|paused: the task loop's pause file."""

from __future__ import annotations

import sys

import click

from keystone_agents import pause as pausefile
from keystone_agents.cli.common import agent_command, echo_json


@click.command("pause")
@click.argument("reason", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the pause state as JSON.")
@agent_command
def pause_command(ctx, reason, as_json):
    """Pause the task loop (later runs exit with event run_paused) with an optional REASON."""
    state = pausefile.pause(ctx.space.pause_file, " ".join(reason) or None)
    if as_json:
        echo_json(state.as_dict())
    else:
        click.echo(f"Paused task loop for '{ctx.config.agent_name}'")


@click.command("resume")
@click.option("--json", "as_json", is_flag=True, help="Print the pause state as JSON.")
@agent_command
def resume_command(ctx, as_json):
    """Resume the task loop (remove the pause file)."""
    removed = pausefile.resume(ctx.space.pause_file)
    if as_json:
        echo_json({**pausefile.read(ctx.space.pause_file).as_dict(), "changed": removed})
    elif removed:
        click.echo(f"Resumed task loop for '{ctx.config.agent_name}'")
    else:
        click.echo(f"Task loop for '{ctx.config.agent_name}' is not paused")


@click.command("paused")
@click.option("--json", "as_json", is_flag=True, help="Print the pause state as JSON.")
@agent_command
def paused_command(ctx, as_json):
    """Show whether the task loop is paused, since when, by whom and why.

    Exit code, like `systemctl is-active`: 0 when the loop is active, 1 when it is paused (with or
    without --json), so a script can write `if keystone-agent paused >/dev/null; then …`."""
    state = pausefile.read(ctx.space.pause_file)
    if as_json:
        echo_json(state.as_dict())
        sys.exit(1 if state.paused else 0)
    name = ctx.config.agent_name
    if not state.paused:
        click.echo(f"Task loop for '{name}': active")
        return
    click.echo(f"Task loop for '{name}': paused")
    for label, value in (("paused_at", state.paused_at), ("paused_by", state.paused_by), ("reason", state.reason)):
        if value:
            click.echo(f"  {label}: {value}")
    sys.exit(1)
