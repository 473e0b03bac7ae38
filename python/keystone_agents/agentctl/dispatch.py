"""How agentctl runs something as an agent: the argv, and running it.

The verbs and what each runs as the agent are defined once, in agentctl/verbs.py:
- the agent is the user running agentctl → verbs.expand(VERB, agent, ARGS) runs directly;
- any other local agent → `sudo -u agent-<name> -- keystone-agent-svc VERB ARGS…`: the helper (the one
  program the agent-admins sudo rule allows) re-checks VERB against the same allow-list and runs the same
  expansion as the agent;
- `status|start|stop|restart UNIT` for one of the agent's listed *system* units (ssh-agent, desktop,
  browser) → `sudo -n -- <systemctl> VERB UNIT.service`, which the module's sudo rule allows for exactly
  those units and verbs.

Every argument is passed as one argv element; nothing goes through a shell.
"""

from __future__ import annotations

import io
import signal
import subprocess
import sys
from dataclasses import dataclass

from keystone_agents.agentctl import verbs
from keystone_agents.agentctl.hostconfig import AgentEntry


class DispatchError(Exception):
    """The command cannot be run as the agent (no helper configured, say)."""


@dataclass(frozen=True)
class AgentRunner:
    agent: AgentEntry
    systemctl_path: str = "systemctl"
    # sudo -n: never prompt (for captured calls such as `show`, whose stdin is not a terminal)
    non_interactive: bool = False

    @property
    def direct(self) -> bool:
        return self.agent.is_current_user()

    def verb(self, name: str, args: list[str] = ()) -> list[str]:
        """The argv that runs `agentctl AGENT NAME ARGS…`; verbs.Refused when the allow-list says no."""
        args = list(args)
        system = self.system_unit_argv(name, args)
        if system is not None:
            return system
        if self.direct:
            return verbs.expand(name, self.agent, args)
        verbs.expand(name, self.agent, args)  # refuse here already, with the same message the helper gives
        if not self.agent.helper:
            raise DispatchError(
                f"agent '{self.agent.name}' has no `helper` in the host configuration, and agentctl runs as "
                f"another user than {self.agent.user}: cannot run commands as the agent"
            )
        return ["sudo", *(["-n"] if self.non_interactive else []), "-u", self.agent.user, "--", self.agent.helper,
                name, *args]

    def system_unit_argv(self, name: str, args: list[str]) -> list[str] | None:
        """`sudo -n -- systemctl VERB UNIT.service` for a listed system unit of the agent, else None."""
        if name not in verbs.SYSTEM_UNIT_VERBS or not any(self.agent.system_unit(a) for a in args):
            return None
        if len(args) != 1:
            raise verbs.Refused(
                f"Error: the agent's system units take exactly one unit and no options: agentctl "
                f"{self.agent.name} {name} UNIT (system units: {', '.join(self.agent.system_units)})"
            )
        return ["sudo", "-n", "--", self.systemctl_path, name, self.agent.system_unit(args[0])]  # type: ignore[list-item]


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
