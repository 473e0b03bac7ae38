"""The kinds of runs an agent has — one definition for `runs --kind`, `logs --kind`, the history's `kind`
column and log rotation — and where each kind's run logs are.

| kind | run logs (under ~/.local/state/agent-task-loop/logs) |
|---|---|
| task-loop | `<YYYY-mm-dd_HHMMSS_mmm>.log` |
| scheduler | `scheduler-<stamp>.log` |
| notes-sync | `notes-sync/<stamp>.log` (next to its `.json` record) |
| coding | `coding/<stamp>-<slug>.log` |

Each kind keeps its own newest N logs: rotating one never deletes another's (the scheduler's names sort after
the loop's, so one newest-N over all of them let the scheduler's logs push out the loop's).
"""

from __future__ import annotations

from pathlib import Path

TASK_LOOP, SCHEDULER, NOTES_SYNC, CODING = "task-loop", "scheduler", "notes-sync", "coding"
KINDS = (TASK_LOOP, SCHEDULER, NOTES_SYNC, CODING)


def run_logs(space, kind: str) -> list[Path]:
    """The run logs of `kind`, oldest first (their names start with a sortable timestamp)."""
    logs = space.logs_dir
    if kind == TASK_LOOP:
        found = [p for p in _files(logs, "*.log") if p.name[:1].isdigit()]
    elif kind == SCHEDULER:
        found = _files(logs, "scheduler-*.log")
    elif kind == NOTES_SYNC:
        found = _files(logs / "notes-sync", "*.log")
    elif kind == CODING:
        found = _files(logs / "coding", "*.log")
    else:
        raise ValueError(f"unknown kind {kind!r}; expected one of: {', '.join(KINDS)}")
    if kind == NOTES_SYNC:
        from keystone_agents.notes_sync.report import run_order

        return sorted(found, key=run_order)
    return sorted(found, key=lambda p: p.name)


def _files(directory: Path, pattern: str) -> list[Path]:
    if not directory.is_dir():
        return []
    return [p for p in directory.glob(pattern) if p.is_file() and not p.name.startswith(".")]


def prune(space, kind: str, keep: int) -> int:
    """Keep the newest `keep` run logs of `kind` (and what belongs to them); → how many were removed."""
    logs = run_logs(space, kind)
    removed = 0
    for old in logs[: max(len(logs) - keep, 0)]:
        old.unlink(missing_ok=True)
        if kind == CODING:  # the coding run's system prompt sits next to its log
            old.with_suffix(".system-prompt.md").unlink(missing_ok=True)
        removed += 1
    return removed
