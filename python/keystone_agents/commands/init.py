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
    configured = _configure(home)
    if as_json:
        echo_json({"home": str(home), "written": [str(p) for p in written], "configured": configured})
    else:
        click.echo(f"Scaffolded agent home {home} for '{values['agent_name']}':")
        for path in written:
            click.echo(f"  {path.relative_to(home)}")
        if configured:
            click.echo(f"Git identity in {configured['git_config']}; MCP servers in {configured['mcp_json']}")


def _configure(home: Path) -> dict | None:
    """What `keystone-agent configure` does, for the new home: its git identity and the agent space's .mcp.json
    from the configuration just written (or $KEYSTONE_AGENT_CONFIG)."""
    from keystone_agents.commands.configure import apply
    from keystone_agents.config import load_config
    from keystone_agents.git import GitError
    from keystone_agents.problems import ValidationFailed
    from keystone_agents.space import AgentSpace

    try:
        config = load_config(None, home)
        return apply(config, AgentSpace.from_home(home, config.notes_dir))
    except (ValidationFailed, GitError, OSError) as exc:
        click.echo(f"warning: the home was scaffolded but not configured ({exc}); run `keystone-agent configure`",
                   err=True)
        return None
