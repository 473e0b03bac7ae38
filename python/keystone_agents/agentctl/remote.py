"""Forwarding to the host an agent lives on: `ssh [-t|-T] -- <host> agentctl <agent> ARGS…`.

ssh hands the remote command to the remote user's login shell as one string, so the argv is quoted with
shlex.join: every argument arrives as written, quotes, `$(…)`, `;` and newlines included. (This assumes a
POSIX-like login shell — sh, bash, zsh; fish treats backslashes inside single quotes differently.)
A pseudo-terminal (-t) is requested only when agentctl's own stdin is a terminal: a pty on a pipe turns
newlines into CRLF and would corrupt `--json` output for scripts.
"""

from __future__ import annotations

import shlex
import sys

from keystone_agents.agentctl.hostconfig import HostConfig

REMOTE_PROGRAM = "agentctl"
# the viewer runs here and connects to the remote desktop; comms verbs reach the bus from here, as the human
NOT_FORWARDED = frozenset({"vnc", "send", "ask", "inbox", "outbox"})


def remote_command(args: list[str]) -> str:
    return shlex.join([REMOTE_PROGRAM, *args])


def ssh_argv(config: HostConfig, host: str, args: list[str], tty: bool | None = None) -> list[str]:
    if tty is None:
        tty = sys.stdin.isatty()
    return [*config.ssh_command, "-t" if tty else "-T", "--", host, remote_command(args)]


def target_host(host: str) -> str:
    """The host part of `user@host[:port]`-ish values, for URLs such as vnc://."""
    return host.rsplit("@", 1)[-1]
