"""keystone-agent monitoring rules|dashboard|alloy: the shipped monitoring artefacts (docs/observability.md).

`python -m keystone_agents.observability` keeps working as an alias of the same functions.
"""

from __future__ import annotations

import sys

import click

from keystone_agents import observability


@click.group("monitoring")
def monitoring_group():
    """The monitoring artefacts shipped with the package: Prometheus alert rules, the Grafana dashboard and
    the journald → Loki recipe for Grafana Alloy."""


@monitoring_group.command("rules")
@click.option("--set", "settings", multiple=True, metavar="NAME=VALUE",
              help="A rule parameter: " + "; ".join(f"{n} (default {d}): {m}"
                                                    for n, (d, m) in observability.RULE_PARAMETERS.items()))
def rules_command(settings):
    """Print the Prometheus alert rules with their parameters filled in."""
    values = {}
    for item in settings:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--set")
        values[name.strip()] = value
    try:
        sys.stdout.write(observability.render_rules(**values))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--set") from None


@monitoring_group.command("dashboard")
@click.option("--content", is_flag=True, help="Print the dashboard JSON instead of its path.")
def dashboard_command(content):
    """Print the path of the Grafana dashboard JSON (import it in Grafana, or provision it)."""
    path = observability.dashboard_path()
    click.echo(path.read_text(encoding="utf-8") if content else str(path), nl=not content)


@monitoring_group.command("alloy")
@click.option("--content", is_flag=True, help="Print the recipe instead of its path.")
def alloy_command(content):
    """Print the path of the journald → Loki recipe for Grafana Alloy."""
    path = observability.alloy_recipe_path()
    click.echo(path.read_text(encoding="utf-8") if content else str(path), nl=not content)
