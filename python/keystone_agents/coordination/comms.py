"""Comms on the agent's side: received messages become tasks, finished asks get their reply.

Delivery: `claim` leases messages, they are appended to TASKS.yaml as pending tasks (`source: comms`,
`source_ref: comms-<uuid>`, deduplicated against TASKS.yaml and TASKS.archive.yaml: once, ever) under the
tasks lock, and only after the file is saved are they acknowledged. A crash before the ack leaves the lease to
expire and the message is redelivered; dedup keeps it one task. `comms drain` (the comms path unit) and the
task loop's prefetch (the timer's sweep) both do this.

Replies: when a task made from an ask ends (completed or blocked), the runtime sends the reply: the report's
`reply`, else its `message` (status ok), or {status: failed, reason} when it ends blocked. The reply's id is
derived from the ask's (base.reply_id), so a resend after a crash, or an agent that already replied with
`comms reply`, never makes a second one. A reply that cannot be sent now waits in the state dir
(comms-replies/) and is retried by the next drain or loop run.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keystone_agents.coordination.base import (
    SOURCE, BusError, Message, NotAllowed, msg_id_of, source_ref,
)

PENDING_REPLIES = "comms-replies"
RUN_REQUESTED = "run-requested"
CLAIM_BATCH = 100
PARENT_ENV = "KEYSTONE_COMMS_PARENT"  # the message whose task is running (depth of what it sends)


def task_item(message: Message) -> dict:
    """The task a received message becomes (ingest's item shape)."""
    who = message.sender
    if message.kind == "ask":
        title = message.subject or f"answer {who}'s question"
        how = (f"{who} asked this (ask {message.id}). Write your answer as `reply` (or `message`) in the task "
               f"report ($KEYSTONE_TASK_RESULT); the runtime sends it to {who} when the task ends.")
    elif message.kind == "reply":
        title = message.subject or f"reply from {who}"
        how = f"{who} replied ({message.status or 'ok'}) to your ask {message.in_reply_to}."
    else:
        title = message.subject or f"message from {who}"
        how = f"Message {message.id} from {who}."
    return {"source": SOURCE, "source_ref": source_ref(message.id), "name": title,
            "description": f"{message.body_text}\n\n({how})"}


# ---------------------------------------------------------------- drain


@dataclass
class DrainResult:
    received: list[Message] = field(default_factory=list)  # acknowledged (new tasks or already tasks)
    created: list[str] = field(default_factory=list)  # task names created
    dead: list[Message] = field(default_factory=list)
    replies_sent: list[Message] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)  # tasks an approval made runnable again

    def to_json(self) -> dict:
        return {"received": [m.id for m in self.received], "tasks_created": self.created,
                "dead_lettered": [m.id for m in self.dead], "replies_sent": [m.id for m in self.replies_sent],
                "tasks_resumed": self.resumed}


def save_as_tasks(space, messages: list[Message]) -> list[str]:
    """Append the messages as tasks (dedup once, ever) under the tasks lock; → names created."""
    return save_as_items(space, [task_item(m) for m in messages], SOURCE)


def save_as_items(space, raw_items: list[dict], source: str) -> list[str]:
    """Append raw source items (ingest's shape: source, source_ref, name, description) as pending tasks, dedup
    by source_ref against TASKS.yaml and the archive (once, ever), under the tasks lock; → names created."""
    from keystone_agents import sanitize
    from keystone_agents.lock import hold
    from keystone_agents.loop import ingest
    from keystone_agents.taskfile import TaskFile, read_plain
    from keystone_agents.timeutil import iso_z

    if not raw_items:
        return []
    with hold(space.tasks_lock_file):
        tf = TaskFile.load(space.tasks_file)
        archive = read_plain(space.tasks_archive_file)
        known = {e.get("source_ref") for e in tf.entries if isinstance(e.data, dict) and e.get("source_ref")}
        known |= {e.get("source_ref") for e in archive if e.get("source_ref")}
        names = {e.name for e in tf.entries if isinstance(e.name, str)} | {e.get("name") for e in archive}
        items = []
        for raw in raw_items:  # the one normalisation (sanitize.py): an item that cannot be made safe
            try:               # (a lone surrogate) is dropped, not a crash of the drain
                items.append(ingest.normalize(source, None, raw))
            except sanitize.UnsafeText:
                continue
        new, _ = ingest.new_tasks([i for i in items if i], known, ingest.Namer(n for n in names if n), iso_z(),
                                  spill_dir=space.task_texts_dir)
        for entry in new:
            tf.append(entry)
        if new:
            tf.save()
    return [entry["name"] for entry in new]


def drain(bus, space, settings, log=None, limit: int | None = None) -> DrainResult:
    """Claim → save as tasks → ack, until the inbox is empty (or `limit` messages); then ask for a loop run."""
    result = DrainResult()
    result.replies_sent = flush_replies(bus, space.state_dir, log)
    from keystone_agents.policy.outcome import resume_decided

    result.resumed = resume_decided(bus, space, log)  # tasks blocked on an approval a human decided
    while limit is None or len(result.received) < limit:
        batch = CLAIM_BATCH if limit is None else min(CLAIM_BATCH, limit - len(result.received))
        claimed = bus.claim(batch, settings.lease_seconds, settings.max_deliveries)
        for message in claimed.dead:
            result.dead.append(message)
            if log:
                log.warning("message_dead_lettered", msg=f"message {message.id} from {message.sender} dead-lettered "
                            f"after {message.delivery_count} deliveries", status="failed", message_id=message.id,
                            sender=message.sender, kind=message.kind, deliveries=message.delivery_count)
        if not claimed.messages:
            if not claimed.dead:
                break
            continue
        result.created += save_as_tasks(space, claimed.messages)
        for message in claimed.messages:
            bus.ack(message.id, source_ref(message.id))
            result.received.append(message)
            if log:
                log.info("message_received", msg=f"{message.kind} {message.id} from {message.sender} is task "
                         f"{source_ref(message.id)}", status="delivered", message_id=message.id,
                         sender=message.sender, kind=message.kind, depth=message.depth,
                         deliveries=message.delivery_count, source_ref=source_ref(message.id))
    if result.created or result.resumed:
        request_run(space.state_dir)
    return result


def request_run(state_dir: Path) -> None:
    """Touch state/run-requested: agent-<name>-loop-rerun.path (PathExists) starts the task loop, and starts it
    again right after a run that was busy when the file appeared (the loop removes it when it starts)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / RUN_REQUESTED
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"{time.time():.3f}\n")


# ---------------------------------------------------------------- replies


def reply_for(status: str, report: dict | None, message: str, blocked_reason: str | None) -> tuple[Any, str]:
    """(body, reply status) of the reply to an ask whose task ended with `status`."""
    if status == "completed":
        if report and report.get("reply") is not None:
            return report["reply"], "ok"
        return (message or (report or {}).get("message") or "done"), "ok"
    reason = blocked_reason or message or "the task was blocked"
    return {"status": "failed", "reason": reason}, "failed"


def queue_reply(state_dir: Path, ask_id: str, body: Any, status: str) -> Path:
    directory = state_dir / PENDING_REPLIES
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{ask_id}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"ask_id": ask_id, "body": body, "status": status}), encoding="utf-8")
    os.replace(tmp, path)
    return path


def flush_replies(bus, state_dir: Path, log=None) -> list[Message]:
    """Send every queued reply (idempotent: the reply id is derived from the ask)."""
    directory = state_dir / PENDING_REPLIES
    sent: list[Message] = []
    if not directory.is_dir():
        return sent
    for path in sorted(directory.glob("*.json")):
        try:
            pending = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        try:
            reply = bus.send(None, pending["body"], kind="reply", in_reply_to=pending["ask_id"],
                             status=pending["status"])
        except NotAllowed as exc:
            if "already has a reply" not in exc.message and "is not an ask" not in exc.message:
                if log:
                    log.warning("log", msg=f"reply to {pending['ask_id']} refused: {exc.message}", status="error")
            path.unlink(missing_ok=True)  # the agent replied itself, or the bus will never take it
            continue
        except BusError as exc:
            if log:
                log.warning("log", msg=f"reply to {pending['ask_id']} not sent yet: {exc.message}", status="error",
                            message_id=pending["ask_id"])
            if exc.code == "Unavailable":
                break
            continue
        path.unlink(missing_ok=True)
        if reply.created:
            sent.append(reply)
            if log:
                log.info("reply_sent", msg=f"reply {reply.id} ({reply.status}) to {reply.recipient} for ask "
                         f"{pending['ask_id']}", status=reply.status, message_id=reply.id,
                         in_reply_to=pending["ask_id"], recipient=reply.recipient)
    return sent


def after_task(config, state_dir: Path, entry_source_ref: str | None, status: str, report: dict | None,
               message: str, blocked_reason: str | None, log=None) -> None:
    """Called by the task loop when a task reaches completed or blocked: reply if it was made from an ask."""
    ask_id = msg_id_of(entry_source_ref)
    if ask_id is None or config.coordination.backend == "none" or status not in ("completed", "blocked"):
        return
    from keystone_agents.coordination.factory import open_bus

    body, reply_status = reply_for(status, report, message, blocked_reason)
    queue_reply(state_dir, ask_id, body, reply_status)  # kept until the bus took it (or refused it for good)
    try:
        bus = open_bus(config.coordination)
    except BusError as exc:
        if log:
            log.warning("log", msg=f"comms: reply to {ask_id} not sent yet: {exc.message}", status="error")
        return
    try:
        flush_replies(bus, state_dir, log)
    finally:
        bus.close()
