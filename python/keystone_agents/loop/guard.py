"""A provider cannot break the queue: TASKS.yaml after a provider run is accepted only if it is still valid.

The agent may edit TASKS.yaml while it works (set its own task `blocked` or `completed`, add tasks, note things
on others): a valid file is kept as it is. Not valid — YAML that does not parse, a file-level schema error, or
a task that was there before the run is gone (or no longer a valid entry) — is rejected: the broken file is kept
next to it as `TASKS.yaml.rejected-<YYYYmmddTHHMMSSZ>`, the last valid version the runtime wrote is restored
(the outcome of the task that ran is then applied to it as usual), an ISSUES.yaml entry records it
(`discovered_during:` the task) with a `tasks_file_rejected` event, and the run ends degraded (exit 3). The next
run reads the restored file and proceeds normally.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from keystone_agents.atomic import write_atomic
from keystone_agents.problems import ValidationFailed
from keystone_agents.taskfile import TaskFile
from keystone_agents.timeutil import iso_z


@dataclass
class Rejection:
    kept_as: Path
    reasons: list[str]
    issue: str | None  # the ISSUES.yaml entry's name (None if ISSUES.yaml could not be written)


def reload_after_provider(tf: TaskFile, task: str, log) -> tuple[TaskFile, Rejection | None]:
    """TASKS.yaml as the provider left it, or the last valid version (`tf`, as the runtime last wrote it)."""
    before = set(tf.by_name())
    try:
        raw = tf.path.read_bytes()
    except FileNotFoundError:
        raw = None
    reasons: list[str] = []
    if raw is None:
        reasons = [f"{tf.path} was deleted"]
    else:
        try:
            reloaded = TaskFile(tf.path, raw.decode("utf-8"), True)
        except UnicodeDecodeError as exc:
            reasons = [f"{tf.path}: not UTF-8 text ({exc.reason})"]
        except ValidationFailed as exc:
            reasons = [str(p) for p in exc.problems]
        else:
            lost = sorted(before - set(reloaded.by_name()))
            if not lost:
                return reloaded, None
            reasons = [f"{tf.path}: task(s) lost or made invalid: {', '.join(lost)}"] + [str(p) for p in reloaded.problems]
    return _reject(tf, raw, task, reasons, log)


def _reject(tf: TaskFile, raw: bytes | None, task: str, reasons: list[str], log) -> tuple[TaskFile, Rejection]:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    kept = tf.path.with_name(f"{tf.path.name}.rejected-{stamp}")
    n = 2
    while kept.exists():
        kept = tf.path.with_name(f"{tf.path.name}.rejected-{stamp}-{n}")
        n += 1
    if raw is not None:
        write_atomic(kept, raw, mode=0o600)
    write_atomic(tf.path, tf.original)  # the last valid TASKS.yaml the runtime wrote
    restored = TaskFile(tf.path, tf.original, True)
    issue = _record_issue(tf.path.parent / "ISSUES.yaml", task, kept if raw is not None else None, reasons, stamp, log)
    log.warning("tasks_file_rejected", msg=f"TASKS.yaml after task {task} was not valid; the last valid version is "
                f"restored" + (f", the broken file kept as {kept.name}" if raw is not None else ""),
                step="execute", status="degraded", task_name=task, file=str(tf.path),
                rejected_file=str(kept) if raw is not None else "", reason="; ".join(reasons)[:500], issue=issue or "")
    return restored, Rejection(kept, reasons, issue)


def _record_issue(issues_file: Path, task: str, kept: Path | None, reasons: list[str], stamp: str, log) -> str | None:
    from keystone_agents import queuefile

    name = f"tasks-yaml-rejected-{stamp.lower()}"
    description = (
        f"After the provider ran task {task}, TASKS.yaml was not valid: {'; '.join(reasons)[:1500]}. The runtime "
        f"restored the last valid TASKS.yaml it wrote and applied the task's outcome to it"
        + (f"; the rejected file is kept as {kept}." if kept else ".")
    )
    try:
        doc = queuefile.load(issues_file, queuefile.ISSUES)
        seq = doc.entries()
        if getattr(seq, "fa", None) is not None and seq.fa.flow_style():
            seq.fa.set_block_style()
        seq.append({
            "name": name, "description": description, "discovered_during": task, "status": "open",
            "severity": "medium",
            "workaround": "Compare the rejected file with TASKS.yaml and carry over any edit worth keeping by hand.",
            "created_at": iso_z(),
        })
        doc.save()
    except (ValidationFailed, OSError) as exc:
        log.error("log", msg=f"cannot record the rejected TASKS.yaml in ISSUES.yaml: {exc}"[:500], step="execute",
                  status="error", task_name=task)
        return None
    return name
