#!/usr/bin/env python3
"""Benchmark of shared state on both bus backends (local broker, PostgreSQL), with real Linux users (root):

  latency        `shared set` and `shared get` through the Bus (one connection, N operations): p50/p95 in ms
  contention     10 writer processes (connected first, then started together) increment one counter with
                 retry on conflict (read-modify-write) for --seconds: successful writes/s, conflicts/s, and the check that the final value equals the
                 number of successful writes (no lost update)
  cli            one `keystone-agent shared get` process, start to exit (the cost an agent's shell pays)

Uses the test suite's fixtures (tests/support): a socket-activated broker (one `bus serve --stdio` per
connection, as systemd runs it) and a throwaway PostgreSQL cluster.

Usage: .venv/bin/python benchmarks/shared_state_benchmark.py [--count 500] [--seconds 10] [--backends local,postgresql]
Prints a Markdown table (docs/performance.md holds the published one).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.comms_benchmark import Env, pct  # noqa: E402
from tests.support.bus import make_world  # noqa: E402
import keystone_agents.kv.model  # noqa: E402,F401  (imported before forking: the children run as other users)
import keystone_agents.kv.shared  # noqa: E402,F401


def latency(env: Env, count: int) -> dict:
    def body(bus):
        from keystone_agents.kv.shared import SharedState

        store = SharedState(bus)
        sets, gets, version = [], [], 0
        for n in range(count):
            t0 = time.perf_counter()
            version = store.set("bench/latency", {"n": n, "pad": "x" * 200}, version)
            sets.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            store.get("bench/latency")
            gets.append(time.perf_counter() - t0)
        return sets, gets

    sets, gets = env.run("alpha", body)
    ms = lambda values, q: round(pct(values, q) * 1000, 2)  # noqa: E731
    return {"set_p50": ms(sets, 50), "set_p95": ms(sets, 95), "get_p50": ms(gets, 50), "get_p95": ms(gets, 95)}


def contention(env: Env, seconds: float) -> dict:
    def worker(bus):
        from keystone_agents.kv.model import VersionConflict
        from keystone_agents.kv.shared import SharedState

        store = SharedState(bus)
        bus.identity()  # connected (the broker started) before the clock starts
        time.sleep(max(0.0, start_at - time.time()))
        done = conflicts = 0
        end = start_at + seconds
        while time.time() < end:
            entry = store.get("bench/counter")
            try:
                store.set("bench/counter", entry.value + 1, entry.version)
                done += 1
            except VersionConflict:
                conflicts += 1
        return done, conflicts

    env.run("alpha", lambda bus: __import__("keystone_agents.kv.shared", fromlist=["SharedState"])
            .SharedState(bus).set("bench/counter", 0, 0))
    start_at = time.time() + 30  # every writer connected first (slow on a loaded machine), then all start
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda key: env.run(key, worker), ["alpha", "beta", "gamma"] * 3 + ["alpha"]))
    elapsed = seconds
    final = env.run("alpha", lambda bus: bus.shared_get("bench/counter"))["value"]
    done, conflicts = sum(r[0] for r in results), sum(r[1] for r in results)
    return {"writes_per_s": round(done / elapsed, 1), "conflicts_per_s": round(conflicts / elapsed, 1),
            "no_lost_update": final == done}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--backends", default="local,postgresql")
    args = parser.parse_args()
    world = make_world()
    try:
        print("| backend | set p50 | set p95 | get p50 | get p95 | 10 writers: writes/s | conflicts/s | no lost update |")
        print("|---|---|---|---|---|---|---|---|")
        for backend in args.backends.split(","):
            env = Env(backend, world)
            lat = latency(env, args.count)
            con = contention(env, args.seconds)
            print(f"| {backend} | {lat['set_p50']} ms | {lat['set_p95']} ms | {lat['get_p50']} ms | "
                  f"{lat['get_p95']} ms | {con['writes_per_s']} | {con['conflicts_per_s']} | {con['no_lost_update']} |",
                  flush=True)
    finally:
        world.close()
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
