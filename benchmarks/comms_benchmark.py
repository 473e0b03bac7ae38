#!/usr/bin/env python3
"""Benchmark of comms on both bus backends (local broker, PostgreSQL), with real Linux users (run as root):

  send throughput   messages/s from one sender (one connection, N sends) and from 10 senders in parallel
  wake latency      send → the receiver's loop starts, per message: the sender sends; the receiver's comms path
                    unit is emulated (inotify on its wake file → `keystone-agent comms drain` → `keystone-agent
                    loop --max-tasks 0`, real processes as the receiver); latency = the loop's run_start event
                    time − the send time. p50/p95/p99 over --count messages (target p95 ≤ 1 s)
  drain cost        one `comms drain` process over 1,000 queued messages (per message), and over one message

The local broker is socket-activated as systemd does it (one `bus serve --stdio` per connection); PostgreSQL is
a throwaway cluster (Debian's), peer authentication. Uses the test suite's fixtures (tests/support).

Usage: .venv/bin/python benchmarks/comms_benchmark.py [--count 1000] [--backends local,postgresql]
Prints Markdown tables (docs/performance.md holds the published ones).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.bus import fresh_database, make_world  # noqa: E402
from tests.support.comms import CommsAgents  # noqa: E402


class Env:
    def __init__(self, backend: str, world):
        from keystone_agents.config import CoordinationSettings, LocalBusSettings

        self.backend, self.world, self.users = backend, world, world.users
        if backend == "local":
            fresh_database(world)
            self.settings = CoordinationSettings(backend="local", local=LocalBusSettings(
                socket=str(world.socket), wake_dir=str(world.wake_dir)))
        else:
            from tests.support.postgres import fresh_pg_database

            _, self.settings = fresh_pg_database(world)

    def run(self, key, fn):
        from keystone_agents.coordination.factory import open_bus

        def body():
            bus = open_bus(self.settings)
            try:
                return fn(bus)
            finally:
                bus.close()

        return self.users.as_user(key, body)


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def throughput(env: Env, total: int) -> tuple[float, float]:
    def send_n(n, tag):
        def body(bus):
            for i in range(n):
                bus.send("beta", f"{tag} {i}")
        return body

    t0 = time.perf_counter()
    env.run("alpha", send_n(total, "one"))
    one = total / (time.perf_counter() - t0)
    per = total // 10
    # 10 senders: 10 processes of the sender's user, forked from this (single) thread, all sending at once
    import pwd

    entry = pwd.getpwnam(env.users["alpha"])
    t0 = time.perf_counter()
    pids = []
    for k in range(10):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setgroups([])
                os.setresgid(entry.pw_gid, entry.pw_gid, entry.pw_gid)
                os.setresuid(entry.pw_uid, entry.pw_uid, entry.pw_uid)
                from keystone_agents.coordination.factory import open_bus

                bus = open_bus(env.settings)
                send_n(per, f"ten{k}")(bus)
                bus.close()
                code = 0
            except BaseException as exc:  # noqa: BLE001 - reported, the parent counts the failure
                print(f"sender {k}: {type(exc).__name__}: {exc}", file=sys.stderr)
            finally:
                os._exit(code)
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    assert not any(codes), f"senders failed: exit codes {codes}"
    ten = per * 10 / (time.perf_counter() - t0)
    return one, ten


def drain_cost(env: Env, agents: CommsAgents) -> tuple[float, float]:
    beta = agents.agents["beta"]
    env.run("alpha", lambda bus: [bus.send("beta", f"bulk {i}") for i in range(1000)] and None)
    t0 = time.perf_counter()
    done = beta.run("comms", "drain", "--json", timeout=600)
    bulk = time.perf_counter() - t0
    assert len(json.loads(done.stdout)["received"]) >= 1000, done.stderr
    env.run("alpha", lambda bus: bus.send("beta", "single") and None)
    t0 = time.perf_counter()
    beta.run("comms", "drain")
    single = time.perf_counter() - t0
    return bulk / 1000, single


def wake_latency(env: Env, agents: CommsAgents, count: int) -> list[float]:
    from keystone_agents.coordination.factory import wake_file

    gamma = agents.agents["delta"]  # a fresh receiver (delta) with an empty queue
    wake = Path(gamma.info()["wake_file"]) if env.backend == "postgresql" else \
        wake_file(env.settings, "delta", gamma.state)
    listener = None
    if env.backend == "postgresql":
        listener = gamma.popen("comms", "listen", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        agents.listeners.append(listener)
    if not wake.parent.exists():  # the agent's own state dir (postgresql): the listener writes there
        wake.parent.mkdir(parents=True)
        import shutil

        shutil.chown(wake.parent, gamma.user)
    watch = subprocess.Popen(["inotifywait", "-q", "-m", "-e", "close_write", "--format", "%f", str(wake.parent)],
                             stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    latencies = []
    sent_at: dict[str, float] = {}

    def receiver():
        assert watch.stdout is not None
        for line in watch.stdout:
            if line.strip() != wake.name:
                continue
            done = gamma.run("comms", "drain", "--json")
            received = json.loads(done.stdout)["received"] if done.returncode == 0 else []
            if not received:
                continue
            loop = gamma.run("loop", "--max-tasks", "0")
            starts = [re.search(r'ts="([^"]+)"', l) for l in loop.stderr.splitlines() if 'event="run_start"' in l]
            started = _ts(starts[0].group(1)) if starts and starts[0] else time.time()
            for msg_id in received:
                if msg_id in sent_at:
                    latencies.append(started - sent_at.pop(msg_id))
            if len(latencies) >= count:
                return

    rx = threading.Thread(target=receiver, daemon=True)
    rx.start()
    # the sender runs as alpha in a forked child: it cannot see `sent_at` updates from the receiver, so send
    # here, in this process, one message at a time, through alpha's own bus connection
    from keystone_agents.coordination.factory import open_bus
    from tests.support.asuser import as_user

    def send_one(i):
        bus = open_bus(env.settings)
        try:
            return bus.send("delta", f"ping {i}").id
        finally:
            bus.close()

    for i in range(count):
        t0 = time.time()
        msg_id = as_user(env.users["alpha"], send_one, i)
        sent_at[msg_id] = t0
        deadline = time.time() + 30
        while msg_id in sent_at and time.time() < deadline:
            time.sleep(0.005)
    watch.kill()
    watch.wait()
    if listener is not None:
        listener.kill()
    return latencies


def _ts(text: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def print_rows(rows, header: bool) -> None:
    if header:
        print("| backend | send msg/s, 1 sender | send msg/s, 10 senders | drain per message (1,000 queued) "
              "| drain of 1 message | wake latency p50 / p95 / p99 (n) |")
        print("|---|---|---|---|---|---|")
    for backend, one, ten, per_message, single, lat in rows:
        print(f"| {backend} | {one:,.0f} | {ten:,.0f} | {per_message * 1000:.1f} ms | {single * 1000:.0f} ms | "
              f"{pct(lat, 50):.2f} / {pct(lat, 95):.2f} / {pct(lat, 99):.2f} s ({len(lat)}) |", flush=True)


def main() -> int:
    import faulthandler

    faulthandler.dump_traceback_later(float(os.environ.get("BENCH_DUMP_AFTER", "0")) or 1e9, exit=True)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="messages for the wake-latency percentiles")
    parser.add_argument("--sends", type=int, default=1000, help="messages for the throughput figures")
    parser.add_argument("--backends", default="local,postgresql")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the comms benchmark creates real users: run it as root", file=sys.stderr)
        return 2
    import psycopg  # noqa: F401 - imported before forking children as other users
    import psycopg.types.json  # noqa: F401

    world = make_world()
    rows = []
    try:
        for backend in args.backends.split(","):
            env = Env(backend, world)
            root = world.users.root / "bench" / backend
            root.mkdir(parents=True)
            for d in (root.parent, root):
                d.chmod(0o755)
            agents = CommsAgents(env, root)
            for key in ("alpha", "beta", "delta"):
                agents.agent(key, coordination={"leaseSeconds": 300})
            one, ten = throughput(env, args.sends)
            print(f"{backend}: throughput done", file=sys.stderr)
            per_message, single = drain_cost(env, agents)
            print(f"{backend}: drain cost done", file=sys.stderr)
            latencies = wake_latency(env, agents, args.count)
            print(f"{backend}: wake latency done", file=sys.stderr)
            agents.close()
            rows.append((backend, one, ten, per_message, single, latencies))
            print_rows(rows[-1:], header=len(rows) == 1)  # each backend as soon as it is measured
    finally:
        world.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
