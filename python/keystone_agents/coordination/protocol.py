"""The local broker's wire protocol, shared by the client (local.py) and the server (broker.py).

One JSON object per line each way. Request: {"op": OP, "args": {...}}. Answer: {"ok": true, "result": R} or
{"ok": false, "error": CODE, "message": TEXT, ...}. The ops are the `Bus` methods 1:1 (OPS); messages travel
as their envelope (`Message.to_json`), a claim as {"messages": [...], "dead": [...]}.
"""

from __future__ import annotations

import json
from typing import Any

from keystone_agents.coordination.base import Claimed, Message

OPS = ("identity", "send", "claim", "ack", "get", "thread", "inbox", "outbox", "wait_reply", "stop_waiting",
       "hierarchy", "stats", "shared_get", "shared_set", "shared_delete", "shared_list", "shared_history",
       "shared_changes", "audit_rows", "audit_head", "audit_append", "policy_notify", "approval_request",
       "approval_consume", "approval_get", "approvals_list", "approval_decide")
LINE_MAX = 1024 * 1024  # a request line longer than this is refused (bodies are at most 256 KiB)


def encode(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def result_to_json(value: Any) -> Any:
    if isinstance(value, Message):
        return value.to_json()
    if isinstance(value, Claimed):
        return {"messages": [m.to_json() for m in value.messages], "dead": [m.to_json() for m in value.dead]}
    if isinstance(value, list):
        return [result_to_json(v) for v in value]
    return value


def message_or_none(data: Any) -> Message | None:
    return Message.from_json(data) if data else None
