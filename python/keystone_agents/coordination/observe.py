"""Comms metrics, in the agent's textfile directory (node_exporter's textfile collector):

keystone-agent-comms-<agent>.prom (every drain and every task-loop sweep):
  keystone_agent_comms_messages{state}             the agent's inbox by state (queued, leased, delivered, done, failed)
  keystone_agent_comms_dead_letters                messages dead-lettered (delivered maxDeliveries times, never a task)
  keystone_agent_comms_oldest_pending_age_seconds  age of the oldest message not yet a task (0: none)
  keystone_agent_comms_wake_latency_seconds        send → received by the drain, newest message of the last drain
  keystone_agent_comms_last_drain_timestamp_seconds
  keystone_agent_comms_notify_queue_usage          PostgreSQL: pg_notification_queue_usage() (0..1)
keystone-agent-comms-sweep-<agent>.prom (every task-loop run):
  keystone_agent_comms_swept_late_messages         messages the timer's sweep found that the wake path (path unit,
                                                   listener) had not drained within wakeGraceSeconds: a failed
                                                   comms path unit or listener
"""

from __future__ import annotations

import datetime as dt
import time

from keystone_agents.coordination.base import STATES


def age_seconds(created_at: str | None, now: float | None = None) -> float:
    if not created_at:
        return 0.0
    when = dt.datetime.fromisoformat(created_at.replace("Z", "+00:00")).timestamp()
    return max(0.0, (now or time.time()) - when)


def _write(config, state_dir, component: str, samples: dict) -> None:
    from keystone_agents.events import hostname
    from keystone_agents.metrics import metrics_path, textfile_dir, write_metrics

    agent = config.agent_name
    directory = textfile_dir(config.textfile_dir, state_dir / "metrics")
    try:
        write_metrics(metrics_path(directory, component, agent),
                      {"host": hostname(), "agent": agent, "unit": f"agent-{agent}-comms"}, samples)
    except OSError:
        pass  # metrics never fail a drain


def write_stats(config, state_dir, stats: dict, latency: float | None) -> None:
    prefix = "keystone_agent_comms_"
    samples = {
        prefix + "messages": ("Messages addressed to the agent, by state.",
                              [({"state": s}, stats.get("inbox", {}).get(s, 0)) for s in STATES]),
        prefix + "dead_letters": ("Messages dead-lettered (delivered maxDeliveries times without becoming a task).",
                                  stats.get("dead_letters", 0)),
        prefix + "oldest_pending_age_seconds": ("Age of the oldest message not yet a task (0: none).",
                                                stats.get("oldest_pending_age_seconds", 0)),
        prefix + "last_drain_timestamp_seconds": ("When the inbox was last drained.", time.time()),
    }
    if latency is not None:
        samples[prefix + "wake_latency_seconds"] = (
            "Send to receipt by the drain of the newest message of the last drain that received any.", latency)
    if stats.get("notify_queue_usage") is not None:
        samples[prefix + "notify_queue_usage"] = (
            "PostgreSQL NOTIFY queue usage (0..1); commits fail when it is full.", stats["notify_queue_usage"])
    _write(config, state_dir, "comms", samples)


def write_sweep(config, state_dir, late: int) -> None:
    _write(config, state_dir, "comms-sweep", {
        "keystone_agent_comms_swept_late_messages": (
            "Messages the task loop's sweep found that the wake path had not drained within wakeGraceSeconds "
            "(a failed comms path unit or listener).", late)})


def record(bus, config, state_dir, received, log=None) -> float | None:
    """After a drain or a sweep: the inbox figures, and the wake latency of what was received."""
    from keystone_agents.coordination.base import BusError

    latency = min((age_seconds(m.created_at) for m in received), default=None) if received else None
    kept = state_dir / "comms-wake-latency"  # the gauge keeps the last value between drains that receive nothing
    try:
        if latency is not None:
            kept.write_text(f"{latency:.6f}\n", encoding="utf-8")
        elif kept.exists():
            latency = float(kept.read_text(encoding="utf-8").strip() or 0)
    except (OSError, ValueError):
        pass
    try:
        stats = bus.stats()
    except BusError:
        return latency
    write_stats(config, state_dir, stats, latency)
    return latency
