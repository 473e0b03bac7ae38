"""The local broker's engine: the bus's operations over one SQLite file, for a caller the broker identified.

Only the broker's own user opens this file (mode 0600 in a 0700 directory). The rules here are the ones the
PostgreSQL functions in sql/ enforce (the same contract suite runs against both): the sender is the caller,
never a claimed name; the receiver's acceptFrom, its maxDepth and the sender's sendsPerHour bound sending;
only an ask's receiver can reply to it, once; every caller sees only what it sent or received (admins: all).
Every write is one `BEGIN IMMEDIATE` transaction, taken behind the writer lock (`WriterLock`: flock on
`<database>.lock`) and kept short (validation, JSON and hashing happen before it); timestamps are this host's
clock (never the client's).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import sqlite3
import struct
import time
import uuid
from pathlib import Path
from typing import Any

from keystone_agents.coordination.base import (
    BODY_MAX_BYTES, KINDS, PRIORITY_NAMES, REPLY_STATUSES, STATES, SUBJECT_MAX, Claimed, DepthExceeded,
    InvalidRequest, Message, NotAllowed, NotFound, RateLimited, check_uuid, reply_id,
)
from keystone_agents.coordination import audit as audit_chain
from keystone_agents.coordination.registry import Principal, Registry, accepts, may_write

# Numbered like history.py: PRAGMA user_version records what is applied. A later capability (shared state,
# a tamper-evident audit chain, events) adds a migration here and its twin in sql/.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        msg_uuid TEXT NOT NULL UNIQUE,       -- chosen by the sender: idempotency key
        sender TEXT NOT NULL,                -- role (Linux user) of the caller, from SO_PEERCRED
        recipient TEXT NOT NULL,             -- role
        kind TEXT NOT NULL CHECK (kind IN ('message', 'ask', 'reply')),
        correlation_id TEXT,                 -- ask: its own id, reply: the ask's
        in_reply_to INTEGER REFERENCES messages (id),
        parent_id INTEGER REFERENCES messages (id),  -- the message whose task sent this one
        depth INTEGER NOT NULL DEFAULT 0,
        await_until REAL,                    -- ask: its sender waits (ask --wait) until then
        subject TEXT NOT NULL DEFAULT '',
        body TEXT NOT NULL,                  -- JSON
        priority INTEGER NOT NULL DEFAULT 0,
        reply_status TEXT CHECK (reply_status IN ('ok', 'failed')),
        state TEXT NOT NULL DEFAULT 'queued'
              CHECK (state IN ('queued', 'leased', 'delivered', 'done', 'failed')),
        visible_at REAL NOT NULL,
        lease_until REAL,
        delivery_count INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        delivered_at REAL,
        done_at REAL,
        task_ref TEXT
    );
    CREATE INDEX messages_inbox ON messages (recipient, state, priority DESC, id);
    CREATE INDEX messages_corr ON messages (correlation_id);
    CREATE INDEX messages_sent ON messages (sender, created_at);
    CREATE INDEX messages_parent ON messages (parent_id);
    CREATE TABLE audit_events (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,                -- comms.send | comms.reply | comms.refused
        detail TEXT NOT NULL                 -- JSON
    );
    """,
    # 2: shared state (every version in shared_state_history, whose id orders `watch`) and the hash-chained
    # audit log (coordination/audit.py); the twin of sql/002_shared_state_audit.sql
    """
    CREATE TABLE shared_state (
        key TEXT PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 512),
        value TEXT NOT NULL,                 -- compact JSON
        version INTEGER NOT NULL CHECK (version >= 1),
        owner_agent TEXT NOT NULL,           -- the last writer: short name, or human:<user>
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE shared_state_history (
        seq INTEGER PRIMARY KEY,             -- global order of changes (watch)
        key TEXT NOT NULL,
        version INTEGER NOT NULL,
        value TEXT,
        deleted INTEGER NOT NULL DEFAULT 0,
        owner_agent TEXT NOT NULL,
        at REAL NOT NULL,
        UNIQUE (key, version)
    );
    CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        entry TEXT NOT NULL,                 -- the exact JSON text hashed
        prev_hash TEXT NOT NULL,             -- hex
        hash TEXT NOT NULL                   -- hex: sha256(prev_hash || entry)
    );
    CREATE INDEX audit_log_actor ON audit_log (actor, seq);
    CREATE INDEX audit_log_action ON audit_log (action, seq)
    """,
    # 3: the approval queue (policy tier approval_required); the twin of sql/004_approvals.sql
    """
    CREATE TABLE approvals (
        id TEXT PRIMARY KEY,                 -- a UUID chosen by the requesting hook
        agent TEXT NOT NULL,                 -- the requester's role (SO_PEERCRED), never a claimed name
        task TEXT NOT NULL DEFAULT '',
        run_id TEXT NOT NULL DEFAULT '',
        capability TEXT NOT NULL,            -- the normalized action, e.g. 'shell:git push origin main'
        action TEXT NOT NULL,                -- JSON: kind, target, tool, args as the CLI gave them
        action_sha256 TEXT NOT NULL,         -- grant matching: (agent, action_sha256, task)
        rule TEXT NOT NULL,                  -- the policy rule that made it approval_required
        state TEXT NOT NULL DEFAULT 'pending'
              CHECK (state IN ('pending', 'approved', 'rejected', 'consumed')),
        requested_at REAL NOT NULL,
        decided_at REAL,
        decided_by TEXT,
        note TEXT,
        consumed_at REAL
    );
    CREATE INDEX approvals_state ON approvals (state, requested_at);
    CREATE INDEX approvals_grant ON approvals (agent, action_sha256, task, state)
    """,
]

COLUMNS = ("m.msg_uuid, m.kind, m.sender, m.recipient, m.body, m.subject, m.priority, m.state, m.depth, "
           "m.correlation_id, (SELECT i.msg_uuid FROM messages i WHERE i.id = m.in_reply_to), m.await_until, "
           "m.reply_status, m.delivery_count, m.created_at, m.delivered_at, m.done_at, m.task_ref")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# How long SQLite itself retries a locked database (ms). The brokers queue on the writer lock first, so this
# covers only what bypasses it: a new database's WAL setup, a checkpoint, root's sqlite3 shell.
BUSY_TIMEOUT_MS = 30_000


class WriterLock:
    """The fair lock in front of SQLite's writer lock, shared by every broker process of one database.

    SQLite's busy handler polls with sleeps of up to 100 ms, counted as requested and not as slept: among ten
    processes contending for the write lock one can lose every retry while the others take turns, and on a
    loaded machine (sleeps that last seconds, holders descheduled while holding) a request outlives the
    client's timeout. This lock is a FIFO queue of tickets in `<database>.lock`:

    - taking a ticket: under a brief flock(2) of the file, read and bump the counter (bytes 0–7) and lock the
      ticket's own byte (an open-file-description lock, fcntl F_OFD_SETLK, at TICKETS + n);
    - waiting: block (F_OFD_SETLKW) on the byte of ticket n − 1 until its holder releases it;
    - releasing: unlock the own byte, which wakes exactly the next ticket's waiter.

    The kernel drops every lock of a process that dies, so a dead broker never blocks the queue. Open-file-
    description locks (not POSIX process locks) because the listening broker serves connections in threads of
    one process, each with its own open file. SQLite's own locking still guarantees correctness; this only
    decides who goes next.
    """

    TICKETS = 1 << 20  # byte offset of ticket 0's lock byte (the counter lives in bytes 0–7)

    def __init__(self, database: Path):
        self.path = database.with_name(database.name + ".lock")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.ticket: int | None = None

    def _byte(self, command: int, kind: int, ticket: int) -> None:
        # struct flock {short l_type, l_whence; off_t l_start, l_len; pid_t l_pid (0 for OFD locks)}
        fcntl.fcntl(self.fd, command, struct.pack("@hhqqi", kind, os.SEEK_SET, self.TICKETS + ticket, 1, 0))

    def __enter__(self) -> "WriterLock":
        if self.ticket is not None:
            raise RuntimeError("the writer lock is not reentrant (a transaction inside a transaction)")
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            raw = os.pread(self.fd, 8, 0)
            ticket = int.from_bytes(raw, "little") if len(raw) == 8 else 0
            os.pwrite(self.fd, (ticket + 1).to_bytes(8, "little"), 0)
            self._byte(fcntl.F_OFD_SETLK, fcntl.F_WRLCK, ticket)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.ticket = ticket
        if ticket > 0:
            try:
                self._byte(fcntl.F_OFD_SETLKW, fcntl.F_RDLCK, ticket - 1)  # until ticket − 1 is released
                self._byte(fcntl.F_OFD_SETLK, fcntl.F_UNLCK, ticket - 1)
            except BaseException:
                self.__exit__()
                raise
        return self

    def __exit__(self, *exc) -> None:
        if self.ticket is not None:
            self._byte(fcntl.F_OFD_SETLK, fcntl.F_UNLCK, self.ticket)
            self.ticket = None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class BusConnection(sqlite3.Connection):
    """A connection that knows its database's writer lock (None: no lock file could be made)."""

    writer: WriterLock | None = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        super().close()


def connect(path: Path) -> BusConnection:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False,
                           factory=BusConnection)
    try:
        conn.writer = WriterLock(path)
    except OSError:
        conn.writer = None  # e.g. a read-only state dir: SQLite's own locking still keeps writes correct
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    migrate(conn)
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version >= len(MIGRATIONS):
        return version
    with _Transaction(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
    return len(MIGRATIONS)


APPROVAL_COLUMNS = ("id, agent, task, run_id, capability, action, action_sha256, rule, state, requested_at, decided_at,"
                    " decided_by, note, consumed_at")


class ApprovalsMixin:
    """The approval queue: agents request and consume, only admins decide (an agent can never approve)."""

    def _approval(self, row) -> dict:
        (aid, agent, task, run_id, capability, action, sha, rule, state, requested, decided, by, note,
         consumed) = row
        return {"id": aid, "agent": self._name(agent), "task": task, "run_id": run_id, "action": capability,
                "detail": json.loads(action), "action_sha256": sha, "rule": rule, "state": state,
                "requested_at": iso(requested), "decided_at": iso(decided), "decided_by": by, "note": note,
                "consumed_at": iso(consumed)}

    def _admin_message(self, subject: str, body: dict) -> None:
        """A message from the caller to every admin (their bus inbox), in the caller's transaction."""
        now = time.time()
        for admin in self.registry.admins:
            self.conn.execute(
                "INSERT INTO messages (msg_uuid, sender, recipient, kind, subject, body, priority, visible_at,"
                " created_at) VALUES (?, ?, ?, 'message', ?, ?, 1, ?, ?)",
                (str(uuid.uuid4()), self.me.role, admin.role, subject[:SUBJECT_MAX],
                 json.dumps(body, ensure_ascii=False), now, now))

    def policy_notify(self, detail: dict) -> dict:
        """A policy decision of the caller's hook (notify or blocked): an audit entry; notify also messages
        the admins."""
        if not isinstance(detail, dict):
            raise InvalidRequest("detail must be an object")
        detail = {**detail, "agent": self.me.name}
        with self._tx():
            self._audit("policy.decision", detail)
            if detail.get("tier") == "notify":
                self._admin_message(f"[notify] {self.me.name}: {str(detail.get('action', ''))[:200]}", detail)
        return {"ok": True}

    def approval_request(self, id: str, task: str, run_id: str, action: dict, capability: str, action_sha256: str,
                         rule: str) -> dict:
        if self.me.kind != "agent":
            raise NotAllowed("only agents request approvals")
        approval_id = check_uuid(id, "approval id")
        now = time.time()
        with self._tx():
            same = self.conn.execute(f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE agent = ? AND action_sha256 = ?"
                                     " AND task = ? AND state = 'pending'", (self.me.role, action_sha256, task or "")
                                     ).fetchone()
            if same is not None:  # the same action of the same task already waits: one request, not two
                return {**self._approval(same), "created": False}
            self.conn.execute("INSERT INTO approvals (id, agent, task, run_id, capability, action, action_sha256, rule,"
                              " requested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                              (approval_id, self.me.role, task or "", run_id or "", str(capability)[:4000],
                               json.dumps(action, ensure_ascii=False), str(action_sha256), str(rule)[:1000], now))
            detail = {"id": approval_id, "agent": self.me.name, "task": task, "action": str(capability)[:2000],
                      "rule": str(rule)[:500]}
            self._audit("approval.requested", detail)
            self._admin_message(f"[approval] {self.me.name} waits for approval {approval_id}",
                                {**detail, "how": f"agentctl approvals approve {approval_id} | reject {approval_id}"})
            row = self.conn.execute(f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?", (approval_id,)).fetchone()
        return {**self._approval(row), "created": True}

    def approval_consume(self, action_sha256: str, task: str) -> str | None:
        """Use the caller's approved grant for this action of this task, once: → its id, or None."""
        with self._tx():
            row = self.conn.execute("SELECT id FROM approvals WHERE agent = ? AND action_sha256 = ? AND task = ?"
                                    " AND state = 'approved' ORDER BY decided_at LIMIT 1",
                                    (self.me.role, str(action_sha256), task or "")).fetchone()
            if row is None:
                return None
            self.conn.execute("UPDATE approvals SET state = 'consumed', consumed_at = ? WHERE id = ?",
                              (time.time(), row[0]))
            self._audit("approval.consumed", {"id": row[0], "agent": self.me.name, "task": task})
        return row[0]

    def approval_get(self, id: str) -> dict:
        row = self.conn.execute(f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?",
                                (check_uuid(id, "approval id"),)).fetchone()
        if row is None or (self.me.kind != "admin" and row[1] != self.me.role):
            raise NotFound(f"no approval {id}")
        return self._approval(row)

    def approvals_list(self, state: str | None = None, agent: str | None = None, limit: int = 500) -> list[dict]:
        where, args = [], []
        if self.me.kind != "admin":
            where.append("agent = ?")
            args.append(self.me.role)
        elif agent:
            principal = self.registry.agent(agent)
            where.append("agent = ?")
            args.append(principal.role if principal else agent)
        if state:
            where.append("state = ?")
            args.append(state)
        sql = f"SELECT {APPROVAL_COLUMNS} FROM approvals" + (f" WHERE {' AND '.join(where)}" if where else "")
        rows = self.conn.execute(sql + " ORDER BY requested_at, id LIMIT ?", (*args, int(limit))).fetchall()
        return [self._approval(r) for r in rows]

    def approval_decide(self, id: str, approve: bool, note: str | None = None) -> dict:
        if self.me.kind != "admin":
            with self._tx():
                self._audit("approval.refused", {"id": str(id), "reason": "an agent cannot decide approvals"})
            raise NotAllowed("only humans (admins) decide approvals; an agent can never approve")
        approval_id = check_uuid(id, "approval id")
        with self._tx():
            row = self.conn.execute("SELECT agent, state FROM approvals WHERE id = ?", (approval_id,)).fetchone()
            if row is None:
                raise NotFound(f"no approval {approval_id}")
            if row[1] != "pending":
                raise InvalidRequest(f"approval {approval_id} is {row[1]}, not pending")
            state = "approved" if approve else "rejected"
            self.conn.execute("UPDATE approvals SET state = ?, decided_at = ?, decided_by = ?, note = ? WHERE id = ?",
                              (state, time.time(), self.me.name, note, approval_id))
            self._audit("approval.decided", {"id": approval_id, "decision": state, "note": note,
                                             "agent": self._name(row[0])})
        agent = self.registry.by_role(row[0])
        if self.wake is not None and agent is not None:
            self.wake(agent.name)  # the agent's comms drain unblocks the task
        return self.approval_get(approval_id)


class Store(ApprovalsMixin):
    """The operations of one caller (`me`) on the broker's database."""

    def __init__(self, conn: sqlite3.Connection, registry: Registry, me: Principal, wake=None):
        self.conn, self.registry, self.me = conn, registry, me
        self.wake = wake  # callable(agent name) after a commit that gave that agent a message
        self.poll_interval = 0.05

    # ---------------------------------------------------------------- helpers

    def _tx(self):
        return _Transaction(self.conn)

    def _name(self, role: str) -> str:
        principal = self.registry.by_role(role)
        return principal.name if principal else role

    def _message(self, row) -> Message:
        (msg_uuid, kind, sender, recipient, body, subject, priority, state, depth, corr, in_reply_to,
         await_until, status, deliveries, created, delivered, done, task_ref) = row
        return Message(
            id=msg_uuid, kind=kind, sender=self._name(sender), recipient=self._name(recipient),
            body=json.loads(body), subject=subject, priority=priority, state=state, depth=depth,
            correlation_id=corr, in_reply_to=in_reply_to, awaiting=bool(await_until and await_until > time.time()),
            status=status, delivery_count=deliveries, created_at=iso(created), delivered_at=iso(delivered),
            done_at=iso(done), task_ref=task_ref,
        )

    def _row(self, where: str, args: tuple) -> Message | None:
        row = self.conn.execute(f"SELECT {COLUMNS} FROM messages m WHERE {where}", args).fetchone()
        return self._message(row) if row else None

    def _visible(self) -> tuple[str, tuple]:
        if self.me.kind == "admin":
            return "1", ()
        return "(m.sender = ? OR m.recipient = ?)", (self.me.role, self.me.role)

    def _audit(self, action: str, detail: dict) -> None:
        """An audit event, appended to the hash chain in the caller's transaction."""
        now = time.time()
        self.conn.execute("INSERT INTO audit_events (at, actor, action, detail) VALUES (?, ?, ?, ?)",
                          (now, self.me.role, action, json.dumps(detail, sort_keys=True)))
        head = self.conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (head[0] + 1, bytes.fromhex(head[1])) if head else (1, audit_chain.GENESIS)
        at = dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
        text = audit_chain.entry_text(seq, at, self.me.role, action, detail)
        self.conn.execute("INSERT INTO audit_log (seq, at, actor, action, entry, prev_hash, hash)"
                          " VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (seq, at, self.me.role, action, text, prev.hex(), audit_chain.chain_hash(prev, text).hex()))

    def _refuse(self, exc: Exception, detail: dict) -> Exception:
        """Record the refusal (its own transaction: the refusal is kept though the send is not)."""
        with self._tx():
            self._audit("comms.refused", {**detail, "error": getattr(exc, "code", "error"), "reason": str(exc)})
        return exc

    # ---------------------------------------------------------------- operations

    def identity(self) -> dict:
        return {"name": self.me.name, "role": self.me.role, "kind": self.me.kind}

    def send(self, to: str | None, body: Any, *, kind: str = "message", subject: str = "", priority: int = 0,
             msg_id: str | None = None, in_reply_to: str | None = None, parent: str | None = None,
             awaiting: float | bool = False, status: str | None = None) -> Message:
        if kind not in KINDS:
            raise InvalidRequest(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if priority not in PRIORITY_NAMES:
            raise InvalidRequest(f"priority must be low, normal or high, not {priority!r}")
        subject = subject or ""
        if not isinstance(subject, str) or len(subject) > SUBJECT_MAX:
            raise InvalidRequest(f"subject must be text of at most {SUBJECT_MAX} characters")
        body_text = json.dumps(body, ensure_ascii=False)
        if len(body_text.encode()) > BODY_MAX_BYTES:
            raise InvalidRequest(f"body is larger than {BODY_MAX_BYTES} bytes")
        if kind == "reply":
            if not in_reply_to:
                raise InvalidRequest("a reply names the ask it answers (in_reply_to)")
            in_reply_to = check_uuid(in_reply_to, "in_reply_to")
            msg_id = check_uuid(msg_id) if msg_id else reply_id(in_reply_to)
            status = status or "ok"
            if status not in REPLY_STATUSES:
                raise InvalidRequest("status must be ok or failed")
        else:
            msg_id = check_uuid(msg_id) if msg_id else str(uuid.uuid4())
            if status is not None:
                raise InvalidRequest("only a reply has a status")
        now = time.time()
        detail = {"id": msg_id, "kind": kind, "to": to}
        with self._tx():
            existing = self.conn.execute("SELECT sender FROM messages WHERE msg_uuid = ?", (msg_id,)).fetchone()
            if existing is not None:
                if existing[0] != self.me.role:
                    raise InvalidRequest(f"message id {msg_id} is already used by another sender")
                message = self._row("m.msg_uuid = ?", (msg_id,))
                message.created = False
                return message
            try:
                if kind == "reply":
                    recipient, depth, parent_id, ask_row = self._check_reply(to, in_reply_to)
                    correlation = in_reply_to
                else:
                    recipient, depth, parent_id = self._check_send(to, parent, now)
                    correlation = msg_id if kind == "ask" else None
                    ask_row = None
            except (NotAllowed, NotFound) as exc:
                refusal = exc
            else:
                refusal = None
                await_until = None
                if kind == "ask" and awaiting:
                    await_until = now + (float(awaiting) if not isinstance(awaiting, bool) else 3600.0)
                self.conn.execute(
                    "INSERT INTO messages (msg_uuid, sender, recipient, kind, correlation_id, in_reply_to, parent_id,"
                    " depth, await_until, subject, body, priority, reply_status, visible_at, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (msg_id, self.me.role, recipient.role, kind, correlation, ask_row, parent_id, depth, await_until,
                     subject, body_text, priority, status if kind == "reply" else None, now, now))
                if kind == "reply":
                    self.conn.execute("UPDATE messages SET state = 'done', done_at = ? WHERE id = ?", (now, ask_row))
                self._audit("comms.reply" if kind == "reply" else "comms.send",
                            {"id": msg_id, "kind": kind, "to": recipient.role, "depth": depth})
        if refusal is not None:
            raise self._refuse(refusal, detail)
        if self.wake is not None and recipient.kind == "agent":
            self.wake(recipient.name)
        return self._row("m.msg_uuid = ?", (msg_id,))

    def _check_send(self, to: str | None, parent: str | None, now: float) -> tuple[Principal, int, int | None]:
        if not to:
            raise InvalidRequest("a message needs a recipient (--to AGENT)")
        recipient = self.registry.agent(to)
        if recipient is None:
            raise NotFound(f"no agent named {to!r} on the bus")
        if not accepts(recipient, self.me):
            raise NotAllowed(f"{recipient.name} does not accept messages from {self.me.name} (its comms.acceptFrom "
                             f"is {', '.join(recipient.accept_from) or 'empty'})")
        depth, parent_id = 0, None
        if parent:
            row = self.conn.execute("SELECT id, depth, recipient FROM messages WHERE msg_uuid = ?",
                                    (check_uuid(parent, "parent"),)).fetchone()
            if row is None or (row[2] != self.me.role and self.me.kind != "admin"):
                raise NotFound(f"parent message {parent} is not one you received")
            parent_id, depth = row[0], row[1] + 1
        if depth > recipient.max_depth:
            raise DepthExceeded(f"delegation depth {depth} exceeds {recipient.name}'s maxDepth {recipient.max_depth}",
                                depth=depth, max_depth=recipient.max_depth)
        if self.me.kind == "agent":
            sent = self.conn.execute(
                "SELECT count(*) FROM messages WHERE sender = ? AND kind != 'reply' AND created_at > ?",
                (self.me.role, now - 3600)).fetchone()[0]
            if sent >= self.me.sends_per_hour:
                raise RateLimited(f"{self.me.name} has sent {sent} messages in the last hour (sendsPerHour "
                                  f"{self.me.sends_per_hour})", sent=sent, limit=self.me.sends_per_hour)
        return recipient, depth, parent_id

    def _check_reply(self, to: str | None, ask_id: str) -> tuple[Principal, int, int, int]:
        row = self.conn.execute("SELECT id, kind, sender, recipient, depth, parent_id FROM messages WHERE msg_uuid = ?",
                                (ask_id,)).fetchone()
        if row is None or (row[3] != self.me.role and row[2] != self.me.role):
            raise NotFound(f"no ask {ask_id} addressed to you")
        ask_pk, kind, asker, receiver, depth, parent_id = row
        if kind != "ask" or receiver != self.me.role:
            raise NotAllowed(f"only the receiver of an ask can reply to it ({ask_id} is not an ask sent to you)")
        recipient = self.registry.by_role(asker)
        if recipient is None:
            raise NotFound(f"the asker of {ask_id} is no longer on the bus")
        if to and to not in (recipient.name, recipient.role):
            raise NotAllowed(f"a reply goes to the asker ({recipient.name}), not to {to}")
        other = self.conn.execute("SELECT msg_uuid FROM messages WHERE in_reply_to = ? AND kind = 'reply'",
                                  (ask_pk,)).fetchone()
        if other is not None:
            raise NotAllowed(f"ask {ask_id} already has a reply ({other[0]})")
        return recipient, depth, parent_id, ask_pk

    def claim(self, limit: int, lease_seconds: float, max_deliveries: int) -> Claimed:
        if limit < 1 or lease_seconds <= 0 or max_deliveries < 1:
            raise InvalidRequest("claim needs limit >= 1, lease_seconds > 0, max_deliveries >= 1")
        now = time.time()
        leased, dead = [], []
        with self._tx():
            rows = self.conn.execute(
                "SELECT m.id, m.delivery_count FROM messages m LEFT JOIN messages a ON a.id = m.in_reply_to"
                " WHERE m.recipient = ? AND ((m.state = 'queued' AND m.visible_at <= ?)"
                "   OR (m.state = 'leased' AND m.lease_until < ?))"
                " AND NOT (m.kind = 'reply' AND coalesce(a.await_until, 0) > ?)"
                " ORDER BY m.priority DESC, m.id LIMIT ?", (self.me.role, now, now, now, limit)).fetchall()
            for pk, count in rows:
                if count >= max_deliveries:
                    self.conn.execute("UPDATE messages SET state = 'failed', done_at = ?, lease_until = NULL WHERE id = ?",
                                      (now, pk))
                    dead.append(pk)
                else:
                    self.conn.execute("UPDATE messages SET state = 'leased', lease_until = ?,"
                                      " delivery_count = delivery_count + 1 WHERE id = ?", (now + lease_seconds, pk))
                    leased.append(pk)
            if dead:
                self._audit("comms.dead_letter", {"ids": [self._uuid(pk) for pk in dead]})
        return Claimed([self._row("m.id = ?", (pk,)) for pk in leased], [self._row("m.id = ?", (pk,)) for pk in dead])

    def _uuid(self, pk: int) -> str:
        return self.conn.execute("SELECT msg_uuid FROM messages WHERE id = ?", (pk,)).fetchone()[0]

    def ack(self, msg_id: str, task_ref: str) -> bool:
        msg_id = check_uuid(msg_id)
        with self._tx():
            row = self.conn.execute("SELECT state FROM messages WHERE msg_uuid = ? AND recipient = ?",
                                    (msg_id, self.me.role)).fetchone()
            if row is None:
                return False
            if row[0] in ("queued", "leased", "failed"):
                self.conn.execute("UPDATE messages SET state = 'delivered', delivered_at = ?, lease_until = NULL,"
                                  " task_ref = ? WHERE msg_uuid = ?", (time.time(), task_ref, msg_id))
        return True

    def get(self, msg_id: str) -> Message:
        where, args = self._visible()
        message = self._row(f"m.msg_uuid = ? AND {where}", (check_uuid(msg_id), *args))
        if message is None:
            raise NotFound(f"no message {msg_id} that you sent or received")
        return message

    def thread(self, msg_id: str) -> list[Message]:
        message = self.get(msg_id)
        root_id = message.in_reply_to or message.id
        where, args = self._visible()
        rows = self.conn.execute(
            f"SELECT {COLUMNS} FROM messages m WHERE (m.msg_uuid = ? OR m.correlation_id = ?) AND {where}"
            " ORDER BY m.id", (root_id, root_id, *args)).fetchall()
        return [self._message(r) for r in rows]

    def _whose(self, of: str | None) -> str:
        """The caller's role, or (admins only) the role of agent `of`."""
        if not of:
            return self.me.role
        if self.me.kind != "admin":
            raise NotAllowed("only admins can read another agent's inbox or outbox")
        agent = self.registry.agent(of)
        if agent is None:
            raise NotFound(f"no agent named {of!r} on the bus")
        return agent.role

    def inbox(self, states: list[str] | None = None, limit: int = 100, of: str | None = None) -> list[Message]:
        states = states or ["queued", "leased"]
        bad = [s for s in states if s not in STATES]
        if bad:
            raise InvalidRequest(f"unknown state {bad[0]!r} (states: {', '.join(STATES)})")
        role = self._whose(of)
        marks = ",".join("?" * len(states))
        rows = self.conn.execute(f"SELECT {COLUMNS} FROM messages m WHERE m.recipient = ? AND m.state IN ({marks})"
                                 " ORDER BY m.priority DESC, m.id LIMIT ?", (role, *states, limit)).fetchall()
        return [self._message(r) for r in rows]

    def outbox(self, limit: int = 100, of: str | None = None) -> list[Message]:
        rows = self.conn.execute(f"SELECT {COLUMNS} FROM messages m WHERE m.sender = ? ORDER BY m.id DESC LIMIT ?",
                                 (self._whose(of), limit)).fetchall()
        return [self._message(r) for r in rows]

    def _take_reply(self, ask_id: str) -> Message | None:
        row = self.conn.execute("SELECT id FROM messages WHERE msg_uuid = ? AND sender = ? AND kind = 'ask'",
                                (ask_id, self.me.role)).fetchone()
        if row is None:
            raise NotFound(f"no ask {ask_id} that you sent")
        reply = self.conn.execute("SELECT id FROM messages WHERE in_reply_to = ? AND kind = 'reply'"
                                  " AND state IN ('queued', 'leased')", (row[0],)).fetchone()
        if reply is None:
            return None
        self.conn.execute("UPDATE messages SET state = 'done', done_at = ?, lease_until = NULL WHERE id = ?",
                          (time.time(), reply[0]))
        return self._row("m.id = ?", (reply[0],))

    def wait_reply(self, ask_id: str, timeout: float) -> Message | None:
        ask_id = check_uuid(ask_id)
        deadline = time.monotonic() + max(0.0, timeout)
        first = True
        while True:
            # a write transaction (behind the writer lock) only when there is a reply to take: polling reads
            if first or self._reply_waiting(ask_id):
                first = False
                with self._tx():
                    reply = self._take_reply(ask_id)
                if reply is not None:
                    return reply
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    def _reply_waiting(self, ask_id: str) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM messages a JOIN messages r ON r.in_reply_to = a.id WHERE a.msg_uuid = ? AND a.sender = ?"
            " AND a.kind = 'ask' AND r.kind = 'reply' AND r.state IN ('queued', 'leased')",
            (ask_id, self.me.role)).fetchone() is not None

    def stop_waiting(self, ask_id: str) -> Message | None:
        ask_id = check_uuid(ask_id)
        with self._tx():
            reply = self._take_reply(ask_id)
            self.conn.execute("UPDATE messages SET await_until = NULL WHERE msg_uuid = ?", (ask_id,))
        if reply is None:
            ask = self.get(ask_id)
            recipient = self.registry.by_name(ask.sender)
            if self.wake is not None and recipient is not None and recipient.kind == "agent":
                self.wake(recipient.name)  # a reply may come later: it becomes a task for the asker
        return reply

    def hierarchy(self, msg_id: str) -> list[Message]:
        start = self.conn.execute("SELECT id, parent_id, in_reply_to FROM messages WHERE msg_uuid = ?",
                                  (check_uuid(msg_id),)).fetchone()
        if start is None:
            raise NotFound(f"no message {msg_id}")
        self.get(msg_id)  # visibility
        root = start[0] if start[2] is None else start[2]
        while True:
            up = self.conn.execute("SELECT parent_id FROM messages WHERE id = ?", (root,)).fetchone()
            if up is None or up[0] is None:
                break
            root = up[0]
        rows = self.conn.execute(
            "WITH RECURSIVE tree(id) AS (SELECT ? UNION SELECT m.id FROM messages m JOIN tree t"
            " ON m.parent_id = t.id OR m.in_reply_to = t.id) SELECT id FROM tree", (root,)).fetchall()
        where, args = self._visible()
        ids = [r[0] for r in rows]
        marks = ",".join("?" * len(ids))
        found = self.conn.execute(f"SELECT {COLUMNS} FROM messages m WHERE m.id IN ({marks}) AND {where} ORDER BY m.id",
                                  (*ids, *args)).fetchall()
        return [self._message(r) for r in found]

    def stats(self) -> dict:
        counts = dict(self.conn.execute("SELECT state, count(*) FROM messages WHERE recipient = ? GROUP BY state",
                                        (self.me.role,)).fetchall())
        oldest = self.conn.execute("SELECT min(created_at) FROM messages WHERE recipient = ? AND state IN"
                                   " ('queued', 'leased')", (self.me.role,)).fetchone()[0]
        return {"inbox": {state: counts.get(state, 0) for state in STATES},
                "dead_letters": counts.get("failed", 0),
                "oldest_pending_age_seconds": round(time.time() - oldest, 3) if oldest else 0.0}


    # ---------------------------------------------------------------- shared state

    def _owner(self) -> str:
        return self.me.name if self.me.kind == "agent" else f"human:{self.me.name}"

    def _shared_refuse(self, action: str, key: str, exc: Exception) -> Exception:
        with self._tx():
            self._audit("shared.refused", {"key": key, "op": action, "error": getattr(exc, "code", "error"),
                                           "reason": str(exc)})
        return exc

    def _shared_check(self, key: str, op: str) -> str:
        from keystone_agents.kv.model import KeyRefused, check_key

        key = check_key(key)
        if not may_write(self.me, key):
            raise self._shared_refuse(op, key, KeyRefused(
                f"{self.me.name} may not write {key!r}: it is outside its shared.writePrefixes "
                f"({', '.join(repr(p) for p in self.me.write_prefixes) or 'none'})", key=key))
        return key

    def _entry(self, row) -> dict:
        return {"key": row[0], "value": json.loads(row[1]), "version": row[2], "owner_agent": row[3],
                "updated_at": iso(row[4])}

    def shared_get(self, key: str) -> dict | None:
        row = self.conn.execute("SELECT key, value, version, owner_agent, updated_at FROM shared_state WHERE key = ?",
                                (key,)).fetchone()
        return self._entry(row) if row else None

    def shared_set(self, key: str, value: Any, expected_version: int) -> dict:
        """{"ok": true, "version": N} or {"ok": false, "current_version": M} (the conflict is audited)."""
        from keystone_agents.kv.model import KeyRefused, check_expected, value_text

        key = self._shared_check(key, "set")
        expected = check_expected(expected_version)
        try:
            text = value_text(value, self.registry.max_value_bytes)
        except KeyRefused as exc:
            raise self._shared_refuse("set", key, exc) from None
        digest = hashlib.sha256(text.encode()).hexdigest()
        now = time.time()
        refusal = None
        with self._tx():
            row = self.conn.execute("SELECT version, length(CAST(key AS BLOB)) + length(CAST(value AS BLOB)) FROM shared_state"
                                    " WHERE key = ?", (key,)).fetchone()
            current = row[0] if row else 0
            if current != expected:
                self._audit("shared.set.conflict", {"key": key, "expected": expected, "current": current,
                                                    "value_sha256": digest})
                result = {"ok": False, "current_version": current}
            else:
                used = self.conn.execute("SELECT coalesce(sum(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))), 0)"
                                         " FROM shared_state").fetchone()[0]
                after = used - (row[1] if row else 0) + len(key.encode()) + len(text.encode())
                if after > self.registry.quota_bytes:
                    refusal = KeyRefused(f"the shared state would hold {after} bytes; its quota is "
                                         f"{self.registry.quota_bytes} bytes", key=key)
                    result = None
                else:
                    if row is None:
                        last = self.conn.execute("SELECT max(version) FROM shared_state_history WHERE key = ?",
                                                 (key,)).fetchone()[0]
                        version = (last or 0) + 1
                        self.conn.execute("INSERT INTO shared_state (key, value, version, owner_agent, created_at,"
                                          " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                                          (key, text, version, self._owner(), now, now))
                    else:
                        version = current + 1
                        self.conn.execute("UPDATE shared_state SET value = ?, version = ?, owner_agent = ?,"
                                          " updated_at = ? WHERE key = ?", (text, version, self._owner(), now, key))
                    self.conn.execute("INSERT INTO shared_state_history (key, version, value, deleted, owner_agent, at)"
                                      " VALUES (?, ?, ?, 0, ?, ?)", (key, version, text, self._owner(), now))
                    self._audit("shared.set", {"key": key, "expected": expected, "version": version,
                                               "value_sha256": digest})
                    result = {"ok": True, "version": version}
        if refusal is not None:
            raise self._shared_refuse("set", key, refusal)
        if result["ok"]:
            self._wake_watchers(key)
        return result

    def shared_delete(self, key: str, expected_version: int) -> dict:
        from keystone_agents.kv.model import NoSuchKey, check_expected

        key = self._shared_check(key, "delete")
        expected = check_expected(expected_version)
        now = time.time()
        with self._tx():
            row = self.conn.execute("SELECT version FROM shared_state WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise NoSuchKey(key)
            if row[0] != expected:
                self._audit("shared.delete.conflict", {"key": key, "expected": expected, "current": row[0]})
                return {"ok": False, "current_version": row[0]}
            self.conn.execute("DELETE FROM shared_state WHERE key = ?", (key,))
            self.conn.execute("INSERT INTO shared_state_history (key, version, value, deleted, owner_agent, at)"
                              " VALUES (?, ?, NULL, 1, ?, ?)", (key, row[0] + 1, self._owner(), now))
            self._audit("shared.delete", {"key": key, "expected": expected, "version": row[0] + 1})
        self._wake_watchers(key)
        return {"ok": True, "version": row[0] + 1}

    def _wake_watchers(self, key: str) -> None:
        """After a committed write: wake every other agent whose exec.watchPrefixes match the key, as a message
        wakes its receiver (the agent's drain then reads the change; sql/004's trigger does this on PostgreSQL)."""
        if self.wake is None:
            return
        for watcher in self.registry.watchers(key, self.me):
            self.wake(watcher.name)

    def shared_list(self, prefix: str = "") -> list[dict]:
        rows = self.conn.execute("SELECT key, value, version, owner_agent, updated_at FROM shared_state"
                                 " WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix)).fetchall()
        return [self._entry(r) for r in rows]

    def _change(self, row) -> dict:
        return {"seq": row[0], "key": row[1], "version": row[2], "value": json.loads(row[3]) if row[3] else None,
                "deleted": bool(row[4]), "owner_agent": row[5], "at": iso(row[6])}

    def shared_history(self, key: str) -> list[dict]:
        rows = self.conn.execute("SELECT seq, key, version, value, deleted, owner_agent, at FROM shared_state_history"
                                 " WHERE key = ? ORDER BY version", (key,)).fetchall()
        return [self._change(r) for r in rows]

    def shared_changes(self, prefix: str = "", after_seq: int = 0, limit: int = 1000, timeout: float = 0) -> list[dict]:
        """Changes (writes and deletes) after `after_seq` in order; waits up to `timeout` for the first one."""
        deadline = time.monotonic() + max(0.0, min(float(timeout), 300.0))
        while True:
            rows = self.conn.execute(
                "SELECT seq, key, version, value, deleted, owner_agent, at FROM shared_state_history"
                " WHERE seq > ? AND substr(key, 1, ?) = ? ORDER BY seq LIMIT ?",
                (int(after_seq), len(prefix), prefix, int(limit))).fetchall()
            if rows or time.monotonic() >= deadline:
                return [self._change(r) for r in rows]
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    # ---------------------------------------------------------------- audit log (admins read)

    def _admin_only(self, what: str) -> None:
        if self.me.kind != "admin":
            raise NotAllowed(f"only admins (root, agent-admins) can {what}")

    def audit_rows(self, after_seq: int = 0, limit: int = 1000, actor: str | None = None,
                   action: str | None = None, since: str | None = None) -> list[dict]:
        self._admin_only("read the audit log")
        where, args = ["seq > ?"], [int(after_seq)]
        if actor:
            principal = self.registry.by_name(actor)
            where.append("actor = ?")
            args.append(principal.role if principal else actor)
        if action:
            where.append("(action = ? OR action LIKE ?)")
            args += [action, f"{action}.%"]
        if since:
            where.append("at >= ?")
            args.append(since)
        rows = self.conn.execute(f"SELECT seq, at, actor, action, entry, prev_hash, hash FROM audit_log"
                                 f" WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?", (*args, int(limit))).fetchall()
        return [{"seq": r[0], "at": r[1], "actor": r[2], "action": r[3], "entry": r[4], "prev_hash": r[5],
                 "hash": r[6]} for r in rows]

    def audit_head(self) -> dict:
        self._admin_only("read the audit log")
        row = self.conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        return {"seq": row[0], "hash": row[1]} if row else {"seq": 0, "hash": audit_chain.GENESIS.hex()}

    def audit_append(self, action: str, detail: dict) -> dict:
        """An admin's own entry (e.g. audit.anchor); agents' entries come only from their bus operations."""
        self._admin_only("append to the audit log")
        if not isinstance(action, str) or not action.startswith(("audit.", "approval.", "policy.")):
            raise InvalidRequest("only audit.*, approval.* and policy.* actions can be appended directly")
        with self._tx():
            self._audit(action, detail if isinstance(detail, dict) else {"detail": detail})
        return self.audit_head()


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT (ROLLBACK on an exception), inside the database's writer lock."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.lock = getattr(conn, "writer", None)

    def __enter__(self):
        if self.lock is not None:
            self.lock.__enter__()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            if self.lock is not None:
                self.lock.__exit__(None, None, None)
            raise
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        try:
            try:
                self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
            except sqlite3.Error:
                if self.conn.in_transaction:  # a failed COMMIT leaves it open: the next request starts clean
                    self.conn.execute("ROLLBACK")
                raise
        finally:
            if self.lock is not None:
                self.lock.__exit__(None, None, None)
        return False
