"""The operator's view of a loop run beyond the seed's gauges (docs/observability.md): the queue's task counts,
each stage's outcome and duration, cumulative counters (runs by status, tasks, tokens, cost), and the pause
gauge. Kept apart from runner.py's own samples so other metric blocks merge without conflicts.

Cumulative values live in `state/metrics-totals.json`, updated only by runs that write metrics (never by a
lock-skipped, paused or dry run); Prometheus reads them as counters, so a reset (state wiped) is harmless.
"""

from __future__ import annotations

from pathlib import Path

from keystone_agents.loop.state import read_json, write_json

PREFIX = "keystone_agent_task_loop_"
STAGES = ("prefetch", "ingest", "prioritize", "execute")
STAGE_OUTCOMES = ("ok", "degraded", "skipped", "error", "not_run")
QUEUE_STATUSES = ("pending", "in_progress", "blocked", "completed")
RUN_STATUSES = ("success", "degraded", "error")
TOTALS_FILE = "metrics-totals.json"
QUEUE_FILE = "queue-counts.json"
PAUSE_COMPONENT = "pause"


def queue_counts(tf) -> dict[str, int]:
    """How many entries of TASKS.yaml have each status (invalid entries are not counted)."""
    counts = dict.fromkeys(QUEUE_STATUSES, 0)
    for entry in tf.valid():
        status = entry.get("status")
        if status in counts:
            counts[status] += 1
    return counts


def cache_queue_counts(state_dir: Path, tasks_sha: str, counts: dict[str, int]) -> None:
    # an unchanged tick skips parsing TASKS.yaml; it reuses these counts while the file's hash matches
    write_json(state_dir / QUEUE_FILE, {"tasks_sha": tasks_sha, "counts": counts})


def cached_queue_counts(state_dir: Path, tasks_sha: str) -> dict[str, int] | None:
    cached = read_json(state_dir / QUEUE_FILE)
    if isinstance(cached, dict) and cached.get("tasks_sha") == tasks_sha and isinstance(cached.get("counts"), dict):
        return {status: int(cached["counts"].get(status, 0)) for status in QUEUE_STATUSES}
    return None


def update_totals(state_dir: Path, state, exit_code: int) -> dict:
    totals = read_json(state_dir / TOTALS_FILE)
    if not isinstance(totals, dict):
        totals = {}
    c = state.counters
    runs = totals.get("runs") if isinstance(totals.get("runs"), dict) else {}
    runs = {status: int(runs.get(status, 0)) for status in RUN_STATUSES}
    if state.status in runs:
        runs[state.status] += 1
    updated = {
        "runs": runs,
        "tasks_completed": int(totals.get("tasks_completed", 0)) + c.completed,
        "tasks_failed": int(totals.get("tasks_failed", 0)) + c.failed,
        "tasks_blocked": int(totals.get("tasks_blocked", 0)) + c.blocked,
        "tasks_created": int(totals.get("tasks_created", 0)) + state.tasks_created,
        "tokens": int(totals.get("tokens", 0)) + c.tokens,
        "cost_usd": float(totals.get("cost_usd", 0.0)) + c.cost_usd,
    }
    write_json(state_dir / TOTALS_FILE, updated)
    return updated


def samples(state_dir: Path, state, exit_code: int) -> dict[str, tuple]:
    """The samples this module adds to keystone-agent-task-loop-<agent>.prom."""
    totals = update_totals(state_dir, state, exit_code)
    stage_outcome = {stage: state.stages.get(stage, ("not_run", 0.0)) for stage in STAGES}
    out: dict[str, tuple] = {
        PREFIX + "stage_outcome": (
            "Outcome of each stage in the last run: 1 for the stage's outcome (ok, degraded, skipped, error, "
            "not_run), 0 for the others.",
            [({"stage": stage, "outcome": outcome}, 1.0 if stage_outcome[stage][0] == outcome else 0.0)
             for stage in STAGES for outcome in STAGE_OUTCOMES],
        ),
        PREFIX + "stage_duration_seconds": (
            "Duration of each stage in the last run (0 when skipped or not run).",
            [({"stage": stage}, stage_outcome[stage][1]) for stage in STAGES],
        ),
        PREFIX + "runs_cumulative_total": (
            "Runs that wrote metrics, by final status (success, degraded, error), since the state dir was created.",
            [({"status": status}, totals["runs"][status]) for status in RUN_STATUSES], "counter",
        ),
        PREFIX + "tasks_completed_cumulative_total": ("Tasks completed, all runs.", totals["tasks_completed"], "counter"),
        PREFIX + "tasks_failed_cumulative_total": ("Task executions that failed, all runs.", totals["tasks_failed"], "counter"),
        PREFIX + "tasks_blocked_cumulative_total": ("Tasks blocked, all runs.", totals["tasks_blocked"], "counter"),
        PREFIX + "tasks_created_cumulative_total": ("Tasks ingested, all runs.", totals["tasks_created"], "counter"),
        PREFIX + "tokens_cumulative_total": ("Model tokens used, all runs.", totals["tokens"], "counter"),
        PREFIX + "cost_usd_cumulative_total": ("Reported model cost in USD, all runs.", totals["cost_usd"], "counter"),
    }
    if state.queue is not None:
        out[PREFIX + "queue_tasks"] = (
            "Entries of TASKS.yaml by status (pending, in_progress, blocked, completed) after the last run.",
            [({"status": status}, state.queue[status]) for status in QUEUE_STATUSES],
        )
    return out


def write_pause_metric(directory: Path, labels: dict[str, str], agent: str, paused: bool) -> None:
    """keystone-agent-pause-<agent>.prom: 1 while the agent is paused (alerts leave a paused agent alone).
    Its own file, so a paused run never touches the run metrics; rewritten only when the value changes."""
    from keystone_agents.metrics import metrics_path, render, write_metrics

    path = metrics_path(directory, PAUSE_COMPONENT, agent)
    sample = {PREFIX + "paused": ("1 while the task loop is paused (pause file present), else 0.", 1.0 if paused else 0.0)}
    try:
        if path.read_text(encoding="utf-8") == render(labels, sample):
            return
    except OSError:
        pass
    write_metrics(path, labels, sample)
