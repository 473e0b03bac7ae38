"""The watched-keys source: the task loop's sweep of the shared keys changed under exec.watchPrefixes (the
wake path's `comms drain` is the fast path; this catches a lost wake-up at the next run). Each changed key is
one item (source `shared`, source_ref `shared-<key>@v<version>`); the cursor moves in commit(), once the
items are in TASKS.yaml. Not used by proactive agents: their think cycle's briefing reports the changes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keystone_agents.sources.base import FetchResult, SourceFailed


@dataclass
class SharedWatchSource:
    config: Any  # the agent's Config
    state_dir: Path
    log: Any = None
    name: str = "shared"
    project: str | None = None

    def fetch(self) -> FetchResult:
        from keystone_agents.coordination import watched
        from keystone_agents.coordination.base import BusError
        from keystone_agents.coordination.factory import open_bus

        started = time.monotonic()
        try:
            bus = open_bus(self.config.coordination)
            try:
                changes, newest = watched.pending(bus, self.config, self.state_dir)
            finally:
                bus.close()
        except BusError as exc:
            raise SourceFailed(f"shared: {exc.message}") from None

        def commit() -> None:
            watched.log_changes(self.log, changes, "a task")
            watched.write_cursor(self.state_dir, newest)

        return FetchResult(self.name, None, [watched.task_item(c) for c in changes], time.monotonic() - started,
                           commit=commit)
