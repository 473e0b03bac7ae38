"""The comms source: the task loop's sweep of the agent's bus inbox (the wake path unit's `comms drain` is the
fast path; this catches whatever a lost wake-up left behind, at most one timer tick later).

fetch() claims (leases) the messages and sends replies still waiting to be sent; the loop ingests the items
(dedup by source_ref comms-<uuid>: once, ever) and saves TASKS.yaml; only then commit() acknowledges them. A
crash in between lets the lease expire and the message is redelivered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keystone_agents.sources.base import FetchResult, SourceFailed


@dataclass
class CommsSource:
    settings: Any  # config.CoordinationSettings
    state_dir: Path
    config: Any = None  # the agent's Config (metrics)
    log: Any = None
    limit: int = 100
    name: str = "comms"
    project: str | None = None
    _bus: Any = field(default=None, repr=False)

    def fetch(self) -> FetchResult:
        from keystone_agents.coordination.base import BusError, source_ref
        from keystone_agents.coordination.comms import flush_replies, task_item
        from keystone_agents.coordination.factory import open_bus

        started = time.monotonic()
        try:
            bus = open_bus(self.settings)
            flush_replies(bus, self.state_dir, self.log)
            claimed = bus.claim(self.limit, self.settings.lease_seconds, self.settings.max_deliveries)
        except BusError as exc:
            raise SourceFailed(f"comms: {exc.message}") from None
        for message in claimed.dead:
            if self.log:
                self.log.warning("message_dead_lettered", msg=f"message {message.id} from {message.sender} "
                                 f"dead-lettered after {message.delivery_count} deliveries", status="failed",
                                 message_id=message.id, sender=message.sender, kind=message.kind,
                                 deliveries=message.delivery_count)
        messages = claimed.messages
        if self.config is not None:
            from keystone_agents.coordination.observe import age_seconds, write_sweep

            late = [m for m in messages if age_seconds(m.created_at) > self.settings.wake_grace_seconds]
            write_sweep(self.config, self.state_dir, len(late))
            if late and self.log:
                self.log.warning("log", msg=f"comms: the sweep found {len(late)} message(s) the wake path missed "
                                 f"(older than {self.settings.wake_grace_seconds:g}s): is agent-"
                                 f"{self.config.agent_name}-comms.path failed?", status="error", messages=len(late))

        def commit() -> None:
            try:
                for message in messages:
                    bus.ack(message.id, source_ref(message.id))
                    if self.log:
                        self.log.info("message_received", msg=f"{message.kind} {message.id} from {message.sender}",
                                      status="delivered", message_id=message.id, sender=message.sender,
                                      kind=message.kind, depth=message.depth, deliveries=message.delivery_count,
                                      source_ref=source_ref(message.id))
                if self.config is not None:
                    from keystone_agents.coordination.observe import record

                    record(bus, self.config, self.state_dir, messages)
            finally:
                bus.close()

        if not messages:
            if self.config is not None:
                from keystone_agents.coordination.observe import record

                record(bus, self.config, self.state_dir, [])
            bus.close()
        return FetchResult(self.name, None, [task_item(m) for m in messages], time.monotonic() - started,
                           commit=commit if messages else None)
