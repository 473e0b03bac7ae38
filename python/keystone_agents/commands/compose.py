"""keystone-agent compose MANIFEST MODE: assemble a system prompt from the shared agents library."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from keystone_agents import compose as composition
from keystone_agents.cli.common import EXIT_PROBLEMS, echo_json
from keystone_agents.problems import ValidationFailed


@click.command("compose")
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("mode")
@click.option("--roles", help="Extra role templates, comma-separated (R1,R2), added after the mode's roles.")
@click.option("--json", "as_json", is_flag=True, help="Print {manifest, mode, fragments, prompt} as JSON.")
def compose_command(manifest, mode, roles, as_json):
    """Print the system prompt for MODE of MANIFEST (manifests/modes.yaml): shared fragments, then role
    templates, then convention docs (the archetype's conventions first), each once, separated by blank
    lines. A fragment that does not exist is an error naming it and where it was referenced (exit 1)."""
    try:
        result = composition.compose(manifest, mode, composition.split_roles(roles))
    except ValidationFailed as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(EXIT_PROBLEMS)
    except composition.CompositionError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_PROBLEMS)
    if as_json:
        echo_json(result.as_dict())
    else:
        click.echo(result.text, nl=False)
