"""`keystone-agent comms`: messages between agents over the coordination bus.

The sender is always the agent's own Linux user (the bus identifies it); agents are named by their short
name (`--to beta`). Exit codes: 0 ok, 1 refused or failed (the error names why), 2 bad usage; `ask --wait`:
3 the reply says the task failed, 4 no reply before --timeout (a later reply becomes a task, never lost).
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager

import click

from keystone_agents.cli.common import AgentContext, agent_command, echo_json
from keystone_agents.coordination.base import (
    PRIORITIES, STATES, BusError, Message, check_uuid,
)

EXIT_FAILED_REPLY = 3
EXIT_TIMEOUT = 4


@contextmanager
def bus_session(settings: dict, as_json: bool = False):
    """The bus for one command: a BusError becomes a clear error (exit 1), and the bus is always closed."""
    from keystone_agents.coordination.factory import open_bus

    bus = None
    try:
        bus = open_bus(settings)
        yield bus
    except BusError as exc:
        fail(exc, as_json)
    finally:
        if bus is not None:
            bus.close()


def bus_for(ctx: AgentContext, as_json: bool = False):
    """The agent's own bus (its runtime config's coordination settings)."""
    return bus_session(ctx.config.coordination, as_json)


def fail(exc: BusError, as_json: bool = False):
    if as_json:
        echo_json({"ok": False, **exc.to_json()})
    else:
        click.echo(f"error: {exc.message}", err=True)
    sys.exit(1)


def read_body(body: str | None, what: str = "body") -> str:
    if body is not None:
        return body
    if sys.stdin is None or sys.stdin.isatty():
        raise click.UsageError(f"give the {what} with --{what} TEXT or on stdin")
    text = sys.stdin.read()
    if not text.strip():
        raise click.UsageError(f"the {what} on stdin is empty")
    return text.rstrip("\n")


def parse_body(text: str, as_json: bool) -> object:
    if not as_json:
        return text
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.UsageError(f"--body-json: not valid JSON: {exc}") from None


def event_log(ctx: AgentContext, what: str = "comms", stream=None):
    """The logger of an agent-side bus command: logfmt on `stream` (stderr) and, where the caller can write the
    agent's state, a row of its event table (`keystone-agent watch`); unit agent-<name>-<what>."""
    from keystone_agents.events import event_logger

    name = ctx.config.agent_name
    # the agent's own events also go to its event table (keystone-agent watch); a caller who cannot write the
    # agent's state (a human reading an inbox) only logs
    state = ctx.space.state_dir
    try:
        if ctx.space.home.stat().st_uid == os.getuid():  # never create another user's state directory
            state.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    event_db = ctx.space.history_db if state.is_dir() and os.access(state, os.W_OK) else None
    return event_logger(agent=name, unit=f"agent-{name}-{what}", run_id=f"{name}-{what}-{os.getpid()}",
                        stream=stream or sys.stderr, event_db=event_db,
                        event_bus=ctx.config.coordination if event_db is not None else None)


def plain_line(m: Message) -> str:
    subject = f" {m.subject!r}" if m.subject else ""
    return (f"{m.id}  {m.kind:<7} {m.state:<9} {m.sender} -> {m.recipient}  depth={m.depth}{subject}  "
            f"{(m.created_at or '')[:19]}")


def print_messages(messages: list[Message], as_json: bool) -> None:
    if as_json:
        echo_json([m.to_json() for m in messages])
        return
    if not messages:
        click.echo("(no messages)")
    for m in messages:
        click.echo(plain_line(m))


def print_message(message: Message, as_json: bool) -> None:
    """A message just sent (send, ask without --wait, reply): its id, or with --json its envelope."""
    if as_json:
        echo_json(message.to_json())
    else:
        click.echo(message.id)


def print_reply(ask_id: str, reply: Message | None, timeout: float, as_json: bool, later: str) -> None:
    """What `ask --wait` prints, for agents (`comms ask`) and humans (`agentctl AGENT ask`) alike: the reply's
    body (its reason when it says the task failed) or, with --json, the reply's envelope. Exits 3 when the reply
    says the task failed, 4 when none came within `timeout` (`later` tells where a late reply goes)."""
    if reply is None:
        if as_json:
            echo_json({"ok": False, "error": "Timeout", "ask": ask_id, "timeout_seconds": timeout})
        else:
            click.echo(f"error: no reply to ask {ask_id} within {timeout:g}s; {later}", err=True)
        sys.exit(EXIT_TIMEOUT)
    if as_json:
        echo_json(reply.to_json())
    else:
        click.echo(reply.reason if reply.status == "failed" and reply.reason else reply.body_text)
    if reply.status == "failed":
        sys.exit(EXIT_FAILED_REPLY)


parent_option = click.option(
    "--parent", envvar="KEYSTONE_COMMS_PARENT", default=None, metavar="UUID",
    help="The received message whose task sends this one (depth = its depth + 1; the runtime sets "
         "$KEYSTONE_COMMS_PARENT for tasks made from messages).")


@click.group("comms")
def comms_command():
    """Messages between agents: send, ask (and wait for the reply), reply, inbox, show, drain, info.

    The bus (coordination.backend: local or postgresql) knows the caller by its Linux user; agents are
    named by their short name. A received message becomes a pending task (source: comms,
    source_ref: comms-<uuid>); when a task made from an ask ends, the runtime sends the reply.
    """


@comms_command.command("send")
@click.option("--to", "to", required=True, metavar="AGENT", help="The receiving agent's short name.")
@click.option("--subject", default="", help="A short subject (becomes the task's name).")
@click.option("--priority", type=click.Choice(list(PRIORITIES)), default="normal", show_default=True)
@click.option("--id", "msg_id", default=None, metavar="UUID",
              help="The message id (default: a new UUID). Retrying with the same id sends nothing twice.")
@click.option("--body", default=None, help="The message (default: stdin).")
@click.option("--body-json", is_flag=True, help="The body is JSON (sent as a value, not as text).")
@parent_option
@click.option("--json", "as_json", is_flag=True, help="Print the message envelope as JSON.")
@agent_command
def send_command(ctx: AgentContext, to, subject, priority, msg_id, body, body_json, parent, as_json):
    """Send AGENT a message; prints its id."""
    text = read_body(body)
    if msg_id:
        msg_id = _uuid_arg(msg_id, "--id")
    with bus_for(ctx, as_json) as bus:
        message = bus.send(to, parse_body(text, body_json), kind="message", subject=subject,
                           priority=PRIORITIES[priority], msg_id=msg_id, parent=parent or None)
        _sent_event(ctx, message)
    print_message(message, as_json)


def _uuid_arg(value: str, option: str) -> str:
    try:
        return check_uuid(value)
    except BusError as exc:
        raise click.BadParameter(exc.message, param_hint=option) from None


def _sent_event(ctx: AgentContext, message: Message) -> None:
    if message.created:
        event_log(ctx).info("message_sent", msg=f"{message.kind} {message.id} to {message.recipient}",
                            status="sent", message_id=message.id, recipient=message.recipient, kind=message.kind,
                            depth=message.depth)


@comms_command.command("ask")
@click.option("--to", "to", required=True, metavar="AGENT", help="The agent asked.")
@click.option("--question", default=None, help="The question (default: stdin).")
@click.option("--subject", default="", help="A short subject (becomes the receiver's task name).")
@click.option("--priority", type=click.Choice(list(PRIORITIES)), default="normal", show_default=True)
@click.option("--id", "msg_id", default=None, metavar="UUID", help="The ask's id (default: a new UUID).")
@click.option("--wait", is_flag=True, help="Wait for the reply and print its body.")
@click.option("--timeout", type=click.FloatRange(min=0), default=600, show_default=True,
              help="With --wait: seconds to wait (then exit 4; a later reply becomes a task).")
@parent_option
@click.option("--json", "as_json", is_flag=True, help="Print the ask (or, with --wait, the reply) envelope as JSON.")
@agent_command
def ask_command(ctx: AgentContext, to, question, subject, priority, msg_id, wait, timeout, parent, as_json):
    """Ask AGENT a question. Without --wait prints the ask's id; with --wait prints the reply's body
    (exit 0), or exits 3 when the reply says the task failed, 4 on timeout."""
    text = read_body(question, "question")
    if msg_id:
        msg_id = _uuid_arg(msg_id, "--id")
    with bus_for(ctx, as_json) as bus:
        ask = bus.send(to, text, kind="ask", subject=subject, priority=PRIORITIES[priority], msg_id=msg_id,
                       parent=parent or None, awaiting=(timeout + 5) if wait else False)
        _sent_event(ctx, ask)
        if not wait:
            print_message(ask, as_json)
            return
        reply = bus.wait_reply(ask.id, timeout)
        if reply is None:
            reply = bus.stop_waiting(ask.id)
    print_reply(ask.id, reply, timeout, as_json, later="a later reply becomes a task")


@comms_command.command("reply")
@click.argument("msg_id", metavar="MSG_ID")
@click.option("--status", type=click.Choice(["ok", "failed"]), default="ok", show_default=True)
@click.option("--body", default=None, help="The answer (default: stdin).")
@click.option("--body-json", is_flag=True, help="The body is JSON.")
@click.option("--json", "as_json", is_flag=True, help="Print the reply envelope as JSON.")
@agent_command
def reply_command(ctx: AgentContext, msg_id, status, body, body_json, as_json):
    """Reply to the ask MSG_ID (only its receiver can; one reply per ask: the runtime sends none after)."""
    msg_id = _uuid_arg(msg_id, "MSG_ID")
    text = read_body(body)
    value = parse_body(text, body_json)
    if status == "failed" and not isinstance(value, dict):
        value = {"status": "failed", "reason": value}
    with bus_for(ctx, as_json) as bus:
        reply = bus.send(None, value, kind="reply", in_reply_to=msg_id, status=status)
        if reply.created:
            event_log(ctx).info("reply_sent", msg=f"reply {reply.id} ({status}) to {reply.recipient}",
                                status=status, message_id=reply.id, in_reply_to=msg_id, recipient=reply.recipient)
    print_message(reply, as_json)


@comms_command.command("inbox")
@click.option("--state", "states", default="queued,leased", show_default=True,
              help=f"Comma-separated states ({', '.join(STATES)}), or all.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@agent_command
def inbox_command(ctx: AgentContext, states, limit, as_json):
    """Messages addressed to this agent (by default those not yet tasks)."""
    wanted = list(STATES) if states.strip() == "all" else [s.strip() for s in states.split(",") if s.strip()]
    bad = [s for s in wanted if s not in STATES]
    if bad:
        raise click.BadParameter(f"unknown state {bad[0]!r} (states: {', '.join(STATES)}, or all)",
                                 param_hint="--state")
    with bus_for(ctx, as_json) as bus:
        messages = bus.inbox(wanted, limit)
    print_messages(messages, as_json)


@comms_command.command("show")
@click.argument("msg_id", metavar="MSG_ID")
@click.option("--json", "as_json", is_flag=True)
@agent_command
def show_command(ctx: AgentContext, msg_id, as_json):
    """The thread of MSG_ID: the ask (or message), its reply, states and the task each became."""
    msg_id = _uuid_arg(msg_id, "MSG_ID")
    with bus_for(ctx, as_json) as bus:
        thread = bus.thread(msg_id)
    if as_json:
        echo_json([m.to_json() for m in thread])
        return
    for m in thread:
        click.echo(plain_line(m) + (f"  task={m.task_ref}" if m.task_ref else "")
                   + (f"  status={m.status}" if m.status else ""))
        for line in m.body_text.splitlines() or [""]:
            click.echo(f"    {line}")


@comms_command.command("drain")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Claim at most this many messages.")
@click.option("--json", "as_json", is_flag=True)
@agent_command
def drain_command(ctx: AgentContext, limit, as_json):
    """Turn received messages into tasks (what agent-<name>-comms.service runs): claim, save to TASKS.yaml,
    acknowledge, then request a task-loop run. Also sends replies that could not be sent before, and reads the
    shared keys changed under exec.watchPrefixes (a task each; a proactive agent's think cycle starts)."""
    from keystone_agents.coordination import watched
    from keystone_agents.coordination.comms import drain
    from keystone_agents.coordination.observe import record, record_drain

    config = ctx.config
    log = event_log(ctx)
    ok = False
    try:
        with bus_for(ctx, as_json) as bus:
            result = drain(bus, ctx.space, config.coordination, log=log, limit=limit)
            record(bus, config, ctx.space.state_dir, result.received)
            keys = watched.on_wake(bus, ctx.space, config, log=log)
        ok = True
    except BaseException as exc:  # noqa: BLE001 - counted and reported, then raised on as it was
        why = exc.__context__ if isinstance(exc, SystemExit) and exc.__context__ is not None else exc
        log.error("comms_drain_failed", msg=f"comms drain failed: {getattr(why, 'message', None) or why}",
                  status="error", error=type(why).__name__)
        raise
    finally:  # the drain metrics: the failure counter and the last drain's success
        record_drain(config, ctx.space.state_dir, ok, os.environ.get("INVOCATION_ID"))
    if as_json:
        echo_json({**result.to_json(), "watched": keys})
    else:
        click.echo(f"{len(result.received)} message(s) received, {len(result.created)} task(s) created, "
                   f"{len(result.dead)} dead-lettered, {len(result.replies_sent)} repl(y/ies) sent"
                   + (f"; {len(keys['changes'])} watched shared key(s) changed" if keys["changes"] else ""))


@comms_command.command("drain-failed", hidden=True)
@agent_command
def drain_failed_command(ctx: AgentContext):
    """Record that the drain service failed (what agent-<name>-comms-failed.service, the OnFailure= unit of
    agent-<name>-comms.service, runs): the drain metrics and a `comms_drain_failed` event, for a drain that died
    before it could record its own failure (killed by its timeout, crashed). systemd's $MONITOR_* variables say
    which run and why; a failure the drain already counted is not counted twice."""
    from keystone_agents.coordination.observe import record_drain

    state = record_drain(ctx.config, ctx.space.state_dir, False, os.environ.get("MONITOR_INVOCATION_ID"))
    unit = os.environ.get("MONITOR_UNIT") or f"agent-{ctx.config.agent_name}-comms.service"
    result = os.environ.get("MONITOR_SERVICE_RESULT") or "unknown"
    event_log(ctx).error("comms_drain_failed", msg=f"{unit} failed ({result}); failed drains so far: "
                         f"{state['failures']}", status="error", unit_failed=unit, service_result=result,
                         exit_code=os.environ.get("MONITOR_EXIT_CODE") or "",
                         exit_status=os.environ.get("MONITOR_EXIT_STATUS") or "")


@comms_command.command("info")
@click.option("--json", "as_json", is_flag=True)
@agent_command
def info_command(ctx: AgentContext, as_json):
    """This agent's bus: backend, identity on the bus, wake file, inbox counts."""
    from keystone_agents.coordination.factory import open_bus, wake_file

    config = ctx.config
    settings = config.coordination
    info: dict = {"agent": config.agent_name, "backend": settings.backend,
                  "wake_file": str(wake_file(settings, config.agent_name, ctx.space.state_dir))}
    if settings.backend == "local":
        info["socket"] = settings.local.socket
    elif settings.backend == "postgresql":
        info["postgresql"] = {"host": settings.postgresql.host, "port": settings.postgresql.port,
                              "database": settings.postgresql.database}
    if settings.backend != "none":
        bus = None
        try:
            bus = open_bus(settings)
            info["identity"] = bus.identity()
            info["stats"] = bus.stats()
        except BusError as exc:
            info["error"] = exc.to_json()
        finally:
            if bus is not None:
                bus.close()
    if as_json:
        echo_json(info)
        return
    for key in ("agent", "backend", "wake_file", "socket"):
        if key in info:
            click.echo(f"{key}: {info[key]}")
    if "identity" in info:
        ident = info["identity"]
        click.echo(f"identity: {ident['name']} (role {ident['role']}, {ident['kind']})")
        click.echo("inbox: " + ", ".join(f"{k}={v}" for k, v in info["stats"]["inbox"].items()))
    if "error" in info:
        click.echo(f"error: {info['error']['message']}")
        sys.exit(1)


@comms_command.command("listen")
@click.option("--interval", type=click.FloatRange(min=1), default=60, show_default=True,
              help="Touch the wake file at least this often (a missed NOTIFY is caught by the re-check).")
@agent_command
def listen_command(ctx: AgentContext, interval):
    """PostgreSQL backend: LISTEN for this agent's wake channel and touch the wake file on each notification
    (what agent-<name>-listen.service runs). Notifications carry ids only; the drain reads the messages."""
    from keystone_agents.coordination.factory import wake_file

    config = ctx.config
    if config.coordination.backend != "postgresql":
        click.echo("error: comms listen is for the postgresql backend (the local broker touches the wake file "
                   "itself)", err=True)
        sys.exit(1)
    from keystone_agents.coordination.postgres import listen_forever

    path = wake_file(config.coordination, config.agent_name, ctx.space.state_dir)
    try:
        listen_forever(config.coordination.postgresql, path, interval)
    except BusError as exc:
        fail(exc)
    except KeyboardInterrupt:
        pass
