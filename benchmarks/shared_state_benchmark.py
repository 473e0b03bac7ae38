#!/usr/bin/env python3
"""Benchmark of shared state on both bus backends (local broker, PostgreSQL), with real Linux users (root):

  latency        `shared set` and `shared get` through the Bus (one connection, N operations): p50/p95 in ms
  contention     10 writer processes (connected first, then started together) increment one counter with
                 retry on conflict (read-modify-write) for --seconds: successful writes/s, conflicts/s, and the
                 check that the final value equals the number of successful writes (no lost update). The
                 latency of each set under contention (p50/p99/max) and the fewest and most writes of one
                 writer show whether waiting is fair (no writer starved).
  cli            one `keystone-agent shared get` process as the agent (runuser), start to exit (the cost an
                 agent's shell pays; on the local backend this includes starting a broker)

Uses the test suite's fixtures (tests/support): a socket-activated broker (one `bus serve --stdio` per
connection, as systemd runs it) and a throwaway PostgreSQL cluster.

Usage: .venv/bin/python benchmarks/shared_state_benchmark.py [--count 500] [--seconds 10] [--writers 10]
       [--backends local,postgresql] [--contention-only]
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
# the children run as other users, who cannot read this interpreter's standard library when it lives under
# /root (pyenv): everything they import is imported here first
import keystone_agents.coordination.factory  # noqa: E402,F401
import keystone_agents.coordination.local  # noqa: E402,F401
import keystone_agents.coordination.postgres  # noqa: E402,F401
import psycopg  # noqa: E402,F401


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


def contention(env: Env, seconds: float, writers: int = 10) -> dict:
    def worker(bus):
        from keystone_agents.kv.model import VersionConflict
        from keystone_agents.kv.shared import SharedState

        store = SharedState(bus)
        bus.identity()  # connected (the broker started) before the clock starts
        time.sleep(max(0.0, start_at - time.time()))
        done = conflicts = 0
        sets = []
        end = start_at + seconds
        while time.time() < end:
            entry = store.get("bench/counter")
            t0 = time.perf_counter()
            try:
                store.set("bench/counter", entry.value + 1, entry.version)
                done += 1
            except VersionConflict:
                conflicts += 1
            sets.append(time.perf_counter() - t0)
        return done, conflicts, sets

    env.run("alpha", lambda bus: __import__("keystone_agents.kv.shared", fromlist=["SharedState"])
            .SharedState(bus).set("bench/counter", 0, 0))
    start_at = time.time() + 30  # every writer connected first (slow on a loaded machine), then all start
    keys = (["alpha", "beta", "gamma"] * writers)[:writers]
    with ThreadPoolExecutor(writers) as pool:
        results = list(pool.map(lambda key: env.run(key, worker), keys))
    elapsed = seconds
    final = env.run("alpha", lambda bus: bus.shared_get("bench/counter"))["value"]
    done, conflicts = sum(r[0] for r in results), sum(r[1] for r in results)
    sets = [t for r in results for t in r[2]]
    ms = lambda q: round(pct(sets, q) * 1000, 1)  # noqa: E731
    return {"writes_per_s": round(done / elapsed, 1), "conflicts_per_s": round(conflicts / elapsed, 1),
            "no_lost_update": final == done, "set_p50": ms(50), "set_p99": ms(99),
            "set_max": round(max(sets) * 1000, 1), "fewest": min(r[0] for r in results),
            "most": max(r[0] for r in results)}


def cli(env: Env, runs: int = 11) -> dict:
    """`keystone-agent shared get` as the agent (runuser, a fresh process, on the local backend: a fresh
    broker too), start to exit: median and max in ms."""
    import secrets

    from tests.support.comms import CommsAgents

    root = env.users.root / "bench-homes" / secrets.token_hex(4)
    root.mkdir(parents=True)
    for d in (root.parent, root):
        d.chmod(0o755)
    agents = CommsAgents(env, root)
    alpha = agents.agent("alpha")
    made = alpha.run("shared", "set", "bench/cli", "--expected-version", "0", "--value", '"x"')
    assert made.returncode == 0, made.stderr
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        done = alpha.run("shared", "get", "bench/cli")
        times.append(time.perf_counter() - t0)
        assert done.returncode == 0, done.stderr
    return {"cli_p50": round(pct(times, 50) * 1000), "cli_max": round(max(times) * 1000)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--writers", type=int, default=10)
    parser.add_argument("--backends", default="local,postgresql")
    parser.add_argument("--contention-only", action="store_true", help="skip the latency phase")
    args = parser.parse_args()
    world = make_world()
    try:
        print(f"load average at start: {os.getloadavg()[0]:.1f}", flush=True)
        print(f"| backend | set p50 | set p95 | get p50 | get p95 | {args.writers} writers: writes/s | conflicts/s "
              "| set under contention p50 / p99 / max | writes per writer (fewest–most) | no lost update "
              "| CLI `shared get` p50 / max |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for backend in args.backends.split(","):
            env = Env(backend, world)
            lat = None if args.contention_only else latency(env, args.count)
            con = contention(env, args.seconds, args.writers)
            cells = ["–"] * 4 if lat is None else [f"{lat[k]} ms" for k in ("set_p50", "set_p95", "get_p50", "get_p95")]
            command = None if args.contention_only else cli(env)
            print(f"| {backend} | {' | '.join(cells)} | {con['writes_per_s']} | {con['conflicts_per_s']} | "
                  f"{con['set_p50']} / {con['set_p99']} / {con['set_max']} ms | {con['fewest']}–{con['most']} | "
                  f"{'yes' if con['no_lost_update'] else 'NO'} | "
                  f"{'–' if command is None else str(command['cli_p50']) + ' / ' + str(command['cli_max']) + ' ms'} |", flush=True)
        print(f"load average at end: {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        world.close()
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
