"""keystone-agent init DIR: scaffold an agent home, and say what to do next."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path

import click

from keystone_agents import scaffold
from keystone_agents.cli.common import EXIT_PROBLEMS, echo_json
from keystone_agents.config import default_agent_name

AGENT_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")  # the config schema's agentName pattern


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_PROBLEMS)


def _check_name(_ctx, _param, value: str | None) -> str | None:
    if value is not None and not AGENT_NAME_RE.match(value):
        raise click.BadParameter(f"{value!r} is not an agent name: a lowercase letter, then lowercase letters, "
                                 "digits and dashes (the Linux user is agent-<name>)")
    return value


def next_steps(home: Path, notes_repo: str | None) -> list[str]:
    flag = "" if home == Path(os.environ.get("HOME") or "~").expanduser().absolute() else f" --home {shlex.quote(str(home))}"
    config = home / ".config/keystone-agent/config.json"
    steps = [
        f"Check the files and the configuration:  keystone-agent validate{flag}",
        f"A first run that starts no provider and writes nothing:  keystone-agent loop --dry-run{flag}  "
        "(each prompt goes to a task log: keystone-agent logs TASK)",
    ]
    if notes_repo:
        steps.append(f"Sync the notes now and then (the notes-sync timer does it on NixOS):  keystone-agent sync{flag}  "
                     "— commits notes/, rebases onto the remote and pushes")
    else:
        steps.append(f"To sync notes/ with a git remote, set \"notes\": {{\"repo\": \"<git URL>\"}} in {config} (or "
                     f"run init with --notes-repo URL); then keystone-agent sync{flag} commits notes/, rebases onto "
                     "the remote and pushes (it clones the remote when notes/ is absent)")
    steps.append(f"Add a task:  keystone-agent task add my-first-task --description \"…\"{flag}")
    return steps


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", "agent_name", callback=_check_name,
              help="Agent name: lowercase letters, digits, dashes (default: from the user name, agent-<name>).")
@click.option("--full-name", help="Display name for SOUL.md.")
@click.option("--email", help="The agent's email address.")
@click.option("--human-name", help="The human operator's name (HUMAN.md, TEAM.md).")
@click.option("--human-email", help="The human operator's email.")
@click.option("--archetype", type=click.Choice(["engineer", "product"]), default="engineer", show_default=True,
              help="Conventions archetype of manifests/modes.yaml.")
@click.option("--notes-repo", metavar="URL",
              help="Git remote of the notes repo: notes/ becomes a clone of it (or, when it is empty, a new repo "
                   "pushed there) and notes.repo is set, so `keystone-agent sync` works right away.")
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
@click.option("--json", "as_json", is_flag=True, help="Print the written files and the next steps as JSON.")
def init_command(directory, agent_name, full_name, email, human_name, human_email, archetype, notes_repo, force,
                 as_json):
    """Scaffold an agent home in DIRECTORY: queue files with commented examples, ~/.config/keystone-agent/
    config.json, and the agent space in notes/ — identity docs (SOUL, TEAM, SERVICES, HUMAN, AGENTS.md and
    CLAUDE.md), manifests/modes.yaml, the .agents/ library skeleton (shared fragments, roles, conventions,
    archetypes.yaml), .cronjobs/ (shared lib.sh, config.sh, setup.sh and a sample job), flake.nix, .envrc,
    .mcp.json and .claude/settings.json. Existing files are never overwritten without --force. Ends with
    the next steps (validate, a first dry run, notes sync)."""
    from keystone_agents.notes_sync import bootstrap

    home = directory.expanduser().absolute()
    name = agent_name or default_agent_name()
    if not AGENT_NAME_RE.match(name):
        _fail(f"the default agent name {name!r} (from the user name) is not valid; give --name NAME")
    values = scaffold.context(name, full_name, email, human_name=human_name, human_email=human_email,
                              archetype=archetype)
    remote_has_commits = None
    if notes_repo:
        try:  # before anything is written: an unreachable remote leaves no half-made home
            remote_has_commits = bootstrap.probe(notes_repo)
        except bootstrap.NotesRepoError as exc:
            _fail(str(exc))
    try:
        written = scaffold.init(home, values, force=force)
    except scaffold.ScaffoldExists as exc:
        click.echo("error: refusing to overwrite existing files (use --force):", err=True)
        for path in exc.existing:
            click.echo(f"  {path}", err=True)
        sys.exit(EXIT_PROBLEMS)
    except OSError as exc:
        _fail(f"cannot write the agent home {home}: {exc.strerror or exc}"
              + (f" ({exc.filename})" if exc.filename and str(exc.filename) != str(home) else ""))
    notes_done = None
    if notes_repo:
        notes_done = _set_up_notes(home, notes_repo, remote_has_commits)
    configured = _configure(home)
    steps = next_steps(home, notes_repo)
    if as_json:
        echo_json({"home": str(home), "written": [str(p) for p in written], "notes": notes_done,
                   "configured": configured, "next_steps": steps})
        return
    click.echo(f"Scaffolded agent home {home} for '{values['agent_name']}':")
    for path in written:
        click.echo(f"  {path.relative_to(home)}")
    if notes_done:
        click.echo(notes_done)
    if configured:
        click.echo(f"Git identity in {configured['git_config']}; MCP servers in {configured['mcp_json']}")
    click.echo("\nNext steps:")
    for number, step in enumerate(steps, 1):
        click.echo(f"  {number}. {step}")


def _set_up_notes(home: Path, url: str, has_commits: bool) -> str:
    from keystone_agents.atomic import write_atomic
    from keystone_agents.config import load_config
    from keystone_agents.notes_sync import bootstrap
    from keystone_agents.git_identity import git_environment
    from keystone_agents.space import AgentSpace

    config_file = home / ".config/keystone-agent/config.json"
    data = json.loads(config_file.read_text(encoding="utf-8"))
    data["notes"] = {**(data.get("notes") or {}), "repo": url}
    write_atomic(config_file, json.dumps(data, indent=2) + "\n", mode=0o600)
    config = load_config(config_file, home)
    notes = AgentSpace.from_home(home, config.notes_dir).notes_dir
    try:
        return bootstrap.setup(notes, url, git_environment(config, home), has_commits, config.notes.commit_prefix)
    except bootstrap.NotesRepoError as exc:
        _fail(f"{exc} (the home is scaffolded and notes.repo is set; fix the remote, then run keystone-agent sync)")
    return ""


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
