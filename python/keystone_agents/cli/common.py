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


MACHINE_ERRORS = (OSError, UnicodeDecodeError)  # plus sqlite3.Error (imported lazily below)


def machine_error_line(exc: BaseException) -> str:
    """One clear line for a fault of the machine or of local state (full disk, unreadable file, a directory
    where a file should be, a corrupt database) — never a traceback."""
    if isinstance(exc, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({exc.reason}); check the files named by `keystone-agent validate`"
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        if exc.errno == 28:
            return f"no space left on the device{where}; the files written before stay as they were"
        if isinstance(exc, IsADirectoryError):
            return f"a directory where a file should be{where}: move it aside"
        return f"{exc.strerror or exc}{where}"
    return f"local state: {type(exc).__name__}: {exc}"


class SafeGroup(click.Group):
    """A group whose commands end with one `error:` line and exit 1 on a fault of the machine or of local
    state, instead of a Python traceback."""

    def invoke(self, ctx):
        import sqlite3

        try:
            return super().invoke(ctx)
        except (*MACHINE_ERRORS, sqlite3.Error) as exc:
            click.echo(f"error: {machine_error_line(exc)}", err=True)
            ctx.exit(EXIT_PROBLEMS)


def refuse_non_home(home: Path, config_path: Path | None) -> None:
    from keystone_agents.home_check import home_problem

    problem = home_problem(home, config_path)
    if problem:
        click.echo(f"error: {problem}", err=True)
        sys.exit(EXIT_PROBLEMS)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))
