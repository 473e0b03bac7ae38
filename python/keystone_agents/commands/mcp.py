"""`keystone-agent mcp serve`: a stdio MCP server (the official MCP Python SDK) giving a provider session the
agent's comms: comms_send, comms_ask, comms_reply, comms_inbox; and its state: shared_get, shared_set,
shared_list, state_get, state_set. It runs as the agent, so the bus knows the
sender by its Linux user like the CLI; every rule (acceptFrom, depth, rate, reply forgery) is the bus's."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from keystone_agents.cli.common import AgentContext, agent_command


@click.group("mcp")
def mcp_command():
    """MCP servers for provider sessions."""


def build_server(ctx: AgentContext):
    from mcp.server.mcpserver import MCPServer

    from keystone_agents.coordination.base import PRIORITIES, BusError
    from keystone_agents.coordination.factory import open_bus

    settings = ctx.config.coordination
    parent = os.environ.get("KEYSTONE_COMMS_PARENT") or None
    server = MCPServer("keystone", instructions="Messages to other agents of this fleet (keystone comms).")

    def with_bus(call):
        bus = open_bus(settings)
        try:
            return call(bus)
        except BusError as exc:
            return {"ok": False, **exc.to_json()}
        finally:
            bus.close()

    @server.tool(description="Send another agent (by short name) a message; it becomes a task for it. "
                             "Returns the message envelope (its id).")
    def comms_send(to: str, body: str, subject: str = "", priority: str = "normal") -> dict:
        if priority not in PRIORITIES:
            return {"ok": False, "error": "InvalidRequest", "message": "priority is low, normal or high"}
        return with_bus(lambda bus: bus.send(to, body, subject=subject, priority=PRIORITIES[priority],
                                             parent=parent).to_json())

    @server.tool(description="Ask another agent a question. With wait_seconds > 0, wait that long for the reply "
                             "and return it; otherwise (or on timeout) the reply arrives later as a task.")
    def comms_ask(to: str, question: str, subject: str = "", wait_seconds: float = 0) -> dict:
        def ask(bus):
            sent = bus.send(to, question, kind="ask", subject=subject, parent=parent,
                            awaiting=(wait_seconds + 5) if wait_seconds > 0 else False)
            if wait_seconds <= 0:
                return {"ok": True, "ask": sent.to_json()}
            reply = bus.wait_reply(sent.id, wait_seconds) or bus.stop_waiting(sent.id)
            if reply is None:
                return {"ok": False, "error": "Timeout", "ask": sent.id,
                        "message": "no reply yet; it will arrive as a task"}
            return {"ok": True, "reply": reply.to_json()}

        return with_bus(ask)

    @server.tool(description="Reply to an ask you received (its id). One reply per ask; status ok or failed.")
    def comms_reply(msg_id: str, body: str, status: str = "ok") -> dict:
        return with_bus(lambda bus: bus.send(None, body, kind="reply", in_reply_to=msg_id, status=status).to_json())

    @server.tool(description="Messages addressed to you that are not tasks yet.")
    def comms_inbox(limit: int = 50) -> list:
        return with_bus(lambda bus: [m.to_json() for m in bus.inbox(None, limit)])

    @server.tool(description="The state of one of your approval requests (its id, from 'waiting for human "
                             "approval <id>'): pending, approved, rejected or consumed, and who decided why.")
    def approval_status(approval_id: str) -> dict:
        return with_bus(lambda bus: bus.approval_get(approval_id))

    add_state_tools(server, ctx, settings)
    return server


def add_state_tools(server, ctx: AgentContext, settings) -> None:
    """shared_get, shared_set, shared_list (the bus) and state_get, state_set (the agent's private state).
    A VersionConflict comes back as a tool error naming the current version: re-read and retry."""
    from mcp.server.mcpserver.exceptions import ToolError

    from keystone_agents.coordination.base import BusError
    from keystone_agents.coordination.factory import open_bus
    from keystone_agents.kv.model import VersionConflict
    from keystone_agents.kv.private import PrivateState
    from keystone_agents.kv.shared import SharedState

    def run(open_store, call):
        store = open_store()
        try:
            return call(store)
        except VersionConflict as exc:
            raise ToolError(f"{exc.message}. Re-read the key (its value may have changed) and retry with "
                            f"expected_version={exc.current_version}.") from None
        except BusError as exc:
            raise ToolError(f"{exc.code}: {exc.message}") from None
        finally:
            (store.bus if isinstance(store, SharedState) else store).close()

    def shared() -> SharedState:  # writes are events of the agent's event table (watch), as from the CLI
        import io

        from keystone_agents.commands.comms import event_log

        return SharedState(open_bus(settings), log=event_log(ctx, "shared", stream=io.StringIO()))

    private = lambda: PrivateState.for_space(ctx.space, ctx.config.agent_name)  # noqa: E731

    @server.tool(description="Read a shared-state key (visible to every agent): {key, value, version, owner_agent, "
                             "updated_at}. Pass its version as expected_version when you write it.")
    def shared_get(key: str) -> dict:
        return run(shared, lambda s: s.get(key).to_json())

    @server.tool(description="Write a shared-state key (value: any JSON) if it is still at expected_version (0 "
                             "creates it). A VersionConflict error means another writer was first: re-read, retry.")
    def shared_set(key: str, value: Any, expected_version: int) -> dict:
        return run(shared, lambda s: {"key": key, "version": s.set(key, value, expected_version)})

    @server.tool(description="Shared-state keys starting with prefix, with their values and versions.")
    def shared_list(prefix: str = "") -> list:
        return run(shared, lambda s: [e.to_json() for e in s.list(prefix)])

    @server.tool(description="Read a key of your own private state: {key, value, version, owner_agent, updated_at}.")
    def state_get(key: str) -> dict:
        return run(private, lambda s: s.get(key).to_json())

    @server.tool(description="Write a key of your own private state if it is at expected_version (0 creates it).")
    def state_set(key: str, value: Any, expected_version: int) -> dict:
        return run(private, lambda s: {"key": key, "version": s.set(key, value, expected_version)})


@mcp_command.command("serve")
@agent_command
def serve_command(ctx: AgentContext):
    """Serve the comms tools over MCP on stdin/stdout (what the provider CLIs start)."""
    try:
        server = build_server(ctx)
    except ImportError:
        click.echo("error: the MCP SDK is not installed (pip install 'keystone-agents[mcp]')", err=True)
        sys.exit(1)
    server.run("stdio")
