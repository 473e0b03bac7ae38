"""Open the bus an agent's configuration names, and where its wake file is."""

from __future__ import annotations

import os
from pathlib import Path

from keystone_agents.config import CoordinationSettings
from keystone_agents.coordination.base import Unavailable


def open_bus(settings: CoordinationSettings):
    """A connected `Bus` for the calling user (its identity is its OS user, never a name in the config)."""
    if settings.backend == "local":
        from keystone_agents.coordination.local import LocalBus

        return LocalBus(settings.local.socket)
    if settings.backend == "postgresql":
        from keystone_agents.coordination.postgres import PgBus

        pg = settings.postgresql
        return PgBus.connect(host=pg.host, port=pg.port, database=pg.database)
    raise Unavailable("comms is off: coordination.backend is \"none\" in this agent's configuration "
                      "(NixOS: keystone.os.agentRuntime.coordination.backend)")


def wake_file(settings: CoordinationSettings, agent_name: str, state_dir: Path) -> Path:
    """The file whose change starts the agent's comms drain (agent-<name>-comms.path watches it)."""
    if settings.wake_file:
        return Path(os.path.expanduser(settings.wake_file))
    if settings.backend == "local":
        return Path(settings.local.wake_dir) / agent_name
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "keystone" / "wake"
    return state_dir / "comms-wake"
