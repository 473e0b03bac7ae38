"""The environment every notes-sync git command runs with: who commits, how commits are signed, how SSH
authenticates.

Settings go in as `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n` (command-line scope): they win over
the user's and the repo's git config, they reach the commits a rebase rewrites, and the notes repo's
`.git/config` stays untouched. SSH uses the agent's ssh-agent socket and accepts a new host key once
(`StrictHostKeyChecking=accept-new`), never prompting (`BatchMode=yes`: a timer has no terminal).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Mapping

from keystone_agents.config import Config

SSH_CONNECT_TIMEOUT = 20  # seconds; an unreachable remote fails fast instead of hanging the timer


def agent_socket(config: Config, env: Mapping[str, str]) -> str | None:
    """SSH_AUTH_SOCK if set, else the socket of the agent's ssh-agent service when it exists."""
    if env.get("SSH_AUTH_SOCK"):
        return env["SSH_AUTH_SOCK"]
    candidate = Path(f"/run/agent-{config.agent_name}-ssh-agent/agent.sock")
    return str(candidate) if candidate.exists() else None


def ssh_command(home: Path) -> str:
    """GIT_SSH_COMMAND. git runs it through `sh -c`, so every part is quoted."""
    ssh_dir = home / ".ssh"
    argv = [
        "ssh",
        "-o", "StrictHostKeyChecking=accept-new",
        "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={SSH_CONNECT_TIMEOUT}",
        "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=4",
        # the agent's home holds its known hosts, also when --home differs from the passwd entry's home
        "-o", f"UserKnownHostsFile={ssh_dir / 'known_hosts'}",
    ]
    if (ssh_dir / "config").is_file():
        argv[1:1] = ["-F", str(ssh_dir / "config")]
    return shlex.join(argv)


def git_settings(config: Config) -> list[tuple[str, str]]:
    """git config pairs for identity and signing, from the agent's configuration."""
    settings: list[tuple[str, str]] = []
    if config.full_name:
        settings.append(("user.name", config.full_name))
    elif config.agent_name:
        settings.append(("user.name", config.agent_name))
    if config.email:
        settings.append(("user.email", config.email))
    elif config.agent_name:
        # without one, git guesses from the host name and refuses where it has no domain (a provisioned agent
        # without mail.address would never sync): the account's own address on its host
        import socket

        settings.append(("user.email", f"agent-{config.agent_name}@{config.host or socket.gethostname()}"))
    signing_key = (config.notes.signing_key or "").strip()
    if signing_key:
        # a literal public key must be marked `key::` (git then signs through the ssh-agent); anything else is
        # a path to a key file, which git reads itself
        is_literal = signing_key.startswith(("ssh-", "sk-", "ecdsa-"))
        key = f"key::{signing_key}" if is_literal else signing_key
        settings += [
            ("gpg.format", "ssh"),
            ("user.signingkey", key),
            ("commit.gpgsign", "true"),
        ]
    else:
        settings.append(("commit.gpgsign", "false"))  # a user-level gpgsign=true without a key would fail every commit
    # a rebase that stops must stop, not open an editor; the sync always names its upstream explicitly
    settings += [("core.editor", "true"), ("rebase.autoStash", "false"), ("pull.rebase", "true")]
    return settings


def git_environment(config: Config, home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    # an inherited GIT_CONFIG_* set would be replaced below; drop the stale numbered keys too
    for key in [k for k in env if k.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_"))]:
        del env[key]
    settings = git_settings(config)
    env["GIT_CONFIG_COUNT"] = str(len(settings))
    for index, (key, value) in enumerate(settings):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    env["GIT_SSH_COMMAND"] = ssh_command(home)
    env["GIT_TERMINAL_PROMPT"] = "0"  # an HTTPS remote without credentials fails instead of waiting for input
    env["GIT_EDITOR"] = "true"
    env["LC_ALL"] = "C"  # git's messages are matched in a few places
    socket = agent_socket(config, env)
    if socket:
        env["SSH_AUTH_SOCK"] = socket
    return env
