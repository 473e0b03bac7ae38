"""Proactive think cycles and tick cycles (`keystone-agent loop --trigger think|tick`).

Think: a deterministic briefing — no model involved — of what changed since the last think cycle:
tasks added or changed status, the sources' content (the loop's fingerprint), and, when `maxQuietSeconds`
is set, a think that is overdue. An empty briefing ends the cycle with a `think_skipped` event and no provider
call (0 tokens on an idle cycle). A non-empty one becomes task `think-<time>` (source `think`) whose prompt
is the standing instructions (`exec.instructions`, else notes/INSTRUCTIONS.md) and the briefing; it is
executed at once. The first cycle only records the baseline. With a coordination bus the briefing also has
the unread messages of the agent's inbox, the shared keys other agents changed under `exec.watchPrefixes`
(coordination/watched.py; a write there also wakes the agent and starts a think at once), and approvals
decided since the last think (`approval_items`, the approval queue's hook). Each has its own cursor in
state/think.json, so the same news is briefed once.

Tick: every tick is one task `tick-<n>` (source `tick`) with the instructions, executed by the execute
stage's provider, which must be local (modes.local_provider_problem). A report `"status": "end_tick"` ends
the session: state/tick-ended is written (the tick units' ConditionPathExists) and the timer stops itself
(`systemctl --user stop agent-<name>-tick.timer`). `exec.timeout` (seconds from the first cycle, 0: none) is
the session deadline of both think and tick agents.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from keystone_agents.loop.state import read_json, write_json

THINK_STATE = "think.json"
TICK_STATE = "tick.json"
TICK_ENDED = "tick-ended"
OWN_PREFIXES = ("think-", "tick-")  # the cycles' own tasks are not news


@dataclass
class Briefing:
    items: list[str] = field(default_factory=list)
    baseline: bool = False  # the first cycle: state recorded, nothing to compare with

    @property
    def empty(self) -> bool:
        return not self.items


def task_states(space) -> dict[str, str]:
    """name → status of the valid tasks, the cycles' own left out."""
    from keystone_agents.taskfile import read_plain

    return {str(e.get("name")): str(e.get("status")) for e in read_plain(space.tasks_file)
            if isinstance(e, dict) and e.get("name") and not str(e["name"]).startswith(OWN_PREFIXES)}


def sources_fingerprint(space) -> str:
    quiescent = read_json(space.state_dir / "quiescent.json")
    if isinstance(quiescent, dict) and isinstance(quiescent.get("fingerprint"), dict):
        return str(quiescent["fingerprint"].get("sources") or "")
    return ""


BUS_STATE = ("shared_seq", "messages_briefed", "approvals_briefed")  # think.json: the bus sections' cursors
MAX_ITEMS = 20  # per bus section; the rest are counted


def shared_cursor(space) -> int | None:
    """The last shared-state change seq the think cycles have briefed (None: no think cycle yet)."""
    state = read_json(space.state_dir / THINK_STATE)
    if isinstance(state, dict) and isinstance(state.get("shared_seq"), int):
        return state["shared_seq"]
    return None


def _capped(items: list[str], what: str) -> list[str]:
    if len(items) <= MAX_ITEMS:
        return items
    return items[:MAX_ITEMS] + [f"… and {len(items) - MAX_ITEMS} more {what}."]


def message_items(bus, config, previous: dict, state: dict) -> list[str]:
    """Unread messages (queued or leased in the inbox, not yet tasks) not briefed before."""
    unread = bus.inbox(["queued", "leased"], 100)
    state["messages_briefed"] = [m.id for m in unread]
    seen = set(previous.get("messages_briefed") or ())
    items = []
    for m in unread:
        if m.id not in seen:
            about = f" ({m.subject})" if m.subject else ""
            items.append(f"Unread {m.kind} {m.id} from {m.sender}{about}.")
    return _capped(items, "unread messages")


def shared_items(bus, config, previous: dict, state: dict) -> list[str]:
    """Shared keys other agents changed under exec.watchPrefixes since the last think."""
    from keystone_agents.coordination import watched

    prefixes = config.exec.watch_prefixes
    if not prefixes:
        return []
    after = previous.get("shared_seq")
    if not isinstance(after, int):  # the first time with a bus: start at the newest change
        state["shared_seq"] = watched.changes_after(bus, prefixes, 0, config.agent_name)[1]
        return []
    changes, state["shared_seq"] = watched.changes_after(bus, prefixes, after, config.agent_name)
    return _capped([watched.describe(c) for c in watched.latest_per_key(changes)], "changed shared keys")


DECIDED = ("approved", "rejected")


def approval_items(bus, config, previous: dict, state: dict) -> list[str]:
    """Approvals of this agent decided since the last think. The hook of the approval queue (policy tiers):
    it briefs what the bus's `approvals_list(state=…)` returns for the decided states, once per approval id;
    a bus without an approval queue contributes nothing."""
    lister = getattr(bus, "approvals_list", None)
    if lister is None:
        return []
    decided = [a for state_name in DECIDED for a in lister(state=state_name)]
    decided.sort(key=lambda a: (str(a.get("decided_at") or ""), str(a.get("id"))))
    seen = set(previous.get("approvals_briefed") or ())
    state["approvals_briefed"] = [str(a.get("id")) for a in decided][-500:]
    items = [f"Approval {a.get('id')} ({a.get('action') or 'action'}, task {a.get('task') or '?'}) was "
             f"{a.get('state')} by {a.get('decided_by') or 'an admin'}." for a in decided if str(a.get("id")) not in seen]
    return _capped(items, "decided approvals")


BUS_SECTIONS = (message_items, shared_items, approval_items)


def bus_items(bus, config, previous: dict, state: dict, log=None) -> list[str]:
    """The bus's sections of the briefing. A bus that fails is a warning and no items, never a crash: the
    cursors stay where they were, so nothing is skipped."""
    from keystone_agents.coordination.base import BusError

    items: list[str] = []
    for section in BUS_SECTIONS:
        try:
            items += section(bus, config, previous, state)
        except BusError as exc:
            for key in BUS_STATE:
                if key in previous:
                    state[key] = previous[key]
            if log is not None:
                log.warning("log", msg=f"think: the briefing's {section.__name__} could not be read: {exc.message}",
                            step="think", status="error")
    return items


def briefing(space, config, now: float | None = None, bus=None, log=None) -> tuple[Briefing, dict]:
    """→ (the briefing, the state to save once the cycle is done). Deterministic: the same files (and bus
    contents) give the same items, in the same order. Without `bus` the bus sections' cursors are kept."""
    now = time.time() if now is None else now
    previous = read_json(space.state_dir / THINK_STATE)
    tasks = task_states(space)
    sources = sources_fingerprint(space)
    state = {"tasks": tasks, "sources": sources, "checked_at": now,
             "thought_at": (previous or {}).get("thought_at") if isinstance(previous, dict) else None,
             "started_at": (previous or {}).get("started_at", now) if isinstance(previous, dict) else now}
    if isinstance(previous, dict):
        state.update({key: previous[key] for key in BUS_STATE if key in previous})
    if bus is not None:
        news = bus_items(bus, config, previous if isinstance(previous, dict) else {}, state, log)
    else:
        news = []
    if not isinstance(previous, dict):
        return Briefing(baseline=True), state
    items = []
    before = previous.get("tasks") or {}
    for name in sorted(tasks):
        if name not in before:
            items.append(f"New task {name} ({tasks[name]}).")
        elif before[name] != tasks[name]:
            items.append(f"Task {name} changed: {before[name]} -> {tasks[name]}.")
    for name in sorted(set(before) - set(tasks)):
        items.append(f"Task {name} left the queue (archived or removed).")
    if sources and sources != previous.get("sources"):
        items.append("The sources returned new content since the last think.")
    items += news
    quiet = config.exec.max_quiet_seconds
    last = state["thought_at"] or state["started_at"]
    if quiet and now - last >= quiet:
        items.append(f"No think for {int(now - last)}s (maxQuietSeconds {quiet}).")
    return Briefing(items), state


def instructions(space, config) -> str:
    if config.exec.instructions and config.exec.instructions.strip():
        return config.exec.instructions.strip()
    path = space.notes_dir / "INSTRUCTIONS.md"
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return "Review what changed and act on it: update TASKS.yaml, or report that nothing needs doing."


def think_prompt(space, config, brief: Briefing) -> str:
    lines = "\n".join(f"- {item}" for item in brief.items)
    return f"{instructions(space, config)}\n\nBriefing (what changed since your last think cycle):\n{lines}"


def save_think(space, state: dict, thought: bool) -> None:
    if thought:
        state["thought_at"] = state["checked_at"]
    write_json(space.state_dir / THINK_STATE, state)


def deadline_passed(space, config, trigger: str, now: float | None = None) -> bool:
    """Whether exec.timeout (seconds from the first cycle; 0/None: none) has passed; records the start."""
    now = time.time() if now is None else now
    path = space.state_dir / f"{trigger}-session.json"
    state = read_json(path)
    if not isinstance(state, dict) or "started_at" not in state:
        state = {"started_at": now}
        write_json(path, state)
    started = state["started_at"]
    timeout = config.exec.timeout
    return bool(timeout) and now - started >= timeout


def next_tick(space) -> int:
    path = space.state_dir / TICK_STATE
    state = read_json(path) or {}
    state["ticks"] = int(state.get("ticks") or 0) + 1
    write_json(path, state)
    return state["ticks"]


def tick_prompt(space, config, number: int) -> str:
    return (f"{instructions(space, config)}\n\nTick {number}. Do one step. When the work is over, write "
            '{"status": "end_tick"} to $KEYSTONE_TASK_RESULT to end the ticking.')


def stop_timer(agent: str, trigger: str, space, log) -> bool:
    """End a think/tick session: the marker file (tick units' ConditionPathExists) and `systemctl --user stop`
    of the timer. → whether systemctl succeeded."""
    unit = f"agent-{agent}-{trigger}.timer"
    if trigger == "tick":
        marker: Path = space.state_dir / TICK_ENDED
        marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n", encoding="utf-8")
    try:
        done = subprocess.run(["systemctl", "--user", "stop", unit], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
        ok, why = done.returncode == 0, (done.stderr or done.stdout).strip()[:300]
    except (OSError, subprocess.TimeoutExpired) as exc:
        ok, why = False, str(exc)
    (log.info if ok else log.warning)(f"{trigger}_ended", msg=f"{trigger} session ended; stopped {unit}"
                                      + ("" if ok else f" (systemctl failed: {why})"), step=trigger,
                                      status="ok" if ok else "error", unit_stopped=unit)
    return ok
