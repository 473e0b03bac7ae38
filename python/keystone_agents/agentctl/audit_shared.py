"""`agentctl audit tail|query|verify` and `agentctl shared get|list|history|set|delete`: for humans, as
themselves (root or an admin: agent-admins / coordination.admins). Shared-state writes are owned by
`human:<user>`; the audit log is readable by admins only."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import click

from keystone_agents.commands import audit as audit_cmds
from keystone_agents.commands.kv import add_kv_commands


@contextmanager
def _shared(ctx: click.Context):
    from keystone_agents.agentctl.comms import human_bus
    from keystone_agents.kv.shared import SharedState

    with human_bus(ctx) as bus:
        yield SharedState(bus)


@click.group("shared")
def shared_group():
    """The agents' shared state, read (and written, with --expected-version) as yourself (human:<user>)."""


add_kv_commands(shared_group, _shared, "shared", decorate=click.pass_context)


@click.group("audit")
def audit_group():
    """The coordination bus's tamper-evident audit log (root and agent-admins)."""


@audit_group.command("tail")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=20, show_default=True)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new entries.")
@click.option("--json", "as_json", is_flag=True, help="NDJSON: {seq, at, actor, action, detail, hash}.")
@click.pass_context
def tail_command(ctx, lines, follow, as_json):
    """The newest entries."""
    from keystone_agents.agentctl.comms import human_bus

    with human_bus(ctx, as_json) as bus:
        try:
            audit_cmds.run_tail(bus, lines, follow, as_json)
        except KeyboardInterrupt:
            pass


@audit_group.command("query")
@click.option("--agent", default=None, help="Entries by this agent (short name) or user.")
@click.option("--action", default=None, help="This action, or its family (comms, shared.set, …).")
@click.option("--since", default=None, metavar="TIME", help="ISO 8601 UTC, e.g. 2026-11-30T18:00.")
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def query_command(ctx, agent, action, since, limit, as_json):
    """Entries matching all the filters, oldest first."""
    from keystone_agents.agentctl.comms import human_bus

    with human_bus(ctx, as_json) as bus:
        audit_cmds.run_query(bus, agent, action, since, limit, as_json)


@audit_group.command("verify")
@click.option("--anchors", "anchors_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="Journal output (audit_anchor lines) or NDJSON anchors to check too.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def verify_command(ctx, anchors_file, as_json):
    """Exit 0 with the entry count when the chain is intact, 1 naming the first bad sequence number."""
    from keystone_agents.agentctl.comms import human_bus

    with human_bus(ctx, as_json) as bus:
        code = audit_cmds.run_verify(bus, anchors_file, as_json)
    sys.exit(code)
