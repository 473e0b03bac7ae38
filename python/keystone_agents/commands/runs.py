"""keystone-agent runs: recent task-loop runs and their task executions, from the history database."""

from __future__ import annotations

import click

from keystone_agents import history
from keystone_agents.cli.common import agent_command, echo_json


@click.command("runs")
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True, help="How many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print runs (each with its task executions) as JSON.")
@agent_command
def runs_command(ctx, limit, as_json):
    """Show the newest task-loop runs: start, status, duration, counts, and per task execution the
    provider, model, outcome and its reason (stalled, no-evidence, max-turns, budget:…), tokens, cost,
    pull request / issue URLs, and the deliveries the agent reported: a completed task whose delivery
    failed is marked `DELIVERY FAILED`."""
    db = ctx.space.history_db
    runs = history.recent_runs(db, kind="task-loop", limit=limit)
    for run in runs:
        run["executions"] = list(reversed(history.executions(db, run_id=run["run_id"], limit=1000)))
    if as_json:
        echo_json(runs)
        return
    if not runs:
        click.echo("No task-loop runs recorded yet.")
        return
    for run in runs:
        duration = run.get("duration_seconds")
        click.echo(
            f"{run['started_at']}  {run.get('status') or '?':9} exit={run.get('exit_code') if run.get('exit_code') is not None else '-'}"
            f"  {duration if duration is not None else '-'}s  completed={run['tasks_completed']} "
            f"failed={run['tasks_failed']} blocked={run['tasks_blocked']} created={run['tasks_created']}"
            f"{'  missed=' + str(run['missed_runs']) if run.get('missed_runs') else ''}  {run['run_id']}"
        )
        for ex in run["executions"]:
            tokens = ex.get("total_tokens")
            cost = ex.get("cost_usd")
            reason = f" ({ex['reason']})" if ex.get("reason") else ""
            flag = "  DELIVERY FAILED" if ex.get("delivery_failed") else ""
            click.echo(
                f"    {ex['task']}: {ex['outcome']}{reason}{flag} via {ex.get('provider') or '?'}"
                f"{'/' + ex['model'] if ex.get('model') else ''} exit={ex.get('exit_code')}"
                f" {round(ex.get('duration_seconds') or 0, 1)}s tokens={tokens if tokens is not None else '-'}"
                f"{f' cost=${cost:.4f}' if cost is not None else ''}"
            )
            for url in ex["pull_requests"] + ex["issues"]:
                click.echo(f"      {url}")
            for d in ex.get("deliveries") or []:
                state = "delivered" if d.get("ok") else f"FAILED: {d.get('error') or 'no reason given'}"
                click.echo(f"      {d.get('kind')} → {d.get('target')}: {state}")
