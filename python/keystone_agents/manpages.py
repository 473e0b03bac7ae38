"""Manual pages for both CLIs, generated from their click commands with click-man (one page per command).

    python -m keystone_agents.manpages DIR     # writes keystone-agent.1, keystone-agent-task-add.1, agentctl.1, …

The Nix package runs this at build time and installs the pages (nix/package.nix); click-man is a build-time
tool only, not a runtime dependency.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from keystone_agents import __version__


def write(target: Path) -> list[Path]:
    from click_man.core import write_man_pages

    from keystone_agents.cli.agent import cli as agent_cli
    from keystone_agents.cli.ctl import cli as ctl_cli

    target.mkdir(parents=True, exist_ok=True)
    agent_cli.load_all(click.Context(agent_cli, info_name="keystone-agent"))
    before = set(target.glob("*.1"))
    write_man_pages("keystone-agent", agent_cli, version=__version__, target_dir=str(target))
    write_man_pages("agentctl", ctl_cli, version=__version__, target_dir=str(target))
    return sorted(set(target.glob("*.1")) - before)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m keystone_agents.manpages DIR", file=sys.stderr)
        return 2
    try:
        written = write(Path(args[0]))
    except ImportError:
        print("error: click-man is not installed (pip install click-man)", file=sys.stderr)
        return 1
    print(f"{len(written)} manual page(s) written to {args[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
