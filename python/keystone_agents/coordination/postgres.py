"""The PostgreSQL backend: the `Bus` over the keystone.* SECURITY DEFINER functions (sql/), with psycopg 3.

The caller's identity is its database role: with peer authentication, its Linux user. Nothing the client
sends names the sender. Waiting for a reply LISTENs on the caller's own wake channel (ids only: channels are
visible to every role) and re-queries after each notification or timeout; the notification generator is
always drained before the next query (psycopg#340).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from keystone_agents.coordination.base import (
    BusError, Claimed, InvalidRequest, Message, NotAllowed, NotFound, Unavailable, error_from_json,
)


def channel(role: str) -> str:
    return "keystone_wake_" + hashlib.md5(role.encode()).hexdigest()


def _connect(host, port, database):
    try:
        import psycopg
    except ImportError:
        raise Unavailable("the postgresql backend needs psycopg: pip install 'keystone-agents[postgres]'") from None
    try:
        return psycopg.connect(host=host, port=port, dbname=database, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        text = str(exc).strip()
        if "authentication failed" in text or ("role" in text and "does not exist" in text):
            # the server is there and refuses who we are: not an agent or admin of the bus
            raise NotAllowed(f"the bus database refuses this user: {text.splitlines()[-1]}") from None
        raise Unavailable(f"cannot connect to the bus database {database!r}: {text}") from None


class PgBus:
    backend = "postgresql"

    def __init__(self, conn):
        self.conn = conn
        self._role: str | None = None

    @classmethod
    def connect(cls, host=None, port=None, database="keystone") -> "PgBus":
        return cls(_connect(host, port, database))

    def _call(self, function: str, *args):
        import psycopg

        marks = ", ".join(["%s"] * len(args))
        try:
            return self.conn.execute(f"SELECT keystone.{function}({marks})", args).fetchone()[0]
        except psycopg.errors.InsufficientPrivilege as exc:
            raise NotAllowed(f"the database refused: {exc.diag.message_primary}") from None
        except psycopg.Error as exc:
            state = exc.sqlstate or ""
            text = exc.diag.message_primary or str(exc)
            if state == "KS403":
                raise NotAllowed(text) from None
            if state == "KS404":
                raise NotFound(text) from None
            if state.startswith("22"):
                raise InvalidRequest(text) from None
            if isinstance(exc, psycopg.OperationalError):
                raise Unavailable(f"the bus database failed: {text}") from None
            raise BusError(text) from None

    def identity(self) -> dict:
        data = self._call("identity")
        self._role = data["role"]
        return {**data, "backend": self.backend}

    def send(self, to, body, *, kind="message", subject="", priority=0, msg_id=None, in_reply_to=None,
             parent=None, awaiting=False, status=None) -> Message:
        import uuid as uuidlib

        from psycopg.types.json import Jsonb

        from keystone_agents.coordination.base import check_uuid, reply_id

        if kind == "reply" and in_reply_to:
            in_reply_to = check_uuid(in_reply_to, "in_reply_to")
            msg_id = check_uuid(msg_id) if msg_id else reply_id(in_reply_to)
        else:
            msg_id = check_uuid(msg_id) if msg_id else str(uuidlib.uuid4())
        await_seconds = 0.0
        if awaiting:
            await_seconds = float(awaiting) if not isinstance(awaiting, bool) else 3600.0
        result = self._call("send", to, Jsonb(body), kind, subject or "", priority, msg_id, in_reply_to,
                            check_uuid(parent, "parent") if parent else None, await_seconds, status)
        if not result.get("ok"):
            raise error_from_json(result)
        return Message.from_json(result["message"])

    def claim(self, limit, lease_seconds, max_deliveries) -> Claimed:
        data = self._call("claim", limit, float(lease_seconds), max_deliveries)
        return Claimed([Message.from_json(m) for m in data["messages"]], [Message.from_json(m) for m in data["dead"]])

    def ack(self, msg_id, task_ref) -> bool:
        from keystone_agents.coordination.base import check_uuid

        return bool(self._call("ack", check_uuid(msg_id), task_ref))

    def get(self, msg_id) -> Message:
        from keystone_agents.coordination.base import check_uuid

        data = self._call("get_message", check_uuid(msg_id))
        if data is None:
            raise NotFound(f"no message {msg_id} that you sent or received")
        return Message.from_json(data)

    def thread(self, msg_id) -> list[Message]:
        from keystone_agents.coordination.base import check_uuid

        data = self._call("thread", check_uuid(msg_id))
        if data is None:
            raise NotFound(f"no message {msg_id} that you sent or received")
        return [Message.from_json(m) for m in data]

    def inbox(self, states=None, limit=100, of=None) -> list[Message]:
        from keystone_agents.coordination.base import STATES

        states = states or ["queued", "leased"]
        bad = [s for s in states if s not in STATES]
        if bad:
            raise InvalidRequest(f"unknown state {bad[0]!r}")
        return [Message.from_json(m) for m in self._call("inbox", list(states), limit, of)]

    def outbox(self, limit=100, of=None) -> list[Message]:
        return [Message.from_json(m) for m in self._call("outbox", limit, of)]

    def _take(self, ask_id):
        data = self._call("take_reply", ask_id)
        return Message.from_json(data) if data else None

    def wait_reply(self, ask_id, timeout) -> Message | None:
        from keystone_agents.coordination.base import check_uuid

        ask_id = check_uuid(ask_id)
        role = self._role or self.identity()["role"]
        self.conn.execute(f"LISTEN {channel(role)}")
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            while True:
                reply = self._take(ask_id)  # after LISTEN: a reply committed before it is found here
                if reply is not None:
                    return reply
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                list(self.conn.notifies(timeout=min(remaining, 5.0), stop_after=1))  # drained before querying
        finally:
            self.conn.execute(f"UNLISTEN {channel(role)}")

    def stop_waiting(self, ask_id) -> Message | None:
        from keystone_agents.coordination.base import check_uuid

        data = self._call("stop_waiting", check_uuid(ask_id))
        return Message.from_json(data) if data else None

    def hierarchy(self, msg_id) -> list[Message]:
        from keystone_agents.coordination.base import check_uuid

        data = self._call("hierarchy", check_uuid(msg_id))
        if data is None:
            raise NotFound(f"no message {msg_id}")
        return [Message.from_json(m) for m in data]

    def stats(self) -> dict:
        return self._call("stats")

    # ---------------------------------------------------------- shared state and audit log

    def _answer(self, result):
        if isinstance(result, dict) and result.get("ok") is False and result.get("error"):
            raise error_from_json(result)
        return result

    def shared_get(self, key) -> dict | None:
        return self._call("shared_get", key)

    def shared_set(self, key, value, expected_version) -> dict:
        from keystone_agents.kv.model import check_expected, check_key, value_text

        text = value_text(value, max_bytes=2**31)  # the server applies maxValueBytes to this text
        return self._answer(self._call("shared_set", check_key(key), text, check_expected(expected_version)))

    def shared_delete(self, key, expected_version) -> dict:
        from keystone_agents.kv.model import check_expected, check_key

        return self._answer(self._call("shared_delete", check_key(key), check_expected(expected_version)))

    def shared_list(self, prefix="") -> list[dict]:
        return self._call("shared_list", prefix or "")

    def shared_history(self, key) -> list[dict]:
        return self._call("shared_history", key)

    def shared_changes(self, prefix="", after_seq=0, limit=1000, timeout=0.0) -> list[dict]:
        """LISTEN keystone_state, then re-query after each notification until a change or `timeout`."""
        changes = self._call("shared_changes", prefix or "", int(after_seq), int(limit))
        if changes or timeout <= 0:
            return changes
        self.conn.execute("LISTEN keystone_state")
        deadline = time.monotonic() + float(timeout)
        try:
            while True:
                changes = self._call("shared_changes", prefix or "", int(after_seq), int(limit))
                remaining = deadline - time.monotonic()
                if changes or remaining <= 0:
                    return changes
                list(self.conn.notifies(timeout=min(remaining, 5.0), stop_after=1))
        finally:
            self.conn.execute("UNLISTEN keystone_state")

    def audit_rows(self, after_seq=0, limit=1000, actor=None, action=None, since=None) -> list[dict]:
        import psycopg

        where, args = ["seq > %s"], [int(after_seq)]
        if actor:
            where.append("actor = coalesce((SELECT role FROM keystone.principals WHERE name = %s"
                         " ORDER BY kind LIMIT 1), %s)")
            args += [actor, actor]
        if action:
            where.append("(action = %s OR action LIKE %s)")
            args += [action, f"{action}.%"]
        if since:
            where.append("at >= %s::timestamptz")
            args.append(since)
        try:
            rows = self.conn.execute(
                "SELECT seq, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), actor, action,"
                " entry, encode(prev_hash, 'hex'), encode(hash, 'hex') FROM keystone.audit_log"
                f" WHERE {' AND '.join(where)} ORDER BY seq LIMIT %s", (*args, int(limit))).fetchall()
        except psycopg.errors.InsufficientPrivilege:
            raise NotAllowed("only admins (root, agent-admins) can read the audit log") from None
        except psycopg.Error as exc:
            raise InvalidRequest(exc.diag.message_primary or str(exc)) from None
        return [{"seq": r[0], "at": r[1], "actor": r[2], "action": r[3], "entry": r[4], "prev_hash": r[5],
                 "hash": r[6]} for r in rows]

    def audit_head(self) -> dict:
        import psycopg

        try:
            row = self.conn.execute("SELECT seq, encode(hash, 'hex') FROM keystone.audit_head").fetchone()
        except psycopg.errors.InsufficientPrivilege:
            raise NotAllowed("only admins (root, agent-admins) can read the audit log") from None
        return {"seq": row[0], "hash": row[1]}

    def audit_append(self, action, detail) -> dict:
        from psycopg.types.json import Jsonb

        return self._call("audit_append", action, Jsonb(detail))

    # ---------------------------------------------------------------- the fleet's event table (sql/005)

    def event_append(self, host, at, run_id, task, event, data) -> int:
        from psycopg.types.json import Jsonb

        return int(self._call("event_append", host, at, run_id, task, event, Jsonb(data)))

    def events_after(self, after_id=0, agents=None, types=None, limit=500, timeout=0.0) -> list[dict]:
        """Events after `after_id` (gap-free: sql/005's horizon), oldest first; with `timeout`, LISTEN
        keystone_events and re-read after each notification (and every 2 s: a row that was held back by an
        older transaction in flight is read once that one ends) until there are some."""
        rows = self._call("events_after", int(after_id), list(agents or []), list(types or []), int(limit))
        if rows or timeout <= 0:
            return rows
        self.conn.execute("LISTEN keystone_events")
        deadline = time.monotonic() + float(timeout)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return rows
                for _ in self.conn.notifies(timeout=min(2.0, left), stop_after=1):
                    pass
                rows = self._call("events_after", int(after_id), list(agents or []), list(types or []), int(limit))
                if rows:
                    return rows
        finally:
            self.conn.execute("UNLISTEN keystone_events")

    def events_cursor(self, since=None) -> int:
        return int(self._call("events_cursor", since))

    def events_prune(self, days: int) -> int:
        return int(self._call("events_prune", int(days)))

    # ---------------------------------------------------------- policy decisions and approvals

    def policy_notify(self, detail) -> dict:
        from psycopg.types.json import Jsonb

        return self._call("policy_notify", Jsonb(detail))

    def approval_request(self, id, task, run_id, action, capability, action_sha256, rule) -> dict:
        from psycopg.types.json import Jsonb

        from keystone_agents.coordination.base import check_uuid

        return self._call("approval_request", check_uuid(id, "approval id"), task or "", run_id or "", Jsonb(action),
                          capability, action_sha256, rule)

    def approval_consume(self, action_sha256, task) -> str | None:
        found = self._call("approval_consume", action_sha256, task or "")
        return str(found) if found else None

    def approval_get(self, id) -> dict:
        from keystone_agents.coordination.base import check_uuid

        return self._call("approval_get", check_uuid(id, "approval id"))

    def approvals_list(self, state=None, agent=None, limit=500) -> list[dict]:
        return self._call("approvals_list", state, agent, int(limit))

    def approval_decide(self, id, approve, note=None) -> dict:
        from keystone_agents.coordination.base import check_uuid

        result = self._answer(self._call("approval_decide", check_uuid(id, "approval id"), bool(approve), note))
        result.pop("ok", None)
        return result

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"{time.time():.6f}\n")


def listen_forever(settings, wake_path: Path, interval: float = 60.0, stop=None) -> None:
    """`comms listen`: LISTEN on the agent's channel; touch the wake file on connect, on every notification and
    every `interval` seconds (a notification missed while disconnected is caught by the drain it starts)."""
    while stop is None or not stop():
        try:
            bus = PgBus.connect(settings.host, settings.port, settings.database)
        except Unavailable:
            time.sleep(5)
            continue
        try:
            role = bus.identity()["role"]
            bus.conn.execute(f"LISTEN {channel(role)}")
            touch(wake_path)
            while stop is None or not stop():
                got = list(bus.conn.notifies(timeout=interval, stop_after=1))
                touch(wake_path)
                del got
        except BusError:
            time.sleep(5)
        except Exception:  # noqa: BLE001 - connection lost: reconnect
            time.sleep(5)
        finally:
            bus.close()


__all__ = ["PgBus", "channel", "listen_forever", "json"]
