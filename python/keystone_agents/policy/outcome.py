"""The execute stage's two touch points with the policy (kept here so loop/execute.py changes by a few lines):

- `prepare`: before a provider run, the policy file its CLI hooks read (the rendered root-owned one, else one
  rendered for this run) and the run's decision log ($KEYSTONE_POLICY_LOG);
- `verdict`: after it, what the hook decided: an action waiting for approval ends the task `blocked` with
  `blocked_reason: approval:<id>`; a run whose every attempted action was refused ends with outcome `policy`.
  Events: `tool_notify`, `tool_blocked`, `approval_requested`, `approval_consumed`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from keystone_agents.policy import model

DECISIONS_DIR = "policy"
APPROVAL_PREFIX = "approval:"


@dataclass
class Prepared:
    policy_file: str
    log_path: Path
    run_dir: Path | None = None  # a per-run rendering to remove afterwards

    def cleanup(self) -> None:
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def program() -> str:
    """The keystone-agent the hooks run: the one next to this interpreter when there is one."""
    beside = Path(sys.executable).parent / "keystone-agent"
    return str(beside) if beside.exists() else (shutil.which("keystone-agent") or "keystone-agent")


def enabled(config) -> bool:
    return bool(config.policy_file) or model.configured(config.role, config.policy)


def prepare(config, space, run_id: str, task: str) -> Prepared | None:
    if not enabled(config):
        return None
    directory = space.state_dir / DECISIONS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / f"{run_id}-{task}.jsonl"
    try:
        log_path.unlink()
    except FileNotFoundError:
        pass
    if config.policy_file:
        return Prepared(str(config.policy_file), log_path)
    from keystone_agents.policy import render

    run_dir = directory / f"{run_id}-{task}.d"
    policy_file = render.write_run(run_dir, config, str(space.home), program())
    return Prepared(str(policy_file), log_path, run_dir)


@dataclass
class Verdict:
    decisions: list[dict] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # approval ids requested during the run

    @property
    def all_refused(self) -> bool:
        return bool(self.decisions) and not any(d.get("allowed") for d in self.decisions)

    def override(self) -> tuple[str, dict, str, str] | None:
        """(outcome, field updates, message, reason) replacing the execute stage's own decision, or None."""
        if self.pending:
            ids = ", ".join(self.pending)
            return ("blocked", {"status": "blocked", "blocked_reason": f"{APPROVAL_PREFIX}{self.pending[0]}"},
                    f"waiting for human approval {ids}", "approval")
        if self.all_refused:
            refused = "; ".join(sorted({(d.get("action") or {}).get("kind", "?") + ":" +
                                        str((d.get("action") or {}).get("target", ""))[:80]
                                        for d in self.decisions}))[:400]
            return ("policy", {"status": "blocked",
                               "blocked_reason": f"policy: every action was refused ({refused})"},
                    "all actions blocked by policy", "policy")
        return None


def read(log_path: Path | None) -> Verdict:
    verdict = Verdict()
    if log_path is None:
        return verdict
    try:
        lines = log_path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return verdict
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        verdict.decisions.append(entry)
        if entry.get("approval") and not entry.get("allowed") and entry["approval"] not in verdict.pending:
            verdict.pending.append(str(entry["approval"]))
    return verdict


def emit_events(verdict: Verdict, log, task: str) -> None:
    for entry in verdict.decisions:
        action = entry.get("action") or {}
        what = f"{action.get('kind', '?')}:{str(action.get('target', ''))[:200]}"
        fields = dict(step="execute", task_name=task, tier=entry.get("tier", ""), rule=str(entry.get("rule", ""))[:200],
                      action=what, cli=entry.get("cli", ""))
        if entry.get("consumed"):
            log.info("approval_consumed", msg=f"task {task}: approved action ran once ({what})",
                     approval_id=entry.get("approval"), status="allowed", **fields)
        elif entry.get("approval"):
            log.warning("approval_requested", msg=f"task {task}: {what} waits for human approval {entry['approval']}",
                        approval_id=entry["approval"], status="blocked", **fields)
        elif entry.get("tier") == "notify":
            log.info("tool_notify", msg=f"task {task}: {what} (reported to the admins)", status="allowed", **fields)
        elif not entry.get("allowed"):
            log.warning("tool_blocked", msg=f"task {task}: {what} refused by policy", status="blocked", **fields)


def env(prepared: Prepared | None, entry_project: str | None) -> dict[str, str]:
    if prepared is None:
        return {}
    found = {"KEYSTONE_POLICY_LOG": str(prepared.log_path), "KEYSTONE_POLICY_FILE": prepared.policy_file}
    if entry_project:
        found["KEYSTONE_TASK_PROJECT"] = str(entry_project)
    return found


__all__ = ["prepare", "read", "Verdict", "Prepared", "emit_events", "env", "os", "remember_session",
           "approved_session", "approval_prompt"]


# ---------------------------------------------------------------- resuming the CLI session after an approval
# An execution blocked on `approval:<id>` leaves state/policy/sessions/<task>.json: {approval, provider,
# session_id}. When a human approves, `resume_decided` adds the decision to it ("approved"); the retried
# execution of the task takes it (once) and resumes that CLI session with `approval_prompt` only.

SESSIONS_DIR = "sessions"


def _session_file(space, task: str) -> Path:
    from keystone_agents import sanitize

    return sanitize.inside(space.state_dir / DECISIONS_DIR / SESSIONS_DIR, f"{task}.json", field="name")


def remember_session(space, task: str, approval_id: str, provider: str, session_id: str | None) -> None:
    """The CLI session an execution blocked on `approval_id` ran in (none: the retry re-runs the task)."""
    from keystone_agents.loop.state import remove, write_json

    path = _session_file(space, task)
    if not session_id:
        remove(path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"approval": approval_id, "provider": provider, "session_id": session_id})


def _mark_session(space, task: str, approval_id: str, approval: dict | None) -> None:
    """Approved (`approval` given): the remembered session may be resumed; rejected: it is forgotten."""
    from keystone_agents.loop.state import read_json, remove, write_json

    path = _session_file(space, task)
    stored = read_json(path)
    if not isinstance(stored, dict) or stored.get("approval") != approval_id:
        return
    if approval is None:
        remove(path)
        return
    stored["approved"] = {"by": approval.get("decided_by") or "a human", "note": approval.get("note") or "",
                          "action": approval.get("action") or ""}
    write_json(path, stored)


def approved_session(space, task: str) -> dict | None:
    """The approved session of `task` to resume ({approval, provider, session_id, approved}), taken once: the
    record is removed, so a later retry re-runs the task (the approval noted in its description)."""
    from keystone_agents.loop.state import read_json, remove

    path = _session_file(space, task)
    stored = read_json(path)
    if not isinstance(stored, dict) or not isinstance(stored.get("approved"), dict):
        return None
    remove(path)
    if not stored.get("session_id") or not stored.get("provider"):
        return None
    return stored


def approval_prompt(stored: dict) -> str:
    """The continuation prompt of an approved session: the decision, never the task again."""
    approved = stored.get("approved") or {}
    note = f" (their note: {str(approved['note']).strip()[:500]})" if str(approved.get("note") or "").strip() else ""
    return (f"A human ({approved.get('by') or 'a human'}) approved the action you were waiting for: approval "
            f"{stored.get('approval')} for {str(approved.get('action') or '')[:500]}{note}. It may now run once: "
            "retry that action now, then continue where you left off in this session (do not start over), and "
            'write your report to $KEYSTONE_TASK_RESULT as before ("status": "completed" or "blocked"). '
            "Running the same action a second time needs a new approval.")


def resume_decided(bus, space, log=None) -> list[str]:
    """Tasks blocked on an approval a human decided: approved → pending again (the retry runs that action once,
    the approval is noted in its description, which the prompt carries, and the remembered CLI session is marked
    approved so the retry resumes it); rejected → stays blocked, with the decision in its blocked_reason. Run by `comms drain` (the approval woke the agent) and the loop's prefetch.
    → the names of tasks made runnable."""
    from keystone_agents.coordination.base import BusError
    from keystone_agents.lock import hold
    from keystone_agents.taskfile import TaskFile

    resumed: list[str] = []
    try:  # the common case (no task waits for an approval) costs one read: no lock, no parse
        if APPROVAL_PREFIX not in space.tasks_file.read_text(encoding="utf-8", errors="replace"):
            return resumed
    except FileNotFoundError:
        return resumed
    with hold(space.tasks_lock_file):
        tf = TaskFile.load(space.tasks_file)
        changed = False
        for entry in tf.entries:
            if not isinstance(entry.data, dict) or entry.get("status") != "blocked":
                continue
            reason = str(entry.get("blocked_reason") or "")
            if not reason.startswith(APPROVAL_PREFIX) or " " in reason.strip():
                continue
            approval_id = reason[len(APPROVAL_PREFIX):].strip()
            try:
                approval = bus.approval_get(approval_id)
            except BusError:
                continue
            who = approval.get("decided_by") or "a human"
            note = f": {approval['note']}" if approval.get("note") else ""
            if approval.get("state") == "approved":
                text = (f"{entry.get('description') or ''}\n\n(Approval {approval_id} granted by {who}{note}: "
                        f"{approval.get('action')} may now run once. Retry it.)").strip()
                tf.set_fields(entry, {"status": "pending", "blocked_reason": None, "description": text})
                _mark_session(space, entry.name, approval_id, approval)
                resumed.append(entry.name)
                changed = True
                if log:
                    log.info("approval_granted", msg=f"task {entry.name} resumes: approval {approval_id} granted by "
                             f"{who}", status="pending", task_name=entry.name, approval_id=approval_id)
            elif approval.get("state") == "rejected":
                tf.set_fields(entry, {"blocked_reason": f"{reason} rejected by {who}{note}"[:500]})
                _mark_session(space, entry.name, approval_id, None)
                changed = True
                if log:
                    log.warning("approval_rejected", msg=f"task {entry.name} stays blocked: approval {approval_id} "
                                f"rejected by {who}", status="blocked", task_name=entry.name, approval_id=approval_id)
        if changed:
            tf.save()
    return resumed
