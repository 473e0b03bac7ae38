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
    # the path the NixOS module's agent-<name>-comms.path watches (coordination.nix: wakeFile)
    return state_dir / "comms-wake"


def settings_from_host(coordination: dict) -> CoordinationSettings:
    """The bus settings of the host configuration's `coordination` object (what agentctl and humans use)."""
    from keystone_agents.config import LocalBusSettings, PostgresBusSettings

    local = coordination.get("local") or {}
    pg = coordination.get("postgresql") or {}
    return CoordinationSettings(
        backend=coordination.get("backend") or "none",
        local=LocalBusSettings(socket=local.get("socket") or LocalBusSettings.socket,
                               wake_dir=local.get("wakeDir") or LocalBusSettings.wake_dir),
        postgresql=PostgresBusSettings(host=pg.get("host"), port=pg.get("port"),
                                       database=pg.get("database") or PostgresBusSettings.database),
        max_deliveries=int(coordination.get("maxDeliveries") or 5),
        lease_seconds=float(coordination.get("leaseSeconds") or 300),
    )
