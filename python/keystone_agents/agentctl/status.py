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
        "running": None,
        "today": None,
        "lastRunFailure": None,
        "notesConflict": None,
        "state": None,  # running | idle | paused | failing | unreachable (see agent_state)
        "probe": {"ok": True, "error": None},  # could the agent's state be read at all?
        "unknown": [],  # fields that could not be read (shown as "unknown", never as "never"/None)
        "errors": [],
        "warnings": [],
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


INFO_KEYS = ("provider", "model", "fallbackModel", "pause", "lastRun", "taskCounts", "running", "today",
             "lastRunFailure", "notesConflict")
STATE_FIELDS = ("pause", "lastRun", "taskCounts", "running", "today", "notesConflict")


def _probe_failed(report: dict, message: str) -> None:
    report["errors"].append(message)
    if report["probe"]["ok"]:
        report["probe"] = {"ok": False, "error": message}
    report["unknown"] = sorted(set(report["unknown"]) | set(STATE_FIELDS) | {"nextTimer"})


def agent_state(report: dict) -> str:
    """running | idle | paused | failing | unreachable, from what the probe read."""
    if not report["probe"]["ok"]:
        return "unreachable"
    if report.get("running"):
        return "running"
    if (report.get("pause") or {}).get("state") == "paused":
        return "paused"
    if (report.get("lastRun") or {}).get("status") in ("error", "degraded"):
        return "failing"
    return "idle"


def _local(report: dict, config: HostConfig, agent: AgentEntry, project: str | None, timeout: float = 30) -> None:
    runner = AgentRunner(agent, config.systemctl, non_interactive=True)
    try:
        info_argv = runner.verb("info", ["--json"] + (["--project", project] if project else []))
        timer_argv = runner.verb(
            "show", [f"{agent.task_loop_unit}.timer", f"--property={NEXT_ELAPSE}", "--value", "--timestamp=unix"]
        )
    except (DispatchError, verbs.Refused) as exc:
        _probe_failed(report, str(exc))
        return
    try:
        info = run_capture(info_argv, timeout=timeout)
    except subprocess.TimeoutExpired:
        _probe_failed(report, f"keystone-agent info did not answer within {timeout:g}s")
        return
    except OSError as exc:
        _probe_failed(report, f"keystone-agent info: {exc.strerror or exc}")
        return
    if info.returncode == 0:
        try:
            data = json.loads(info.stdout)
            for key in INFO_KEYS:
                report[key] = data.get(key, report[key])
        except json.JSONDecodeError:
            _probe_failed(report, "keystone-agent info: output is not JSON")
    else:
        _probe_failed(report, f"keystone-agent info exited {info.returncode}: "
                              f"{_first_line(info.stderr) or 'no message'}")
    # no readable timer (no user manager, say) is not a failure: the next run is unknown, nothing more
    try:
        timer = run_capture(timer_argv, timeout=min(15.0, timeout))
        if timer.returncode == 0:
            report["nextTimer"] = parse_next_elapse(timer.stdout)
        else:
            report["warnings"].append(f"next timer unknown: systemctl show exited {timer.returncode}: "
                                      f"{_first_line(timer.stderr) or 'no message'}")
    except (OSError, subprocess.TimeoutExpired) as exc:
        report["warnings"].append(f"next timer unknown: systemctl: {exc}")
    if report["nextTimer"] is None and report["warnings"]:
        report["unknown"] = sorted(set(report["unknown"]) | {"nextTimer"})


def _remote(report: dict, config: HostConfig, agent: AgentEntry, host: str, project: str | None,
            timeout: float = 30) -> None:
    args = ["show", agent.name, "--json"] + (["--project", project] if project else [])
    argv = remote.ssh_argv(config, host, args, tty=False)
    try:
        result = run_capture(argv, timeout=timeout)
    except subprocess.TimeoutExpired:
        _probe_failed(report, f"host {host} unreachable: ssh did not answer within {timeout:g}s")
        return
    except OSError as exc:
        _probe_failed(report, f"host {host} unreachable: {exc.strerror or exc}")
        return
    try:
        data = json.loads(result.stdout) if result.stdout.strip() else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        what = "unreachable" if result.returncode == 255 else f"`agentctl show` failed there (exit {result.returncode})"
        _probe_failed(report, f"host {host} {what}: {_first_line(result.stderr) or 'no message'}")
        return
    for key in INFO_KEYS + ("nextTimer",):
        report[key] = data.get(key, report[key])
    report["unknown"] = sorted(set(report["unknown"]) | set(data.get("unknown") or []))
    report["warnings"] += [f"{host}: {w}" for w in data.get("warnings", [])]
    probe = data.get("probe") or {}
    if probe.get("ok") is False or result.returncode != 0:
        _probe_failed(report, f"{host}: {probe.get('error') or _first_line(result.stderr) or 'probe failed'}")
    else:
        report["errors"] += [f"{host}: {e}" for e in data.get("errors", [])]


def show(config: HostConfig, agent: AgentEntry, prefs: Prefs, project: str | None = None,
         timeout: float = 30) -> dict:
    """One agent's state; reading it never takes longer than about `timeout` seconds."""
    report = _base(config, agent, prefs, project)
    host = effective_host(config, agent, prefs)
    try:
        if host is None:
            _local(report, config, agent, project, timeout)
        else:
            _remote(report, config, agent, host, project, timeout)
    finally:
        _overlay_prefs(report, prefs)
        report["state"] = agent_state(report)
    return report
