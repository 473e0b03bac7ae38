"""A run that cannot start is still seen by monitoring.

When the configuration is invalid the loop has no agent name, no textfileDir, nothing from the config. It
still writes what an operator's monitoring needs, from the unit's environment: a history row
(`status=error`, `exit_code=1`), a `run_finish` event after one `config_invalid` event per problem, and the
textfile metrics (`…_last_exit_code 1`, `…_config_valid 0`) in `$PROMETHEUS_TEXTFILE_DIR` (else
`state/metrics/`) labelled with the agent name taken from the user name (`agent-<name>`). So the alerts fire
within one tick instead of after the two-hour stall alert.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from keystone_agents.problems import Problem

PREFIX = "keystone_agent_task_loop_"
CONFIG_VALID_HELP = ("1 if the last run could load and validate its configuration and TASKS.yaml, 0 if it could "
                     "not start (invalid or unreadable configuration or queue).")


def record(space, problems: list[Problem], started: float, exit_code: int = 1) -> None:
    """History row, events and metrics of a task-loop run that could not load its configuration."""
    from keystone_agents import history
    from keystone_agents.config import default_agent_name
    from keystone_agents.events import event_logger, hostname
    from keystone_agents.metrics import metrics_path, textfile_dir, write_metrics
    from keystone_agents.loop.state import read_text
    from keystone_agents.timeutil import iso_z

    agent = default_agent_name()
    unit = f"agent-{agent}-task-loop"
    now = dt.datetime.fromtimestamp(started, dt.timezone.utc)
    stamp = now.astimezone().strftime("%Y-%m-%d_%H%M%S") + f"_{now.microsecond // 1000:03d}"
    run_id = f"{agent}-task-loop-{stamp}"
    run_log = space.logs_dir / f"{stamp}.log"
    try:
        log = event_logger(agent=agent, unit=unit, run_id=run_id, log_file=run_log)
    except OSError:
        log = event_logger(agent=agent, unit=unit, run_id=run_id)
    for problem in problems:
        log.error("config_invalid", msg=f"cannot start: {problem}", step="setup", status="error",
                  file=problem.file, line=problem.line or "", field=problem.field,
                  fix="fix the configuration (keystone-agent validate shows every problem)")
    duration = time.time() - started
    log.error("run_finish", msg="Task loop run finished: error (invalid configuration)", step="finish",
              status="error", exit_code=exit_code, duration_seconds=round(duration, 3), config_valid=False)
    try:
        history.record_run(space.history_db, {
            "run_id": run_id, "kind": "task-loop", "started_at": iso_z(now), "trigger_at": iso_z(now),
            "finished_at": iso_z(), "status": "error", "exit_code": exit_code,
            "duration_seconds": round(duration, 3), "config_valid": False, "run_log": str(run_log),
            "error": "; ".join(str(p) for p in problems)[:2000],
        })
    except Exception as exc:  # noqa: BLE001 - the metrics below matter more than the history row
        log.error("log", msg=f"cannot record run history: {exc}", step="finish", status="error")
    directory = textfile_dir(None, space.state_dir / "metrics")
    try:
        last_success = float(read_text(space.state_dir / "last-success") or 0)
    except ValueError:
        last_success = 0.0
    samples = {
        PREFIX + "last_run_timestamp_seconds": ("Start time of the last task-loop run.", started),
        PREFIX + "last_success_timestamp_seconds": ("End time of the last run that exited 0.", last_success),
        PREFIX + "last_exit_code": ("Exit code of the last run (0 ok, 1 error, 3 degraded).", exit_code),
        PREFIX + "last_duration_seconds": ("Duration of the last run.", duration),
        PREFIX + "config_valid": (CONFIG_VALID_HELP, 0),
    }
    try:
        write_metrics(metrics_path(directory, "task-loop", agent), {"host": hostname(), "agent": agent, "unit": unit},
                      samples)
    except OSError as exc:
        log.error("log", msg=f"cannot write metrics to {directory}: {exc.strerror}", step="finish", status="error")


