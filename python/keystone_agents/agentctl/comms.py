"""`agentctl AGENT send|ask|inbox|outbox` and `agentctl hierarchy`: comms for humans.

These run on the admin's side, as the human: the bus knows the sender by the human's own Linux user (an admin
of the host configuration: `coordination.admins` or the agent-admins group), never as an agent. They are
host-only verbs (never run through the helper, never forwarded over ssh): the bus is reached directly (the
host's broker, or the fleet's PostgreSQL).
"""

from __future__ import annotations

import click

from keystone_agents.coordination.base import PRIORITIES, STATES, Message


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
    from keystone_agents.commands.comms import print_reply

    print_reply(ask.id, reply, timeout, as_json,
                later=f"read a later reply with `agentctl {_agent(ctx)} outbox` or `comms show {ask.id}`")


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
    """The delegation tree MSG_ID belongs to: who asked whom (each agent with its execution mode, e.g.
    beta[reactive]), at which depth, and the state of each."""
    with human_bus(ctx, as_json) as bus:
        tree = bus.hierarchy(msg_id)
    if as_json:
        from keystone_agents.cli.common import echo_json

        echo_json([m.to_json() for m in tree])
        return
    modes = _modes(ctx)
    for m in tree:
        indent = "  " * m.depth + ("  " if m.kind == "reply" else "")
        task = f" task={m.task_ref}" if m.task_ref else ""
        status = f" status={m.status}" if m.status else ""
        click.echo(f"{indent}{m.kind} {_named(m.sender, modes)} -> {_named(m.recipient, modes)} depth={m.depth} "
                   f"state={m.state}{status}{task} {m.id}")


def _modes(ctx) -> dict[str, str]:
    """agent name (and user) → its exec.mode, from the host configuration."""
    from keystone_agents.cli.ctl import _state

    config = _state(ctx).quiet_config()
    modes = {}
    for agent in (config.agents if config else []):
        modes[agent.name] = modes[agent.user] = agent.mode
    return modes


def _named(who: str, modes: dict[str, str]) -> str:
    """`beta[reactive]` for an agent of the host configuration; humans and unknown senders as they are."""
    return f"{who}[{modes[who]}]" if who in modes else who


def _print(message: Message, as_json: bool) -> None:
    from keystone_agents.commands.comms import print_message

    print_message(message, as_json)


def _print_all(messages: list[Message], as_json: bool) -> None:
    from keystone_agents.commands.comms import print_messages

    print_messages(messages, as_json)
