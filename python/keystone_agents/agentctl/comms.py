"""`agentctl AGENT send|ask|inbox|outbox` and `agentctl hierarchy`: comms for humans.

These run on the admin's side, as the human: the bus knows the sender by the human's own Linux user (an admin
of the host configuration: `coordination.admins` or the agent-admins group), never as an agent. They are
host-only verbs (never run through the helper, never forwarded over ssh): the bus is reached directly (the
host's broker, or the fleet's PostgreSQL).
"""

from __future__ import annotations

import sys

import click

from keystone_agents.coordination.base import PRIORITIES, STATES, Message

EXIT_FAILED_REPLY, EXIT_TIMEOUT = 3, 4


def _config(ctx: click.Context):
    return ctx.find_root().obj.config


def human_bus(ctx: click.Context, as_json: bool = False):
    """The host's bus, used as the human's own principal."""
    from keystone_agents.commands.comms import bus_session
    from keystone_agents.coordination.factory import settings_from_host

    return bus_session(settings_from_host(_config(ctx).coordination or {}), as_json)


def _agent(ctx: click.Context) -> str:
    return ctx.meta["agentctl.agent"].name


def _body(text: str | None, what: str) -> str:
    from keystone_agents.commands.comms import read_body

    return read_body(text, what)


@click.command("send")
@click.option("--subject", default="", help="A short subject (the agent's task name).")
@click.option("--priority", type=click.Choice(list(PRIORITIES)), default="normal", show_default=True)
@click.option("--id", "msg_id", default=None, metavar="UUID", help="Message id (a retry with it sends nothing twice).")
@click.option("--body", default=None, help="The message (default: stdin).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def send_verb(ctx, subject, priority, msg_id, body, as_json):
    """Send the agent a message as yourself; prints its id."""
    text = _body(body, "body")
    with human_bus(ctx, as_json) as bus:
        message = bus.send(_agent(ctx), text, subject=subject, priority=PRIORITIES[priority], msg_id=msg_id)
    _print(message, as_json)


@click.command("ask")
@click.option("--question", default=None, help="The question (default: stdin).")
@click.option("--subject", default="", help="A short subject.")
@click.option("--wait", is_flag=True, help="Wait for the reply and print it.")
@click.option("--timeout", type=click.FloatRange(min=0), default=600, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def ask_verb(ctx, question, subject, wait, timeout, as_json):
    """Ask the agent a question as yourself. --wait prints the reply (exit 0), 3 if it says the task failed,
    4 on timeout (the reply can be read later with `agentctl AGENT outbox` / `comms show`)."""
    text = _body(question, "question")
    with human_bus(ctx, as_json) as bus:
        ask = bus.send(_agent(ctx), text, kind="ask", subject=subject, awaiting=(timeout + 5) if wait else False)
        if not wait:
            _print(ask, as_json)
            return
        reply = bus.wait_reply(ask.id, timeout) or bus.stop_waiting(ask.id)
    if reply is None:
        click.echo(f"error: no reply to ask {ask.id} within {timeout:g}s", err=True)
        sys.exit(EXIT_TIMEOUT)
    if as_json:
        from keystone_agents.cli.common import echo_json

        echo_json(reply.to_json())
    else:
        click.echo(reply.reason if reply.status == "failed" and reply.reason else reply.body_text)
    if reply.status == "failed":
        sys.exit(EXIT_FAILED_REPLY)


@click.command("inbox")
@click.option("--state", "states", default="queued,leased", show_default=True, help="States, comma-separated, or all.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def inbox_verb(ctx, states, limit, as_json):
    """The agent's inbox (admins read every agent's)."""
    wanted = list(STATES) if states == "all" else [s.strip() for s in states.split(",") if s.strip()]
    with human_bus(ctx, as_json) as bus:
        messages = bus.inbox(wanted, limit, of=_agent(ctx))
    _print_all(messages, as_json)


@click.command("outbox")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def outbox_verb(ctx, limit, as_json):
    """What the agent sent, newest first."""
    with human_bus(ctx, as_json) as bus:
        messages = bus.outbox(limit, of=_agent(ctx))
    _print_all(messages, as_json)


@click.command("hierarchy")
@click.argument("msg_id", metavar="MSG_ID")
@click.option("--json", "as_json", is_flag=True, help="The messages of the tree as a JSON array.")
@click.pass_context
def hierarchy_command(ctx, msg_id, as_json):
    """The delegation tree MSG_ID belongs to: who asked whom, at which depth, and the state of each."""
    with human_bus(ctx, as_json) as bus:
        tree = bus.hierarchy(msg_id)
    if as_json:
        from keystone_agents.cli.common import echo_json

        echo_json([m.to_json() for m in tree])
        return
    for m in tree:
        indent = "  " * m.depth + ("  " if m.kind == "reply" else "")
        task = f" task={m.task_ref}" if m.task_ref else ""
        status = f" status={m.status}" if m.status else ""
        click.echo(f"{indent}{m.kind} {m.sender} -> {m.recipient} depth={m.depth} state={m.state}{status}{task} "
                   f"{m.id}")


def _print(message: Message, as_json: bool) -> None:
    if as_json:
        from keystone_agents.cli.common import echo_json

        echo_json(message.to_json())
    else:
        click.echo(message.id)


def _print_all(messages: list[Message], as_json: bool) -> None:
    from keystone_agents.commands.comms import print_messages

    print_messages(messages, as_json)
