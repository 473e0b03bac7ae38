"""What a sync run leaves for humans and dashboards: a JSON record (the newest N kept, with their run
logs), Prometheus textfile metrics, and a row in the run history."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from keystone_agents import history
from keystone_agents.atomic import write_atomic
from keystone_agents.metrics import write_metrics
from keystone_agents.timeutil import parse_time

HISTORY_KIND = "notes-sync"
METRIC_PREFIX = "keystone_agent_notes_sync_"


@dataclass
class SyncRecord:
    """One run. The first eight fields are the original repo-sync's record (booleans now real booleans)."""

    timestamp: str
    exit_code: int = 0
    duration_seconds: float = 0.0
    committed: bool = False
    rebased: bool = False
    pushed: bool = False
    conflict: bool = False
    branch: str | None = None
    run_id: str = ""
    status: str = "success"  # success | nothing_to_do | cloned | conflict | conflict_pending | error
    cloned: bool = False
    conflict_pending: bool = False
    conflict_branch: str | None = None
    commit: str | None = None  # HEAD after the run
    error: str | None = None
    messages: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_record(records_dir: Path, stem: str, record: SyncRecord, keep: int) -> Path:
    records_dir.mkdir(parents=True, exist_ok=True)
    path = records_dir / f"{stem}.json"
    write_atomic(path, json.dumps(record.as_dict(), indent=2) + "\n")
    prune(records_dir, keep)
    return path


STEM_FORMAT = "%Y-%m-%d_%H%M%S"  # UTC; fixed width, so names sort by time
STEM_WIDTH = 17


def run_order(path: Path) -> tuple[str, int]:
    """Sort key of a record or log file: its second, then the `-N` suffix of later runs in that second."""
    stem = path.name.split(".", 1)[0]
    suffix = stem[STEM_WIDTH + 1 :]
    return stem[:STEM_WIDTH], int(suffix) if suffix.isdigit() else 1


def prune(records_dir: Path, keep: int) -> None:
    """Keep the newest `keep` runs: their .json records and .log files."""
    for suffix in (".json", ".log"):
        files = sorted(
            (p for p in records_dir.iterdir() if p.name.endswith(suffix) and not p.name.startswith(".")),
            key=run_order,
        )
        for old in files[: max(len(files) - keep, 0)]:
            old.unlink(missing_ok=True)


def unique_stem(records_dir: Path, stem: str) -> str:
    """`stem`, or `stem-N` after the latest run in the same second (never reusing a pruned name)."""
    taken = [run_order(p)[1] for p in records_dir.glob(f"{stem}*") if run_order(p)[0] == stem]
    return f"{stem}-{max(taken) + 1}" if taken else stem


def last_success(history_db: Path) -> float | None:
    """When the last successful sync finished (epoch seconds), from the run history."""
    if not history_db.exists():
        return None
    try:
        with closing(history.connect(history_db)) as conn:
            row = conn.execute(
                "SELECT MAX(finished_at) FROM runs WHERE kind = ? AND exit_code = 0", (HISTORY_KIND,)
            ).fetchone()
    except sqlite3.Error:
        return None
    moment = parse_time(row[0]) if row and row[0] else None
    return moment.timestamp() if moment else None


def write_sync_metrics(
    path: Path, labels: dict[str, str], record: SyncRecord, run_at: float, last_success_at: float | None
) -> None:
    samples = {
        METRIC_PREFIX + "last_run_timestamp_seconds": ("When the last notes sync run started (Unix time).", run_at),
        METRIC_PREFIX + "last_success_timestamp_seconds": (
            "When the last successful notes sync finished (Unix time; 0: never).",
            last_success_at or 0.0,
        ),
        METRIC_PREFIX + "last_exit_code": ("Exit code of the last notes sync run (0: success).", record.exit_code),
        METRIC_PREFIX + "last_duration_seconds": ("Duration of the last notes sync run.", record.duration_seconds),
        METRIC_PREFIX + "conflict_pending": (
            "1 while a rebase conflict waits for a human (`keystone-agent sync --resolved`), else 0.",
            1.0 if record.conflict_pending else 0.0,
        ),
    }
    write_metrics(path, labels, samples)


def record_history(history_db: Path, record: SyncRecord, started_at: str, finished_at: str) -> None:
    row = {
        "run_id": record.run_id,
        "kind": HISTORY_KIND,
        "started_at": started_at,
        "finished_at": finished_at,
        "status": record.status,
        "exit_code": record.exit_code,
        "duration_seconds": record.duration_seconds,
        **{k: v for k, v in record.as_dict().items() if k in (
            "committed", "rebased", "pushed", "conflict", "branch", "cloned", "conflict_pending",
            "conflict_branch", "commit", "error",
        )},
    }
    history.record_run(history_db, row)
