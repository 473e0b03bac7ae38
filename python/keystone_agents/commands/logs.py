"""keystone-agent logs: the newest run log, or the newest log of one task; --follow keeps printing."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from keystone_agents.cli.common import EXIT_PROBLEMS, agent_command
from keystone_agents.cli.complete import task_names
from keystone_agents.kinds import KINDS, TASK_LOOP, run_logs


def newest(paths) -> Path | None:
    paths = sorted(paths, key=lambda p: p.name)
    return paths[-1] if paths else None


def _as_ndjson(line: str) -> str | None:
    from keystone_agents.events import parse_logfmt

    if not line.startswith("ts="):
        return None  # a source's stderr copied into the run log, not an event
    return json.dumps(parse_logfmt(line.rstrip("\n")), ensure_ascii=False)


def _run_log_with_task(logs_dir: Path, task: str) -> Path | None:
    needle = f'task_name="{task}"'
    for path in sorted((p for p in logs_dir.glob("*.log") if p.is_file()), key=lambda p: p.name, reverse=True):
        try:
            if needle in path.read_text(encoding="utf-8", errors="replace"):
                return path
        except OSError:
            continue
    return None


@click.command("logs")
@click.argument("task", required=False, shell_complete=task_names)
@click.option("--follow", "-f", is_flag=True, help="Keep printing what is appended (Ctrl-C to stop).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the run log's events as NDJSON (one JSON object per line, the logfmt fields; values are "
                   "strings). With TASK: the events about that task from the newest run log that has them.")
@click.option("--kind", type=click.Choice(KINDS), default=TASK_LOOP, show_default=True,
              help="Whose run log: the task loop, the scheduler, the notes sync or the coding subagent (the same "
                   "names as `runs --kind`).")
@agent_command
def logs_command(ctx, task, follow, as_json, kind):
    """Print the newest run log of the task loop (or of --kind scheduler|notes-sync|coding), or with TASK
    the newest log of that task (its provider's output). Logs live in
    ~/.local/state/agent-task-loop/logs{,/tasks,/notes-sync,/coding}; each kind keeps its own newest N."""
    space = ctx.space
    if as_json:
        path = _run_log_with_task(space.logs_dir, task) if task else _newest_of(space, kind)
        if path is None:
            click.echo(f"error: no run log {'with events of task ' + repr(task) if task else ''} in {space.logs_dir}",
                       err=True)
            sys.exit(EXIT_PROBLEMS)
        with open(path, "r", encoding="utf-8", errors="replace") as handle:
            _print_json_lines(handle, task, follow)
        return
    if task:
        path = newest(p for p in space.task_logs_dir.glob(f"*_{task}.log") if p.name.split("_", 2)[-1] == f"{task}.log")
        if path is None:
            from keystone_agents import history

            rows = history.executions(space.history_db, task=task, limit=1)
            if rows and rows[0].get("log_path") and Path(rows[0]["log_path"]).exists():
                path = Path(rows[0]["log_path"])
    else:
        path = _newest_of(space, kind)
    if path is None:
        hint = ""
        if task:
            import difflib

            from keystone_agents.taskfile import TaskFile

            names = [e.name for e in TaskFile.load(space.tasks_file).entries if e.name]
            close = difflib.get_close_matches(task, names, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close and task not in names else ""
        click.echo(f"error: no log {'for task ' + repr(task) if task else 'of any ' + kind + ' run'} in "
                   f"{space.logs_dir}{hint}", err=True)
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


def _newest_of(space, kind: str) -> Path | None:
    found = run_logs(space, kind)
    return found[-1] if found else None


def _print_json_lines(handle, task: str | None, follow: bool) -> None:
    def emit(line: str) -> None:
        out = _as_ndjson(line)
        if out is not None and (task is None or f'task_name="{task}"' in line):
            click.echo(out)

    for line in handle:
        emit(line)
    if not follow:
        return
    try:
        while True:
            line = handle.readline()
            if line:
                emit(line)
            else:
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
