"""keystone-agent runs: recent runs (task loop, scheduler, notes sync, coding) and their task executions."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import click

from keystone_agents import history
from keystone_agents.cli.common import agent_command, echo_json
from keystone_agents.kinds import KINDS  # one definition with `logs --kind` and the history's `kind`
from keystone_agents.timeutil import iso_z, parse_time, utc_now

STATUSES = ("running", "success", "degraded", "error", "paused", "skipped", "conflict")
COUNTERS = ("tasks_created", "tasks_executed", "tasks_completed", "tasks_failed", "tasks_blocked")
ACTIVITY = ("committed", "pushed", "cloned", "rebased", "conflict")
_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(_ctx, _param, value: str | None) -> str | None:
    """`--since`: an ISO 8601 moment or date, or a span back from now (30m, 2h, 7d, 1w) → ISO 8601 UTC."""
    if value is None:
        return None
    match = _RELATIVE.match(value.strip())
    if match:
        moment = utc_now() - dt.timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    else:
        moment = parse_time(value.strip())
        if moment is None:
            try:
                moment = dt.datetime.combine(dt.date.fromisoformat(value.strip()), dt.time(), dt.timezone.utc)
            except ValueError:
                raise click.BadParameter(
                    f"{value!r} is neither an ISO 8601 date/time (2026-11-30, 2026-11-30T08:00:00Z) nor a span "
                    "back from now (30m, 2h, 7d, 1w)") from None
    return iso_z(moment.astimezone(dt.timezone.utc))


def failure_reason(run: dict[str, Any]) -> str | None:
    """Why a run did not succeed, from what its component recorded (or its run log); None when it did."""
    status = run.get("status")
    if status in ("success", "paused", "skipped", "running", None):
        return None
    if run.get("error"):
        return str(run["error"])
    errors = run.get("errors")
    if isinstance(errors, list) and errors:
        return "; ".join(str(e) for e in errors[:3])
    if run.get("kind") == "task-loop" and run.get("exit_code") == -9:
        return "the run died (a later run found it still marked running)"
    if run.get("kind") == "coding" and run.get("message"):
        return str(run["message"])
    if run.get("kind") == "notes-sync" and run.get("conflict"):
        return f"rebase conflict; local commits on {run.get('conflict_branch') or 'a conflict branch'}"
    found = _errors_in_log(run.get("run_log"))
    if found:
        return "; ".join(found[:3])
    parts = [f"{n} task(s) failed" for n in [run.get("tasks_failed")] if n] + \
            [f"{n} source(s) failed" for n in [run.get("sources_failed")] if n]
    return ", ".join(parts) or None


def _errors_in_log(path: Any) -> list[str]:
    if not path:
        return []
    from keystone_agents.events import parse_logfmt

    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return [parse_logfmt(line).get("msg", "") for line in handle if 'status="error"' in line][:5]
    except OSError:
        return []


def is_idle(run: dict[str, Any]) -> bool:
    """A tick with nothing to do: succeeded (or found the loop paused), created/executed nothing, (notes)
    committed and pushed nothing."""
    if run.get("status") not in ("success", "paused", "nothing_to_do") or run.get("kind") == "coding" \
            or run.get("missed_runs"):
        return False
    return not any(run.get(key) for key in COUNTERS + ACTIVITY)


def fold(runs: list[dict[str, Any]]) -> list[dict[str, Any] | list[dict[str, Any]]]:
    """Runs in order, each stretch of consecutive idle runs of one kind folded into a list."""
    items: list[dict[str, Any] | list[dict[str, Any]]] = []
    for run in runs:
        if is_idle(run):
            last = items[-1] if items else None
            if isinstance(last, list) and last[0].get("kind") == run.get("kind"):
                last.append(run)
                continue
            items.append([run])
        else:
            items.append(run)
    return [item[0] if isinstance(item, list) and len(item) == 1 else item for item in items]


def _when(value: Any) -> str:
    moment = parse_time(value)
    if moment is None:
        return str(value or "?")
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _exit(run: dict[str, Any]) -> str:
    code = run.get("exit_code")
    if code is not None:
        return f"exit {code}"
    return "running" if run.get("status") == "running" else "exit -"


def _counts(run: dict[str, Any]) -> str:
    kind = run.get("kind")
    if kind == "task-loop":
        text = (f"completed={run.get('tasks_completed', 0)} failed={run.get('tasks_failed', 0)} "
                f"blocked={run.get('tasks_blocked', 0)} created={run.get('tasks_created', 0)}")
        return text + (f" missed={run['missed_runs']}" if run.get("missed_runs") else "")
    if kind == "scheduler":
        return f"created={run.get('tasks_created', 0)}"
    if kind == "notes-sync":
        done = [key for key in ACTIVITY if run.get(key)]
        return ",".join(done) if done else "nothing to sync"
    if kind == "coding":
        return " ".join(f"{k}={run[k]}" for k in ("repo", "outcome", "pr_url") if run.get(k))
    return ""


def render(items: list) -> list[str]:
    lines = []
    for item in items:
        if isinstance(item, list):
            first, last = item[-1], item[0]  # newest first
            paused = sum(1 for run in item if run.get("status") == "paused")
            lines.append(f"{_when(first.get('started_at'))} … {_when(last.get('started_at'))[-8:]}  "
                         f"{first.get('kind', '?'):10} idle      {len(item)} runs with nothing to do"
                         f"{f' ({paused} paused)' if paused else ''} (--all shows them)")
            continue
        run = item
        duration = run.get("duration_seconds")
        lines.append(
            f"{_when(run.get('started_at'))}  {run.get('kind', '?'):10} {run.get('status') or '?':9} {_exit(run):8}"
            f" {f'{duration:.1f}s' if isinstance(duration, (int, float)) else '-':>7}  {_counts(run)}  {run['run_id']}"
        )
        reason = run.get("failure_reason")
        if reason:
            lines.append(f"    reason: {reason}")
        for ex in run.get("executions") or []:
            tokens = ex.get("total_tokens")
            cost = ex.get("cost_usd")
            why = f" ({ex['reason']})" if ex.get("reason") else ""
            flag = "  DELIVERY FAILED" if ex.get("delivery_failed") else ""
            code = ex.get("exit_code")
            lines.append(
                f"    {ex['task']}: {ex['outcome']}{why}{flag} via {ex.get('provider') or '?'}"
                f"{'/' + ex['model'] if ex.get('model') else ''} {'exit ' + str(code) if code is not None else 'not started'}"
                f" {round(ex.get('duration_seconds') or 0, 1)}s tokens={tokens if tokens is not None else '-'}"
                f"{f' cost=${cost:.4f}' if cost is not None else ''}"
            )
            if ex.get("message") and ex["outcome"] not in ("completed",):
                lines.append(f"      {' '.join(str(ex['message']).split())[:200]}")
            for url in ex["pull_requests"] + ex["issues"]:
                lines.append(f"      {url}")
            for d in ex.get("deliveries") or []:
                state = "delivered" if d.get("ok") else f"FAILED: {d.get('error') or 'no reason given'}"
                lines.append(f"      {d.get('kind')} → {d.get('target')}: {state}")
    return lines


@click.command("runs")
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many runs (a folded stretch of idle runs counts as one).")
@click.option("--kind", type=click.Choice(KINDS), help="Only runs of this component (default: all).")
@click.option("--status", type=click.Choice(STATUSES), help="Only runs that ended with this status.")
@click.option("--since", callback=parse_since, metavar="WHEN",
              help="Only runs started since WHEN: ISO 8601 (2026-11-30, 2026-11-30T08:00:00Z) or a span back "
                   "from now (30m, 2h, 7d, 1w).")
@click.option("--all", "show_all", is_flag=True, help="Show idle runs one by one instead of folding them.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the runs as a JSON list (each with failure_reason and, for task-loop runs, executions).")
@agent_command
def runs_command(ctx, limit, kind, status, since, show_all, as_json):
    """Show the newest runs: start, kind, status, exit code, duration, counts, and why a run failed; per
    task execution the provider, model, outcome and its reason (stalled, no-evidence, max-turns, budget:…),
    tokens, cost, pull request / issue URLs, and the deliveries the agent reported: a completed task whose
    delivery failed is marked `DELIVERY FAILED`. Consecutive idle runs (nothing to do) are folded into one
    line unless --all (or --json, which lists each run)."""
    db = ctx.space.history_db
    fetch = limit if (as_json or show_all or status) else min(limit * 50, 5000)
    runs = history.recent_runs(db, kind=kind, limit=fetch, status=status, since=since)
    if not as_json and not show_all:
        runs_or_folds = fold(runs)[:limit]
        shown = [r for item in runs_or_folds for r in ([] if isinstance(item, list) else [item])]
    else:
        runs_or_folds = runs
        shown = runs
    for run in shown:
        run["failure_reason"] = failure_reason(run)
        if run.get("kind") == "task-loop":
            run["executions"] = list(reversed(history.executions(db, run_id=run["run_id"], limit=1000)))
    if as_json:
        echo_json(runs)
        return
    if not runs:
        what = f"{kind} runs" if kind else "runs"
        click.echo(f"No {what} recorded{' matching the filters' if status or since else ' yet'}.")
        return
    for line in render(runs_or_folds):
        click.echo(line)
