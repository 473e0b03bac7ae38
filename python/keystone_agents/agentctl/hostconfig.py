"""The host configuration agentctl reads: every agent of the fleet, where it lives and how to reach it.

Where the file is: `--config`, else `$AGENTCTL_CONFIG`, else /etc/keystone-agents/agentctl.json (what the NixOS
module writes). The contract is `schemas/host-config.schema.json`.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from keystone_agents.problems import Problem, ValidationFailed

CONFIG_ENV = "AGENTCTL_CONFIG"
DEFAULT_PATH = Path("/etc/keystone-agents/agentctl.json")


@dataclass(frozen=True)
class AgentEntry:
    name: str
    user: str
    home: str
    host: str | None = None
    notes_dir: str | None = None
    config_path: str | None = None
    vnc_port: int | None = None
    desktop: bool = False
    helper: str | None = None
    uid: int | None = None
    comms: dict = field(default_factory=dict, hash=False)  # acceptFrom, maxDepth, sendsPerHour (schema defaults applied)
    shared: dict = field(default_factory=dict, hash=False)  # writePrefixes (shared state)
    triggers: tuple[str, ...] = ("schedule", "manual")
    mode: str = "timer"  # exec.mode (docs/exec-modes.md)
    watch_prefixes: tuple[str, ...] = ()  # exec.watchPrefixes: shared-state writes under these wake the agent
    # system units of this agent (ssh-agent, desktop, browser) that `status|start|stop|restart UNIT` reach
    system_units: tuple[str, ...] = ()
    # PATH and SSH agent socket the helper gives commands run as the agent (null: its defaults)
    path: str | None = None
    ssh_auth_sock: str | None = None

    @property
    def notes(self) -> str:
        return self.notes_dir or f"{self.home.rstrip('/')}/notes"

    @property
    def task_loop_unit(self) -> str:
        return f"agent-{self.name}-task-loop"

    def is_current_user(self) -> bool:
        return self.user == current_user()

    def system_unit(self, unit: str) -> str | None:
        """`UNIT.service` when UNIT (with or without .service) is one of the agent's listed system units."""
        name = unit[: -len(".service")] if unit.endswith(".service") else unit
        return f"{name}.service" if name in self.system_units else None


@dataclass(frozen=True)
class HostConfig:
    agents: list[AgentEntry]
    host_name: str | None = None
    ssh_command: list[str] = field(default_factory=lambda: ["ssh"])
    source_path: Path | None = None
    systemctl: str = "systemctl"
    coordination: dict = field(default_factory=dict, hash=False)  # the raw `coordination` object (registry.py)

    @property
    def this_host(self) -> str:
        return self.host_name or socket.gethostname()

    def names(self) -> list[str]:
        return [agent.name for agent in self.agents]

    def get(self, name: str) -> AgentEntry | None:
        return next((agent for agent in self.agents if agent.name == name), None)

    def is_local_host(self, host: str | None) -> bool:
        """True for null, `localhost`, this host's name, or its short name."""
        this = self.this_host
        return not host or host in ("localhost", this, this.split(".")[0])


def current_user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return os.environ.get("USER") or getpass.getuser()


def find_path(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_PATH


def parse(data: object, file: str = "<host config>", text: str | None = None) -> HostConfig:
    from keystone_agents.queuefile import _line_of, schema_problems  # lazy: the broker skips validation when cached

    def locate(path: list) -> int | None:
        if text is None:
            return None
        try:
            from ruamel.yaml import YAML

            return _line_of(YAML(typ="rt").load(text), path)
        except Exception:  # noqa: BLE001 - a position is a nicety
            return None

    problems = schema_problems("host-config", None, data, file, [], locate)
    if not problems:
        seen: dict[str, int] = {}
        for index, agent in enumerate(data["agents"]):  # type: ignore[index]
            if agent["name"] in seen:
                problems.append(
                    Problem(file, locate(["agents", index, "name"]), f"agents[{index}].name",
                            f"duplicate agent name {agent['name']!r} (first at agents[{seen[agent['name']]}])")
                )
            seen.setdefault(agent["name"], index)
    if problems:
        raise ValidationFailed(problems)
    return build(data)


def build(data: dict) -> HostConfig:
    """The typed host configuration from JSON that passed `parse`'s validation (the broker keeps the hash of
    the last validated file and skips re-validating an unchanged one on each connection)."""
    agents = [
        AgentEntry(
            name=a["name"], user=a["user"], home=a["home"], host=a.get("host"), notes_dir=a.get("notesDir"),
            config_path=a.get("configPath"), vnc_port=a.get("vncPort"), desktop=a.get("desktop", False),
            helper=a.get("helper"), uid=a.get("uid"), system_units=tuple(a.get("systemUnits") or ()),
            path=a.get("path"), ssh_auth_sock=a.get("sshAuthSock"), comms=dict(a.get("comms") or {}),
            shared=dict(a.get("shared") or {}),
            triggers=tuple(a.get("triggers") or ("schedule", "manual")), mode=a.get("mode") or "timer",
            watch_prefixes=tuple(a.get("watchPrefixes") or ()),
        )
        for a in data["agents"]  # type: ignore[index]
    ]
    return HostConfig(agents, data.get("hostName"), list(data.get("sshCommand") or ["ssh"]),  # type: ignore[union-attr]
                      systemctl=data.get("systemctl") or "systemctl",  # type: ignore[union-attr]
                      coordination=dict(data.get("coordination") or {}))  # type: ignore[union-attr]


def load(explicit: str | os.PathLike | None = None) -> HostConfig:
    """Load and validate the host configuration; ValidationFailed names the file, line and field."""
    path = find_path(explicit)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationFailed([Problem(str(path), None, "", f"host configuration not found (use --config or ${CONFIG_ENV})")]) from None
    except OSError as exc:
        raise ValidationFailed([Problem(str(path), None, "", f"cannot read host configuration: {exc.strerror}")]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationFailed([Problem(str(path), exc.lineno, "", f"not valid JSON: {exc.msg} (column {exc.colno})")]) from None
    config = parse(data, str(path), text)
    return dataclasses.replace(config, source_path=path)
