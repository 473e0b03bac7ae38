"""The `keystone-agent` click group (the entry point, with its fast path for the timer, is cli/agent.py)."""

from __future__ import annotations

import importlib

import click

from keystone_agents import __version__

from keystone_agents.cli.agent import COMMANDS
from keystone_agents.cli.common import SafeGroup


class LazyGroup(SafeGroup):
    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is None and name in COMMANDS:
            module, attr = COMMANDS[name].split(":")
            command = getattr(importlib.import_module(module), attr)
        return command

    def resolve_command(self, ctx, args):
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None and not ctx.resilient_parsing:
            import difflib

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)

    def load_all(self, ctx) -> None:
        """Import every lazy command (for generating manual pages)."""
        for name in self.list_commands(ctx):
            if name not in self.commands:
                self.add_command(self.get_command(ctx, name), name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="keystone-agent")
def cli():
    """Run an autonomous agent's work: its task loop, scheduler, notes sync and queue files.

    Every command takes --home DIR (default $HOME) and --config FILE. Exit codes: 0 success,
    1 invalid files/configuration or a failed run, 2 bad usage; `loop` also uses 3 (degraded).
    """


@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion_command(shell):
    """Print the completion script for SHELL (commands, options, task names). Install it, e.g. for bash:
    `keystone-agent completion bash > ~/.local/share/bash-completion/completions/keystone-agent` (the Nix
    package installs it for all three shells)."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    click.echo(cls(cli, {}, "keystone-agent", "_KEYSTONE_AGENT_COMPLETE").source())
