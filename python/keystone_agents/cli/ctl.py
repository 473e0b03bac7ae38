"""`agentctl`: the host-side CLI with which humans inspect and steer agents."""

from __future__ import annotations

import click

from keystone_agents import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agentctl")
def cli():
    """Inspect and steer the agents of this host (and, over SSH, of other hosts)."""


def main() -> None:
    cli(prog_name="agentctl")
