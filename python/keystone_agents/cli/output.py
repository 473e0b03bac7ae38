"""--log-format, -q and -v: how a command that prints events shows them (see keystone_agents/events.py).

Kept free of heavy imports: `loop` uses it on every five-minute tick.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import click

from keystone_agents import events


def output_options(func: Callable) -> Callable:
    """Add --log-format human|logfmt|json, -q/--quiet and -v/--verbose; configure the event output."""

    @click.option("--log-format", type=click.Choice(events.FORMATS), default=None,
                  envvar=events.FORMAT_ENV, show_envvar=True,
                  help="How events are printed on stderr: human (one short line each; the default on a "
                       "terminal, coloured unless NO_COLOR is set), logfmt (the default when piped: the "
                       "journal, Loki) or json (one object per line). The run log is always logfmt.")
    @click.option("-q", "--quiet", is_flag=True, help="Print only problems and the final summary.")
    @click.option("-v", "--verbose", is_flag=True, help="Also print debug events.")
    @functools.wraps(func)
    def wrapper(*args: Any, log_format: str | None, quiet: bool, verbose: bool, **kwargs: Any) -> Any:
        if quiet and verbose:
            raise click.UsageError("-q/--quiet and -v/--verbose exclude each other")
        events.configure(log_format, events.QUIET if quiet else events.VERBOSE if verbose else None)
        return func(*args, **kwargs)

    return wrapper
