#!/usr/bin/env python3
"""Benchmark of the PostgreSQL bus's fleet event table (bus migration 004; docs/watch.md), real users (root):

  append     one agent appending N events through keystone.event_append on one connection (what
             events.BusEvents does for every event of a run): p50/p95 in ms
  read       an admin reading them all back through keystone.events_after in pages of 500 (agentctl watch
             --all): events/s

Uses the test suite's fixtures (tests/support): a throwaway PostgreSQL 15 cluster migrated by `bus migrate`.

Usage: .venv/bin/python benchmarks/fleet_events_benchmark.py [--count 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.comms_benchmark import Env, pct  # noqa: E402
from tests.support.bus import make_world  # noqa: E402
import keystone_agents.coordination.postgres  # noqa: E402,F401  (imported before forking)


def append(env: Env, count: int) -> list[float]:
    def body(bus):
        times = []
        data = {"msg": "Finished task fix-login: completed", "unit": "agent-alpha-task-loop", "step": "execute",
                "status": "completed", "outcome": "completed", "token_total": 18234, "cost_usd": 0.41}
        for n in range(count):
            t0 = time.perf_counter()
            bus.event_append("bench", None, "bench-run", f"task-{n}", "task_finish", data)
            times.append(time.perf_counter() - t0)
        return times

    return env.run("alpha", body)


def read(env: Env) -> tuple[int, float]:
    def body(bus):
        t0, after, seen = time.perf_counter(), 0, 0
        while True:
            rows = bus.events_after(after, [], [], 500)
            if not rows:
                return seen, time.perf_counter() - t0
            seen += len(rows)
            after = rows[-1]["id"]

    return env.run("human", body)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    world = make_world()
    try:
        env = Env("postgresql", world)
        times = append(env, args.count)
        seen, seconds = read(env)
        ms = lambda q: round(pct(times, q) * 1000, 2)  # noqa: E731
        print("| events | append p50 | append p95 | read back (admin, pages of 500) |")
        print("|---:|---:|---:|---:|")
        print(f"| {args.count} | {ms(50)} ms | {ms(95)} ms | {seen} events in {seconds:.2f} s "
              f"({seen / seconds:,.0f}/s) |")
    finally:
        world.close()
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
