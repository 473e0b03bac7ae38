"""The fleet at a glance: every agent probed in parallel (bounded, each within its timeout), rendered for a
person (`agentctl list`, `agentctl status`) or as JSON. A probe that fails is shown with its reason and makes
the command exit 1; what could not be read is printed as "unknown", never as "never" or "None".
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from keystone_agents.agentctl import status
from keystone_agents.agentctl.hostconfig import AgentEntry, HostConfig
from keystone_agents.agentctl.prefs import PrefsStore

DEFAULT_TIMEOUT = 20.0  # seconds per agent
MAX_PARALLEL = 8
UNKNOWN = "unknown"


def probe_all(config: HostConfig, prefs: PrefsStore, timeout: float = DEFAULT_TIMEOUT,
              parallel: int = MAX_PARALLEL,
              show: Callable[..., dict] = status.show) -> list[dict]:
    """One `show` report per agent, in the host configuration's order, at most `parallel` at a time."""
    agents = list(config.agents)
    if not agents:
        return []

    def one(agent: AgentEntry) -> dict:
        try:
            return show(config, agent, prefs.get(agent.name), None, timeout)
        except Exception as exc:  # noqa: BLE001 - one agent's surprise must not hide the others
            report = status._base(config, agent, prefs.get(agent.name), None)
            status._probe_failed(report, f"probe failed: {type(exc).__name__}: {exc}")
            report["state"] = status.agent_state(report)
            return report

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(agents)))) as pool:
        return list(pool.map(one, agents))


def failed(reports: list[dict]) -> list[dict]:
    return [r for r in reports if not r["probe"]["ok"]]


def _known(report: dict, field: str) -> bool:
    return field not in report.get("unknown", [])


def last_run_text(report: dict) -> str:
    if not _known(report, "lastRun"):
        return UNKNOWN
    last = report.get("lastRun")
    if not last:
        return "never"
    return f"{last.get('status') or '?'} {_short_time(last.get('startedAt'))}"


def next_timer_text(report: dict) -> str:
    if not _known(report, "nextTimer"):
        return UNKNOWN
    return _short_time(report.get("nextTimer")) if report.get("nextTimer") else "none"


def _short_time(value) -> str:
    if not value:
        return "-"
    try:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone()
    except ValueError:
        return str(value)
    now = dt.datetime.now().astimezone()
    if moment.date() == now.date():
        return moment.strftime("%H:%M")
    if moment.year == now.year:
        return moment.strftime("%b %d %H:%M")
    return moment.strftime("%Y-%m-%d %H:%M")


def queue_text(report: dict) -> str:
    counts = report.get("taskCounts")
    if not _known(report, "taskCounts") or not isinstance(counts, dict):
        return UNKNOWN
    return f"{counts.get('pending', 0)} pending, {counts.get('blocked', 0)} blocked"


def today_text(report: dict) -> str:
    today = report.get("today")
    if not _known(report, "today") or not isinstance(today, dict):
        return UNKNOWN
    return f"{today.get('tokens', 0)} tok ${float(today.get('costUsd') or 0):.2f}"


def needs_human(report: dict) -> list[str]:
    """Why a person should look at this agent (empty: nothing)."""
    reasons = []
    if not report["probe"]["ok"]:
        reasons.append(f"unreachable: {report['probe']['error']}")
        return reasons
    counts = report.get("taskCounts") or {}
    if counts.get("blocked"):
        reasons.append(f"{counts['blocked']} blocked task(s)")
    if counts.get("invalid"):
        reasons.append(f"{counts['invalid']} invalid task entr{'y' if counts['invalid'] == 1 else 'ies'}")
    if report.get("notesConflict"):
        reasons.append("notes sync conflict (resolve it, then `keystone-agent sync --resolved`)")
    last = report.get("lastRun") or {}
    if last.get("status") in ("error", "degraded"):
        why = report.get("lastRunFailure")
        reasons.append(f"last run {last['status']}" + (f": {why}" if why else ""))
    return reasons


def _table(columns: tuple[str, ...], rows: list[tuple]) -> list[str]:
    table = [columns, *rows]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(columns))]
    return ["  ".join(str(c).ljust(widths[i]) for i, c in enumerate(line)).rstrip() for line in table]


def render_list(reports: list[dict]) -> str:
    columns = ("AGENT", "HOST", "STATE", "LOOP", "LAST RUN", "NEXT", "PENDING", "PROVIDER", "MODEL")
    rows = []
    for r in reports:
        counts = r.get("taskCounts") or {}
        loop = (r.get("pause") or {}).get("state") if _known(r, "pause") else None
        rows.append((
            r["agent"], r.get("preferredHost") or "local", r.get("state") or UNKNOWN, loop or UNKNOWN,
            last_run_text(r), next_timer_text(r),
            str(counts.get("pending", 0)) if _known(r, "taskCounts") and counts else UNKNOWN,
            r.get("provider") or "-", r.get("model") or "-",
        ))
    lines = _table(columns, rows)
    for r in reports:
        if not r["probe"]["ok"]:
            lines.append(f"{r['agent']}: {r['probe']['error']}")
        elif r.get("state") == "failing":
            last = r.get("lastRun") or {}
            lines.append(f"{r['agent']}: last run {last.get('status')}"
                         + (f": {r['lastRunFailure']}" if r.get("lastRunFailure") else ""))
    return "\n".join(lines)


def render_status(reports: list[dict]) -> str:
    columns = ("AGENT", "STATE", "LAST RUN", "NEXT", "QUEUE", "TODAY")
    rows = [(r["agent"], r.get("state") or UNKNOWN, last_run_text(r), next_timer_text(r), queue_text(r),
             today_text(r)) for r in reports]
    lines = _table(columns, rows)
    states = {}
    for r in reports:
        states[r.get("state") or UNKNOWN] = states.get(r.get("state") or UNKNOWN, 0) + 1
    lines += ["", f"{len(reports)} agent(s): " + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))]
    attention = [(r["agent"], needs_human(r)) for r in reports]
    attention = [(name, why) for name, why in attention if why]
    lines.append("")
    if attention:
        lines.append("Needs a human:")
        for name, why in attention:
            lines.append(f"  {name}: " + "; ".join(why))
    else:
        lines.append("Nothing needs a human.")
    return "\n".join(lines)


def status_json(reports: list[dict]) -> dict:
    return {
        "agents": [{**r, "needsHuman": needs_human(r)} for r in reports],
        "needsHuman": {r["agent"]: needs_human(r) for r in reports if needs_human(r)},
        "probesFailed": [r["agent"] for r in failed(reports)],
    }
