"""How agentctl runs something as an agent: the argv, and running it.

An agent that is the user running agentctl runs commands directly. Any other agent runs them through its
per-agent sudo helper: `sudo -u agent-<name> -- <helper> VERB [ARGS…]`, where the helper (written by the
NixOS module, allowed by one sudo rule per agent) understands exactly:

    <helper> <systemctl verb> ARGS…   → systemctl --user <verb> ARGS…   (verb re-checked against the allow-list)
    <helper> journalctl ARGS…         → journalctl --user ARGS…
    <helper> exec CMD ARGS…           → CMD ARGS… in the agent's environment (XDG_RUNTIME_DIR, D-Bus, SSH agent, PATH)

Every argument is passed as one argv element; nothing goes through a shell.
"""

from __future__ import annotations

import io
import signal
import subprocess
import sys
from dataclasses import dataclass

from keystone_agents.agentctl.hostconfig import AgentEntry

# systemctl verbs agentctl passes on (the original's list, a superset of the issue's).
SYSTEMCTL_VERBS = (
    "status", "start", "stop", "restart", "enable", "disable", "list-units", "list-timers", "show", "cat",
    "is-active", "is-enabled", "is-failed", "daemon-reload", "reset-failed",
)
# Refused with a reason: each would let an admin change the agent's service manager beyond start/stop.
REFUSED_VERBS = {
    "edit": "it opens an editor as the agent and rewrites unit files; change units in the NixOS configuration",
    "set-environment": "it changes the environment of every unit of the agent's service manager",
    "import-environment": "it copies the caller's environment (and secrets) into the agent's service manager",
    "unset-environment": "it changes the environment of every unit of the agent's service manager",
    "mask": "it disables units beyond what the NixOS configuration declares",
    "link": "it installs arbitrary unit files",
}

KEYSTONE_AGENT = "keystone-agent"


class DispatchError(Exception):
    """The command cannot be run as the agent (no helper configured, say)."""


@dataclass(frozen=True)
class AgentRunner:
    agent: AgentEntry

    @property
    def direct(self) -> bool:
        return self.agent.is_current_user()

    def _via_helper(self, verb: str, args: list[str]) -> list[str]:
        if not self.agent.helper:
            raise DispatchError(
                f"agent '{self.agent.name}' has no `helper` in the host configuration, and agentctl runs as "
                f"another user than {self.agent.user}: cannot run commands as the agent"
            )
        return ["sudo", "-u", self.agent.user, "--", self.agent.helper, verb, *args]

    def systemctl(self, verb: str, args: list[str] = ()) -> list[str]:
        if verb not in SYSTEMCTL_VERBS:
            raise DispatchError(f"systemctl verb {verb!r} is not allowed")
        if self.direct:
            return ["systemctl", "--user", verb, *args]
        return self._via_helper(verb, list(args))

    def journalctl(self, args: list[str] = ()) -> list[str]:
        if self.direct:
            return ["journalctl", "--user", *args]
        return self._via_helper("journalctl", list(args))

    def exec(self, argv: list[str]) -> list[str]:
        if not argv:
            raise DispatchError("exec needs a command")
        if self.direct:
            return list(argv)
        return self._via_helper("exec", list(argv))

    def keystone_agent(self, subcommand: str, args: list[str] = (), *, separator: bool = False) -> list[str]:
        """`keystone-agent SUBCOMMAND --home H [--config C] ARGS` as the agent (home and config explicit, so
        the result does not depend on what sudo does to $HOME)."""
        argv = [KEYSTONE_AGENT, subcommand, "--home", self.agent.home]
        if self.agent.config_path:
            argv += ["--config", self.agent.config_path]
        if separator:
            argv.append("--")
        return self.exec(argv + list(args))


def _stdout_is_real() -> bool:
    try:
        sys.stdout.fileno()
        return True
    except (AttributeError, io.UnsupportedOperation, ValueError):
        return False


def run_passthrough(argv: list[str]) -> int:
    """Run `argv` with the terminal attached; its exit code is returned. Ctrl-C reaches the child (same
    process group); agentctl itself ignores it while waiting so that it can report the child's code."""
    capture = not _stdout_is_real()  # under click's test runner: echo what the child printed
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None)
    except FileNotFoundError:
        print(f"agentctl: command not found: {argv[0]}", file=sys.stderr)
        return 127
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        out, err = proc.communicate()
    finally:
        signal.signal(signal.SIGINT, previous)
    if capture:
        sys.stdout.write(out.decode("utf-8", "replace"))
        sys.stderr.write(err.decode("utf-8", "replace"))
    return proc.returncode


def run_capture(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
