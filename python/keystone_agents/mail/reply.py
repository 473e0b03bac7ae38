"""Replies to email tasks by task name, never by address.

Ingest records, for every task made from an email, who wrote it, the subject, the Message-ID and the References
(`email-replies.json` in the state dir). The task's description names only `keystone-agent mail reply --task
NAME` (written with shlex.join), so nothing an email's sender wrote ever becomes part of a command line; the
command looks the rest up here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from keystone_agents import sanitize

ADDRESS = re.compile(r"^[^@\s<>,]+@[^@\s<>,]+$")  # what `mail send --to` and `mail reply` accept
KEPT = 5000  # newest email tasks remembered
MESSAGE_ID = re.compile(r"^<[^<>\s]+>$")


class ReplyError(Exception):
    """No reply possible for this task; the message says why."""


@dataclass(frozen=True)
class ReplyTo:
    task: str
    to: str
    subject: str
    message_id: str
    references: list[str]


def hint(task: str) -> str:
    """The line an email task's description carries: the whole command line, quoted, body on stdin."""
    return "Reply (write the body on stdin): " + sanitize.command_line(["keystone-agent", "mail", "reply", "--task", task])


def with_hint(description: str, task: str) -> str:
    """An email task's description with the reply hint as its second line (the first says who wrote)."""
    first, _, rest = description.partition("\n")
    return f"{first}\n{hint(task)}" + (f"\n{rest}" if rest else "")


def answerable(entry: dict, raw: Any) -> bool:
    return _record(entry, raw) is not None


def reply_subject(subject: str) -> str:
    subject = sanitize.clean_text(subject, field="subject", limit=900) or "(no subject)"
    return subject if subject.lower().startswith("re:") else f"Re: {subject}"


def _record(entry: dict, raw: Any) -> dict | None:
    if not isinstance(raw, dict) or entry.get("source") != "email":
        return None
    sender = str(raw.get("from") or "").strip().lower()
    if not ADDRESS.match(sender):
        return None
    message_id = str(raw.get("message_id") or "").strip()
    if message_id and not message_id.startswith("<"):
        message_id = f"<{message_id}>"
    refs = raw.get("references") if isinstance(raw.get("references"), list) else []
    return {
        "to": sender,
        "subject": sanitize.clean_text(str(raw.get("subject") or ""), field="subject"),
        "message_id": message_id if MESSAGE_ID.match(message_id) else "",
        "references": [r for r in refs if isinstance(r, str) and MESSAGE_ID.match(r)][-50:],
        "source_ref": entry.get("source_ref"),
    }


def record_tasks(path: Path, entries: Iterable[dict], items: Iterable[Any]) -> int:
    """Remember the reply data of every new email task (`items`: ingest's Items, matched by source_ref)."""
    by_ref = {item.source_ref: item for item in items}
    records = {}
    for entry in entries:
        item = by_ref.get(entry.get("source_ref"))
        record = _record(entry, getattr(item, "raw", None)) if item is not None else None
        if record:
            records[entry["name"]] = record
    if not records:
        return 0
    from keystone_agents.atomic import write_atomic

    known = _load(path)
    known.update(records)
    if len(known) > KEPT:
        known = dict(list(known.items())[-KEPT:])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(known, ensure_ascii=False, indent=1) + "\n")
    return len(records)


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def lookup(path: Path, task: str) -> ReplyTo:
    record = _load(path).get(task)
    if not isinstance(record, dict):
        raise ReplyError(f"task {task!r} was not made from an email (nothing recorded in {path})")
    to = str(record.get("to") or "")
    if not ADDRESS.match(to):
        raise ReplyError(f"task {task!r}: the recorded sender is not an address that can be answered")
    message_id = str(record.get("message_id") or "")
    refs = [r for r in record.get("references") or [] if isinstance(r, str) and MESSAGE_ID.match(r)]
    return ReplyTo(task, to, reply_subject(str(record.get("subject") or "")),
                   message_id if MESSAGE_ID.match(message_id) else "", refs)
