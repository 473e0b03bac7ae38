#!/usr/bin/env python3
"""Benchmark of the execution modes' bookkeeping (issue 19):

  idle think cycle     `keystone-agent loop --trigger think` with an empty briefing (fresh interpreter, as the
                       think timer starts it): wall, CPU, peak RSS — and 0 provider calls
  event write          one event through the logger into the history database's event table (in process)
  watch read           events read back as NDJSON by `keystone-agent watch` (a fresh interpreter, 10,000 events)

Usage: .venv/bin/python benchmarks/modes_benchmark.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = str(Path(sys.executable).parent / "keystone-agent")


def child_run(argv: list[str], env: dict) -> tuple[float, float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss / 1024, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from keystone_agents import scaffold
    from keystone_agents.events import event_logger

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        home = root / "home"
        scaffold.init(home, scaffold.context("bench", "Bench", "bench@example.com"))
        calls = root / "calls.log"
        (home / ".config/keystone-agent/config.json").write_text(json.dumps({
            "agentName": "bench", "textfileDir": str(root / "prom"),
            "exec": {"mode": "proactive", "thinkInterval": 30},
            "defaults": {"provider": "command"}, "commandProvider": {"argv": ["sh", "-c", f"echo x >> {calls}"]}}))
        env = {**os.environ, "HOME": str(home)}
        argv = [SCRIPT, "loop", "--home", str(home), "--trigger", "think"]
        child_run(argv, env)  # baseline cycle
        rows = [child_run(argv, env) for _ in range(args.repeat)]
        print(f"| idle think cycle | {statistics.median(r[0] for r in rows):.3f} s | "
              f"{statistics.median(r[1] for r in rows):.3f} s | {max(r[2] for r in rows):.0f} MiB | "
              f"provider calls: {0 if not calls.exists() else len(calls.read_text().splitlines())} |")

        db = root / "events.sqlite3"
        log = event_logger(agent="bench", unit="u", run_id="r", event_db=db, stream=open(os.devnull, "w"))
        log.info("warmup", msg="x")
        count = 10_000
        started = time.perf_counter()
        for n in range(count):
            log.info("task_finish", msg="done", task_name=f"t{n}", status="completed", token_total=n)
        per = (time.perf_counter() - started) / count
        print(f"| event write (logfmt line + table row) | {per * 1e6:.0f} µs per event | | | |")

        state = home / ".local/state/agent-task-loop/state"
        os.replace(db, state / "history.sqlite3")
        for suffix in ("-wal", "-shm"):
            if Path(str(db) + suffix).exists():
                os.replace(str(db) + suffix, str(state / "history.sqlite3") + suffix)
        rows = [child_run([SCRIPT, "watch", "--home", str(home), "--types", "task_finish"], env)
                for _ in range(args.repeat)]
        lines = len(rows[0][3].splitlines())
        wall = statistics.median(r[0] for r in rows)
        print(f"| watch read ({lines:,} events) | {wall:.3f} s | {statistics.median(r[1] for r in rows):.3f} s | "
              f"{max(r[2] for r in rows):.0f} MiB | {lines / wall:,.0f} events/s |")


if __name__ == "__main__":
    main()
