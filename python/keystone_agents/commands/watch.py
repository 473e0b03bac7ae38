"""keystone-agent watch: the agent's events as NDJSON (docs/watch.md)."""

from __future__ import annotations

import json
import sys
import threading

import click

from keystone_agents.cli.common import agent_command


@click.command("watch")
@click.option("--since", metavar="ID|TIME", help="Start after event ID, or at ISO 8601 TIME (default: from the "
              "first event; with --follow and no --since: only new events).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing events as they are written (Ctrl-C stops).")
@click.option("--types", metavar="A,B", help="Only these event names (run_start,task_finish,…).")
@click.option("--journal", is_flag=True, help="Merge the agent's unit output from its user journal "
              "(journalctl --user -o json), as lines with \"source\": \"journal\".")
@click.option("--limit", type=click.IntRange(min=1), help="Stop after N events.")
@click.option("--interval", type=click.FloatRange(min=0.01), default=0.2, show_default=True,
              help="Seconds between polls with --follow.")
@agent_command
def watch_command(ctx, since, follow, types, journal, limit, interval):
    """Print the agent's events (runs, stages, task start/finish, provider resolution, continuation turns, …)
    as NDJSON, one JSON object per line: {"v": 1, "id", "ts", "agent", "event", …fields}. The id is a
    gap-free cursor: `--since LAST_ID` resumes exactly where a previous reader stopped."""
    from keystone_agents import watch

    try:
        cursor = watch.parse_since(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    cursor.types = [t.strip() for t in (types or "").split(",") if t.strip()]
    space, agent = ctx.space, ctx.config.agent_name
    if follow and since is None:  # a live view: start at the newest event
        cursor.after_id = _newest_id(space.history_db)
    lock = threading.Lock()

    def emit(item: dict) -> None:
        with lock:
            try:
                sys.stdout.write(json.dumps(item, default=str, separators=(",", ":")) + "\n")
                sys.stdout.flush()
            except BrokenPipeError:
                raise SystemExit(0) from None

    proc = watch.journal_lines(agent, follow, emit) if journal else None
    count = 0
    try:
        for item in watch.read(space.history_db, agent, cursor, follow=follow, interval=interval):
            emit(item)
            count += 1
            if limit and count >= limit:
                break
    except KeyboardInterrupt:
        pass
    finally:
        if proc is not None:
            if not follow:
                try:
                    proc.wait(timeout=10)
                except Exception:  # noqa: BLE001 - a stuck journalctl is stopped below
                    pass
            proc.terminate()


def _newest_id(path) -> int:
    import sqlite3

    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0
