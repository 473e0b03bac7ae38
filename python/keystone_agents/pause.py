"""The pause file: `paused_at=`, `paused_by=`, `reason=` lines at state/paused (the seed's format, shared
with agentctl and desktop menus)."""

from __future__ import annotations

import datetime as dt
import getpass
import os
from dataclasses import dataclass
from pathlib import Path

from keystone_agents.atomic import write_atomic


@dataclass(frozen=True)
class PauseState:
    paused: bool
    paused_at: str | None = None
    paused_by: str | None = None
    reason: str | None = None

    def as_dict(self) -> dict:
        return {
            "state": "paused" if self.paused else "active",
            "pausedAt": self.paused_at,
            "pausedBy": self.paused_by,
            "reason": self.reason,
        }


def read(path: Path) -> PauseState:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return PauseState(paused=False)
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in ("paused_at", "paused_by", "reason"):
            values[key] = value  # the last match wins, as in the original
    return PauseState(True, values.get("paused_at"), values.get("paused_by"), values.get("reason"))


def who() -> str:
    return os.environ.get("SUDO_USER") or os.environ.get("USER") or getpass.getuser()


def pause(path: Path, reason: str | None = None, by: str | None = None, now: dt.datetime | None = None) -> PauseState:
    now = now or dt.datetime.now(dt.timezone.utc)
    state = PauseState(True, now.astimezone().isoformat(timespec="seconds"), by or who(), _one_line(reason))
    lines = [f"paused_at={state.paused_at}", f"paused_by={state.paused_by}"]
    if state.reason:
        lines.append(f"reason={state.reason}")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "\n".join(lines) + "\n")
    return state


def resume(path: Path) -> bool:
    """Remove the pause file; False when the loop was not paused."""
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


def _one_line(reason: str | None) -> str | None:
    if not reason:
        return None
    return " ".join(reason.split())  # the format is line-based: newlines would forge keys
