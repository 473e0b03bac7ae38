"""`keystone-agent mcp serve`: a stdio MCP server (the official MCP Python SDK) giving a provider session the
agent's comms: comms_send, comms_ask, comms_reply, comms_inbox. It runs as the agent, so the bus knows the
sender by its Linux user like the CLI; every rule (acceptFrom, depth, rate, reply forgery) is the bus's."""

from __future__ import annotations

import os
import sys

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

    return server


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
