"""The local backend's client: the `Bus` over the broker's unix socket (one connection per LocalBus)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from keystone_agents.coordination import protocol
from keystone_agents.coordination.base import Claimed, Message, Unavailable, error_from_json


class LocalBus:
    backend = "local"

    def __init__(self, socket_path: str | Path, timeout: float = 60.0):
        self.socket_path = Path(socket_path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._reader = None

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.socket_path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise Unavailable(f"the local bus broker is not running (no listener on {self.socket_path}: "
                              f"{exc.strerror}); start keystone-bus.socket") from None
        except PermissionError:
            sock.close()
            raise Unavailable(f"cannot connect to the bus broker at {self.socket_path}: permission denied") from None
        self._sock, self._reader = sock, sock.makefile("rb")

    def _call(self, op: str, _io_timeout: float | None = None, **args: Any) -> Any:
        if self._sock is None:
            self._connect()
        assert self._sock is not None and self._reader is not None
        self._sock.settimeout(_io_timeout if _io_timeout is not None else self.timeout)
        try:
            self._sock.sendall(protocol.encode({"op": op, "args": args}))
            line = self._reader.readline()
        except (OSError, socket.timeout) as exc:
            self.close()
            raise Unavailable(f"the bus broker did not answer ({exc})") from None
        if not line:
            self.close()
            raise Unavailable("the bus broker closed the connection")
        answer = json.loads(line)
        if not answer.get("ok"):
            error = error_from_json(answer)
            if error.code in ("NotAllowed", "Unavailable") and op == "identity":
                self.close()
            raise error
        return answer.get("result")

    # ------------------------------------------------------------ the Bus

    def identity(self) -> dict:
        return {**self._call("identity"), "backend": self.backend}

    def send(self, to, body, *, kind="message", subject="", priority=0, msg_id=None, in_reply_to=None,
             parent=None, awaiting=False, status=None) -> Message:
        data = self._call("send", to=to, body=body, kind=kind, subject=subject, priority=priority, msg_id=msg_id,
                          in_reply_to=in_reply_to, parent=parent, awaiting=awaiting, status=status)
        return Message.from_json(data)

    def claim(self, limit, lease_seconds, max_deliveries) -> Claimed:
        data = self._call("claim", limit=limit, lease_seconds=lease_seconds, max_deliveries=max_deliveries)
        return Claimed([Message.from_json(m) for m in data["messages"]], [Message.from_json(m) for m in data["dead"]])

    def ack(self, msg_id, task_ref) -> bool:
        return bool(self._call("ack", msg_id=msg_id, task_ref=task_ref))

    def get(self, msg_id) -> Message:
        return Message.from_json(self._call("get", msg_id=msg_id))

    def thread(self, msg_id) -> list[Message]:
        return [Message.from_json(m) for m in self._call("thread", msg_id=msg_id)]

    def inbox(self, states=None, limit=100, of=None) -> list[Message]:
        return [Message.from_json(m) for m in self._call("inbox", states=states, limit=limit, of=of)]

    def outbox(self, limit=100, of=None) -> list[Message]:
        return [Message.from_json(m) for m in self._call("outbox", limit=limit, of=of)]

    def wait_reply(self, ask_id, timeout) -> Message | None:
        return protocol.message_or_none(self._call("wait_reply", _io_timeout=timeout + 30, ask_id=ask_id,
                                                   timeout=timeout))

    def stop_waiting(self, ask_id) -> Message | None:
        return protocol.message_or_none(self._call("stop_waiting", ask_id=ask_id))

    def hierarchy(self, msg_id) -> list[Message]:
        return [Message.from_json(m) for m in self._call("hierarchy", msg_id=msg_id)]

    def stats(self) -> dict:
        return self._call("stats")

    # shared state and audit log: plain JSON both ways (kv/shared.py gives them their types)

    def shared_get(self, key) -> dict | None:
        return self._call("shared_get", key=key)

    def shared_set(self, key, value, expected_version) -> dict:
        return self._call("shared_set", key=key, value=value, expected_version=expected_version)

    def shared_delete(self, key, expected_version) -> dict:
        return self._call("shared_delete", key=key, expected_version=expected_version)

    def shared_list(self, prefix="") -> list[dict]:
        return self._call("shared_list", prefix=prefix)

    def shared_history(self, key) -> list[dict]:
        return self._call("shared_history", key=key)

    def shared_changes(self, prefix="", after_seq=0, limit=1000, timeout=0.0) -> list[dict]:
        return self._call("shared_changes", _io_timeout=float(timeout) + 30, prefix=prefix, after_seq=after_seq,
                          limit=limit, timeout=timeout)

    def audit_rows(self, after_seq=0, limit=1000, actor=None, action=None, since=None) -> list[dict]:
        return self._call("audit_rows", after_seq=after_seq, limit=limit, actor=actor, action=action, since=since)

    def audit_head(self) -> dict:
        return self._call("audit_head")

    def audit_append(self, action, detail) -> dict:
        return self._call("audit_append", action=action, detail=detail)

    # policy decisions and the approval queue (policy/hook.py, agentctl approvals)

    def policy_notify(self, detail) -> dict:
        return self._call("policy_notify", detail=detail)

    def approval_request(self, id, task, run_id, action, capability, action_sha256, rule) -> dict:
        return self._call("approval_request", id=id, task=task, run_id=run_id, action=action, capability=capability,
                          action_sha256=action_sha256, rule=rule)

    def approval_consume(self, action_sha256, task) -> str | None:
        return self._call("approval_consume", action_sha256=action_sha256, task=task)

    def approval_get(self, id) -> dict:
        return self._call("approval_get", id=id)

    def approvals_list(self, state=None, agent=None, limit=500) -> list[dict]:
        return self._call("approvals_list", state=state, agent=agent, limit=limit)

    def approval_decide(self, id, approve, note=None) -> dict:
        return self._call("approval_decide", id=id, approve=approve, note=note)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._reader = None
