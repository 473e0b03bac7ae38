"""MCP servers for the provider CLIs: the configured `mcpServers`, their secrets read from files, and each
CLI's own way of being given them for one run.

Configuration (`mcpServers` in config.json, written by the NixOS module from `mcp.servers`):
`{name: {command, args, env, envFiles}}` — `env` holds plain values (no secrets: the config is readable by the
agent-admins group), `envFiles` maps a variable to a file whose content (trailing newline removed) is its value,
read when a provider starts (agenix secrets under /run/agenix/...).

How each CLI gets them (their documented mechanisms):

* claude: `--mcp-config FILE --strict-mcp-config`. FILE (`{"mcpServers": {...}}`, mode 0600, under the state
  dir) is written for the run and removed afterwards; `--strict-mcp-config` makes these the only servers.
  `--mcp-config` takes several values, so the runtime always puts another flag after its file, never the prompt.
* codex: `--config=mcp_servers.<name>.command=…` (`-c`), `.args=[…]`, `.env={…}` overrides (TOML values) of its
  `mcp_servers` table. Secret values never go into argv: they are put in codex's environment and forwarded to
  the server by name with `mcp_servers.<name>.env_vars=[…]`.
* gemini: a settings file with `mcpServers` (mode 0600, removed afterwards) named by
  `GEMINI_CLI_SYSTEM_SETTINGS_PATH` (the system layer, which overrides user and workspace settings), and
  `--allowed-mcp-server-names` limiting the session to these servers.

The agent space's `.mcp.json` (for interactive `agentctl <agent> claude` sessions) is rendered from the same
configuration by `render_mcp_json`, with secrets left as `${VAR}` references that Claude Code expands from the
environment: it never holds a secret either.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from keystone_agents.atomic import write_atomic


class McpError(Exception):
    """An MCP server cannot be started as configured (its secret file is missing...); names the server and file."""


@dataclass(frozen=True)
class Server:
    name: str
    command: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # plain values from the config
    secrets: dict[str, str] = field(default_factory=dict)  # variable → value read from its envFile

    def full_env(self) -> dict[str, str]:
        return {**self.env, **self.secrets}


def configured(config) -> dict[str, Any]:
    return dict(getattr(config, "mcp_servers", None) or {})


def read_secret(server: str, var: str, path: str) -> str:
    file = Path(path).expanduser()
    try:
        return file.read_text(encoding="utf-8").rstrip("\n")
    except FileNotFoundError:
        raise McpError(f"MCP server {server!r}: envFiles.{var}: secret file {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise McpError(f"MCP server {server!r}: envFiles.{var}: cannot read secret file {file}: {why}") from None


def resolve(config) -> list[Server]:
    """The configured servers with their secrets read; raises McpError naming the server, variable and file."""
    servers = []
    for name, spec in sorted(configured(config).items()):
        env = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
        secrets = {str(var): read_secret(name, var, path) for var, path in (spec.get("envFiles") or {}).items()}
        servers.append(Server(name, spec["command"], list(spec.get("args") or []), env, secrets))
    return servers


def claude_document(servers: list[Server]) -> dict:
    """`{"mcpServers": …}` as Claude Code's --mcp-config (and .mcp.json) read it; stdio servers."""
    return {"mcpServers": {s.name: {"type": "stdio", "command": s.command, "args": s.args, "env": s.full_env()}
                           for s in servers}}


def render_mcp_json(config) -> str:
    """The agent space's `.mcp.json`: the configured servers, secrets as `${VAR}` (expanded by Claude Code from
    the session's environment), so the file holds no secret."""
    servers = {}
    for name, spec in sorted(configured(config).items()):
        env = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
        env.update({var: "${" + var + "}" for var in (spec.get("envFiles") or {})})
        servers[name] = {"type": "stdio", "command": spec["command"], "args": list(spec.get("args") or []),
                         "env": env}
    return json.dumps({"mcpServers": servers}, indent=2) + "\n"


SETTINGS_ENV_GEMINI = "GEMINI_CLI_SYSTEM_SETTINGS_PATH"


def gemini_settings(servers: list[Server]) -> dict:
    """Gemini CLI settings with `mcpServers` (stdio: command, args, env)."""
    return {"mcpServers": {s.name: {"command": s.command, "args": s.args, "env": s.full_env()} for s in servers}}


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escaping is valid TOML for these characters)."""
    return json.dumps(value, ensure_ascii=False)


def toml_value(value: Any) -> str:
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def toml_key(name: str) -> str:
    """A bare TOML key when it is one, else quoted."""
    import re

    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else toml_string(name)


def codex_overrides(servers: list[Server]) -> tuple[list[str], dict[str, str]]:
    """(argv of `--config=` (-c) overrides, environment with the secret values) for codex."""
    argv: list[str] = []
    env: dict[str, str] = {}
    for s in servers:
        key = f"mcp_servers.{toml_key(s.name)}"
        argv += [f"--config={key}.command={toml_string(s.command)}", f"--config={key}.args={toml_value(s.args)}"]
        if s.env:
            argv.append(f"--config={key}.env={toml_value(s.env)}")
        if s.secrets:
            argv.append(f"--config={key}.env_vars={toml_value(sorted(s.secrets))}")
            env.update(s.secrets)
    return argv, env


@dataclass
class McpPlan:
    """The servers of one provider run and where its files go (`<state>/mcp/<run>.json`, removed afterwards)."""

    servers: list[Server]
    file: Path

    def write(self, document: dict) -> Path:
        self.file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.file, json.dumps(document, indent=2), mode=0o600)
        os.chmod(self.file, 0o600)
        return self.file

    def cleanup(self) -> None:
        try:
            self.file.unlink()
        except FileNotFoundError:
            pass


def plan_for(config, space, run_name: str) -> McpPlan | None:
    """The plan for one provider run, or None when no server is configured."""
    if not configured(config):
        return None
    return McpPlan(resolve(config), space.mcp_run_config(run_name))
