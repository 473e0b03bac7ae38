"""keystone-agent configure: apply the configuration to the agent's home — its git identity and signing, and the
agent space's .mcp.json. What the NixOS module's `agent-<name>-git-config` service runs; `init` does the same."""

from __future__ import annotations

import sys

import click

from keystone_agents.cli.common import EXIT_PROBLEMS, agent_command, echo_json


def apply(config, space) -> dict:
    """Write ~/.config/git/config's identity, the allowed-signers file, and <agent space>/.mcp.json → what."""
    from keystone_agents.atomic import write_atomic
    from keystone_agents.git_identity import write_git_config
    from keystone_agents.providers.mcp import render_mcp_json

    done = write_git_config(config, space.home)
    mcp_json = space.notes_dir / ".mcp.json"
    if space.notes_dir.is_dir():
        write_atomic(mcp_json, render_mcp_json(config), mode=0o644)
        done["mcp_json"] = str(mcp_json)
    else:
        done["mcp_json"] = None
    return done


@click.command("configure")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@agent_command
def configure_command(ctx, as_json):
    """Apply the configuration to the agent's home: the git identity every commit uses (user.name from
    fullName, user.email, SSH signing with git.signingKey: gpg.format=ssh, user.signingkey, commit.gpgsign,
    gpg.ssh.allowedSignersFile) in ~/.config/git/config (other settings there are kept), the allowed-signers
    file (git.allowedSignersFile), and the agent space's .mcp.json rendered from mcpServers (secrets from
    envFiles appear as ${VAR} references, never as values). Safe to run again."""
    from keystone_agents.git import GitError

    try:
        done = apply(ctx.config, ctx.space)
    except (GitError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_PROBLEMS)
    if as_json:
        echo_json(done)
        return
    click.echo(f"git identity: {done['git_config']}")
    for key, value in done["settings"].items():
        click.echo(f"  {key} = {value}")
    if done["allowed_signers"]:
        click.echo(f"allowed signers: {done['allowed_signers']}")
    click.echo(f"MCP servers: {done['mcp_json']}" if done["mcp_json"] else
               f"MCP servers: not written, the agent space {ctx.space.notes_dir} does not exist")
