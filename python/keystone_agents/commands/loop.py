"""keystone-agent loop: one run of the task loop (what the task-loop timer calls)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from keystone_agents.cli.complete import task_names
from keystone_agents.cli.output import output_options


@click.command("loop")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), envvar="KEYSTONE_AGENT_HOME",
              help="The agent's home directory (default: $HOME).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Configuration JSON (default: $KEYSTONE_AGENT_CONFIG, else ~/.config/keystone-agent/config.json).")
@click.option("--max-tasks", type=click.IntRange(min=0), default=None,
              help="Execute at most N tasks this run (default: the config's maxTasks, 5).")
@click.option("--dry-run", is_flag=True,
              help="Do everything except start providers and write files: each prompt (and the argv that "
                   "would run) goes to the task log; TASKS.yaml, history and metrics are untouched.")
@click.option("--task", "only_task", metavar="NAME", shell_complete=task_names,
              help="Execute only this task now (pending or blocked), whatever its place in the queue.")
@click.option("--prompt", metavar="TEXT",
              help="Execute this ad-hoc prompt now: it is added to TASKS.yaml as task adhoc-<timestamp> "
                   "(source manual), so its outcome is recorded like any other task's.")
@click.option("--trigger", type=click.Choice(["schedule", "manual", "think", "tick"]), default=None,
              help="What woke the run: schedule/manual (the task loop, the default), think (a proactive think "
                   "cycle: a model is called only when the deterministic briefing is not empty) or tick (one "
                   "cycle of a tick agent, local provider only). See docs/exec-modes.md.")
@click.option("--no-wait", is_flag=True,
              help="With --task/--prompt: if another run holds the lock, exit 75 at once instead of waiting "
                   "(the request is not kept; retry it).")
@click.option("--wait-timeout", type=click.FloatRange(min=0), default=1800, show_default=True, metavar="SECONDS",
              help="With --task/--prompt: wait at most this long for a running loop to finish, then exit 75.")
@click.option("--force", is_flag=True,
              help="With --task/--prompt: run even though the task loop is paused (a paused agent otherwise "
                   "refuses the request with exit 75 and the pause reason).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object for the run on stdout (run_id, status, exit_code, counters, tasks); "
                   "events still go to stderr.")
@output_options
def loop_command(home, config_path, max_tasks, dry_run, only_task, prompt, trigger, no_wait, wait_timeout, force,
                 as_json):
    """Run the task loop once: lock, pause check, recover, pre-fetch sources, ingest new items,
    prioritize, execute up to N pending tasks, then record history and metrics. Ends with one summary
    line (created, executed, completed, failed, blocked, tokens, cost, duration).

    A human's request (--task, --prompt) is never dropped: it waits for a running loop (saying so on
    stderr) up to --wait-timeout, or exits 75 at once with --no-wait; it never exits 0 without having run.

    Exit codes: 0 success (also when another run holds the lock, when paused, and for a dry run);
    1 error (invalid configuration or TASKS.yaml, or an unexpected failure); 2 bad usage (also: --task
    names no runnable task; not counted as a run); 3 degraded (a source, a task or a queue entry failed;
    the rest of the queue went on); 75 a --task/--prompt request could not run now (lock still held,
    paused). See docs/task-loop.md."""
    from keystone_agents.loop.runner import run

    if only_task and prompt:
        raise click.UsageError("--task and --prompt exclude each other")
    if prompt is not None and not prompt.strip():
        raise click.UsageError("--prompt must not be empty")
    if trigger in ("think", "tick") and (only_task or prompt):
        raise click.UsageError(f"--trigger {trigger} runs its own cycle: --task and --prompt do not apply")
    manual = bool(only_task or prompt)
    if not manual and (no_wait or force):
        raise click.UsageError("--no-wait and --force apply to --task/--prompt requests only")
    report: dict = {}
    code = run(home, config_path, max_tasks=max_tasks, dry_run=dry_run, only_task=only_task, prompt=prompt,
               report=report, wait_timeout=0 if no_wait else wait_timeout, force=force,
               trigger=trigger if trigger in ("think", "tick") else None)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    sys.exit(code)
