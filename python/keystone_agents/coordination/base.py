"""The `Bus` interface every backend implements, its message envelope and its errors.

Ids are UUIDs chosen by the sender (a retried send with the same id creates no second message). Agents are
named by their short name (`beta`); humans (admins) by their user name. Timestamps are the bus's clock.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

KINDS = ("message", "ask", "reply")
STATES = ("queued", "leased", "delivered", "done", "failed")
PRIORITIES = {"low": -1, "normal": 0, "high": 1}
PRIORITY_NAMES = {v: k for k, v in PRIORITIES.items()}
REPLY_STATUSES = ("ok", "failed")
BODY_MAX_BYTES = 256 * 1024
SUBJECT_MAX = 500
DEFAULT_MAX_DEPTH = 3
DEFAULT_SENDS_PER_HOUR = 120
DEFAULT_MAX_DELIVERIES = 5
DEFAULT_LEASE_SECONDS = 300.0
SOURCE = "comms"  # the task source of a received message
REF_PREFIX = "comms-"  # its source_ref: comms-<uuid>
# uuid5 namespace of replies: the reply to ask X has the id uuid5(NS, "X:reply"), whoever sends it (the
# runtime after the task, or the agent with `comms reply`), so there is one reply per ask, ever.
REPLY_NAMESPACE = uuid.UUID("6f1f8a52-5a3c-4d1e-9b7e-6b6579737430")


def reply_id(ask_id: str) -> str:
    return str(uuid.uuid5(REPLY_NAMESPACE, f"{ask_id}:reply"))


def source_ref(msg_id: str) -> str:
    return f"{REF_PREFIX}{msg_id}"


def msg_id_of(ref: str | None) -> str | None:
    """The message id in a task's source_ref `comms-<uuid>`, or None."""
    if not ref or not ref.startswith(REF_PREFIX):
        return None
    try:
        return str(uuid.UUID(ref[len(REF_PREFIX):]))
    except ValueError:
        return None


def check_uuid(value: str, what: str = "message id") -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise InvalidRequest(f"{what} {value!r} is not a UUID") from None


class BusError(Exception):
    """A refusal or failure the caller can act on; `code` names it on the wire and in --json output."""

    code = "BusError"

    def __init__(self, message: str, **detail: Any):
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_json(self) -> dict:
        return {"error": self.code, "message": self.message, **self.detail}


class NotAllowed(BusError):
    code = "NotAllowed"


class RateLimited(NotAllowed):
    code = "RateLimited"


class DepthExceeded(NotAllowed):
    code = "DepthExceeded"


class NotFound(BusError):
    code = "NotFound"


class InvalidRequest(BusError):
    code = "InvalidRequest"


class Unavailable(BusError):
    """The bus cannot be reached (no broker socket, database down, backend not configured)."""

    code = "Unavailable"


ERRORS = {cls.code: cls for cls in (BusError, NotAllowed, RateLimited, DepthExceeded, NotFound, InvalidRequest,
                                    Unavailable)}


def error_from_json(data: dict) -> BusError:
    cls = ERRORS.get(str(data.get("error")), BusError)
    detail = {k: v for k, v in data.items() if k not in ("error", "message", "ok")}
    error = cls(str(data.get("message") or data.get("error") or "bus error"), **detail)
    if cls is BusError and data.get("error"):
        error.code = str(data["error"])  # a capability's own error (kv.model): its code survives the wire
    return error


@dataclass
class Message:
    id: str
    kind: str
    sender: str
    recipient: str
    body: Any
    subject: str = ""
    priority: int = 0
    state: str = "queued"
    depth: int = 0
    correlation_id: str | None = None
    in_reply_to: str | None = None
    awaiting: bool = False
    status: str | None = None  # replies: ok | failed
    delivery_count: int = 0
    created_at: str | None = None
    delivered_at: str | None = None
    done_at: str | None = None
    task_ref: str | None = None
    created: bool = field(default=True, compare=False)  # send(): False when the id already existed

    def to_json(self) -> dict:
        data = asdict(self)
        data["priority"] = PRIORITY_NAMES.get(self.priority, str(self.priority))
        data["from"] = data.pop("sender")
        data["to"] = data.pop("recipient")
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Message":
        data = dict(data)
        data["sender"] = data.pop("from")
        data["recipient"] = data.pop("to")
        prio = data.get("priority", 0)
        data["priority"] = PRIORITIES.get(prio, prio) if isinstance(prio, str) else int(prio)
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def body_text(self) -> str:
        if isinstance(self.body, str):
            return self.body
        import json

        return json.dumps(self.body, ensure_ascii=False, indent=2)

    @property
    def reason(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("reason") or "")
        return ""


@dataclass
class Claimed:
    messages: list[Message]
    dead: list[Message]  # dead-lettered by this claim (delivered maxDeliveries times, never acknowledged)


class Bus(Protocol):
    """One agent's (or one admin's) connection to the bus. The identity is the caller's OS user, never a
    name it claims."""

    def identity(self) -> dict:
        """{"name", "role", "kind": agent|admin, "backend"}."""
        ...

    def send(self, to: str | None, body: Any, *, kind: str = "message", subject: str = "", priority: int = 0,
             msg_id: str | None = None, in_reply_to: str | None = None, parent: str | None = None,
             awaiting: bool = False, status: str | None = None) -> Message:
        """Send (idempotent by msg_id). A reply names the ask in `in_reply_to` and goes to the ask's sender;
        `parent` is the message whose task is sending (depth = its depth + 1). Raises NotAllowed,
        RateLimited, DepthExceeded, NotFound, InvalidRequest."""
        ...

    def claim(self, limit: int, lease_seconds: float, max_deliveries: int) -> Claimed:
        """Lease up to `limit` messages of the caller's inbox (queued, or leased with an expired lease)."""
        ...

    def ack(self, msg_id: str, task_ref: str) -> bool:
        """The message is a task now (TASKS.yaml saved): delivered. False if it is not the caller's."""
        ...

    def get(self, msg_id: str) -> Message:
        ...

    def thread(self, msg_id: str) -> list[Message]:
        """The ask and its reply (or the message alone), oldest first, as far as the caller may see."""
        ...

    def inbox(self, states: list[str] | None = None, limit: int = 100, of: str | None = None) -> list[Message]:
        """The caller's inbox (admins: agent `of`'s), by default what is not a task yet."""
        ...

    def outbox(self, limit: int = 100, of: str | None = None) -> list[Message]:
        ...

    def wait_reply(self, ask_id: str, timeout: float) -> Message | None:
        """Block until the reply to the caller's ask arrives (taken: it becomes no task) or `timeout`."""
        ...

    def stop_waiting(self, ask_id: str) -> Message | None:
        """Give up waiting: a reply already there is returned (taken); a later one becomes a task."""
        ...

    def hierarchy(self, msg_id: str) -> list[Message]:
        """Every message of the delegation tree `msg_id` belongs to, as far as the caller may see."""
        ...

    def stats(self) -> dict:
        """The caller's inbox by state, its dead letters, and backend figures (notify_queue_usage)."""
        ...

    # ---- shared state (kv/shared.py wraps these in Entry/Version and VersionConflict)

    def shared_get(self, key: str) -> dict | None:
        """{key, value, version, owner_agent, updated_at}, or None. Every caller may read every key."""
        ...

    def shared_set(self, key: str, value: Any, expected_version: int) -> dict:
        """{"ok": True, "version": N} or {"ok": False, "current_version": M} (a conflict is returned, not
        raised, so its audit entry commits). Raises KeyRefused (prefix, size, quota), InvalidRequest."""
        ...

    def shared_delete(self, key: str, expected_version: int) -> dict:
        ...

    def shared_list(self, prefix: str = "") -> list[dict]:
        ...

    def shared_history(self, key: str) -> list[dict]:
        """Every version of `key` (deletes included): {seq, key, version, value, deleted, owner_agent, at}."""
        ...

    def shared_changes(self, prefix: str = "", after_seq: int = 0, limit: int = 1000,
                       timeout: float = 0.0) -> list[dict]:
        """The changes after `after_seq` in commit order (waits up to `timeout` for the first)."""
        ...

    # ---- audit log (admins only)

    def audit_rows(self, after_seq: int = 0, limit: int = 1000, actor: str | None = None,
                   action: str | None = None, since: str | None = None) -> list[dict]:
        """{seq, at, actor, action, entry, prev_hash, hash} in seq order."""
        ...

    def audit_head(self) -> dict:
        """{seq, hash} of the newest entry (seq 0 and the zero hash when empty)."""
        ...

    def audit_append(self, action: str, detail: dict) -> dict:
        ...

    # ---- policy decisions and the approval queue (policy/hook.py; agents request/consume, admins decide)

    def policy_notify(self, detail: dict) -> dict:
        """Audit a notify/blocked decision of the caller's hook (`policy.decision`); notify also messages the
        admins."""
        ...

    def approval_request(self, id: str, task: str, run_id: str, action: dict, capability: str,
                         action_sha256: str, rule: str) -> dict:
        """File (or find the pending) approval of this action of this task: {id, agent, task, action, state,
        requested_at, …, created}. Agents only."""
        ...

    def approval_consume(self, action_sha256: str, task: str) -> str | None:
        """Use one approved grant of the caller for this action of this task: its id, or None."""
        ...

    def approval_get(self, id: str) -> dict:
        ...

    def approvals_list(self, state: str | None = None, agent: str | None = None, limit: int = 500) -> list[dict]:
        ...

    def approval_decide(self, id: str, approve: bool, note: str | None = None) -> dict:
        """Admins only (NotAllowed for an agent, audited): approve or reject a pending approval; wakes the agent."""
        ...

    def close(self) -> None:
        ...
