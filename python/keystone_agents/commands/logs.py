"""keystone-agent logs: the newest run log of a kind (task loop by default), or the newest log of one task;
--follow keeps printing."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from keystone_agents.cli.common import EXIT_PROBLEMS, agent_command
from keystone_agents.kinds import KINDS, TASK_LOOP, run_logs


def newest(paths) -> Path | None:
    paths = sorted(paths, key=lambda p: p.name)
    return paths[-1] if paths else None


@click.command("logs")
@click.argument("task", required=False)
@click.option("--follow", "-f", is_flag=True, help="Keep printing what is appended (Ctrl-C to stop).")
@click.option("--kind", type=click.Choice(KINDS), default=TASK_LOOP, show_default=True,
              help="Whose run log: the task loop, the scheduler, the notes sync or the coding subagent (the same "
                   "names as `runs --kind`).")
@agent_command
def logs_command(ctx, task, follow, kind):
    """Print the newest run log of the task loop (or of --kind scheduler|notes-sync|coding), or with TASK
    the newest log of that task (its provider's output). Logs live in
    ~/.local/state/agent-task-loop/logs{,/tasks,/notes-sync,/coding}; each kind keeps its own newest N."""
    space = ctx.space
    if task:
        path = newest(p for p in space.task_logs_dir.glob(f"*_{task}.log") if p.name.split("_", 2)[-1] == f"{task}.log")
        if path is None:
            from keystone_agents import history

            rows = history.executions(space.history_db, task=task, limit=1)
            if rows and rows[0].get("log_path") and Path(rows[0]["log_path"]).exists():
                path = Path(rows[0]["log_path"])
    else:
        found = run_logs(space, kind)
        path = found[-1] if found else None
    if path is None:
        click.echo(f"error: no log {'for task ' + repr(task) if task else 'of any ' + kind + ' run'} in "
                   f"{space.logs_dir}", err=True)
        sys.exit(EXIT_PROBLEMS)
    with open(path, "r", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            click.echo(line, nl=False)
        if not follow:
            return
        try:
            while True:
                line = handle.readline()
                if line:
                    click.echo(line, nl=False)
                else:
                    time.sleep(0.5)
        except KeyboardInterrupt:
            pass
