"""The bus contract, one suite for both backends (local broker over SQLite; PostgreSQL), with real Linux users.

Every operation runs in a process that *is* the agent's Linux user (tests/support/asuser.as_user; users from tests/support/realhost.py): the
local broker knows it by SO_PEERCRED, PostgreSQL by peer authentication. Nothing in a request names the sender.
"""

from __future__ import annotations

import sqlite3
import time
import uuid

import pytest

from keystone_agents.coordination.base import (
    DepthExceeded, NotAllowed, NotFound, RateLimited, reply_id,
)

pytestmark = pytest.mark.slow


def test_identity_is_the_os_user_and_strangers_are_refused(bus_env):
    ident = bus_env.run("alpha", lambda bus: bus.identity())
    assert (ident["name"], ident["role"], ident["kind"]) == ("alpha", bus_env.users["alpha"], "agent")
    ident = bus_env.run("human", lambda bus: bus.identity())
    assert (ident["name"], ident["kind"]) == (bus_env.users["human"], "admin")
    with pytest.raises(NotAllowed):
        bus_env.run("outsider", lambda bus: bus.identity())


def test_send_is_idempotent_by_id(bus_env):
    msg_id = str(uuid.uuid4())

    def twice(bus):
        first = bus.send("beta", "hello", msg_id=msg_id, subject="greeting")
        second = bus.send("beta", "hello", msg_id=msg_id, subject="greeting")
        return first, second

    first, second = bus_env.run("alpha", twice)
    assert first.id == second.id == msg_id
    assert (first.created, second.created) == (True, False)
    assert (first.sender, first.recipient, first.kind) == ("alpha", "beta", "message")
    inbox = bus_env.run("beta", lambda bus: bus.inbox())
    assert [m.id for m in inbox] == [msg_id]
    # the same id from another sender is not a retry: refused
    with pytest.raises(Exception) as refused:
        bus_env.run("delta", lambda bus: bus.send("beta", "x", msg_id=msg_id))
    assert "already used" in str(refused.value)


def test_lease_expires_and_the_message_is_redelivered(bus_env):
    msg_id = bus_env.run("alpha", lambda bus: bus.send("beta", "work").id)
    first = bus_env.run("beta", lambda bus: bus.claim(10, 4, 5))
    assert [m.id for m in first.messages] == [msg_id] and first.messages[0].delivery_count == 1
    assert bus_env.run("beta", lambda bus: bus.claim(10, 4, 5)).messages == []  # leased: invisible
    time.sleep(4.2)
    again = bus_env.run("beta", lambda bus: bus.claim(10, 30, 5))
    assert [m.id for m in again.messages] == [msg_id] and again.messages[0].delivery_count == 2
    assert bus_env.run("beta", lambda bus: bus.ack(msg_id, f"comms-{msg_id}")) is True
    time.sleep(0.1)
    assert bus_env.run("beta", lambda bus: bus.claim(10, 0.1, 5)).messages == []
    shown = bus_env.run("alpha", lambda bus: bus.get(msg_id))
    assert shown.state == "delivered" and shown.task_ref == f"comms-{msg_id}"


def test_dead_letter_after_max_deliveries(bus_env):
    msg_id = bus_env.run("alpha", lambda bus: bus.send("beta", "poison").id)
    for _ in range(2):
        assert [m.id for m in bus_env.run("beta", lambda bus: bus.claim(10, 0.2, 2)).messages] == [msg_id]
        time.sleep(0.3)
    third = bus_env.run("beta", lambda bus: bus.claim(10, 0.2, 2))
    assert third.messages == [] and [m.id for m in third.dead] == [msg_id]
    assert third.dead[0].state == "failed"
    stats = bus_env.run("beta", lambda bus: bus.stats())
    assert stats["dead_letters"] == 1 and stats["inbox"]["failed"] == 1
    assert bus_env.run("beta", lambda bus: bus.claim(10, 0.2, 2)).dead == []  # dead once


def test_agents_cannot_read_claim_ack_or_forge_replies_for_others(bus_env):
    message = bus_env.run("alpha", lambda bus: bus.send("beta", "for beta only"))
    ask = bus_env.run("alpha", lambda bus: bus.send("beta", "a question for beta", kind="ask"))
    # delta: read, claim, ack, reply-forge, all refused
    with pytest.raises(NotFound):
        bus_env.run("delta", lambda bus: bus.get(message.id))
    assert bus_env.run("delta", lambda bus: bus.inbox(["queued", "leased", "delivered", "done", "failed"])) == []
    assert bus_env.run("delta", lambda bus: bus.claim(10, 30, 5)).messages == []
    assert bus_env.run("delta", lambda bus: bus.ack(message.id, "comms-x")) is False
    with pytest.raises((NotAllowed, NotFound)):
        bus_env.run("delta", lambda bus: bus.send(None, "forged answer", kind="reply", in_reply_to=ask.id))
    with pytest.raises((NotAllowed, NotFound)):
        bus_env.run("delta", lambda bus: bus.send(None, "forged", kind="reply", in_reply_to=ask.id,
                                                  msg_id=reply_id(ask.id)))
    # the asker cannot answer its own ask either, and a plain message cannot be replied to
    with pytest.raises(NotAllowed):
        bus_env.run("alpha", lambda bus: bus.send(None, "self-answer", kind="reply", in_reply_to=ask.id))
    with pytest.raises(NotAllowed):
        bus_env.run("beta", lambda bus: bus.send(None, "not an ask", kind="reply", in_reply_to=message.id))
    # beta still gets both, untouched; the admin sees everything
    assert {m.id for m in bus_env.run("beta", lambda bus: bus.inbox())} == {message.id, ask.id}
    assert bus_env.run("human", lambda bus: bus.get(message.id)).body == "for beta only"
    # and the store itself is out of the agents' reach
    bus_env.assert_store_refuses("delta", message.id)


def test_accept_from(bus_env):
    with pytest.raises(NotAllowed) as refused:
        bus_env.run("beta", lambda bus: bus.send("gamma", "let me in"))
    assert "acceptFrom" in str(refused.value)
    with pytest.raises(NotAllowed):
        bus_env.run("human", lambda bus: bus.send("gamma", "admins are not listed either"))
    assert bus_env.run("alpha", lambda bus: bus.send("gamma", "allowed")).recipient == "gamma"
    with pytest.raises(NotFound):
        bus_env.run("alpha", lambda bus: bus.send("nobody", "?"))
    assert bus_env.refusals() >= 2  # refusals are audit entries


def test_delegation_depth(bus_env):
    a0 = bus_env.run("alpha", lambda bus: bus.send("beta", "start"))
    assert a0.depth == 0
    b1 = bus_env.run("beta", lambda bus: bus.send("alpha", "delegated", parent=a0.id))
    assert b1.depth == 1
    b0 = bus_env.run("beta", lambda bus: bus.send("alpha", "fresh"))
    assert bus_env.run("alpha", lambda bus: bus.send("gamma", "depth 1 is fine", parent=b0.id)).depth == 1
    with pytest.raises(DepthExceeded):
        bus_env.run("alpha", lambda bus: bus.send("gamma", "too deep", parent=b1.id))  # depth 2 > gamma's 1
    # a parent must be a message the sender received
    with pytest.raises(NotFound):
        bus_env.run("delta", lambda bus: bus.send("beta", "borrowed depth", parent=a0.id))
    tree = bus_env.run("human", lambda bus: bus.hierarchy(b1.id))
    assert [(m.id, m.depth) for m in tree][:2] == [(a0.id, 0), (b1.id, 1)]


def test_send_rate_limit(bus_env):
    for n in range(3):
        bus_env.run("delta", lambda bus: bus.send("alpha", f"note {n}"))
    with pytest.raises(RateLimited) as refused:
        bus_env.run("delta", lambda bus: bus.send("alpha", "one too many"))
    assert "sendsPerHour 3" in str(refused.value)
    # replies are not counted: delta can still answer an ask
    ask = bus_env.run("alpha", lambda bus: bus.send("delta", "question?", kind="ask"))
    assert bus_env.run("delta", lambda bus: bus.send(None, "answer", kind="reply", in_reply_to=ask.id)).kind == "reply"


def test_ask_reply_and_wait(bus_env):
    ask = bus_env.run("alpha", lambda bus: bus.send("beta", "what is 6*7?", kind="ask", awaiting=60))
    assert ask.correlation_id == ask.id and ask.awaiting
    claimed = bus_env.run("beta", lambda bus: bus.claim(10, 30, 5))
    assert [m.id for m in claimed.messages] == [ask.id]
    bus_env.run("beta", lambda bus: bus.ack(ask.id, f"comms-{ask.id}"))
    reply = bus_env.run("beta", lambda bus: bus.send(None, "42", kind="reply", in_reply_to=ask.id))
    assert (reply.id, reply.recipient, reply.status, reply.correlation_id) == (reply_id(ask.id), "alpha", "ok", ask.id)
    # the waiting asker's reply is held for it, not made a task
    assert bus_env.run("alpha", lambda bus: bus.claim(10, 30, 5)).messages == []
    got = bus_env.run("alpha", lambda bus: bus.wait_reply(ask.id, 5))
    assert got.id == reply.id and got.body == "42"
    assert bus_env.run("alpha", lambda bus: bus.wait_reply(ask.id, 0.2)) is None  # taken once
    # exactly one reply: the runtime resending is a no-op; a second, different reply is refused
    again = bus_env.run("beta", lambda bus: bus.send(None, "42", kind="reply", in_reply_to=ask.id))
    assert again.id == reply.id and again.created is False
    with pytest.raises(NotAllowed):
        bus_env.run("beta", lambda bus: bus.send(None, "43", kind="reply", in_reply_to=ask.id,
                                                 msg_id=str(uuid.uuid4())))
    thread = bus_env.run("alpha", lambda bus: bus.thread(reply.id))
    assert [(m.kind, m.state) for m in thread] == [("ask", "done"), ("reply", "done")]


def test_wait_timeout_then_the_late_reply_becomes_a_task(bus_env):
    ask = bus_env.run("alpha", lambda bus: bus.send("beta", "slow question", kind="ask", awaiting=60))
    assert bus_env.run("alpha", lambda bus: bus.wait_reply(ask.id, 0.3)) is None
    assert bus_env.run("alpha", lambda bus: bus.stop_waiting(ask.id)) is None
    late = bus_env.run("beta", lambda bus: bus.send(None, {"answer": "late"}, kind="reply", in_reply_to=ask.id))
    claimed = bus_env.run("alpha", lambda bus: bus.claim(10, 30, 5))
    assert [m.id for m in claimed.messages] == [late.id]
    assert claimed.messages[0].body == {"answer": "late"} and claimed.messages[0].in_reply_to == ask.id


def test_a_reply_arriving_as_the_wait_ends_is_returned_by_stop_waiting(bus_env):
    ask = bus_env.run("alpha", lambda bus: bus.send("beta", "race", kind="ask", awaiting=60))
    bus_env.run("beta", lambda bus: bus.send(None, "just in time", kind="reply", in_reply_to=ask.id))
    got = bus_env.run("alpha", lambda bus: bus.stop_waiting(ask.id))
    assert got is not None and got.body == "just in time"
    assert bus_env.run("alpha", lambda bus: bus.claim(10, 30, 5)).messages == []  # not a task as well
