#!/usr/bin/env python3
"""Benchmark of `keystone-agent loop`: wall time and peak memory (max RSS) of whole runs as the timer
starts them (a fresh interpreter each time), with a no-op provider (the `command` provider running `cat`: it echoes the prompt, which counts as evidence of work).

Scenarios, each for queues of 10, 1,000 and 10,000 tasks:
  no-change        nothing changed since the last run (the common five-minute tick)
  no-change, full  the same with the unchanged-tick shortcut disabled (TASKS.yaml parsed, prioritized,
                   nothing written): the cost that grows with the queue
  ingest 100       100 new source items ingested, then 5 tasks executed
and 10,000 new source items ingested into a 10-task queue (then 5 executed).

Usage: .venv/bin/python benchmarks/loop_benchmark.py [--repeat 5] [--sizes 10,1000,10000]
Prints a Markdown table (docs/performance.md holds the published one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = str(Path(sys.executable).parent / "keystone-agent")


def make_home(root: Path, tasks: int, items: int) -> Path:
    home = root / "home"
    if home.exists():
        shutil.rmtree(home)
    (home / ".config/keystone-agent").mkdir(parents=True)
    (home / ".config/keystone-agent/config.json").write_text(json.dumps({
        "agentName": "bench", "defaults": {"provider": "command"}, "commandProvider": {"argv": ["cat"]},
        "textfileDir": str(root / "textfiles"),
    }))
    lines = ["tasks:\n"]
    for i in range(tasks):
        lines.append(
            f"  - name: task-{i}\n    description: \"Benchmark task number {i}, with a sentence of text\"\n"
            f"    status: completed\n    source: bench\n    source_ref: \"bench-{i}\"\n"
            f"    created_at: \"2026-01-01T00:00:00Z\"\n    completed_at: \"2099-01-01T00:00:00Z\"\n")
    (home / "TASKS.yaml").write_text("".join(lines))
    set_items(root, home, items, offset=0)
    return home


def set_items(root: Path, home: Path, count: int, offset: int) -> None:
    data = [{"title": f"New item {offset + i}", "url": f"https://git.example.com/o/r/issues/{offset + i}",
             "body": f"Body of item {offset + i}"} for i in range(count)]
    (root / "items.json").write_text(json.dumps(data))
    (home / "PROJECTS.yaml").write_text(f"projects: []\nsources:\n  - name: bench\n    command: [cat, \"{root / 'items.json'}\"]\n")


def timed_run(home: Path) -> tuple[float, float, int, float]:
    """(wall seconds, max RSS MiB, exit code, CPU seconds user+system) of one loop run."""
    env = {**os.environ, "HOME": str(home)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.perf_counter()
    proc = subprocess.Popen([SCRIPT, "loop", "--home", str(home)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    return wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime


def scenario(root: Path, size: int, kind: str, repeat: int) -> tuple[float, float, float]:
    walls, rss, cpus = [], [], []
    for r in range(repeat):
        if kind.startswith("no-change"):
            if r == 0:
                home = make_home(root, size, 0)
                timed_run(home)  # prime: caches and hashes
            if kind == "no-change, full":
                (home / ".local/state/agent-task-loop/state/quiescent.json").unlink(missing_ok=True)
        else:
            items = 10_000 if kind.startswith("ingest 10,000") else 100
            home = make_home(root, size, 0)
            timed_run(home)
            set_items(root, home, items, offset=1_000_000)
        wall, mem, code, cpu = timed_run(home)
        if code not in (0, 3):
            raise SystemExit(f"{kind} {size}: exit code {code}")
        walls.append(wall)
        rss.append(mem)
        cpus.append(cpu)
    return statistics.median(walls), max(rss), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sizes", default="10,1000,10000")
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(__file__).resolve().parents[1] / "python")],
                   check=False, stdout=subprocess.DEVNULL)
    sizes = [int(s) for s in args.sizes.split(",")]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for kind in ("no-change", "no-change, full", "ingest 100"):
            for size in sizes:
                wall, mem, cpu = scenario(root, size, kind, args.repeat)
                rows.append((kind, size, wall, cpu, mem))
                print(f"{kind:16} {size:>6} tasks  {wall:6.3f} s  cpu {cpu:6.3f} s  {mem:6.1f} MiB", file=sys.stderr)
        wall, mem, cpu = scenario(root, 10, "ingest 10,000", max(1, args.repeat // 2))
        rows.append(("ingest 10,000 new items", 10, wall, cpu, mem))
    print(f"load average before: {load}")
    print("| scenario | queue size | wall time (median) | CPU time user+sys (median) | peak RSS |")
    print("|---|---:|---:|---:|---:|")
    for kind, size, wall, cpu, mem in rows:
        print(f"| {kind} | {size:,} | {wall:.3f} s | {cpu:.3f} s | {mem:.0f} MiB |")


if __name__ == "__main__":
    main()
