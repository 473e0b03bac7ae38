"""Who is on the bus: the agents and admins of the host configuration (/etc/keystone-agents/agentctl.json).

An agent's role is its Linux user (`agent-<name>`); its name is the short name the CLI uses. An admin is a
human: listed in `coordination.admins`, a member of `coordination.adminGroup` (default agent-admins), or root.
The local broker maps a caller's SO_PEERCRED uid to one of these; `bus migrate` creates one database role each.
"""

from __future__ import annotations

import grp
import pwd
from dataclasses import dataclass

from keystone_agents.agentctl.hostconfig import HostConfig
from keystone_agents.coordination.base import DEFAULT_MAX_DEPTH, DEFAULT_SENDS_PER_HOUR

DEFAULT_ADMIN_GROUP = "agent-admins"


@dataclass(frozen=True)
class Principal:
    role: str  # Linux user = database role
    name: str  # agents: the short name; admins: the user name
    kind: str  # agent | admin
    accept_from: tuple[str, ...] = ("*",)
    max_depth: int = DEFAULT_MAX_DEPTH
    sends_per_hour: int = DEFAULT_SENDS_PER_HOUR
    write_prefixes: tuple[str, ...] = ("",)  # shared state: keys it may write ("" = all; admins: all)
    watch_prefixes: tuple[str, ...] = ()  # exec.watchPrefixes: a write under one wakes this agent


@dataclass(frozen=True)
class Registry:
    principals: tuple[Principal, ...]
    max_value_bytes: int = 64 * 1024  # shared state: coordination.shared.maxValueBytes
    quota_bytes: int = 500 * 1024 * 1024  # shared state: coordination.shared.quotaBytes (keys + values)

    def by_role(self, role: str) -> Principal | None:
        return next((p for p in self.principals if p.role == role), None)

    def agent(self, name: str) -> Principal | None:
        return next((p for p in self.principals if p.kind == "agent" and p.name == name), None)

    def by_name(self, name: str) -> Principal | None:
        """An agent by short name, else an admin by user name."""
        return self.agent(name) or next((p for p in self.principals if p.kind == "admin" and p.name == name), None)

    def watchers(self, key: str, writer: Principal) -> list[Principal]:
        """The agents a write of `key` by `writer` wakes: a watchPrefixes entry matches, the writer itself not."""
        return [p for p in self.principals if p.kind == "agent" and p.role != writer.role
                and watches(p, key)]

    @property
    def agents(self) -> list[Principal]:
        return [p for p in self.principals if p.kind == "agent"]

    @property
    def admins(self) -> list[Principal]:
        return [p for p in self.principals if p.kind == "admin"]


def admin_users(host: HostConfig) -> list[str]:
    coordination = host.coordination or {}
    users = list(coordination.get("admins") or [])
    group = coordination.get("adminGroup", DEFAULT_ADMIN_GROUP)
    if group:
        try:
            users += list(grp.getgrnam(group).gr_mem)
        except KeyError:
            pass
    return sorted(set(users))


def from_host_config(host: HostConfig, *, include_root: bool = True) -> Registry:
    principals: list[Principal] = []
    agent_users = set()
    for agent in host.agents:
        comms = agent.comms or {}
        principals.append(Principal(
            role=agent.user, name=agent.name, kind="agent",
            accept_from=tuple(comms.get("acceptFrom") or ("*",)),
            max_depth=int(comms.get("maxDepth", DEFAULT_MAX_DEPTH)),
            sends_per_hour=int(comms.get("sendsPerHour", DEFAULT_SENDS_PER_HOUR)),
            write_prefixes=tuple((agent.shared or {}).get("writePrefixes", [""])),
            watch_prefixes=tuple(agent.watch_prefixes),
        ))
        agent_users.add(agent.user)
    admins = [u for u in admin_users(host) if u not in agent_users]
    if include_root and "root" not in admins and "root" not in agent_users:
        admins.append("root")
    principals += [Principal(role=user, name=user, kind="admin") for user in admins]
    limits = (host.coordination or {}).get("shared") or {}
    return Registry(tuple(principals), int(limits.get("maxValueBytes", 64 * 1024)),
                    int(limits.get("quotaBytes", 500 * 1024 * 1024)))


def may_write(principal: Principal, key: str) -> bool:
    """Shared state: an admin writes anywhere; an agent under one of its writePrefixes."""
    return principal.kind == "admin" or any(key.startswith(prefix) for prefix in principal.write_prefixes)


def watches(principal: Principal, key: str) -> bool:
    """Whether `key` is under one of the agent's exec.watchPrefixes (the rule sql/004's trigger also applies)."""
    return any(key.startswith(prefix) for prefix in principal.watch_prefixes)


def accepts(recipient: Principal, sender: Principal) -> bool:
    """The receiver's acceptFrom: agent short names, "admins", "*" (anyone registered)."""
    allowed = recipient.accept_from
    if "*" in allowed:
        return True
    if sender.kind == "admin":
        return "admins" in allowed or sender.name in allowed
    return sender.name in allowed


def user_of_uid(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None
