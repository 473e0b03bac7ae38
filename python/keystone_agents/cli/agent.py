"""`keystone-agent`: what runs inside an agent account (systemd units call it; so can the agent).

The click group is `keystone_agents.cli.agent_cli.cli` (also importable from here as `cli`). `main()` has one
shortcut: the exact invocation of the task-loop timer — `keystone-agent loop` with at most `--home DIR` and
`--config FILE` — runs the loop without importing click, a fifth of the five-minute tick's start-up
(docs/performance.md). Anything else, including every error in those two options, goes through click, which
stays the one definition of the command line (a test runs both paths and compares them).
"""

from __future__ import annotations

import os
import sys
from typing import Any

# Commands are imported when used: the task loop runs every few minutes and its start-up time is
# measured (docs/performance.md), so `keystone-agent loop` must not import every other command's
# dependencies (ruamel, jsonschema, jinja2, ...).
COMMANDS = {
    "init": "keystone_agents.commands.init:init_command",
    "validate": "keystone_agents.commands.validate:validate_command",
    "tasks": "keystone_agents.commands.tasks:tasks_command",
    "task": "keystone_agents.commands.task:task_group",
    "pause": "keystone_agents.commands.pause:pause_command",
    "resume": "keystone_agents.commands.pause:resume_command",
    "paused": "keystone_agents.commands.pause:paused_command",
    "loop": "keystone_agents.commands.loop:loop_command",
    "runs": "keystone_agents.commands.runs:runs_command",
    "logs": "keystone_agents.commands.logs:logs_command",
    "schedule": "keystone_agents.commands.schedule:schedule_command",
    "sync": "keystone_agents.commands.sync:sync_command",
    "code": "keystone_agents.commands.code:code_command",
    "compose": "keystone_agents.commands.compose:compose_command",
    "info": "keystone_agents.commands.info:info_command",
    "session": "keystone_agents.commands.session:session_command",
    "mail": "keystone_agents.commands.mail:mail_command",
    "watch": "keystone_agents.commands.watch:watch_command",
    "kill": "keystone_agents.commands.lifecycle:kill_command",
    "continue": "keystone_agents.commands.lifecycle:continue_command",
    "resolve-provider": "keystone_agents.commands.resolve_provider:resolve_provider_command",
    "configure": "keystone_agents.commands.configure:configure_command",
    "comms": "keystone_agents.commands.comms:comms_command",
    "bus": "keystone_agents.commands.bus:bus_command",
    "mcp": "keystone_agents.commands.mcp:mcp_command",
    "state": "keystone_agents.commands.kv:state_command",
    "audit": "keystone_agents.commands.audit:audit_command",
    "shared": "keystone_agents.commands.shared:shared_command",
    "policy": "keystone_agents.commands.policy:policy_command",
    "monitoring": "keystone_agents.commands.monitoring:monitoring_group",
}

TIMER_OPTIONS = ("--home", "--config")


def timer_invocation(argv: list[str]) -> dict[str, str | None] | None:
    """{"home", "config"} when `argv` is `loop` with at most --home and --config (each once, with a plain value,
    naming no file/directory click would refuse), else None: then click parses (and explains) it."""
    if not argv or argv[0] != "loop":
        return None
    values = _plain_options(argv[1:], TIMER_OPTIONS, dash_values=False)
    if values is None:
        return None
    home = values.get("--home") or os.environ.get("KEYSTONE_AGENT_HOME") or None
    config = values.get("--config")
    if (home and os.path.isfile(home)) or (config and os.path.isdir(config)):
        return None  # click's Path types refuse these, with their message
    fmt = os.environ.get("KEYSTONE_AGENT_LOG_FORMAT")
    if fmt and fmt not in ("human", "logfmt", "json"):
        return None
    return {"home": home, "config": config}


HOOK_OPTIONS = ("--cli", "--policy", "--config")


def hook_invocation(argv: list[str]) -> dict[str, str] | None:
    """{"--cli", "--policy", "--config"} when `argv` is `policy check` with only those options (each once, with a
    value), else None: the provider CLIs run the hook before every tool call, so it skips click's start-up."""
    if argv[:2] != ["policy", "check"]:
        return None
    values = _plain_options(argv[2:], HOOK_OPTIONS, dash_values=True)
    return values if values is not None and "--cli" in values else None


def _plain_options(rest: list[str], allowed: tuple[str, ...], dash_values: bool) -> dict[str, str] | None:
    """`--name value` / `--name=value` pairs of `allowed` names, each once with a non-empty value (one starting
    with "-" only if `dash_values`), else None."""
    values: dict[str, str] = {}
    index = 0
    while index < len(rest):
        name, eq, value = rest[index].partition("=")
        if name not in allowed or name in values:
            return None
        if not eq:
            if index + 1 >= len(rest):
                return None
            index += 1
            value = rest[index]
        if not value or (value.startswith("-") and not dash_values):
            return None
        values[name] = value
        index += 1
    return values


def main() -> None:
    hook = hook_invocation(sys.argv[1:])
    if hook is not None:  # fails closed on its own: every error is exit 2
        from keystone_agents.policy.hook import main as hook_main

        hook_main(hook["--cli"], hook.get("--policy"), hook.get("--config"))
    fast = timer_invocation(sys.argv[1:])
    if fast is not None:
        from pathlib import Path

        from keystone_agents.loop.runner import run

        sys.exit(run(Path(fast["home"]) if fast["home"] else None, Path(fast["config"]) if fast["config"] else None))
    from keystone_agents.cli.agent_cli import cli

    cli(prog_name="keystone-agent")


def __getattr__(name: str) -> Any:
    if name in ("cli", "LazyGroup", "completion_command"):
        from keystone_agents.cli import agent_cli

        return getattr(agent_cli, name)
    raise AttributeError(name)
