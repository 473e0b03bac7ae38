"""Proactive think cycles and tick cycles (`keystone-agent loop --trigger think|tick`).

Think: a deterministic briefing — no model involved — of what changed since the last think cycle:
tasks added or changed status, the sources' content (the loop's fingerprint), and, when `maxQuietSeconds`
is set, a think that is overdue. An empty briefing ends the cycle with a `think_skipped` event and no provider
call (0 tokens on an idle cycle). A non-empty one becomes task `think-<time>` (source `think`) whose prompt
is the standing instructions (`exec.instructions`, else notes/INSTRUCTIONS.md) and the briefing; it is
executed at once. The first cycle only records the baseline. Messages, shared keys under `watchPrefixes` and
decided approvals join the briefing where those subsystems exist.

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


def briefing(space, config, now: float | None = None) -> tuple[Briefing, dict]:
    """→ (the briefing, the state to save once the cycle is done). Deterministic: the same files give the same
    items, in the same order."""
    now = time.time() if now is None else now
    previous = read_json(space.state_dir / THINK_STATE)
    tasks = task_states(space)
    sources = sources_fingerprint(space)
    state = {"tasks": tasks, "sources": sources, "checked_at": now,
             "thought_at": (previous or {}).get("thought_at") if isinstance(previous, dict) else None,
             "started_at": (previous or {}).get("started_at", now) if isinstance(previous, dict) else now}
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
