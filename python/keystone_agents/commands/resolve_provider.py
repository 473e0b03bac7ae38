"""keystone-agent resolve-provider: what `provider: auto` resolves to on this machine, and why."""

from __future__ import annotations

import sys

import click

from keystone_agents.cli.common import EXIT_PROBLEMS, agent_command, echo_json


@click.command("resolve-provider")
@click.option("--json", "as_json", is_flag=True, help="Print the resolution as JSON.")
@agent_command
def resolve_provider_command(ctx, as_json):
    """Resolve `provider: auto` as the loop would: the first usable of claude, codex, gemini (on the PATH),
    a local Ollama model (`ollama list`), then openai (openaiProvider.baseUrl answering). Exit 1 when none
    is usable, naming why each was not."""
    from keystone_agents.providers import auto
    from keystone_agents.providers.environment import clean_env

    try:
        found = auto.resolve(ctx.config, path=clean_env(ctx.config.environment).get("PATH"))
    except auto.ProviderError as exc:
        if as_json:
            echo_json({"provider": None, "error": str(exc)})
        else:
            click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_PROBLEMS)
    if as_json:
        echo_json(found.as_dict())
    else:
        click.echo(f"{found.provider}" + (f" (model {found.model})" if found.model else "") + f": {found.reason}")
