"""keystone-agent logs: the newest run log, or the newest log of one task; --follow keeps printing."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from keystone_agents.cli.common import EXIT_PROBLEMS, agent_command


def newest(paths) -> Path | None:
    paths = sorted(paths, key=lambda p: p.name)
    return paths[-1] if paths else None


@click.command("logs")
@click.argument("task", required=False)
@click.option("--follow", "-f", is_flag=True, help="Keep printing what is appended (Ctrl-C to stop).")
@agent_command
def logs_command(ctx, task, follow):
    """Print the newest task-loop run log, or with TASK the newest log of that task (its provider's
    output). Logs live in ~/.local/state/agent-task-loop/logs{,/tasks}."""
    space = ctx.space
    if task:
        path = newest(p for p in space.task_logs_dir.glob(f"*_{task}.log") if p.name.split("_", 2)[-1] == f"{task}.log")
        if path is None:
            from keystone_agents import history

            rows = history.executions(space.history_db, task=task, limit=1)
            if rows and rows[0].get("log_path") and Path(rows[0]["log_path"]).exists():
                path = Path(rows[0]["log_path"])
    else:
        path = newest(p for p in space.logs_dir.glob("*.log") if p.is_file())
    if path is None:
        click.echo(f"error: no log {'for task ' + repr(task) if task else 'of any run'} in {space.logs_dir}", err=True)
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
