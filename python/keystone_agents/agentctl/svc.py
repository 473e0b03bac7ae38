"""`keystone-agent-svc`: the admin helper, the one program the agent-admins sudo rule allows.

    sudo -u agent-<name> -- keystone-agent-svc VERB ARGS…

VERB and ARGS are exactly what the admin typed after `agentctl <name>`. The helper
- takes the agent's identity from the user it runs as (never from its arguments or environment);
- reads the host configuration at its fixed path, /etc/keystone-agents/agentctl.json (sudo dropped the
  caller's environment, and $AGENTCTL_CONFIG is not honoured here), for the agent's home, config and PATH;
- re-checks VERB against the allow-list agentctl uses (agentctl/verbs.py): a refused verb exits 2 with the
  reason, as agentctl does;
- sets HOME, USER, LOGNAME, XDG_RUNTIME_DIR, DBUS_SESSION_BUS_ADDRESS, SSH_AUTH_SOCK, PATH and
  KEYSTONE_AGENT_CONFIG itself (keeping only SUDO_USER — who asked, for `pause` — and the terminal and
  locale variables), changes to the agent's home and replaces itself with the verb's command.

Exit codes: the command's own; 2 for a refused verb; 1 when it does not run as a configured local agent or
the host configuration is unusable; 127 when the command is not installed.
"""

from __future__ import annotations

import os
import pwd
import sys
from pathlib import Path

from keystone_agents.agentctl import hostconfig, verbs
from keystone_agents.problems import ValidationFailed

HOST_CONFIG = hostconfig.DEFAULT_PATH
PROG = "keystone-agent-svc"
SYSTEM_PATH = "/run/wrappers/bin:/run/current-system/sw/bin:/usr/local/bin:/usr/bin:/bin"
KEPT_VARIABLES = ("SUDO_USER", "TERM", "COLORTERM", "LANG", "LANGUAGE", "TZ")


class HelperError(Exception):
    """The helper cannot act for this user (exit 1)."""


def running_user() -> tuple[str, int]:
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name, uid
    except KeyError:
        raise HelperError(f"uid {uid} has no user name") from None


def find_agent(config: hostconfig.HostConfig, user: str) -> hostconfig.AgentEntry:
    agent = next((a for a in config.agents if a.user == user and config.is_local_host(a.host)), None)
    if agent is None:
        raise HelperError(
            f"{user} is not an agent of this host in {config.source_path}; {PROG} runs as an agent user "
            f"(sudo -u agent-<name> -- {PROG} VERB ARGS…)"
        )
    return agent


def default_path() -> str:
    """The standard system PATH plus the directory of the running package's scripts."""
    own = [str(Path(sys.argv[0]).resolve().parent)] if sys.argv and sys.argv[0] else []
    own.append(str(Path(sys.executable).parent))
    parts = SYSTEM_PATH.split(":")
    return ":".join(dict.fromkeys([*parts, *own]))


def agent_environment(agent: hostconfig.AgentEntry, uid: int, inherited: dict[str, str]) -> dict[str, str]:
    runtime = f"/run/user/{uid}"
    env = {key: inherited[key] for key in KEPT_VARIABLES if key in inherited}
    env.update({key: value for key, value in inherited.items() if key.startswith("LC_")})
    env.update(
        HOME=agent.home,
        USER=agent.user,
        LOGNAME=agent.user,
        XDG_RUNTIME_DIR=runtime,
        DBUS_SESSION_BUS_ADDRESS=f"unix:path={runtime}/bus",
        PATH=agent.path or default_path(),
    )
    if agent.ssh_auth_sock:
        env["SSH_AUTH_SOCK"] = agent.ssh_auth_sock
    if agent.config_path:
        env["KEYSTONE_AGENT_CONFIG"] = agent.config_path
    return env


def main(argv: list[str] | None = None, host_config: Path | None = None) -> int:
    """Run VERB ARGS as the agent this process runs as. `host_config` exists for tests that cannot write the
    fixed path; the console script always uses HOST_CONFIG."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(f"usage: sudo -u agent-<name> -- {PROG} VERB [ARGS…]\nverbs: {', '.join(verbs.HELPER_VERBS)}",
              file=sys.stderr if not args else sys.stdout)
        return verbs.EXIT_REFUSED if not args else 0
    verb, rest = args[0], args[1:]
    try:
        user, uid = running_user()
        config = hostconfig.load(host_config or HOST_CONFIG)
        agent = find_agent(config, user)
        command = verbs.expand(verb, agent, rest)
    except verbs.Refused as exc:
        message = str(exc)
        print(message if message.startswith("Error:") else f"Error: {message}", file=sys.stderr)
        return verbs.EXIT_REFUSED
    except ValidationFailed as exc:
        for problem in exc.problems:
            print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 1
    except HelperError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    env = agent_environment(agent, uid, dict(os.environ))
    try:
        os.chdir(agent.home)
    except OSError as exc:
        print(f"{PROG}: error: cannot enter the agent's home {agent.home}: {exc.strerror}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    try:
        os.execvpe(command[0], command, env)
    except FileNotFoundError:
        print(f"{PROG}: command not found: {command[0]} (PATH={env['PATH']})", file=sys.stderr)
        return 127
    except OSError as exc:
        print(f"{PROG}: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
        return 126
    return 0  # not reached


def console() -> None:
    sys.exit(main())
