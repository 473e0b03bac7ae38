"""keystone-agent session TOOL: an interactive coding-agent session with the composed system prompt."""

from __future__ import annotations

import sys

import click

from keystone_agents import compose
from keystone_agents.agentctl import sessions
from keystone_agents.cli.common import EXIT_PROBLEMS, agent_command, echo_json


@click.command("session", context_settings={"ignore_unknown_options": True})
@click.argument("tool", type=click.Choice(sessions.TOOLS))
@click.option("--role", "-r", help="Mode of notes/manifests/modes.yaml whose prompt to compose.")
@click.option("--roles", help="Extra role templates, comma-separated.")
@click.option("--project", "-p", help="Add the project's context from PROJECTS.yaml.")
@click.option("--model", help="Model to start the tool with.")
@click.option("--devshell/--no-devshell", default=True,
              help="Run the tool inside the notes dir's `nix develop` shell when flake.nix and nix exist (default).")
@click.option("--print-argv", is_flag=True, help="Print {argv, cwd, prompt} as JSON instead of starting the tool.")
@click.argument("tool_args", nargs=-1, type=click.UNPROCESSED)
@agent_command
def session_command(ctx, tool, role, roles, project, model, devshell, print_argv, tool_args):
    """Start TOOL (claude, codex or gemini) in the notes directory with the system prompt composed from
    notes/AGENTS.md, the project's context and the role composition; TOOL_ARGS (after --) go to the tool.
    `agentctl <agent> claude …` runs this as the agent."""
    try:
        session = sessions.prepare(
            ctx.space, tool, role, compose.split_roles(roles), project, model, list(tool_args), devshell
        )
    except (sessions.SessionError, compose.CompositionError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_PROBLEMS)
    if print_argv:
        echo_json(session.as_dict())
        return
    if tool == "gemini" and session.prompt:
        click.echo("note: gemini has no flag to append a system prompt; the composed prompt is not passed", err=True)
    _mcp_secrets(ctx.config)
    sys.stdout.flush()
    sessions.exec_session(session)


def _mcp_secrets(config) -> None:
    """The agent space's .mcp.json names each MCP secret as ${VAR} (keystone-agent configure): put the values,
    read from their envFiles, in the session's environment, where Claude Code expands them."""
    import os

    from keystone_agents.providers.mcp import McpError, resolve

    try:
        for server in resolve(config):
            os.environ.update(server.secrets)
    except McpError as exc:
        click.echo(f"warning: {exc}; that MCP server starts without it", err=True)
