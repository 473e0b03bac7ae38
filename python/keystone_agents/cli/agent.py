"""`keystone-agent`: what runs inside an agent account (systemd units call it; so can the agent)."""

from __future__ import annotations

import click

from keystone_agents import __version__
from keystone_agents.commands.code import code_command
from keystone_agents.commands.init import init_command
from keystone_agents.commands.pause import pause_command, paused_command, resume_command
from keystone_agents.commands.sync import sync_command
from keystone_agents.commands.schedule import schedule_command
from keystone_agents.commands.compose import compose_command
from keystone_agents.commands.info import info_command
from keystone_agents.commands.session import session_command
from keystone_agents.commands.tasks import tasks_command
from keystone_agents.commands.validate import validate_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="keystone-agent")
def cli():
    """Run an autonomous agent's work: its task loop, scheduler, notes sync and queue files.

    Every command takes --home DIR (default $HOME) and --config FILE. Exit codes: 0 success,
    1 invalid files/configuration or a failed run, 2 bad usage.
    """


COMMANDS = (
    init_command,
    validate_command,
    tasks_command,
    pause_command,
    resume_command,
    paused_command,
    schedule_command,
    sync_command,
    code_command,
    compose_command,
    info_command,
    session_command,
)
for command in COMMANDS:
    cli.add_command(command)


def main() -> None:
    cli(prog_name="keystone-agent")
