"""`agentctl show` / `list`: one agent's state in one JSON object.

Local agents report on themselves (`keystone-agent info --json`, run as the agent) and systemd tells the
next timer; an agent on another host is asked over SSH (`agentctl show <agent> --json` there). The admin's
preferences on this host are laid over either: preferred host, provider, model, fallback model.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess

from keystone_agents.agentctl import remote, verbs
from keystone_agents.agentctl.dispatch import AgentRunner, DispatchError, run_capture
from keystone_agents.agentctl.hostconfig import AgentEntry, HostConfig
from keystone_agents.agentctl.prefs import Prefs
from keystone_agents.timeutil import iso_z

NEXT_ELAPSE = "NextElapseUSecRealtime"
EMPTY_PAUSE = {"state": None, "pausedAt": None, "pausedBy": None, "reason": None}


def effective_host(config: HostConfig, agent: AgentEntry, prefs: Prefs) -> str | None:
    """The host commands go to: the preferred one, else the configured one; None when that is here."""
    host = prefs.host or agent.host
    return None if config.is_local_host(host) else host


def parse_next_elapse(value: str) -> str | None:
    """systemctl's NextElapseUSecRealtime (`@<epoch>` with --timestamp=unix, or `Day YYYY-MM-DD HH:MM:SS TZ`)."""
    value = value.strip()
    if not value or value in ("n/a", "0"):
        return None
    match = re.fullmatch(r"@(\d+)(?:\.\d+)?", value)
    if match:
        return iso_z(dt.datetime.fromtimestamp(int(match.group(1)), dt.timezone.utc))
    match = re.fullmatch(r"\w{3} (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?: (UTC))?(?: \S+)?", value)
    if match and match.group(2):
        return iso_z(dt.datetime.fromisoformat(match.group(1)).replace(tzinfo=dt.timezone.utc))
    return value  # a format we do not know: shown as systemd printed it


def _base(config: HostConfig, agent: AgentEntry, prefs: Prefs, project: str | None) -> dict:
    return {
        "agent": agent.name,
        "user": agent.user,
        "configuredHost": agent.host,
        "preferredHost": prefs.host or agent.host,
        "local": effective_host(config, agent, prefs) is None,
        "project": project,
        "provider": None,
        "model": None,
        "fallbackModel": None,
        "vncPort": agent.vnc_port,
        "desktop": agent.desktop,
        "pause": dict(EMPTY_PAUSE),
        "lastRun": None,
        "nextTimer": None,
        "taskCounts": None,
        "errors": [],
    }


def _overlay_prefs(report: dict, prefs: Prefs) -> None:
    own_provider = report["provider"]
    if prefs.provider:
        report["provider"] = prefs.provider
    same = report["provider"] == own_provider
    report["model"] = prefs.model or (report["model"] if same else None)
    report["fallbackModel"] = prefs.fallbackModel or (report["fallbackModel"] if same else None)


def _first_line(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _local(report: dict, config: HostConfig, agent: AgentEntry, project: str | None) -> None:
    runner = AgentRunner(agent, config.systemctl, non_interactive=True)
    try:
        info_argv = runner.verb("info", ["--json"] + (["--project", project] if project else []))
        timer_argv = runner.verb(
            "show", [f"{agent.task_loop_unit}.timer", f"--property={NEXT_ELAPSE}", "--value", "--timestamp=unix"]
        )
    except (DispatchError, verbs.Refused) as exc:
        report["errors"].append(str(exc))
        return
    try:
        info = run_capture(info_argv)
    except (OSError, subprocess.TimeoutExpired) as exc:
        report["errors"].append(f"keystone-agent info: {exc}")
        info = None
    if info is not None and info.returncode == 0:
        try:
            data = json.loads(info.stdout)
            for key in ("provider", "model", "fallbackModel", "pause", "lastRun", "taskCounts"):
                report[key] = data.get(key, report[key])
        except json.JSONDecodeError:
            report["errors"].append("keystone-agent info: output is not JSON")
    elif info is not None:
        report["errors"].append(f"keystone-agent info exited {info.returncode}: {_first_line(info.stderr)}")
    try:
        timer = run_capture(timer_argv, timeout=15)
        if timer.returncode == 0:
            report["nextTimer"] = parse_next_elapse(timer.stdout)
        else:
            report["errors"].append(f"systemctl show exited {timer.returncode}: {_first_line(timer.stderr)}")
    except (OSError, subprocess.TimeoutExpired) as exc:
        report["errors"].append(f"systemctl: {exc}")


def _remote(report: dict, config: HostConfig, agent: AgentEntry, host: str, project: str | None) -> None:
    args = ["show", agent.name, "--json"] + (["--project", project] if project else [])
    argv = remote.ssh_argv(config, host, args, tty=False)
    try:
        result = run_capture(argv, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        report["errors"].append(f"ssh {host}: {exc}")
        return
    if result.returncode != 0:
        report["errors"].append(f"ssh {host} exited {result.returncode}: {_first_line(result.stderr)}")
        return
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError:
        report["errors"].append(f"ssh {host}: `agentctl show` did not print JSON")
        return
    for key in ("provider", "model", "fallbackModel", "pause", "lastRun", "nextTimer", "taskCounts"):
        report[key] = data.get(key, report[key])
    report["errors"] += [f"{host}: {e}" for e in data.get("errors", [])]


def show(config: HostConfig, agent: AgentEntry, prefs: Prefs, project: str | None = None) -> dict:
    report = _base(config, agent, prefs, project)
    host = effective_host(config, agent, prefs)
    if host is None:
        _local(report, config, agent, project)
    else:
        _remote(report, config, agent, host, project)
    _overlay_prefs(report, prefs)
    return report
