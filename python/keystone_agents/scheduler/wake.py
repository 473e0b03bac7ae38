"""Wake the task loop after the scheduler created tasks, without waiting for the loop to run.

The original scheduler ran `systemctl --user start` on the loop's oneshot service and so blocked until the
whole loop had finished. Here `--no-block` only queues the start job, and any configured command is
started in its own session and waited for only briefly (to report a quick failure), never to the end.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPORT_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class WakeResult:
    argv: list[str] | None  # None: nothing to run
    exit_code: int | None  # None: still running when we stopped waiting, or not run
    error: str | None = None


def systemd_present() -> bool:
    """sd_booted(3): the machine runs systemd as init."""
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def wake_argv(agent: str, configured: list[str] | None) -> list[str] | None:
    """The wake command: the configured argv ([] disables), else systemctl where systemd is present."""
    if configured is not None:
        return list(configured) or None
    if systemd_present():
        return ["systemctl", "--user", "start", "--no-block", f"agent-{agent}-task-loop.service"]
    return None


def wake(argv: list[str] | None, report_wait: float = REPORT_WAIT_SECONDS) -> WakeResult:
    if not argv:
        return WakeResult(None, None)
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not killed with us, not waited for by us
        )
    except OSError as exc:
        return WakeResult(argv, None, f"cannot run {argv[0]}: {exc.strerror}")
    try:
        code = process.wait(timeout=report_wait)
    except subprocess.TimeoutExpired:
        return WakeResult(argv, None)
    return WakeResult(argv, code, None if code == 0 else f"{argv[0]} exited {code}")
