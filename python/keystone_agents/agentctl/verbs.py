"""The admin protocol, defined once: which verbs `agentctl AGENT VERB ARGS…` accepts and what each runs as
the agent. `agentctl` (on the admin's side) and `keystone-agent-svc` (the sudo helper, on the agent's side)
both import this module, so they cannot disagree.

    agentctl AGENT VERB ARGS…
      → (agent is the current user)  expand(VERB, agent, ARGS) run directly
      → (any other local agent)      sudo -u agent-<name> -- keystone-agent-svc VERB ARGS…
                                     and the helper runs expand(VERB, agent, ARGS) after re-checking VERB here

Adding a verb is one line in VERBS: `Verb(name, help, expansion)`. The expansions below turn the admin's
ARGS into an argv run as the agent; every argument stays one argv element (nothing goes through a shell).
A verb in REFUSED is rejected with its reason; any other unknown verb is rejected as not an agentctl verb;
both exit 2 on either side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

EXIT_REFUSED = 2
KEYSTONE_AGENT = "keystone-agent"
SESSION_TOOLS = ("claude", "codex", "gemini")

# systemctl verbs agentctl passes on to the agent's user manager.
SYSTEMCTL_VERBS = (
    "status", "start", "stop", "restart", "enable", "disable", "list-units", "list-timers", "show", "cat",
    "is-active", "is-enabled", "is-failed", "daemon-reload", "reset-failed",
)
# The systemctl verbs that also reach an agent's *system* units (ssh-agent, desktop, browser): see
# hostconfig.AgentEntry.system_units and dispatch.AgentRunner.system_unit_argv.
SYSTEM_UNIT_VERBS = ("status", "start", "stop", "restart")

# Refused with a reason: each would let an admin change the agent's service manager beyond start/stop.
REFUSED: dict[str, str] = {
    "edit": "it opens an editor as the agent and rewrites unit files; change units in the NixOS configuration",
    "set-environment": "it changes the environment of every unit of the agent's service manager",
    "import-environment": "it copies the caller's environment (and secrets) into the agent's service manager",
    "unset-environment": "it changes the environment of every unit of the agent's service manager",
    "mask": "it disables units beyond what the NixOS configuration declares",
    "link": "it installs arbitrary unit files",
}

# systemctl options that would leave the agent's user manager; journalctl options that change the journal.
SYSTEMCTL_REFUSED_OPTIONS = ("--system", "-H", "--host", "-M", "--machine", "--root", "--global")
JOURNALCTL_REFUSED_OPTIONS = (
    "--vacuum-size", "--vacuum-time", "--vacuum-files", "--rotate", "--flush", "--sync", "--relinquish-var",
    "--smart-relinquish-var", "--setup-keys", "--update-catalog", "-D", "--directory", "--file", "--root",
    "--image", "-M", "--machine", "--system",
)


class Target(Protocol):
    """What an expansion needs to know about the agent (hostconfig.AgentEntry has these)."""

    home: str
    config_path: str | None

    @property
    def notes(self) -> str: ...

    @property
    def task_loop_unit(self) -> str: ...


class Refused(Exception):
    """The verb or its arguments are not allowed; the message says why (exit EXIT_REFUSED)."""


Expansion = Callable[[Target, list[str]], list[str]]


@dataclass(frozen=True)
class Verb:
    name: str
    help: str
    expand: Expansion
    # runs on the admin's side only (never sent to the helper, never forwarded to another host)
    host_only: bool = False


# ------------------------------------------------------------------ expansions


def keystone(subcommand: str, separator: bool = False) -> Expansion:
    """`keystone-agent SUBCOMMAND --home H [--config C] [--] ARGS` (home and config explicit, so the result
    does not depend on what sudo did to $HOME)."""

    def expand(agent: Target, args: list[str]) -> list[str]:
        argv = [KEYSTONE_AGENT, subcommand, "--home", agent.home]
        if agent.config_path:
            argv += ["--config", agent.config_path]
        return argv + (["--"] if separator else []) + list(args)

    return expand


def _refuse_options(args: Sequence[str], refused: Sequence[str], program: str) -> None:
    for arg in args:
        if arg == "--":
            break
        option = arg.split("=", 1)[0]
        if option in refused or (len(option) > 2 and option[:2] in refused and not option.startswith("--")):
            raise Refused(f"'{program} {arg}' is not allowed (only the agent's own user manager and journal are)")


def own_units(agent: Target) -> str:
    """The glob of the agent's own user units (agent-<name>-task-loop.timer, -scheduler, -notes-sync, …)."""
    return agent.task_loop_unit.removesuffix("task-loop") + "*"


def systemctl(verb: str) -> Expansion:
    def expand(agent: Target, args: list[str]) -> list[str]:
        _refuse_options(args, SYSTEMCTL_REFUSED_OPTIONS, "systemctl")
        if verb == "status" and not any(not a.startswith("-") for a in args):
            # without a unit: the agent's own units, not the whole user manager
            return ["systemctl", "--user", verb, *args, "--", own_units(agent)]
        return ["systemctl", "--user", verb, *args]

    return expand


TASK_ACTIONS = ("add", "show", "retry", "cancel", "edit")


def task(agent: Target, args: list[str]) -> list[str]:
    """`task ACTION ARGS` → `keystone-agent task ACTION --home H [--config C] ARGS` (one of TASK_ACTIONS)."""
    if args[:1] in (["--help"], ["-h"]):
        return [KEYSTONE_AGENT, "task", "--help"]
    if not args or args[0] not in TASK_ACTIONS:
        raise Refused(f"task takes one of {', '.join(TASK_ACTIONS)}: agentctl AGENT task ACTION ARGS…")
    base = keystone("task")(agent, [])  # keystone-agent task --home H [--config C]
    return base[:2] + [args[0]] + base[2:] + list(args[1:])


def journalctl(agent: Target, args: list[str]) -> list[str]:
    _refuse_options(args, JOURNALCTL_REFUSED_OPTIONS, "journalctl")
    return ["journalctl", "--user", *args]


def exec_(agent: Target, args: list[str]) -> list[str]:
    if not args:
        raise Refused("exec needs a command: agentctl AGENT exec CMD [ARGS…]")
    return list(args)


def shell(agent: Target, args: list[str]) -> list[str]:
    if args:
        raise Refused("shell takes no arguments (use exec CMD ARGS… to run a command)")
    return ["env", f"--chdir={agent.notes}", "bash", "-l"]


def email(agent: Target, args: list[str]) -> list[str]:
    return ["himalaya", "envelope", "list", *args]


def mail(agent: Target, args: list[str]) -> list[str]:
    """`mail send ARGS` → `keystone-agent mail send --home H [--config C] ARGS` (the body on stdin)."""
    if not args or args[0] != "send":
        raise Refused("mail takes: send --to ADDR --subject TEXT [--in-reply-to MSGID] [--json], the body on stdin")
    argv = [KEYSTONE_AGENT, "mail", "send", "--home", agent.home]
    if agent.config_path:
        argv += ["--config", agent.config_path]
    return argv + list(args[1:])


RUN_FLAGS = ("--no-wait", "--force")  # a human's request: do not wait for a running loop / run though paused


def run(agent: Target, args: list[str]) -> list[str]:
    """`run` starts the task-loop unit without waiting; `run --task T` / `run --prompt P` run in the foreground
    (waiting for a running loop), with `--no-wait`, `--wait-timeout SECONDS` and `--force` passed on."""
    if not args:
        return ["systemctl", "--user", "start", "--no-block", f"{agent.task_loop_unit}.service"]
    usage = "run takes nothing, or --task NAME / --prompt TEXT [--no-wait] [--wait-timeout SECONDS] [--force]"
    if len(args) >= 2 and args[0] in ("--task", "--prompt"):
        rest, index = list(args[2:]), 0
        while index < len(rest):
            if rest[index] in RUN_FLAGS:
                index += 1
            elif rest[index] == "--wait-timeout" and index + 1 < len(rest) and _seconds(rest[index + 1]):
                index += 2
            else:
                raise Refused(usage)
        return keystone("loop")(agent, list(args))
    raise Refused(usage)


def _seconds(text: str) -> bool:
    try:
        return float(text) >= 0
    except ValueError:
        return False


def resume(agent: Target, args: list[str]) -> list[str]:
    """`resume [--json]` resumes the paused task loop; `resume TASK [--prompt TEXT]` continues TASK's stored CLI
    session (keystone-agent continue, docs/exec-modes.md)."""
    if not args or args == ["--json"]:
        return keystone("resume")(agent, list(args))
    task, rest = args[0], list(args[1:])
    if task.startswith("-") or not (rest == [] or (len(rest) == 2 and rest[0] == "--prompt")):
        raise Refused("resume takes nothing (resume the loop), --json, or TASK [--prompt TEXT]")
    return keystone("continue")(agent, [task, *rest])


def session(tool: str) -> Expansion:
    def expand(agent: Target, args: list[str]) -> list[str]:
        return keystone("session")(agent, [tool, *args])

    return expand


def host_only(agent: Target, args: list[str]) -> list[str]:
    raise Refused("this verb runs on the admin's side only")


# ------------------------------------------------------------------ the allow-list

def _table(*verbs: Verb) -> dict[str, Verb]:
    return {verb.name: verb for verb in verbs}


VERBS: dict[str, Verb] = _table(
    Verb("tasks", "The agent's task queue (keystone-agent tasks ARGS).", keystone("tasks")),
    Verb("pause", "Pause the task loop, with an optional REASON.", keystone("pause", separator=True)),
    Verb("resume", "Resume the task loop; with TASK [--prompt TEXT], continue that task's CLI session.", resume),
    Verb("paused", "Is the task loop paused? Since when, by whom, why.", keystone("paused")),
    Verb("runs", "Recent loop runs (keystone-agent runs [--limit N] [--json]).", keystone("runs")),
    Verb("logs", "Run or task logs (keystone-agent logs [TASK] [--follow]).", keystone("logs")),
    Verb("info", "Mode, triggers, limits, provider, pause state, current run, next wake and task counts "
         "(keystone-agent info [--json]).", keystone("info")),
    Verb("kill", "Stop the running execution and its process group; the task goes back to pending with the "
         "attempt recorded (keystone-agent kill [--json]).", keystone("kill")),
    Verb("watch", "The agent's events as NDJSON (keystone-agent watch [--follow] [--since ID|TIME] [--types A,B] "
         "[--journal]).", keystone("watch")),
    Verb("task", "One task: add|show|retry|cancel|edit (keystone-agent task ACTION ARGS).", task),
    Verb("validate", "Validate the agent's queue files and configuration.", keystone("validate")),
    *(Verb(v, f"systemctl --user {v} ARGS as the agent.", systemctl(v)) for v in SYSTEMCTL_VERBS),
    Verb("journalctl", "journalctl --user ARGS as the agent (the journal of its user units).", journalctl),
    Verb("exec", "Run CMD ARGS… as the agent, in its environment.", exec_),
    Verb("shell", "A login shell as the agent, in its notes directory.", shell),
    Verb("email", "The agent's inbox: himalaya envelope list ARGS, as the agent.", email),
    Verb("mail", "Send a mail as the agent: mail send --to ADDR --subject TEXT [--in-reply-to MSGID], the body on "
         "stdin (keystone-agent mail send).", mail),
    Verb("run", "Trigger the task loop now, or run one task (--task) or one ad-hoc prompt (--prompt).", run),
    *(Verb(tool, f"An interactive {tool} session as the agent.", session(tool)) for tool in SESSION_TOOLS),
    Verb("vnc", "Open the agent's desktop in remote-viewer (runs here, as you; never forwarded).", host_only,
         host_only=True),
    # comms as the human's own principal (agentctl/comms.py): on the admin's side, straight to the bus
    Verb("send", "Send the agent a message as yourself (comms).", host_only, host_only=True),
    Verb("ask", "Ask the agent a question as yourself; --wait prints the reply.", host_only, host_only=True),
    Verb("inbox", "The agent's comms inbox.", host_only, host_only=True),
    Verb("outbox", "The messages the agent sent.", host_only, host_only=True),
)

# Verbs the helper runs (everything but the admin-side ones).
HELPER_VERBS = tuple(name for name, verb in VERBS.items() if not verb.host_only)


def refusal(verb: str) -> str:
    """The message for a verb that is not allowed (the same on both sides)."""
    reason = REFUSED.get(verb)
    allowed = ", ".join(sorted(VERBS))
    if reason:
        return f"Error: verb '{verb}' is not allowed: {reason}.\nAllowed verbs: {allowed}"
    return f"Error: verb '{verb}' is not allowed (not an agentctl verb).\nAllowed verbs: {allowed}"


def expand(verb: str, agent: Target, args: Sequence[str]) -> list[str]:
    """The argv that VERB ARGS runs as the agent; Refused when the verb or its arguments are not allowed."""
    entry = VERBS.get(verb)
    if entry is None:
        raise Refused(refusal(verb))
    if entry.host_only:
        raise Refused(f"Error: verb '{verb}' runs on the admin's side, not as the agent")
    return entry.expand(agent, list(args))
