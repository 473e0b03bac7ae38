"""`keystone-agent`: what runs inside an agent account (systemd units call it; so can the agent)."""

from __future__ import annotations

import importlib

import click

from keystone_agents import __version__

# Commands are imported when used: the task loop runs every few minutes and its start-up time is
# measured (docs/performance.md), so `keystone-agent loop` must not import every other command's
# dependencies (ruamel, jsonschema, jinja2, ...).
COMMANDS = {
    "init": "keystone_agents.commands.init:init_command",
    "validate": "keystone_agents.commands.validate:validate_command",
    "tasks": "keystone_agents.commands.tasks:tasks_command",
    "pause": "keystone_agents.commands.pause:pause_command",
    "resume": "keystone_agents.commands.pause:resume_command",
    "paused": "keystone_agents.commands.pause:paused_command",
    "loop": "keystone_agents.commands.loop:loop_command",
    "runs": "keystone_agents.commands.runs:runs_command",
    "logs": "keystone_agents.commands.logs:logs_command",
    "schedule": "keystone_agents.commands.schedule:schedule_command",
    "sync": "keystone_agents.commands.sync:sync_command",
    "code": "keystone_agents.commands.code:code_command",
    "compose": "keystone_agents.commands.compose:compose_command",
    "info": "keystone_agents.commands.info:info_command",
    "session": "keystone_agents.commands.session:session_command",
    "mail": "keystone_agents.commands.mail:mail_command",
    "watch": "keystone_agents.commands.watch:watch_command",
    "kill": "keystone_agents.commands.lifecycle:kill_command",
    "continue": "keystone_agents.commands.lifecycle:continue_command",
    "resolve-provider": "keystone_agents.commands.resolve_provider:resolve_provider_command",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is None and name in COMMANDS:
            module, attr = COMMANDS[name].split(":")
            command = getattr(importlib.import_module(module), attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="keystone-agent")
def cli():
    """Run an autonomous agent's work: its task loop, scheduler, notes sync and queue files.

    Every command takes --home DIR (default $HOME) and --config FILE. Exit codes: 0 success,
    1 invalid files/configuration or a failed run, 2 bad usage; `loop` also uses 3 (degraded).
    """


def main() -> None:
    cli(prog_name="keystone-agent")
