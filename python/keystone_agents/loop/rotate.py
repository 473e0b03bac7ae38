"""Log rotation: keep the newest N run logs; remove task logs (and stale task reports) older than N days."""

from __future__ import annotations

import time
from pathlib import Path


def rotate(logs_dir: Path, task_logs_dir: Path, keep_run_logs: int, keep_task_log_days: float,
           extra_dirs: tuple[Path, ...] = ()) -> tuple[int, int]:
    removed_runs = removed_tasks = 0
    runs = sorted((p for p in logs_dir.glob("*.log") if p.is_file()), key=lambda p: p.name, reverse=True)
    for old in runs[keep_run_logs:]:
        old.unlink(missing_ok=True)
        removed_runs += 1
    cutoff = time.time() - keep_task_log_days * 86400
    for directory in (task_logs_dir, *extra_dirs):
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
