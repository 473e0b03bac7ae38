"""Watched shared keys (exec.watchPrefixes): what an agent does with a shared-state write under one of them.

The bus wakes the agent (the broker touches its wake file; on PostgreSQL sql/004's trigger NOTIFYs its wake
channel and `comms listen` touches the file), exactly as a message does. Then, on the agent's side:
- proactive: the change is news for the next think cycle's briefing (modes/cycles.py keeps its own cursor);
  the drain starts the think cycle at once (`systemctl --user start --no-block agent-<name>-think.service`)
  instead of waiting for the think timer;
- every other mode: each changed key becomes a task (source `shared`, source_ref `shared-<key>@v<version>`:
  once per version, ever), like a received message, and a loop run is requested.
The agent's own writes are never news. The cursor (state/shared-watch.json, the last change seq seen) moves
only after the tasks are saved: a crash in between re-reads the changes, and the source_ref dedup keeps them
one task each. The task loop's sweep (sources/shared_watch.py) does the same for a lost wake-up.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from keystone_agents.loop.state import read_json, write_json

CURSOR = "shared-watch.json"
SOURCE = "shared"
PAGE = 1000
VALUE_EXCERPT = 2000


def changes_after(bus, prefixes, after: int, me: str) -> tuple[list[dict], int]:
    """(the changes under `prefixes` after seq `after` that someone other than `me` made, in commit order;
    the newest seq read, own writes included). Overlapping prefixes give each change once."""
    found: dict[int, dict] = {}
    newest = after
    for prefix in dict.fromkeys(prefixes):
        cursor = after
        while True:
            page = bus.shared_changes(prefix, cursor, PAGE, 0.0)
            for change in page:
                seq = int(change["seq"])
                newest, cursor = max(newest, seq), max(cursor, seq)
                if change.get("owner_agent") != me:
                    found[seq] = change
            if len(page) < PAGE:
                break
    return [found[seq] for seq in sorted(found)], newest


def latest_per_key(changes: list[dict]) -> list[dict]:
    """The newest change of each key, in the order of those newest changes."""
    last: dict[str, dict] = {}
    for change in changes:
        last.pop(change["key"], None)
        last[change["key"]] = change
    return list(last.values())


def source_ref(change: dict) -> str:
    return f"{SOURCE}-{change['key']}@v{change['version']}"


def describe(change: dict) -> str:
    """One line: what happened to the key (the briefing's item and the task's first line)."""
    who = change.get("owner_agent") or "?"
    if change.get("deleted"):
        return f"Shared key {change['key']} was deleted by {who} (version {change['version']})."
    return f"Shared key {change['key']} changed to version {change['version']} by {who}."


def task_item(change: dict) -> dict:
    text = describe(change)
    if not change.get("deleted"):
        value = json.dumps(change.get("value"), ensure_ascii=False)
        if len(value) > VALUE_EXCERPT:
            value = value[:VALUE_EXCERPT] + "…"
        text += f"\n\nValue: {value}\n\n(Read it with `keystone-agent shared get {change['key']}`.)"
    return {"source": SOURCE, "source_ref": source_ref(change), "name": f"shared key {change['key']} changed",
            "description": text + f"\n\n(Watched under exec.watchPrefixes; change {change['seq']} at {change.get('at')}.)"}


def read_cursor(state_dir: Path) -> int | None:
    data = read_json(state_dir / CURSOR)
    if isinstance(data, dict) and isinstance(data.get("seq"), int):
        return data["seq"]
    return None


def write_cursor(state_dir: Path, seq: int) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    write_json(state_dir / CURSOR, {"seq": seq})


def pending(bus, config, state_dir: Path) -> tuple[list[dict], int]:
    """(the changed keys not yet made tasks, the cursor to store once they are). The first call starts at the
    newest change (what happened before the agent watched is no news)."""
    prefixes = config.exec.watch_prefixes
    after = read_cursor(state_dir)
    if after is None:
        _, newest = changes_after(bus, prefixes, 0, config.agent_name)
        return [], newest
    changes, newest = changes_after(bus, prefixes, after, config.agent_name)
    return latest_per_key(changes), newest


def log_changes(log, changes: list[dict], how: str) -> None:
    if log is None:
        return
    for change in changes:
        log.info("shared_changed", msg=describe(change) + f" ({how})", status="deleted" if change.get("deleted")
                 else "changed", key=change["key"], version=change["version"], writer=change.get("owner_agent"),
                 seq=change["seq"], source_ref=source_ref(change))


def on_wake(bus, space, config, log=None) -> dict:
    """The drain's part: → {"changes": [...], "tasks_created": [...], "think_started": bool}."""
    from keystone_agents.coordination.comms import request_run

    result: dict = {"changes": [], "tasks_created": [], "think_started": False}
    if not config.exec.watch_prefixes:
        return result
    state_dir = space.state_dir
    if config.exec.mode == "proactive":
        from keystone_agents.modes import cycles

        after = cycles.shared_cursor(space)
        if after is None:  # no think cycle yet: its first one records the baseline
            return result
        changes, _ = changes_after(bus, config.exec.watch_prefixes, after, config.agent_name)
        result["changes"] = [c["key"] for c in latest_per_key(changes)]
        if changes:
            log_changes(log, latest_per_key(changes), "the next think cycle briefs it")
            result["think_started"] = start_think(config.agent_name, log)
        return result
    changes, newest = pending(bus, config, state_dir)
    if changes:
        from keystone_agents.coordination.comms import save_as_items

        result["tasks_created"] = save_as_items(space, [task_item(c) for c in changes], SOURCE)
        log_changes(log, changes, "a task")
    write_cursor(state_dir, newest)
    result["changes"] = [c["key"] for c in changes]
    if result["tasks_created"]:
        request_run(state_dir)
    return result


def start_think(agent: str, log=None) -> bool:
    """Start the proactive agent's think cycle now (its service; the timer would start it within thinkInterval)."""
    unit = f"agent-{agent}-think.service"
    try:
        done = subprocess.run(["systemctl", "--user", "start", "--no-block", unit], capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)
        ok, why = done.returncode == 0, (done.stderr or done.stdout).strip()[:300]
    except (OSError, subprocess.TimeoutExpired) as exc:
        ok, why = False, str(exc)
    if log is not None:
        (log.info if ok else log.warning)(
            "wake", msg=f"watched shared keys changed: started {unit}" + ("" if ok else
                                                                          f" (systemctl failed: {why}; the think timer will run it)"),
            status="ok" if ok else "error", reason="shared", unit_started=unit)
    return ok
