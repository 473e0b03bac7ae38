"""Log rotation of the task loop: its own run logs (and the coding subagent's) keep their newest N each
(kinds.py: one kind never deletes another's); task logs and stale task reports older than N days go."""

from __future__ import annotations

import time
from pathlib import Path

from keystone_agents import kinds


def rotate(space, keep_run_logs: int, keep_task_log_days: float, extra_dirs: tuple[Path, ...] = ()) -> tuple[int, int]:
    removed_runs = kinds.prune(space, kinds.TASK_LOOP, keep_run_logs)
    removed_runs += kinds.prune(space, kinds.CODING, keep_run_logs)
    removed_tasks = 0
    cutoff = time.time() - keep_task_log_days * 86400
    for directory in (space.task_logs_dir, *extra_dirs):
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed_tasks += 1
            except FileNotFoundError:
                pass
    return removed_runs, removed_tasks
