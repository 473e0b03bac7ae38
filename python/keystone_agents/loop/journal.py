"""The exit journal: a finished execution is never run again.

The moment a provider exits, its exit status is written durably (appended to `state/exited.json`, created
before the provider started, and fsync'd) before any other work; once its output is parsed, the journal holds the whole
result (exit code, evidence, usage, message, the agent's report), then the outcome the loop decided. Only
after TASKS.yaml and the history have the outcome is the journal removed.

If the loop dies anywhere in between, the next run finalizes the task from the journal (`finalize`) instead of
sending it back to pending: the provider's side effects (a sent email, an opened pull request) happen once.
Only a task whose provider was still running when the loop died has no journal entry; it is retried — or
blocked, if the task says `once: true` (its side effects must not happen twice).

The provider is started through a supervisor process (providers/supervisor.py) that appends the `exited` line
itself — it inherits the journal's descriptor — so a loop killed between the provider's exit and its own next
step cannot lose the record: the supervisor does not die with the loop. The journal is flock'd by the loop when
it is opened; the supervisor shares that lock (same open file) until it exits, and recovery waits for the lock
(`wait_for_writers`) before reading, so it never reads the journal while a dead run's supervisor is still about
to record its provider's exit.

One task executes at a time, so there is one journal file.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from keystone_agents.atomic import fsync_dir
from keystone_agents.loop.state import remove

PHASES = ("exited", "drained", "result", "decided")


def journal_path(state_dir: Path) -> Path:
    return state_dir / "exited.json"


class Journal:
    """Append-only JSON lines, one per phase; the last complete line is the record.

    The file is created (empty) before the provider starts, so recording its exit is a single `write` on an
    open descriptor: visible to a later run the instant it returns, whatever happens to this process next
    (the `fsync` that follows is for a power cut). A rename-based atomic write would leave a window — the
    fsync before the rename — in which a killed loop loses the record.
    """

    def __init__(self, state_dir: Path, running: dict[str, Any]):
        self.path = journal_path(state_dir)
        self.base = {k: running.get(k) for k in ("task", "run_id", "started_at", "source_ref", "log_path",
                                                 "provider", "model", "profile")}
        self.record: dict[str, Any] = {}
        self._fd: int | None = None

    def open(self) -> "Journal":
        """Create the (empty) journal before the provider starts."""
        self.close()
        self.record = {}
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        try:  # held by us and the provider's supervisor (it inherits this descriptor): see wait_for_writers
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass  # a writer of a dead run still holds it (recovery waited and gave up): the record still works
        fsync_dir(self.path.parent)
        return self

    def exit_record(self):
        """For the process runner: the supervisor appends the `exited` line (these fields + phase, exit code)
        to this journal's descriptor the moment the provider exits."""
        from keystone_agents.providers.process import ExitRecord

        if self._fd is None:
            self.open()
        return ExitRecord(fd=self._fd, fields={**self.base, **self.record})

    def _write(self, **fields: Any) -> None:
        self.record = {**self.base, **self.record, **fields}
        if self._fd is None:
            self.open()
        line = (json.dumps(self.record, sort_keys=True, default=str) + "\n").encode("utf-8")
        os.write(self._fd, line)  # one append: a later run sees it from here on
        os.fsync(self._fd)

    def exited(self, exit_code: int) -> None:
        """Called from the process runner the moment the provider is reaped."""
        self._write(phase="exited", exit_code=exit_code)

    def drained(self, exit_code: int) -> None:
        """Everything the provider printed is in its task log (a recovery may parse it from there)."""
        self._write(phase="drained", exit_code=exit_code)

    def result(self, result, report: dict | None, attempt: int) -> None:
        self._write(phase="result", exit_code=result.exit_code if result else None,
                    result=result_to_dict(result) if result else None, report=report, attempt=attempt)

    def decided(self, outcome: str, updates: dict, message: str, reason: str) -> None:
        self._write(phase="decided", outcome=outcome, updates=updates, message=message, reason=reason)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def clear(self) -> None:
        """The outcome is in TASKS.yaml and the history: the journal is done."""
        self.close()
        self.record = {}
        remove(self.path)


WRITER_WAIT = 30.0  # seconds recovery waits for a dead run's supervisor to finish recording


def wait_for_writers(state_dir: Path, timeout: float = WRITER_WAIT) -> bool:
    """Wait until no process of a dead run still holds the journal (its provider's supervisor, recording the
    exit or killing the provider). True when the journal is free (or absent), False after `timeout`."""
    try:
        fd = os.open(journal_path(state_dir), os.O_RDONLY)
    except OSError:
        return True
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)
            except OSError:
                return True
    finally:
        os.close(fd)


def read(state_dir: Path) -> dict[str, Any] | None:
    """The last complete record of the journal, or None (no journal, or the provider never exited)."""
    try:
        text = journal_path(state_dir).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in reversed(text.splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue  # a line cut short by a power cut
        if isinstance(data, dict) and data.get("phase") in PHASES and data.get("task"):
            return data
    return None


OUTPUT_KEEP = 200_000  # characters of the provider's output kept for URL detection after a crash


def result_to_dict(result) -> dict[str, Any]:
    data = dataclasses.asdict(result)
    data["output"] = data.get("output", "")[-OUTPUT_KEEP:]
    return data


def result_from_dict(data: dict[str, Any]):
    from keystone_agents.providers.base import ProviderResult, Usage

    fields = {f.name for f in dataclasses.fields(ProviderResult)}
    values = {k: v for k, v in data.items() if k in fields}
    values["usage"] = Usage(**(values.get("usage") or {}))
    return ProviderResult(**values)


def result_from_log(record: dict[str, Any], config) -> Any:
    """The loop died after the provider exited but before its output was parsed: parse the task log (which
    has everything the provider printed) as the provider would have."""
    from keystone_agents.providers import ProviderError, ProviderResult, get

    text = ""
    log_path = record.get("log_path")
    if log_path:
        try:
            text = Path(log_path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
    # our own lines in the task log are not the provider's output
    output = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("[keystone-agent]"))
    result = ProviderResult(exit_code=record.get("exit_code"), timed_out=False, duration_seconds=0.0, output=output)
    try:
        provider = get(record.get("provider") or "command", config)
        provider.parse(output, "", result)
    except (ProviderError, Exception):  # noqa: BLE001 - a parse failure leaves "no evidence"
        result.evidence = bool(output.strip())
    return result
