"""The agent's one git identity — who commits, how commits are signed, how SSH authenticates — for every git
process the runtime starts (notes sync, the coding subagent) and the provider CLIs it runs, and in the agent's
git config file for everything else (`keystone-agent configure`, the NixOS `agent-<name>-git-config` service).

Settings go into processes as `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n` (command-line scope): they
win over the user's and the repo's git config, they reach the commits a rebase rewrites, and no repository's
`.git/config` is touched. SSH uses the agent's ssh-agent socket and accepts a new host key once
(`StrictHostKeyChecking=accept-new`), never prompting (`BatchMode=yes`: a timer has no terminal).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Mapping

from keystone_agents.config import Config

SSH_CONNECT_TIMEOUT = 20  # seconds; an unreachable remote fails fast instead of hanging the timer
LITERAL_KEY_PREFIXES = ("ssh-", "sk-", "ecdsa-")


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


def signing_key(config: Config) -> str | None:
    key = (config.git.signing_key or config.notes.signing_key or "").strip()
    return key or None


def expand(path: str, home: Path) -> Path:
    if path == "~" or path.startswith("~/"):
        return home / path[2:]
    return Path(path)


def identity_settings(config: Config, home: Path | None = None) -> list[tuple[str, str]]:
    """git config pairs for the identity and signing, from the agent's configuration."""
    settings: list[tuple[str, str]] = []
    if config.full_name:
        settings.append(("user.name", config.full_name))
    elif config.agent_name:
        settings.append(("user.name", config.agent_name))
    if config.email:
        settings.append(("user.email", config.email))
    elif config.agent_name:
        # without one, git guesses from the host name and refuses where it has no domain (a provisioned agent
        # without an email would never sync): the account's own address on its host
        import socket

        settings.append(("user.email", f"agent-{config.agent_name}@{config.host or socket.gethostname()}"))
    key = signing_key(config)
    if key:
        # a literal public key must be marked `key::` (git then signs through the ssh-agent); anything else is
        # a path to a key file, which git reads itself
        value = f"key::{key}" if key.startswith(LITERAL_KEY_PREFIXES) else key
        settings += [("gpg.format", "ssh"), ("user.signingkey", value), ("commit.gpgsign", "true"),
                     ("tag.gpgsign", "true")]
        if home is not None:
            settings.append(("gpg.ssh.allowedSignersFile", str(expand(config.git.allowed_signers_file, home))))
    else:
        settings.append(("commit.gpgsign", "false"))  # a user-level gpgsign=true without a key would fail every commit
    return settings


def git_settings(config: Config, home: Path | None = None) -> list[tuple[str, str]]:
    """The identity, plus what unattended git needs: a rebase that stops must stop, not open an editor; the sync
    always names its upstream explicitly."""
    return identity_settings(config, home) + [("core.editor", "true"), ("rebase.autoStash", "false"),
                                              ("pull.rebase", "true")]


def config_env(settings: list[tuple[str, str]], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` with `settings` as GIT_CONFIG_COUNT/KEY/VALUE (an inherited set is replaced)."""
    env = dict(os.environ if base is None else base)
    for key in [k for k in env if k.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_"))]:
        del env[key]
    env["GIT_CONFIG_COUNT"] = str(len(settings))
    for index, (key, value) in enumerate(settings):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def identity_env(config: Config, home: Path) -> dict[str, str]:
    """Just the GIT_CONFIG_* variables of the identity (for provider CLIs, whose commits are the agent's too)."""
    return config_env(identity_settings(config, home), base={})


def git_environment(config: Config, home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every git command the runtime runs."""
    env = config_env(git_settings(config, home), base)
    env["GIT_SSH_COMMAND"] = ssh_command(home)
    env["GIT_TERMINAL_PROMPT"] = "0"  # an HTTPS remote without credentials fails instead of waiting for input
    env["GIT_EDITOR"] = "true"
    env["LC_ALL"] = "C"  # git's messages are matched in a few places
    socket = agent_socket(config, env)
    if socket:
        env["SSH_AUTH_SOCK"] = socket
    return env


def allowed_signers_line(config: Config) -> str | None:
    """`<email> namespaces="git" <public key>` for the allowed-signers file, when the key is a literal public key
    (a key file path: its `.pub` next to it)."""
    key = signing_key(config)
    if not key or not config.email:
        return None
    if not key.startswith(LITERAL_KEY_PREFIXES):
        pub = Path(key + ".pub") if not key.endswith(".pub") else Path(key)
        try:
            key = pub.read_text(encoding="utf-8").strip()
        except OSError:
            return None
    fields = key.split()
    return f'{config.email} namespaces="git" {" ".join(fields[:2])}'


def write_git_config(config: Config, home: Path, env: Mapping[str, str] | None = None) -> dict:
    """Write the identity into the agent's git config file (`$XDG_CONFIG_HOME/git/config`, default
    ~/.config/git/config; other settings in it are kept) and the allowed-signers file → what was written."""
    from keystone_agents.atomic import write_atomic
    from keystone_agents.git import Git

    base = dict(os.environ if env is None else env)
    xdg = base.get("XDG_CONFIG_HOME")
    config_file = (Path(xdg) if xdg and home == Path(base.get("HOME", "")) else home / ".config") / "git" / "config"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    git = Git(home, {**base, "HOME": str(home)})
    settings = identity_settings(config, home)
    if not signing_key(config):
        for key in ("gpg.format", "user.signingkey", "tag.gpgsign", "gpg.ssh.allowedSignersFile"):
            git.run("config", "--file", str(config_file), "--unset-all", key, check=False)
    for key, value in settings:
        git.run("config", "--file", str(config_file), "--replace-all", key, value)
    signers = None
    line = allowed_signers_line(config)
    if line:
        signers = expand(config.git.allowed_signers_file, home)
        signers.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(signers, line + "\n", mode=0o644)
    return {"git_config": str(config_file), "settings": dict(settings),
            "allowed_signers": str(signers) if signers else None}
