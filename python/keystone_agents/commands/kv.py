"""`keystone-agent state …` (private) and `keystone-agent shared …` (cross-agent): one command line for both.

Shapes: `get KEY [--json]` → {key, value, version, owner_agent, updated_at}; `set KEY --expected-version N`
(the value as JSON with --value or on stdin; 0 creates) prints the new version; `delete KEY
--expected-version N`; `list [--prefix P] [--json]`; `history KEY [--json]` (every kept version: who, when).
Exit codes: 0 ok, 1 no such key / refused / failed, 2 bad usage, 5 VersionConflict ("KEY is at version M";
with --json: {"error": "VersionConflict", "current_version": M}).
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Callable

import click

from keystone_agents.cli.common import AgentContext, agent_command, echo_json
from keystone_agents.coordination.base import BusError
from keystone_agents.kv.model import VersionConflict

EXIT_CONFLICT = 5


def fail(exc: BusError, as_json: bool) -> None:
    if as_json:
        echo_json(exc.to_json() if isinstance(exc, VersionConflict) else {"ok": False, **exc.to_json()})
    else:
        click.echo(exc.message if isinstance(exc, VersionConflict) else f"error: {exc.message}", err=True)
    sys.exit(EXIT_CONFLICT if isinstance(exc, VersionConflict) else 1)


def read_value(value: str | None) -> object:
    if value is None:
        if sys.stdin is None or sys.stdin.isatty():
            raise click.UsageError("give the value as JSON with --value JSON or on stdin")
        value = sys.stdin.read()
    if not value.strip():
        raise click.UsageError("the value is empty (give JSON, e.g. '\"text\"' or '{\"n\": 1}')")
    try:
        return json.loads(value)
    except ValueError as exc:
        raise click.UsageError(f"the value is not valid JSON: {exc}") from None


def plain_value(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def add_kv_commands(group: click.Group, opener: Callable[[object], object], what: str,
                    writes: bool = True, decorate: Callable = agent_command) -> None:
    """Add get/set/delete/list/history to `group`; `opener(ctx)` returns a context manager yielding a store
    with get/set/delete/list/history (kv.private.PrivateState or kv.shared.SharedState). `decorate` gives each
    command its context: agent_command (keystone-agent) or click.pass_context (agentctl)."""

    @contextmanager
    def store_for(ctx, as_json: bool):
        try:
            with opener(ctx) as store:
                yield store
        except BusError as exc:
            fail(exc, as_json)

    @group.command("get")
    @click.argument("key")
    @click.option("--json", "as_json", is_flag=True, help="Print {key, value, version, owner_agent, updated_at}.")
    @decorate
    def get_command(ctx, key, as_json):
        """Print KEY's value (exit 1 "no such key" when it is absent)."""
        with store_for(ctx, as_json) as store:
            entry = store.get(key)
        if as_json:
            echo_json(entry.to_json())
        else:
            click.echo(plain_value(entry.value))

    if writes:
        @group.command("set")
        @click.argument("key")
        @click.option("--expected-version", type=click.IntRange(min=0), required=True,
                      help="The version you read (0 creates the key). Another version: exit 5, re-read and retry.")
        @click.option("--value", default=None, metavar="JSON", help="The value as JSON (default: stdin).")
        @click.option("--json", "as_json", is_flag=True, help="Print {key, version} (a conflict as JSON too).")
        @decorate
        def set_command(ctx, key, expected_version, value, as_json):
            """Write KEY if it is at --expected-version; print the new version."""
            data = read_value(value)
            with store_for(ctx, as_json) as store:
                version = store.set(key, data, expected_version)
            if as_json:
                echo_json({"key": key, "version": version})
            else:
                click.echo(version)

        @group.command("delete")
        @click.argument("key")
        @click.option("--expected-version", type=click.IntRange(min=1), required=True,
                      help="The version you read. Another version: exit 5.")
        @click.option("--json", "as_json", is_flag=True)
        @decorate
        def delete_command(ctx, key, expected_version, as_json):
            """Delete KEY if it is at --expected-version (its history is kept)."""
            with store_for(ctx, as_json) as store:
                version = store.delete(key, expected_version)
            if as_json:
                echo_json({"key": key, "deleted": True, "version": version})
            else:
                click.echo(f"deleted {key}")

    @group.command("list")
    @click.option("--prefix", default="", help="Only keys starting with this.")
    @click.option("--json", "as_json", is_flag=True)
    @decorate
    def list_command(ctx, prefix, as_json):
        """List the keys (with their version, last writer and when), by key."""
        with store_for(ctx, as_json) as store:
            entries = store.list(prefix)
        if as_json:
            echo_json([e.to_json() for e in entries])
            return
        for e in entries:
            click.echo(f"{e.key}\tv{e.version}\t{e.owner_agent}\t{e.updated_at}")

    @group.command("history")
    @click.argument("key")
    @click.option("--json", "as_json", is_flag=True)
    @decorate
    def history_command(ctx, key, as_json):
        """Every kept version of KEY: version, who wrote it, when (deletes included)."""
        with store_for(ctx, as_json) as store:
            versions = store.history(key)
        if as_json:
            echo_json([v.to_json() for v in versions])
            return
        for v in versions:
            shown = "(deleted)" if v.deleted else plain_value(v.value)
            click.echo(f"v{v.version}\t{v.at}\t{v.owner_agent}\t{shown}")


@contextmanager
def open_private(ctx: AgentContext):
    from keystone_agents.kv.private import PrivateState

    store = PrivateState.for_space(ctx.space, ctx.config.agent_name)
    try:
        yield store
    finally:
        store.close()


@click.group("state")
def state_command():
    """The agent's private persistent state: get, set, delete, list, history.

    Stored in <state dir>/private-state.sqlite3 (mode 0600: no other agent can read it; no bus needed).
    Every write names the version it read (--expected-version; 0 creates); a stale write exits 5 with
    "VersionConflict: KEY is at version M". The last 100 versions of each key are kept.
    """


add_kv_commands(state_command, open_private, "private")
