"""`keystone-agent shared …`: the cross-agent key-value store on the coordination bus.

Every agent reads every key; it writes (set, delete) only under its `shared.writePrefixes`. The writer is the
caller's Linux user as the bus identifies it (owner_agent = its short name; a human: `human:<user>`). Every
write, delete, conflict and refusal is an entry of the bus's audit log.
"""

from __future__ import annotations

import io
import json
import sys
from contextlib import contextmanager

import click

from keystone_agents.cli.common import AgentContext, agent_command
from keystone_agents.commands.kv import add_kv_commands, fail
from keystone_agents.coordination.base import BusError


@contextmanager
def open_shared(ctx: AgentContext):
    from keystone_agents.coordination.factory import open_bus
    from keystone_agents.kv.shared import SharedState

    from keystone_agents.commands.comms import event_log

    bus = open_bus(ctx.config.coordination)
    try:  # writes are events of the agent's event table (watch); the command's own output stays the KV one
        yield SharedState(bus, log=event_log(ctx, "shared", stream=io.StringIO()))
    finally:
        bus.close()


@click.group("shared")
def shared_command():
    """Shared state between agents: get, set, delete, list, history, watch.

    Every write names the version it read (--expected-version; 0 creates the key); a stale write exits 5
    with "VersionConflict: KEY is at version M" — re-read and retry. Values are JSON (at most
    coordination.shared.maxValueBytes, 64 KiB by default); keys outside the agent's shared.writePrefixes
    and writes over the total quota are refused (exit 1).
    """


add_kv_commands(shared_command, open_shared, "shared")


def watch(store, prefix: str, since: int, follow: bool, poll: float = 30.0, out=None, limit: int | None = None) -> int:
    """Print every change after `since` as one JSON line, in commit order; with `follow`, keep waiting."""
    out = out or sys.stdout
    seen, after = 0, since
    while True:
        changes = store.changes(prefix, after, 1000, poll if follow else 0.0)
        for change in changes:
            out.write(json.dumps(change, ensure_ascii=False) + "\n")
            out.flush()
            after = change["seq"]
            seen += 1
            if limit is not None and seen >= limit:
                return seen
        if not changes and not follow:
            return seen


@shared_command.command("watch")
@click.option("--prefix", default="", help="Only keys starting with this.")
@click.option("--since", type=click.IntRange(min=0), default=0, show_default=True,
              help="Start after this change sequence number (0: from the first change).")
@click.option("--follow", is_flag=True, help="Keep running and print changes as they commit.")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after this many changes.")
@agent_command
def watch_command(ctx: AgentContext, prefix, since, follow, count):
    """Changes as NDJSON ({seq, key, version, value, deleted, owner_agent, at}), in commit order."""
    try:
        with open_shared(ctx) as store:
            watch(store, prefix, since, follow, limit=count)
    except BusError as exc:
        fail(exc, False)
    except KeyboardInterrupt:
        pass
