"""`agentctl`: the host-side CLI with which humans inspect and steer agents.

    agentctl list [--json] [--timeout S] [--parallel N]
    agentctl status [--json] [--timeout S] [--parallel N]
    agentctl show AGENT [--project SLUG] [--json]
    agentctl prefs get|set|clear AGENT [--project SLUG] [--host H] [--provider P] [--model M] [--fallback-model F]
    agentctl completion bash|zsh|fish
    agentctl AGENT VERB [ARGS…]

`agentctl AGENT …` runs as the agent (directly when the agent is the current user, else through its sudo
helper) or, for an agent living on another host, is forwarded there with ssh (except `vnc`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import click
from click.shell_completion import get_completion_class

from keystone_agents import __version__
from keystone_agents.agentctl import fleet, remote, sessions, status, verbs
from keystone_agents.agentctl.dispatch import AgentRunner, DispatchError, run_passthrough
from keystone_agents.agentctl.hostconfig import AgentEntry, HostConfig, load
from keystone_agents.agentctl.prefs import PROVIDERS, PrefsStore
from keystone_agents.cli.common import EXIT_PROBLEMS, SafeGroup, echo_json
from keystone_agents.problems import ValidationFailed

EXIT_REFUSED = verbs.EXIT_REFUSED  # a verb that is not allow-listed is bad usage


@dataclass
class State:
    config_path: Path | None
    _config: HostConfig | None = field(default=None, repr=False)

    @property
    def config(self) -> HostConfig:
        if self._config is None:
            try:
                self._config = load(self.config_path)
            except ValidationFailed as exc:
                for problem in exc.problems:
                    click.echo(f"error: {problem}", err=True)
                sys.exit(EXIT_PROBLEMS)
        return self._config

    def quiet_config(self) -> HostConfig | None:
        """The config, or None when it cannot be loaded (for shell completion and help)."""
        if self._config is None:
            try:
                self._config = load(self.config_path)
            except (ValidationFailed, OSError):
                return None
        return self._config

    @property
    def prefs(self) -> PrefsStore:
        return PrefsStore()

    def agent(self, name: str) -> AgentEntry:
        entry = self.config.get(name)
        if entry is None:
            unknown_agent(name, self.config.names())
        return entry


def unknown_agent(name: str, known: list[str]) -> None:
    """`Error: unknown agent 'x'` with the close matches and the known agents; exit 1."""
    import difflib

    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    click.echo(f"Error: unknown agent '{name}'{hint}\nKnown agents: {', '.join(known) or 'none'}", err=True)
    sys.exit(EXIT_PROBLEMS)


def _state(ctx: click.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State(root.params.get("config_path"))
    return root.obj


def _agent_names(ctx: click.Context, param, incomplete: str):
    config = _state(ctx).quiet_config()
    from click.shell_completion import CompletionItem

    return [CompletionItem(n) for n in (config.names() if config else []) if n.startswith(incomplete)]


def _finish(code: int) -> None:
    if code:
        sys.exit(code)


# ------------------------------------------------------------------ per-agent verbs


def _runner(ctx: click.Context) -> AgentRunner:
    return AgentRunner(ctx.meta["agentctl.agent"], _state(ctx).config.systemctl)


def _run_verb(ctx: click.Context, name: str, args: list[str]) -> None:
    """Run `agentctl AGENT NAME ARGS…` as the agent (see agentctl/dispatch.py and agentctl/verbs.py)."""
    try:
        argv = _runner(ctx).verb(name, list(args))
    except DispatchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_PROBLEMS)
    except verbs.Refused as exc:
        message = str(exc)
        click.echo(message if message.startswith("Error:") else f"Error: {message}", err=True)
        sys.exit(EXIT_REFUSED)
    _finish(run_passthrough(argv))


PASSTHROUGH = {"ignore_unknown_options": True, "allow_interspersed_args": False, "help_option_names": []}


def _passthrough_verb(verb: verbs.Verb) -> click.Command:
    """A verb whose ARGS go to the agent's side unchanged (most of them)."""

    @click.command(verb.name, help=verb.help, context_settings=PASSTHROUGH)
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    @click.pass_context
    def command(ctx, args):
        _run_verb(ctx, verb.name, list(args))

    return command


@click.command("vnc", context_settings=PASSTHROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def vnc_verb(ctx, args):
    """Open the agent's desktop in remote-viewer (runs here, as you; never forwarded)."""
    state, agent = _state(ctx), ctx.meta["agentctl.agent"]
    if not agent.desktop or not agent.vnc_port:
        click.echo(f"error: agent '{agent.name}' has no desktop (no vncPort in the host configuration)", err=True)
        sys.exit(EXIT_PROBLEMS)
    host = status.effective_host(state.config, agent, state.prefs.get(agent.name))
    target = remote.target_host(host) if host else "localhost"
    _finish(run_passthrough(["remote-viewer", f"vnc://{target}:{agent.vnc_port}", *args]))


@click.command("run")
@click.option("--task", "task_name", help="Run this one task now.")
@click.option("--prompt", help="Run this ad-hoc prompt now (recorded in TASKS.yaml as task adhoc-<timestamp>).")
@click.option("--no-wait", is_flag=True, help="Exit 75 at once if the loop is running (default: wait for it).")
@click.option("--wait-timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Wait at most this long for a running loop (default 1800), then exit 75.")
@click.option("--force", is_flag=True, help="Run even though the agent is paused (else exit 75).")
@click.pass_context
def run_verb(ctx, task_name, prompt, no_wait, wait_timeout, force):
    """Trigger the task loop now (its systemd unit, without waiting), or run one task or one ad-hoc prompt
    in the foreground: it waits for a running loop to finish, and a paused agent refuses it (exit 75)
    unless --force."""
    if task_name and prompt:
        raise click.UsageError("--task and --prompt exclude each other")
    extra = (["--no-wait"] if no_wait else []) + (["--force"] if force else []) + (
        ["--wait-timeout", f"{wait_timeout:g}"] if wait_timeout is not None else [])
    if task_name:
        _run_verb(ctx, "run", ["--task", task_name, *extra])
    elif prompt:
        _run_verb(ctx, "run", ["--prompt", prompt, *extra])
    else:
        _run_verb(ctx, "run", [])


def _session_verb(tool: str) -> click.Command:
    @click.command(tool, context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
    @click.option("--role", "-r", help="Mode of the agent's manifests/modes.yaml to compose the prompt from.")
    @click.option("--roles", help="Extra role templates, comma-separated (R1,R2).")
    @click.option("--project", "-p", help="Project slug: its context and your per-project preferences.")
    @click.option("--devshell/--no-devshell", default=True, help="Use the agent space's nix dev shell if it has one.")
    @click.argument("tool_args", nargs=-1, type=click.UNPROCESSED)
    @click.pass_context
    def command(ctx, role, roles, project, devshell, tool_args):
        state, agent = _state(ctx), ctx.meta["agentctl.agent"]
        model = sessions.preferred_model(tool, state.prefs.get(agent.name, project))
        args = sessions.host_args(tool, role, roles, project, model, list(tool_args), devshell)
        _run_verb(ctx, tool, args[1:])

    command.help = (
        f"An interactive {tool} session as the agent, with the system prompt composed from its notes "
        f"(AGENTS.md, --project context, --role/--roles composition). Arguments after the options go to {tool}."
    )
    return command


def _complete_task_args(ctx: click.Context, param, incomplete: str):
    """`agentctl AGENT task ACTION NAME`: the actions, then the agent's task names (when its TASKS.yaml is
    readable from here, i.e. a local agent and an admin who may read it)."""
    from click.shell_completion import CompletionItem

    done = list(ctx.params.get("args") or [])
    if not done:
        return [CompletionItem(a) for a in verbs.TASK_ACTIONS if a.startswith(incomplete)]
    if len(done) != 1 or done[0] == "add":
        return []
    try:
        from keystone_agents.taskfile import TaskFile

        agent = _state(ctx).quiet_config().get(ctx.parent.info_name)
        names = [e.name for e in TaskFile.load(Path(agent.home) / "TASKS.yaml").entries if e.name]
    except Exception:  # noqa: BLE001 - completion must never print a traceback
        names = []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


@click.command("task", context_settings=PASSTHROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED, shell_complete=_complete_task_args)
@click.pass_context
def task_verb(ctx, args):
    """One task of the agent: add|show|retry|cancel|edit ARGS (keystone-agent task … as the agent)."""
    _run_verb(ctx, "task", list(args))


# Verbs with options of their own on the admin's side; every other verb of the allow-list passes its ARGS on.
from keystone_agents.agentctl import audit_shared as _audit_shared  # noqa: E402
from keystone_agents.agentctl import approvals as _approvals  # noqa: E402
from keystone_agents.agentctl import comms as _comms  # noqa: E402

CUSTOM_VERBS: dict[str, click.Command] = {
    "task": task_verb,
    "vnc": vnc_verb,
    "send": _comms.send_verb,
    "ask": _comms.ask_verb,
    "inbox": _comms.inbox_verb,
    "outbox": _comms.outbox_verb,
    "run": run_verb,
    **{tool: _session_verb(tool) for tool in sessions.TOOLS},
}
VERBS: dict[str, click.Command] = {
    name: CUSTOM_VERBS.get(name) or _passthrough_verb(verb) for name, verb in verbs.VERBS.items()
}


def _project_in(args: list[str]) -> str | None:
    """--project/-p SLUG among the arguments (up to --): it selects per-project preferences (host)."""
    for index, arg in enumerate(args):
        if arg == "--":
            break
        if arg in ("--project", "-p") and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("--project="):
            return arg.split("=", 1)[1]
    return None


refusal = verbs.refusal


class AgentGroup(click.Group):
    """`agentctl AGENT VERB …`: refuses what is not allow-listed, forwards to the agent's host if remote."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["agentctl.raw"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        state = _state(ctx)
        agent = state.agent(self.name)
        ctx.meta["agentctl.agent"] = agent
        raw = ctx.meta.get("agentctl.raw", [])
        if raw and raw[0] not in self.commands and raw[0] not in ("-h", "--help"):
            click.echo(refusal(raw[0]), err=True)
            sys.exit(EXIT_REFUSED)
        if raw and raw[0] in self.commands and raw[0] not in remote.NOT_FORWARDED:
            host = status.effective_host(state.config, agent, state.prefs.get(agent.name, _project_in(raw[1:])))
            if host is not None:
                _finish(run_passthrough(remote.ssh_argv(state.config, host, [agent.name, *raw])))
                return None
        return super().invoke(ctx)


def _agent_group(name: str) -> AgentGroup:
    group = AgentGroup(
        name,
        commands=VERBS,
        help=f"Commands for agent '{name}' (run as agent, or forwarded to its host).",
        invoke_without_command=False,
        no_args_is_help=True,
    )
    return group


class AgentctlGroup(SafeGroup):
    """Built-in commands, plus one sub-group per agent of the host configuration."""

    def list_commands(self, ctx):
        config = _state(ctx).quiet_config()
        return super().list_commands(ctx) + (config.names() if config else [])

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        state = _state(ctx)
        config = state.quiet_config() if ctx.resilient_parsing else state.config
        if config is not None and config.get(name) is not None:
            return _agent_group(name)
        return None

    def resolve_command(self, ctx, args):
        name = args[0] if args else ""
        if self.get_command(ctx, name) is None and not ctx.resilient_parsing and not name.startswith("-"):
            unknown_agent(name, _state(ctx).config.names() + sorted(self.commands))
        return super().resolve_command(ctx, args)


@click.group(cls=AgentctlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agentctl")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Host configuration JSON (default: $AGENTCTL_CONFIG, else /etc/keystone-agents/agentctl.json).",
)
@click.pass_context
def cli(ctx, config_path):
    """Inspect and steer the agents of this host (and, over SSH, of other hosts).

    \b
    agentctl list | status | show AGENT | prefs … | completion SHELL
    agentctl AGENT VERB [ARGS…]   (agentctl AGENT --help lists the verbs)

    Exit codes: the command's own when it ran as the agent or over ssh; 1 for an unknown agent, an invalid
    host configuration or a failure; 2 for bad usage and refused verbs.
    """
    ctx.obj = State(config_path)


# ------------------------------------------------------------------ top-level commands


TIMEOUT_OPTION = click.option(
    "--timeout", type=click.FloatRange(min=0.1), default=fleet.DEFAULT_TIMEOUT, show_default=True, metavar="S",
    help="Seconds each agent's probe may take (agents are probed in parallel).")
PARALLEL_OPTION = click.option(
    "--parallel", type=click.IntRange(min=1), default=fleet.MAX_PARALLEL, show_default=True, metavar="N",
    help="Agents probed at the same time.")


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of `show` objects.")
@TIMEOUT_OPTION
@PARALLEL_OPTION
@click.pass_context
def list_command(ctx, as_json, timeout, parallel):
    """Every agent with its host, state, loop state, last run, next timer and pending tasks. Agents are probed
    in parallel, each within --timeout; an agent whose state cannot be read (unreachable host, sudo or its
    helper refused, `keystone-agent info` failing) is listed with the reason and the exit code is 1. A next
    timer that cannot be read (no user manager) is shown as unknown and is not a failure."""
    state = _state(ctx)
    reports = fleet.probe_all(state.config, state.prefs, timeout, parallel)
    if as_json:
        echo_json(reports)
    else:
        click.echo(fleet.render_list(reports))
    _finish(EXIT_PROBLEMS if fleet.failed(reports) else 0)


@cli.command("status")
@click.option("--json", "as_json", is_flag=True,
              help="Print {agents: [...], needsHuman: {agent: [reasons]}, probesFailed: [...]}.")
@TIMEOUT_OPTION
@PARALLEL_OPTION
@click.pass_context
def status_command(ctx, as_json, timeout, parallel):
    """The fleet at a glance: each agent's state (running, idle, paused, failing, unreachable), last run
    and its outcome, next timer, queue counts, today's tokens and cost; then the agents that need a human
    (blocked tasks, a notes-sync conflict, failing runs, unreachable). Exit 1 when a probe failed.
    (`agentctl AGENT status` is systemctl's status of that agent's own units.)"""
    state = _state(ctx)
    reports = fleet.probe_all(state.config, state.prefs, timeout, parallel)
    if as_json:
        echo_json(fleet.status_json(reports))
    else:
        click.echo(fleet.render_status(reports))
    _finish(EXIT_PROBLEMS if fleet.failed(reports) else 0)


@cli.command("show")
@click.argument("agent", shell_complete=_agent_names)
@click.option("--project", help="Apply your preferences for this project and count only its tasks.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON object.")
@TIMEOUT_OPTION
@click.pass_context
def show_command(ctx, agent, project, as_json, timeout):
    """One agent: state, configured and preferred host, provider, model, fallback model, VNC port, pause
    state, last run, next timer, task counts by status, today's tokens and cost, and what needs a human.
    Exit 1 when its state could not be read."""
    state = _state(ctx)
    entry = state.agent(agent)
    report = status.show(state.config, entry, state.prefs.get(agent, project), project, timeout)
    if as_json:
        echo_json(report)
        _finish(EXIT_PROBLEMS if not report["probe"]["ok"] else 0)
        return
    pause = report["pause"]
    last = report["lastRun"]
    unknown = set(report["unknown"])
    loop = "unknown" if "pause" in unknown else pause["state"] or "unknown"
    if pause.get("state") == "paused":
        loop += f" since {pause['pausedAt']} by {pause['pausedBy']}"
    if pause.get("reason"):
        loop += f" — {pause['reason']}"
    running = report.get("running")
    lines = [
        f"agent:          {report['agent']} ({report['user']})",
        f"state:          {report['state']}" + (f" (task {running['task']})" if running and running.get("task") else ""),
        f"host:           {report['configuredHost'] or 'local'} (preferred: {report['preferredHost'] or 'local'})",
        f"provider/model: {report['provider'] or '-'} / {report['model'] or '-'} (fallback {report['fallbackModel'] or '-'})",
        f"vnc port:       {report['vncPort'] or '-'}",
        f"loop:           {loop}",
        f"last run:       {fleet.last_run_text(report)}" + (f" (started {last['startedAt']})" if last else ""),
        f"next timer:     {fleet.next_timer_text(report)}",
        "tasks:          " + ("unknown" if "taskCounts" in unknown or not report["taskCounts"]
                              else ", ".join(f"{n} {s}" for s, n in report["taskCounts"].items())),
        f"today:          {fleet.today_text(report)}",
    ]
    for reason in fleet.needs_human(report):
        lines.append(f"needs a human:  {reason}")
    click.echo("\n".join(lines))
    for warning in report["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    for error in report["errors"]:
        click.echo(f"error: {error}", err=True)
    _finish(EXIT_PROBLEMS if not report["probe"]["ok"] else 0)


@cli.group("prefs")
def prefs_group():
    """Your preferences per agent (and per agent within a project): host, provider, model, fallback model.
    Stored in $XDG_CONFIG_HOME/keystone/agentctl-prefs.json; used by `show` and interactive sessions."""


@prefs_group.command("get")
@click.argument("agent", shell_complete=_agent_names)
@click.option("--project", help="The project's preferences over the agent's.")
@click.pass_context
def prefs_get(ctx, agent, project):
    """Print the effective preferences as JSON."""
    _state(ctx).agent(agent)
    echo_json({"agent": agent, "project": project, **PrefsStore().get(agent, project).as_dict()})


@prefs_group.command("set")
@click.argument("agent", shell_complete=_agent_names)
@click.option("--project", help="Set them for this project only.")
@click.option("--host", help="Preferred host (commands are forwarded there).")
@click.option("--provider", type=click.Choice(PROVIDERS), help="Preferred provider.")
@click.option("--model", help="Preferred model.")
@click.option("--fallback-model", help="Preferred fallback model.")
@click.pass_context
def prefs_set(ctx, agent, project, host, provider, model, fallback_model):
    """Set preferences (only the given ones change)."""
    _state(ctx).agent(agent)
    if not any((host, provider, model, fallback_model)):
        raise click.UsageError("nothing to set: give --host, --provider, --model or --fallback-model")
    prefs = PrefsStore().set(agent, project, host=host, provider=provider, model=model, fallbackModel=fallback_model)
    echo_json({"agent": agent, "project": project, **prefs.as_dict()})


@prefs_group.command("clear")
@click.argument("agent", shell_complete=_agent_names)
@click.option("--project", help="Clear only the project's preferences for the agent.")
@click.pass_context
def prefs_clear(ctx, agent, project):
    """Remove the agent's (or the project's) preferences."""
    _state(ctx).agent(agent)
    removed = PrefsStore().clear(agent, project)
    click.echo(f"Cleared preferences for '{agent}'" + (f" in project '{project}'" if project else "") if removed
               else f"No preferences for '{agent}'" + (f" in project '{project}'" if project else ""))


@cli.command("watch", context_settings={"ignore_unknown_options": True})
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events (Ctrl-C stops).")
@click.option("--since", metavar="ID|TIME", help="Passed to each agent's watch.")
@click.option("--types", metavar="A,B", help="Only these event names.")
@click.option("--agent", "agents", multiple=True, help="Only this agent (repeatable); default: every local agent.")
@click.option("--all", "fleet", is_flag=True, help="Every agent of every host, from the PostgreSQL bus's event "
              "table (coordination.backend postgresql; as yourself: an admin sees every agent).")
@click.pass_context
def watch_command(ctx, follow, since, types, agents, fleet):
    """Every local agent's events as NDJSON on one stream; each line carries its "agent". With --all, every
    agent of every host from the bus's event table (each line also carries its "host")."""
    import json
    import subprocess
    import threading

    state = _state(ctx)
    if fleet:
        _watch_fleet(state, follow, since, types, agents)
        return
    chosen = [state.agent(name) for name in agents] if agents else [
        a for a in state.config.agents if status.effective_host(state.config, a, state.prefs.get(a.name)) is None]
    args = (["--follow"] if follow else []) + (["--since", since] if since else []) + (
        ["--types", types] if types else [])
    lock = threading.Lock()
    procs = []
    for agent in chosen:
        try:
            argv = AgentRunner(agent, state.config.systemctl).verb("watch", args)
        except (DispatchError, verbs.Refused) as exc:
            click.echo(f"warning: {agent.name}: {exc}", err=True)
            continue
        try:
            procs.append((agent, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                                  stdin=subprocess.DEVNULL)))
        except OSError as exc:
            click.echo(f"warning: {agent.name}: cannot run {argv[0]}: {exc.strerror}", err=True)

    def pump(agent, proc):
        for raw in proc.stdout:
            try:
                item = json.loads(raw)
                item["agent"] = agent.name if not isinstance(item, dict) or "agent" not in item else item["agent"]
                text = json.dumps(item, separators=(",", ":"))
            except (ValueError, TypeError):
                text = json.dumps({"agent": agent.name, "line": raw.rstrip("\n")})
            with lock:
                click.echo(text)

    threads = [threading.Thread(target=pump, args=pair, daemon=True) for pair in procs]
    for thread in threads:
        thread.start()
    failed = 0
    try:
        for (agent, proc), thread in zip(procs, threads):
            proc.wait()
            thread.join()
            if proc.returncode:
                failed += 1
                click.echo(f"warning: {agent.name}: watch exited {proc.returncode}: "
                           f"{(proc.stderr.read() or '').strip()[:300]}", err=True)
    except KeyboardInterrupt:
        for _, proc in procs:
            proc.terminate()
    _finish(EXIT_PROBLEMS if failed else 0)


def _watch_fleet(state, follow, since, types, agents) -> None:
    """`agentctl watch --all`: the PostgreSQL bus's fleet event table, read as the calling human."""
    import json

    from keystone_agents import watch
    from keystone_agents.coordination.base import BusError
    from keystone_agents.coordination.factory import open_bus, settings_from_host

    settings = settings_from_host(state.config.coordination or {})
    if settings.backend != "postgresql":
        raise click.UsageError(f"--all reads the PostgreSQL bus's event table; this host's coordination.backend "
                               f"is {settings.backend!r} (without --all: every local agent)")
    try:
        cursor = watch.parse_since(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    cursor.types = [t.strip() for t in (types or "").split(",") if t.strip()]
    bus = None
    try:
        bus = open_bus(settings)
        if follow and since is None:
            cursor.after_id = bus.events_cursor(None)
        for item in watch.read_bus(bus, cursor, list(agents), follow=follow):
            click.echo(json.dumps(item, default=str, separators=(",", ":")))
    except BusError as exc:
        click.echo(f"error: {exc.message}", err=True)
        _finish(EXIT_PROBLEMS)
    except KeyboardInterrupt:
        pass
    finally:
        if bus is not None:
            bus.close()


@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion_command(shell):
    """Print the completion script for SHELL (see docs/agentctl.md for where to put it)."""
    cls = get_completion_class(shell)
    click.echo(cls(cli, {}, "agentctl", "_AGENTCTL_COMPLETE").source())


def main() -> None:
    cli(prog_name="agentctl")


cli.add_command(_comms.hierarchy_command)
cli.add_command(_audit_shared.shared_group)
cli.add_command(_audit_shared.audit_group)
cli.add_command(_approvals.approvals_group)
