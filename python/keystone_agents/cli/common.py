"""What every `keystone-agent` command shares: --home/--config, the agent space, errors and JSON output."""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import click

from keystone_agents.config import Config, load_config
from keystone_agents.problems import ValidationFailed
from keystone_agents.space import AgentSpace

EXIT_OK = 0
EXIT_PROBLEMS = 1  # invalid files or configuration, or the command failed
EXIT_USAGE = 2  # click's own code for bad arguments


@dataclass
class AgentContext:
    home: Path | None
    config_path: Path | None
    _config: Config | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path, self.home_dir)
        return self._config

    @property
    def home_dir(self) -> Path:
        return AgentSpace.from_home(self.home).home

    @property
    def space(self) -> AgentSpace:
        return AgentSpace.from_home(self.home, self.config.notes_dir)


def agent_command(func: Callable) -> Callable:
    """Add --home and --config, build the AgentContext, and turn ValidationFailed into a clear exit 1."""

    @click.option(
        "--home",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="KEYSTONE_AGENT_HOME",
        help="The agent's home directory (default: $HOME).",
    )
    @click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Configuration JSON (default: $KEYSTONE_AGENT_CONFIG, else ~/.config/keystone-agent/config.json, else built-in defaults).",
    )
    @functools.wraps(func)
    def wrapper(home: Path | None, config_path: Path | None, **kwargs: Any) -> Any:
        ctx = AgentContext(home=home, config_path=config_path)
        if home is not None:  # refuse a directory that is not an agent home before touching it
            refuse_non_home(ctx.home_dir, config_path)
        try:
            return func(ctx, **kwargs)
        except ValidationFailed as exc:
            for problem in exc.problems:
                click.echo(f"error: {problem}", err=True)
            sys.exit(EXIT_PROBLEMS)

    return wrapper


def refuse_non_home(home: Path, config_path: Path | None) -> None:
    from keystone_agents.home_check import home_problem

    problem = home_problem(home, config_path)
    if problem:
        click.echo(f"error: {problem}", err=True)
        sys.exit(EXIT_PROBLEMS)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))
