"""Execute: pick the next runnable task, run its provider with a timeout, record the outcome.

* Runnable: a valid pending task whose `needs` are all completed (TASKS.yaml or the archive). A need on a
  blocked or unknown task blocks the task with `blocked_reason: "waiting on needs: …"`; such a task goes
  back to pending once its needs complete. A need on a pending/in-progress task just waits.
* Before the provider starts, the task is saved `in_progress` with `started_at`, and state/running.json
  records the run and the provider's process group (so a later run can recover and clean up).
* Budgets are checked before every invocation (loop/budget.py): a task that would start over one is not
  started (outcome token_budget, it stays pending); an agent-wide ceiling also ends the execute stage.
* The provider runs with stdin closed, a clean environment, and a stall watchdog next to the wall clock.
* Outcome: more tool calls/turns than `exec.maxIterations` (alias `maxTurns`) → max_iterations (reason
  max-turns; the event stream is counted while the CLI runs and the process group stopped at the limit);
  autonomous mode resumes the CLI session while the report says `continue` (modes/continuation.py);
  the agent's report in $KEYSTONE_TASK_RESULT wins; else the status the agent gave its own task in
  TASKS.yaml (blocked with its blocked_reason, or completed) when it exited 0; else exit 0 WITH evidence
  (providers' `parse`) → completed, exit 0 without → failed (no-evidence);
  a model error → one retry with the fallback model; failure or timeout → pending with the failure counted,
  blocked after maxAttempts. Status `error` is never written. Deliveries the report lists are recorded
  apart from the status.
* With a policy (policy/outcome.py, docs/policy.md), what the CLI's pre-tool hook decided overrides all of
  that: an action waiting for a human's approval → outcome "blocked" with `blocked_reason: approval:<id>`;
  every attempted action refused → outcome "policy" (the task blocked). The CLI session of an execution blocked
  on an approval is remembered; once a human approves, the retry resumes that session with a short prompt
  saying so (policy/outcome.py: remember_session, approved_session, approval_prompt).
* TASKS.yaml as the provider left it is kept when valid, rejected and restored when not (loop/guard.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keystone_agents import history, sanitize
from keystone_agents.loop import journal
from keystone_agents.loop.runner import Counters
from keystone_agents.loop.state import read_json, remove, write_json
from keystone_agents.profiles import Runtime, resolve
from keystone_agents.providers.coding import route as coding_route
from keystone_agents.providers import ProviderError, ProviderResult, get
from keystone_agents.providers.base import found_urls
from keystone_agents.policy.model import PolicyError
from keystone_agents.providers.mcp import McpError
from keystone_agents.providers.mcp import plan_for as mcp_plan
from keystone_agents.providers.process import RunOptions
from keystone_agents.space import AgentSpaceMissing, require_agent_space
from keystone_agents.taskfile import EditRefused, Entry, TaskFile
from keystone_agents.timeutil import iso_z

NEEDS_MARK = "waiting on needs: "
RESULT_ENV = "KEYSTONE_TASK_RESULT"
REPORT_STATUSES = ("completed", "blocked", "continue", "end_tick")  # continue: autonomous; end_tick: tick
TASK_STATUSES_SAID = ("completed", "blocked")  # what an agent may set on its own task in TASKS.yaml
KILL_MARKER = "kill-requested.json"  # state/: written by keystone-agent kill, names the process group it stopped
MCP_PROVIDERS = ("claude", "codex", "gemini")  # the CLIs that take MCP servers (providers/mcp.py)
DELIVERY_KINDS = ("email", "pull_request", "issue", "comment", "message")


@dataclass
class ExecContext:
    space: Any
    config: Any
    run_id: str
    log: Any
    conn: Any  # sqlite3 connection (history)
    env: dict[str, str]
    archived: set[str]  # names of archived (completed) tasks
    dry_run: bool = False
    counters: Counters = field(default_factory=Counters)
    attempted: set[str] = field(default_factory=set)
    tasks_lock: Any = None  # lock.FileLock of TASKS.yaml, let go while a provider runs
    rejected_files: list = field(default_factory=list)  # guard.Rejection: TASKS.yaml a provider left broken
    budget_stop: Any = None  # the agent-wide budget Refusal that ended the execute stage
    resume: dict | None = None  # {"task", "prompt"}: continue that task's stored CLI session (keystone-agent continue)
    tick_ended: bool = False  # a report said end_tick (tick mode stops its timer)
    preflight: Any = None  # providers.preflight.Preflight: can the task's provider run here, now?
    unavailable: list = field(default_factory=list)  # (task, Finding) of tasks left untouched this run


# ---------------------------------------------------------------- needs


def _needs(entry: Entry) -> list[str]:
    needs = entry.get("needs") or []
    return [n for n in needs if isinstance(n, str)]


def _status_of(name: str, by_name: dict[str, Entry], archived: set[str]) -> str | None:
    entry = by_name.get(name)
    if entry is not None:
        return entry.get("status")
    return "completed" if name in archived else None


def unblock_ready(tf: TaskFile, archived: set[str], log) -> int:
    """Tasks the runtime blocked on needs go back to pending once every need is completed."""
    by_name = tf.by_name()
    count = 0
    for entry in list(tf.valid()):
        reason = entry.get("blocked_reason") or ""
        if entry.get("status") != "blocked" or not reason.startswith(NEEDS_MARK):
            continue
        if all(_status_of(n, by_name, archived) == "completed" for n in _needs(entry)):
            tf.set_fields(entry, {"status": "pending", "blocked_reason": None})
            log.info("log", msg=f"task {entry.name} unblocked: its needs are completed", step="execute",
                     task_name=entry.name, status="pending")
            count += 1
    return count


def _cycle(entry: Entry, by_name: dict[str, Entry]) -> list[str] | None:
    path, seen = [entry.name], {entry.name}

    def walk(current: Entry) -> list[str] | None:
        for need in _needs(current):
            nxt = by_name.get(need)
            if nxt is None or nxt.get("status") not in ("pending", "blocked"):
                continue
            if need == entry.name:
                return path + [need]
            if need in seen:
                continue
            seen.add(need)
            path.append(need)
            found = walk(nxt)
            if found:
                return found
            path.pop()
        return None

    return walk(entry)


def next_runnable(tf: TaskFile, attempted: set[str], archived: set[str], log) -> tuple[Entry | None, int]:
    """→ (the first runnable pending task or None, how many tasks were blocked on needs meanwhile)."""
    by_name = tf.by_name()
    blocked = 0
    for entry in list(tf.valid()):
        if entry.get("status") != "pending" or entry.name in attempted:
            continue
        needs = _needs(entry)
        states = {n: _status_of(n, by_name, archived) for n in needs}
        bad = [f"{n} does not exist" if s is None else f"{n} is blocked" for n, s in states.items()
               if s is None or s == "blocked"]
        cycle = _cycle(entry, by_name) if needs and not bad else None
        if cycle:
            bad = ["cycle " + " -> ".join(cycle)]
        if bad:
            reason = NEEDS_MARK + "; ".join(bad)
            tf.set_fields(entry, {"status": "blocked", "blocked_reason": reason})
            log.info("task_finish", msg=f"task {entry.name} blocked: {reason}", step="execute",
                     task_name=entry.name, status="blocked", blocked_reason=reason, duration_seconds=0)
            blocked += 1
            continue
        if all(s == "completed" for s in states.values()):
            return entry, blocked
    return None, blocked


def needs_pending(entry: Entry, tf: TaskFile, archived: set[str]) -> list[str]:
    """The task's needs that are not completed yet."""
    by_name = tf.by_name()
    return [n for n in _needs(entry) if _status_of(n, by_name, archived) != "completed"]


def has_runnable(tf: TaskFile, archived: set[str]) -> bool:
    """Whether a run would execute anything (read-only version of next_runnable)."""
    by_name = tf.by_name()
    for entry in tf.valid():
        if entry.get("status") == "blocked" and (entry.get("blocked_reason") or "").startswith(NEEDS_MARK):
            if all(_status_of(n, by_name, archived) == "completed" for n in _needs(entry)):
                return True
        if entry.get("status") != "pending":
            continue
        states = [_status_of(n, by_name, archived) for n in _needs(entry)]
        if all(s == "completed" for s in states) or any(s in (None, "blocked") for s in states):
            return True
    return False


# ---------------------------------------------------------------- prompt and report


def prompt_for(entry: Entry) -> str:
    """The seed's prompts. The description is normalised once more (a human may have typed an escaped NUL or
    control character into TASKS.yaml); its length is not capped here: a long prompt travels on stdin."""
    name, workflow = entry.get("name"), entry.get("workflow")
    description = sanitize.clean_text(entry.get("description"), field="description", multiline=True, limit=1 << 62,
                                      lenient=True)
    if workflow:
        return f"/deepwork {workflow}\n\nTask: {name}\nDescription: {description}"
    return f"Execute this task.\n\nTask: {name}\nDescription: {description}"


def read_report(path: Path, log, task: str) -> dict | None:
    """The agent's outcome report, if it wrote a valid one."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        log.warning("log", msg=f"ignored invalid task report: {exc}", step="execute", task_name=task)
        return None
    problems = []
    if not isinstance(data, dict):
        problems.append("not a JSON object")
    else:
        if data.get("status") not in REPORT_STATUSES:
            problems.append("status must be completed, blocked, continue or end_tick")
        for key in ("message", "blocked_reason"):
            if key in data and not isinstance(data[key], str):
                problems.append(f"{key} must be a string")
        for key in ("pull_requests_created", "issues_created"):
            if key in data and not (isinstance(data[key], list) and all(isinstance(u, str) for u in data[key])):
                problems.append(f"{key} must be a list of strings")
        problems += delivery_problems(data.get("deliveries", []))
    if problems:
        log.warning("log", msg="ignored invalid task report: " + "; ".join(problems), step="execute", task_name=task)
        return None
    return data


def delivery_problems(deliveries) -> list[str]:
    """`deliveries`: [{"kind": "email"|"pull_request"|…, "target": str, "ok": bool, "error"?: str}]."""
    if not isinstance(deliveries, list):
        return ["deliveries must be a list"]
    problems = []
    for number, item in enumerate(deliveries):
        where = f"deliveries[{number}]"
        if not isinstance(item, dict):
            problems.append(f"{where} must be an object")
            continue
        if item.get("kind") not in DELIVERY_KINDS:
            problems.append(f"{where}.kind must be one of {', '.join(DELIVERY_KINDS)}")
        if not isinstance(item.get("target"), str):
            problems.append(f"{where}.target must be a string")
        if not isinstance(item.get("ok"), bool):
            problems.append(f"{where}.ok must be true or false")
        if "error" in item and not isinstance(item["error"], (str, type(None))):
            problems.append(f"{where}.error must be a string")
    return problems


def _deliveries(report: dict | None) -> list[dict]:
    if not report:
        return []
    return [{k: d[k] for k in ("kind", "target", "ok", "error") if k in d} for d in report.get("deliveries") or []]


# ---------------------------------------------------------------- budgets


def refuse_over_budget(ctx: ExecContext, entry: Entry, runtime: Runtime, fields: dict) -> bool:
    """Whether a budget forbids starting `entry` now; if so, say why (event, history row, counters)."""
    from keystone_agents.loop import budget

    if not budget.configured(ctx.config.budgets):
        return False
    refusal = budget.check(ctx.conn, ctx.config.budgets, entry.name)
    if refusal is None:
        return False
    message = refusal.describe() + ("; no more tasks this run" if refusal.agent_wide else "; the task stays pending")
    ctx.counters.budget_refused += 1
    if refusal.agent_wide:
        ctx.budget_stop = refusal
    now = iso_z()
    history.record_execution(ctx.conn, {
        "run_id": ctx.run_id, "task": entry.name, "source_ref": entry.get("source_ref"),
        "provider": runtime.provider, "model": runtime.model, "profile": runtime.profile,
        "outcome": "token_budget", "reason": refusal.reason, "started_at": now, "finished_at": now,
        "duration_seconds": 0.0, "message": message,
    })
    ctx.log.warning("budget_exceeded", msg=f"task {entry.name} not started: {message}", status="pending",
                    outcome="token_budget", reason=refusal.reason, budget_scope=refusal.scope,
                    budget_unit=refusal.unit, budget_used=round(refusal.used, 6), budget_limit=refusal.limit,
                    **fields)
    return True


# ---------------------------------------------------------------- one task


def save_or_report(tf: TaskFile, log, task: str) -> bool:
    """Save TASKS.yaml; an edit the file cannot take safely (EditRefused) is an event, not a crash."""
    try:
        tf.save()
        return True
    except EditRefused as exc:
        report_refused(log, exc, task)
        return False


def report_refused(log, exc: EditRefused, task: str = "") -> None:
    for problem in exc.problems:
        log.error("tasks_edit_refused", msg=f"TASKS.yaml edit not written: {problem}", step="execute",
                  status="error", task_name=task, file=problem.file)


def task_log_path(space, name: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y-%m-%d_%H%M%S")
    return sanitize.inside(space.task_logs_dir, f"{stamp}_{name}.log", field="name")


def _running_file(space) -> Path:
    return space.state_dir / "running.json"


def execute_one(ctx: ExecContext, tf: TaskFile, entry: Entry) -> TaskFile:
    """Run one task to an outcome; returns the (possibly reloaded) task file."""
    space, config, log = ctx.space, ctx.config, ctx.log
    name = entry.name
    ctx.attempted.add(name)
    runtime = resolve(config, "execute", entry.data)
    prompt = prompt_for(entry)
    log_path = task_log_path(space, name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fields = dict(step="execute", task_name=name, workflow=entry.get("workflow") or "",
                  source=entry.get("source") or "", source_ref=entry.get("source_ref") or "",
                  provider=runtime.provider, profile=runtime.profile or "", model=runtime.model or "",
                  task_log_path=str(log_path))
    finding = ctx.preflight.check(runtime.provider, runtime.model) if ctx.preflight is not None else None
    if finding is not None:
        return _unavailable(ctx, tf, entry, finding, fields)
    if ctx.dry_run:
        log.info("task_start", msg=f"Starting task {name}", status="started", **fields)
        return _dry_run(ctx, tf, entry, runtime, prompt, log_path, fields)
    if refuse_over_budget(ctx, entry, runtime, fields):
        return tf
    log.info("task_start", msg=f"Starting task {name}", status="started", **fields)
    workflow = entry.get("workflow")
    if workflow and not space.deepwork_job_dir(workflow).is_dir():
        # the seed's contract: the prompt still starts with /deepwork job/workflow; say the job is not there
        log.warning("workflow_job_missing", msg=f"task {name}: DeepWork job of {workflow} is not in the agent space "
                    f"({space.deepwork_job_dir(workflow)})", status="warning", step="execute", task_name=name,
                    workflow=workflow, path=str(space.deepwork_job_dir(workflow)))

    started_at = iso_z()
    tf.set_fields(entry, {"status": "in_progress", "started_at": started_at})
    if not save_or_report(tf, log, name):  # not run: a task that cannot be marked in_progress could run twice
        return TaskFile.load(tf.path)
    running = {"task": name, "run_id": ctx.run_id, "pid": os.getpid(), "pgid": None, "started_at": started_at,
               "source_ref": entry.get("source_ref"), "log_path": str(log_path), "provider": runtime.provider,
               "model": runtime.model, "profile": runtime.profile}
    write_json(_running_file(space), running)
    exit_journal = journal.Journal(space.state_dir, running).open()

    results_dir = space.state_dir / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    report_path = sanitize.inside(results_dir, f"{ctx.run_id}-{name}.json", field="name")
    remove(report_path)
    env = {**ctx.env, RESULT_ENV: str(report_path), "KEYSTONE_TASK_NAME": name, "KEYSTONE_RUN_ID": ctx.run_id}
    from keystone_agents.coordination.base import msg_id_of

    comms_msg = msg_id_of(entry.get("source_ref")) if entry.get("source") == "comms" else None
    if comms_msg:  # what the task sends over comms is one level deeper than this message
        env["KEYSTONE_COMMS_PARENT"] = comms_msg

    def on_spawn(pgid: int) -> None:
        running["pgid"] = pgid
        write_json(_running_file(space), running)

    from keystone_agents.modes import continuation

    from keystone_agents.policy import outcome as policy_outcome

    policy = {"run": None}  # the policy the CLI hooks read and the run's decision log (policy/outcome.py)
    if ctx.tasks_lock:  # a provider may run for half an hour: TASKS.yaml is free for others meanwhile
        ctx.tasks_lock.release()
    session, turn = None, 0
    if ctx.resume and ctx.resume.get("task") == name:  # `keystone-agent continue TASK`: the stored session
        stored = continuation.stored_session(ctx.conn, name)
        if stored and stored["provider"] == runtime.provider:
            session = stored["session_id"]  # a fresh allowance of maxAutoTurns continuations
            prompt = continuation.guidance(None, ctx.resume.get("prompt"))
        elif ctx.resume.get("prompt"):
            prompt = continuation.reprompt(prompt, "", continuation.guidance(None, ctx.resume["prompt"]))
    approved = None if session else policy_outcome.approved_session(space, name)
    if approved is not None and approved["provider"] == runtime.provider and _session_capable(config, entry,
                                                                                              runtime.provider):
        # a human approved the action this task waited for: resume the CLI session it waited in
        session, prompt = approved["session_id"], policy_outcome.approval_prompt(approved)
        log.info("approval_resumed", msg=f"task {name}: approval {approved['approval']} granted; resuming CLI "
                 f"session {session}", status="started", approval_id=approved["approval"], session_id=session,
                 **fields)
    killed = False
    while True:
        attempts = _invoke(ctx, entry, runtime, prompt, env, log_path, on_spawn, session, exit_journal,
                           policy)
        final_runtime, result, error = attempts[-1]
        report = read_report(report_path, log, name)
        exit_journal.result(result, report, len(attempts))  # durable before the report file goes
        remove(report_path)
        killed = _killed(space, running.get("pgid"))
        if killed or not continuation.wanted(config, report) or result is None or result.stopped:
            break
        if turn >= config.exec.max_auto_turns:
            why = (f"{continuation.MAX_AUTO_TURNS_REASON}: still not done after {turn} continuation(s) "
                   f"(exec.maxAutoTurns {config.exec.max_auto_turns}); agentctl AGENT resume {name} continues it")
            report = {"status": "blocked", "blocked_reason": why, "message": report.get("message") or why,
                      "deliveries": report.get("deliveries") or []}
            break
        _record(ctx, name, entry, final_runtime, result, "continue", started_at, log_path, attempt=len(attempts),
                message=report.get("message") or "", auto_turn=turn)
        turn += 1
        text = continuation.guidance(report)
        if final_runtime.provider in continuation.SESSION_PROVIDERS:
            if not result.session_id:
                report = {"status": "blocked", "blocked_reason": "the CLI printed no session id to continue"}
                break
            session, prompt = result.session_id, text
        else:
            prompt = continuation.reprompt(prompt, result.answer, text)
        runtime = final_runtime
        exit_journal.open()  # the continuation is a new execution of the same task
        log.info("turn", msg=f"task {name}: continuation {turn} of {config.exec.max_auto_turns}", status="continue",
                 auto_turn=turn, session_id=session or "", **fields)
    if ctx.tasks_lock:
        ctx.tasks_lock.acquire()

    now = iso_z()
    # The agent may have edited TASKS.yaml meanwhile: keep a valid edit (and what it says about its own task),
    # reject a broken one (loop/guard.py), then apply our change to what is on disk now.
    said = None
    if tf.on_disk_changed():
        from keystone_agents.loop.guard import reload_after_provider

        tf, rejection = reload_after_provider(tf, name, log)
        if rejection is not None:
            ctx.rejected_files.append(rejection)
        else:
            said = _agent_says(tf.find(name))
    policy_run = policy["run"]
    if killed:  # an operator's kill: the attempt is recorded, the task is not held against maxAttempts
        outcome, updates, reason = "failed", {"status": "pending"}, "killed"
        message = "killed by an operator (keystone-agent kill / agentctl AGENT kill)"
    else:
        outcome, updates, message, reason = _decide(ctx, name, result, error, report, now, said)
        if policy_run is not None:  # an action waiting for approval, or every action refused, decides the outcome
            verdict = policy_outcome.read(policy_run.log_path)
            policy_outcome.emit_events(verdict, log, name)
            outcome, updates, message, reason = verdict.override() or (outcome, updates, message, reason)
            if verdict.pending:  # the retry after the approval resumes this CLI session (where there is one)
                capable = result is not None and _session_capable(config, entry, final_runtime.provider)
                policy_outcome.remember_session(space, name, verdict.pending[0], final_runtime.provider,
                                                result.session_id if capable else None)
    if policy_run is not None:
        policy_run.cleanup()
    if outcome == "blocked" and (updates.get("blocked_reason") or "").startswith(continuation.MAX_AUTO_TURNS_REASON):
        reason = continuation.MAX_AUTO_TURNS_REASON
    if report and report.get("status") == "end_tick":
        ctx.tick_ended = True
    exit_journal.decided(outcome, updates, message, reason)
    deliveries = _deliveries(report)
    failed_deliveries = [d for d in deliveries if not d["ok"]]
    target = tf.find(name)
    updates = sanitize.clean_task(updates, lenient=True)  # reasons quote the agent's report and the CLI's output
    if target is not None:
        tf.set_fields(target, updates)
        save_or_report(tf, log, name)  # refused: the outcome is still recorded in the history below
    else:
        log.warning("log", msg=f"task {name} is gone from TASKS.yaml; outcome only recorded", step="execute",
                    task_name=name)
    pull_requests, issues = _urls(result, report)
    _record(ctx, name, entry, final_runtime, result, outcome, started_at, log_path,
            attempt=len(attempts), fallback_used=len(attempts) > 1, message=message,
            pull_requests=pull_requests, issues=issues, reason=reason, deliveries=deliveries, auto_turn=turn)
    exit_journal.clear()
    remove(_running_file(space))
    if comms_msg and not ctx.dry_run and updates["status"] in ("completed", "blocked"):
        from keystone_agents.coordination.comms import after_task

        after_task(config, space.state_dir, entry.get("source_ref"), updates["status"], report, message,
                   updates.get("blocked_reason"), log)  # a task made from an ask: the runtime replies, once
    for delivery in failed_deliveries:
        log.warning("delivery_failed", msg=f"task {name}: {delivery['kind']} to {delivery['target']} was not "
                    f"delivered: {delivery.get('error') or 'no reason given'}"[:500], step="execute", task_name=name,
                    status=updates["status"], delivery_kind=delivery["kind"], delivery_target=delivery["target"],
                    error=(delivery.get("error") or "")[:300])
    usage = result.usage if result else None
    tokens = usage.total() if usage else 0
    ctx.counters.executed += 1
    ctx.counters.tasks.append({"name": name, "outcome": outcome, "status": updates["status"], "reason": reason,
                               "provider": final_runtime.provider, "model": final_runtime.model or None,
                               "exit_code": result.exit_code if result else None, "tokens": tokens,
                               "cost_usd": usage.cost_usd if usage else None,
                               "duration_seconds": round(sum(r.duration_seconds for _, r, _ in attempts if r), 3)})
    ctx.counters.tokens += tokens
    ctx.counters.cost_usd += (usage.cost_usd or 0.0) if usage else 0.0
    status = updates["status"]
    if status == "completed":
        ctx.counters.completed += 1
    elif status == "blocked":
        ctx.counters.blocked += 1
    if outcome in ("failed", "timeout", "model_error", "max_iterations") or (outcome == "token_budget" and status != "completed"):
        ctx.counters.failed += 1
    ctx.counters.stalled += reason == "stalled"
    ctx.counters.no_evidence += reason == "no-evidence"
    ctx.counters.max_turns += reason == "max-turns"
    ctx.counters.deliveries_failed += len(failed_deliveries)
    ctx.counters.tasks_delivery_failed += bool(failed_deliveries)
    log.info("task_finish", msg=f"Finished task {name}: {outcome}", status=status, outcome=outcome,
             **{**fields, "provider": final_runtime.provider, "model": final_runtime.model or ""},
             duration_seconds=round(sum(r.duration_seconds for _, r, _ in attempts if r), 3),
             exit_code=result.exit_code if result and result.exit_code is not None else -1,
             token_total=tokens, cost_usd=(usage.cost_usd if usage and usage.cost_usd is not None else ""),
             parsed_urls=pull_requests + issues, pr_urls=pull_requests, issue_urls=issues, message=message[:300],
             reason=reason, turns=result.turns if result and result.turns is not None else "",
             deliveries=len(deliveries), deliveries_failed=len(failed_deliveries),
             tool_calls=result.tool_calls if result and result.tool_calls is not None else "",
             auto_turn=turn, session_id=(result.session_id if result else "") or "")
    return tf


def _session_capable(config, entry: Entry, provider: str) -> bool:
    """Whether the task's executions run in a CLI session that can be resumed (not the coding route's)."""
    from keystone_agents.modes import continuation

    workflow = entry.get("workflow")
    coding = bool(workflow) and workflow in (getattr(getattr(config, "coding", None), "workflows", None) or ())
    return provider in continuation.SESSION_PROVIDERS and not coding


def _killed(space, pgid) -> bool:
    """Whether `keystone-agent kill` stopped this execution (its marker names our process group); consumes it."""
    marker = space.state_dir / KILL_MARKER
    data = read_json(marker)
    if isinstance(data, dict) and pgid is not None and data.get("pgid") == pgid:
        remove(marker)
        return True
    return False


def _invoke(ctx: ExecContext, entry: Entry, runtime: Runtime, prompt: str, env: dict, log_path: Path, on_spawn,
            session: str | None, exit_journal, policy: dict | None = None
            ) -> list[tuple[Runtime, ProviderResult | None, str]]:
    """One provider invocation (resuming `session` when given), with one retry on the fallback model after a
    model error; → every attempt as (runtime, result or None, provider error). `policy["run"]`: the execution's
    policy run, prepared at its first CLI invocation and kept for its continuations."""
    from keystone_agents.policy import outcome as policy_outcome

    config, log, name = ctx.config, ctx.log, entry.name
    policy = policy if policy is not None else {"run": None}
    attempts: list[tuple[Runtime, ProviderResult | None, str]] = []
    current = runtime
    while True:
        try:
            cwd = require_agent_space(ctx.space)
            provider = coding_route(entry.data, config, ctx.space) or get(current.provider, config)
            provider.resume_session = session
            if provider.mcp is None and provider.name in MCP_PROVIDERS:
                provider.mcp = mcp_plan(config, ctx.space, f"{ctx.run_id}-{name}")
            if policy["run"] is None and provider.name in (*MCP_PROVIDERS, "coding"):  # coding: its CLI run
                policy["run"] = policy_outcome.prepare(config, ctx.space, ctx.run_id, name)
                env.update(policy_outcome.env(policy["run"], entry.get("project")))
            provider.policy_file = policy["run"].policy_file if policy["run"] else None
            with open(log_path, "a", encoding="utf-8") as handle:
                handle.write(f"[keystone-agent] task={name} provider={current.provider} "
                             f"profile={current.profile or 'none'} model={current.model or 'provider-default'} "
                             f"fallback={current.fallback_model or 'none'} effort={current.effort or 'none'}"
                             + (f" resume={session}" if session else "") + "\n")
            result = provider.run(prompt, current, RunOptions(
                log_path=log_path, timeout=config.task_timeout_seconds, kill_grace=config.kill_grace_seconds,
                env=env, cwd=cwd, on_spawn=on_spawn, stall_timeout=config.stall_timeout_seconds,
                on_exit=exit_journal.exited, on_drained=exit_journal.drained, exit_record=exit_journal.exit_record(),
                **_heartbeat(log, name)))
            attempts.append((current, result, ""))
        except (ProviderError, McpError, AgentSpaceMissing, PolicyError) as exc:
            with open(log_path, "a", encoding="utf-8") as handle:
                handle.write(f"[keystone-agent] provider error: {exc}\n")
            attempts.append((current, None, str(exc)))
            break
        fallback = current.fallback_model
        if result.model_error and fallback and fallback != current.model and len(attempts) == 1:
            from keystone_agents.loop import budget

            if budget.configured(config.budgets) and budget.check(ctx.conn, config.budgets, name) is not None:
                log.warning("log", msg=f"model error; no retry with {fallback}: a budget is used up",
                            step="execute", task_name=name)
                break
            log.warning("log", msg=f"model error with {current.model or 'default model'}; retrying with {fallback}",
                        step="execute", task_name=name, model=current.model or "", fallback_model=fallback)
            _record(ctx, name, entry, current, result, "model_error", iso_z(), log_path, attempt=1)
            exit_journal.open()  # the retry is a new execution: killed while it runs, the task is retried
            current = dataclasses.replace(current, model=fallback, fallback_model=None)
            continue
        break
    return attempts


def _urls(result: ProviderResult | None, report: dict | None) -> tuple[list[str], list[str]]:
    pull_requests, issues = found_urls(result.output if result else "")
    if report:
        pull_requests = sorted(set(pull_requests) | set(report.get("pull_requests_created") or []))
        issues = sorted(set(issues) | set(report.get("issues_created") or []))
    return pull_requests, issues


def _unavailable(ctx: ExecContext, tf: TaskFile, entry: Entry, finding, fields: dict) -> TaskFile:
    """The machine, not the task, is at fault: the task is left exactly as it is (status, attempts), the event
    names the cause and the fix, and the run goes on with the tasks whose providers work."""
    ctx.unavailable.append((entry.name, finding))
    ctx.counters.unavailable += 1
    fields = {k: v for k, v in fields.items() if k != "task_log_path"}
    if finding.provider:
        fields["provider"] = finding.provider
    ctx.log.error(finding.kind, msg=f"task {entry.name} not started: {finding.cause}; fix: {finding.fix}",
                  status=entry.get("status") or "pending", cause=finding.cause, fix=finding.fix,
                  dry_run=ctx.dry_run, **fields)
    return tf


def _agent_says(entry: Entry | None) -> dict | None:
    """The status the agent gave its own task in TASKS.yaml during the run (completed or blocked), if any."""
    if entry is None or entry.get("status") not in TASK_STATUSES_SAID:
        return None
    return {"status": entry.get("status"), "blocked_reason": entry.get("blocked_reason"),
            "completed_at": entry.get("completed_at")}


def _heartbeat(log, name: str) -> dict:
    """RunOptions for a still-running line every minute, when a person watches the terminal."""
    if not getattr(log, "interactive", False):
        return {}
    from keystone_agents.events import heartbeat_interval

    return {"heartbeat": heartbeat_interval(),
            "on_heartbeat": lambda elapsed, size: log.heartbeat(name, elapsed, size)}


def _decide(ctx: ExecContext, name: str, result: ProviderResult | None, error: str, report: dict | None,
            now: str, said: dict | None = None) -> tuple[str, dict, str, str]:
    """→ (outcome, field updates, message, reason). Precedence: the turn limit; the report in
    $KEYSTONE_TASK_RESULT; the status the agent set on its task in TASKS.yaml (when it exited 0); the exit code
    and evidence."""
    config, conn = ctx.config, ctx.conn
    budget = config.execution_token_budget
    over_budget = bool(budget and result and result.usage.total() > budget)
    reason = ""
    limit = config.max_iterations
    over_turns = bool(result and (result.reason == "max-turns" or (
        limit and result.turns is not None and result.turns > limit)))
    if over_turns:
        # a run past its limit is flagged whatever it claims: the limit exists to bound what it does
        if result.stopped:
            what = f"stopped after {result.tool_calls} tool calls when it asked for one more"
        else:
            what = f"took {result.turns} turns" if result.turns is not None else "reached the CLI's turn limit"
        return _failure(ctx, name, "max_iterations", f"{what}, maxIterations is {limit}", "max-turns", now)
    if report is not None and report["status"] == "continue":  # not autonomous (or no turn left): not done
        return _failure(ctx, name, "failed", "the agent asked to continue, but exec.mode is not autonomous",
                        "continue", now)
    if report is not None:
        message = report.get("message") or ""
        if report["status"] in ("completed", "end_tick"):
            history.reset_failures(conn, name)
            outcome = "token_budget" if over_budget else "completed"
            return outcome, {"status": "completed", "completed_at": now, "blocked_reason": None}, message, reason
        blocked = report.get("blocked_reason") or message or "blocked by the agent"
        history.reset_failures(conn, name)
        return "blocked", {"status": "blocked", "blocked_reason": blocked}, message, reason
    if said is not None and result is not None and not result.timed_out and result.exit_code == 0:
        history.reset_failures(conn, name)
        if said["status"] == "completed":
            outcome = "token_budget" if over_budget else "completed"
            return outcome, {"status": "completed", "completed_at": said["completed_at"] or now,
                             "blocked_reason": None}, "the agent marked its task completed in TASKS.yaml", reason
        blocked = said["blocked_reason"] or "blocked by the agent"
        return "blocked", {"status": "blocked", "blocked_reason": blocked}, f"the agent blocked its task: {blocked}", reason
    if result is not None and result.succeeded and result.evidence:
        history.reset_failures(conn, name)
        outcome = "token_budget" if over_budget else "completed"
        return outcome, {"status": "completed", "completed_at": now, "blocked_reason": None}, result.message, reason
    if over_budget:
        text = f"token budget exceeded: {result.usage.total()} > {budget} tokens"
        return "token_budget", {"status": "blocked", "blocked_reason": text}, text, "budget:execution-tokens"
    if result is None:
        outcome, message = "failed", error
    elif result.stalled:
        outcome, message, reason = "timeout", f"stalled: no output for {config.stall_timeout_seconds:g}s", "stalled"
    elif result.timed_out:
        outcome, message = "timeout", f"timed out after {config.task_timeout_seconds:g}s"
    elif result.model_error:
        outcome, message = "model_error", result.message or "model error"
    elif result.succeeded:  # exit 0, but nothing shows the provider ran the task
        outcome, reason = "failed", "no-evidence"
        message = "exit code 0 without evidence that the provider ran the task" + (
            f": {result.message}" if result.message else " (no output)")
    else:
        outcome = "failed"
        message = f"exit code {result.exit_code}" + (f": {result.message}" if result.message else "")
    return _failure(ctx, name, outcome, message, reason, now)


def _failure(ctx: ExecContext, name: str, outcome: str, message: str, reason: str, now: str):
    config = ctx.config
    failures = history.add_failure(ctx.conn, name, f"{outcome}: {message}", now)
    if failures >= config.max_attempts:
        why = f"failed {failures} times (maxAttempts {config.max_attempts}); last: {outcome}: {message}"[:500]
        return outcome, {"status": "blocked", "blocked_reason": why}, message, reason
    return outcome, {"status": "pending"}, message, reason


def _record(ctx, name, entry, runtime, result, outcome, started_at, log_path, attempt=1, fallback_used=False,
            message="", pull_requests=(), issues=(), reason="", deliveries=(), auto_turn=0) -> None:
    usage = result.usage if result else None
    history.record_execution(ctx.conn, {
        "run_id": ctx.run_id, "task": name, "source_ref": entry.get("source_ref"), "attempt": attempt,
        "provider": runtime.provider, "model": runtime.model, "profile": runtime.profile,
        "fallback_used": fallback_used, "outcome": outcome,
        "exit_code": result.exit_code if result else None, "started_at": started_at, "finished_at": iso_z(),
        "duration_seconds": result.duration_seconds if result else 0.0,
        "input_tokens": usage.input_tokens if usage else None,
        "output_tokens": usage.output_tokens if usage else None,
        "total_tokens": usage.total() if usage else None,
        "cost_usd": usage.cost_usd if usage else None,
        "pull_requests": list(pull_requests), "issues": list(issues), "log_path": str(log_path),
        "message": (message or (result.message if result else ""))[:1000],
        "reason": reason or (("stalled" if result.stalled else result.reason) if result else "") or None,
        "turns": result.turns if result else None,
        "deliveries": list(deliveries), "delivery_failed": any(not d["ok"] for d in deliveries),
        "session_id": (result.session_id or None) if result else None, "auto_turn": auto_turn,
        "tool_calls": result.tool_calls if result else None, "mode": ctx.config.exec.mode if ctx.config is not None else None,
    })


def _dry_run(ctx, tf, entry, runtime, prompt, log_path, fields) -> TaskFile:
    provider = None
    try:
        provider = get(runtime.provider, ctx.config)
        if provider.name in MCP_PROVIDERS:
            provider.mcp = mcp_plan(ctx.config, ctx.space, f"{ctx.run_id}-{entry.name}")
        inv = provider.invocation(prompt, runtime)
        argv = inv.argv
    except (ProviderError, McpError) as exc:
        argv = [f"<{exc}>"]
    finally:
        if provider is not None and provider.mcp is not None:
            provider.mcp.cleanup()
    with open(log_path, "a", encoding="utf-8") as handle:
        handle.write("[keystone-agent] DRY RUN: the provider was not started. It would have run:\n")
        handle.write(f"argv: {json.dumps(argv, ensure_ascii=False)}\n")
        handle.write(f"prompt:\n{prompt}\n")
    ctx.counters.executed += 1
    ctx.counters.tasks.append({"name": entry.name, "outcome": "dry_run", "status": entry.get("status"), "reason": "",
                               "provider": runtime.provider, "model": runtime.model or None, "exit_code": None,
                               "tokens": 0, "cost_usd": None, "duration_seconds": 0})
    ctx.log.info("task_finish", msg=f"dry run: prompt for {entry.name} written to {log_path}", status="dry_run",
                 outcome="dry_run", duration_seconds=0, exit_code=0, token_total=0, **fields)
    return tf


# ---------------------------------------------------------------- recovery


def recover(space, tf: TaskFile, conn, log, kill_grace: float, config=None) -> int:
    """After a run died (the lock is ours, so no other run is alive): the dead run's provider process group,
    if still running, is killed; a task whose provider had already exited is finalized from the exit journal
    (never run again); a task whose provider was still running goes back to pending (its attempt counted), or
    is blocked if it is marked `once: true`."""
    from keystone_agents.providers.process import group_alive, kill_group

    running = read_json(_running_file(space))
    # first let the dead run's supervisor finish: it records a provider that exited, kills one still running
    if not journal.wait_for_writers(space.state_dir):
        dead = running if isinstance(running, dict) else {}
        log.warning("log", msg=f"the exit journal is still held by a process of run {dead.get('run_id')} after "
                    f"{journal.WRITER_WAIT:g}s; going on with it as it is", step="recover",
                    task_name=dead.get("task") or "")
    if isinstance(running, dict) and isinstance(running.get("pgid"), int) and running.get("pid") != os.getpid():
        if group_alive(running["pgid"]):
            log.warning("log", msg=f"killing leftover provider process group {running['pgid']} of run "
                        f"{running.get('run_id')}", step="recover", task_name=running.get("task") or "")
            kill_group(running["pgid"], kill_grace)
    count = 0
    now = iso_z()
    record = journal.read(space.state_dir)
    finalized = None
    if record is not None:
        finalized = record["task"]
        count += _finalize(space, tf, conn, log, config, record)
    for entry in list(tf.valid()):
        if entry.get("status") != "in_progress" or entry.name == finalized:
            continue
        dead_run = running.get("run_id") if isinstance(running, dict) and running.get("task") == entry.name else None
        history.add_failure(conn, entry.name, "interrupted: the run executing it died", now)
        if entry.get("once") is True:
            reason = ("interrupted while its provider was running; not retried because it is marked once: true "
                      "(check what it did, then set it to pending to run it again)")
            tf.set_fields(entry, {"status": "blocked", "blocked_reason": reason})
            status, message = "blocked", "interrupted: the run executing it died; blocked (once: true)"
        else:
            tf.set_fields(entry, {"status": "pending"})
            status, message = "pending", "interrupted: the run executing it died; recovered to pending"
        history.record_execution(conn, {
            "run_id": dead_run or "unknown", "task": entry.name, "source_ref": entry.get("source_ref"),
            "outcome": "failed", "started_at": entry.get("started_at") or now, "finished_at": now,
            "message": message, "reason": "interrupted",
            "log_path": running.get("log_path") if dead_run else None,
        })
        log.warning("task_recovered", msg=f"task {entry.name} was left in_progress by a run that died; back to {status}",
                    step="recover", task_name=entry.name, status=status, dead_run_id=dead_run or "")
        count += 1
    if count:
        tf.save()
    journal.Journal(space.state_dir, {}).clear()
    remove(_running_file(space))
    return count


def _finalize(space, tf: TaskFile, conn, log, config, record: dict) -> int:
    """Apply the outcome of an execution whose provider exited before the run died (from the exit journal)."""
    import types

    name, run_id, phase = record["task"], record.get("run_id") or "unknown", record["phase"]
    now = iso_z()
    report_path = space.state_dir / "results" / f"{run_id}-{name}.json"
    result = None
    report = record.get("report")
    if phase == "decided":
        outcome, updates = record["outcome"], record["updates"]
        message, reason = record.get("message") or "", record.get("reason") or ""
        if record.get("result"):
            result = journal.result_from_dict(record["result"])
    else:
        if phase == "result":
            result = journal.result_from_dict(record["result"]) if record.get("result") else None
        else:  # only the exit status made it: parse the provider's output from its task log
            result = journal.result_from_log(record, config)
            report = read_report(report_path, log, name)
        ctx = types.SimpleNamespace(config=config, conn=conn)
        outcome, updates, message, reason = _decide(ctx, name, result, "", report, now)
        if (phase == "exited" and report is None and result is not None and result.exit_code == 0
                and not result.evidence):
            # it exited 0, but the loop died before reading all it printed: its work cannot be judged, and
            # running it again could repeat what it did
            message = ("the provider exited 0 but the loop died before reading all of its output; not run "
                       "again: check its task log and set the status by hand")
            outcome, reason = "failed", "interrupted-after-exit"
            updates = {"status": "blocked", "blocked_reason": message}
    remove(report_path)
    entry = tf.find(name)
    changed = entry is not None and entry.get("status") == "in_progress"
    if changed:
        tf.set_fields(entry, updates)
    already = conn.execute("SELECT COUNT(*) FROM task_executions WHERE run_id = ? AND task = ? AND outcome = ?",
                           (run_id, name, outcome)).fetchone()[0]
    if changed or not already:
        runtime = Runtime(record.get("provider") or "", record.get("profile"), record.get("model"), None, None)
        pull_requests, issues = _urls(result, report)
        ctx = types.SimpleNamespace(run_id=run_id, conn=conn, config=config)
        _record(ctx, name, {"source_ref": record.get("source_ref")}, runtime, result, outcome,
                record.get("started_at") or now, record.get("log_path") or "", attempt=record.get("attempt") or 1,
                message=message, pull_requests=pull_requests, issues=issues, reason=reason,
                deliveries=_deliveries(report))
    log.warning("task_finalized", msg=f"task {name}: its provider had exited (exit code {record.get('exit_code')}) "
                f"before run {run_id} died; outcome {outcome} taken from the exit journal, not run again",
                step="recover", task_name=name, status=updates.get("status", ""), outcome=outcome,
                dead_run_id=run_id, journal_phase=phase)
    return 1 if changed else 0
