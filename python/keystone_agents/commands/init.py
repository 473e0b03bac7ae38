"""keystone-agent init DIR: scaffold an agent home."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from keystone_agents import scaffold
from keystone_agents.cli.common import EXIT_PROBLEMS, echo_json
from keystone_agents.config import default_agent_name


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", "agent_name", help="Agent name (default: from the user name, agent-<name>).")
@click.option("--full-name", help="Display name for SOUL.md.")
@click.option("--email", help="The agent's email address.")
@click.option("--human-name", help="The human operator's name (HUMAN.md, TEAM.md).")
@click.option("--human-email", help="The human operator's email.")
@click.option("--archetype", type=click.Choice(["engineer", "product"]), default="engineer", show_default=True,
              help="Conventions archetype of manifests/modes.yaml.")
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
@click.option("--json", "as_json", is_flag=True, help="Print the written files as JSON.")
def init_command(directory, agent_name, full_name, email, human_name, human_email, archetype, force, as_json):
    """Scaffold an agent home in DIRECTORY: queue files with commented examples, ~/.config/keystone-agent/
    config.json, and the agent space in notes/ — identity docs (SOUL, TEAM, SERVICES, HUMAN, AGENTS.md and
    CLAUDE.md), manifests/modes.yaml, the .agents/ library skeleton (shared fragments, roles, conventions,
    archetypes.yaml), .cronjobs/ (shared lib.sh, config.sh, setup.sh and a sample job), flake.nix, .envrc,
    .mcp.json and .claude/settings.json. Existing files are never overwritten without --force."""
    home = directory.expanduser().absolute()
    values = scaffold.context(
        agent_name or default_agent_name(), full_name, email, human_name=human_name, human_email=human_email,
        archetype=archetype,
    )
    try:
        written = scaffold.init(home, values, force=force)
    except scaffold.ScaffoldExists as exc:
        click.echo("error: refusing to overwrite existing files (use --force):", err=True)
        for path in exc.existing:
            click.echo(f"  {path}", err=True)
        sys.exit(EXIT_PROBLEMS)
    if as_json:
        echo_json({"home": str(home), "written": [str(p) for p in written]})
    else:
        click.echo(f"Scaffolded agent home {home} for '{values['agent_name']}':")
        for path in written:
            click.echo(f"  {path.relative_to(home)}")
