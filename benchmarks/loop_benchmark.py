#!/usr/bin/env python3
"""Benchmark of `keystone-agent loop`: wall time and peak memory (max RSS) of whole runs as the timer
starts them (a fresh interpreter each time), with a no-op provider (the `command` provider running `cat`: it echoes the prompt, which counts as evidence of work).

Scenarios, each for queues of 10, 1,000 and 10,000 tasks:
  no-change        nothing changed since the last run (the common five-minute tick)
  no-change, full  the same with the unchanged-tick shortcut disabled (TASKS.yaml parsed, prioritized,
                   nothing written): the cost that grows with the queue
  ingest 100       100 new source items ingested, then 5 tasks executed
and 10,000 new source items ingested into a 10-task queue (then 5 executed).

Side by side (issue 16's target): the no-change tick on a 1,000-task queue against a bare `python3` that only
parses the same TASKS.yaml with libyaml (`yaml.load(..., Loader=yaml.CSafeLoader)`, the same interpreter),
run alternately so both see the same machine load; the ratio of the medians is printed (target ≤ 1.5×).

Usage: .venv/bin/python benchmarks/loop_benchmark.py [--repeat 5] [--sizes 10,1000,10000] [--baseline-only]
Prints Markdown tables (docs/performance.md holds the published ones).
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


BASELINE = "import sys, yaml; yaml.load(open(sys.argv[1], encoding='utf-8'), Loader=yaml.CSafeLoader)"


def timed(argv: list[str], env: dict) -> tuple[float, float, int, float]:
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    return wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime


def side_by_side(root: Path, size: int, repeat: int) -> dict[str, tuple[float, float, float]]:
    """Median (wall, CPU, max RSS) of the no-change tick and of the bare parse, measured alternately."""
    home = make_home(root, size, 0)
    timed_run(home)  # prime: caches and hashes
    env = {**os.environ, "HOME": str(home)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    runs: dict[str, list[tuple[float, float, int, float]]] = {"loop": [], "baseline": []}
    for _ in range(repeat):
        runs["loop"].append(timed_run(home))
        runs["baseline"].append(timed([sys.executable, "-c", BASELINE, str(home / "TASKS.yaml")], env))
    for name, rows in runs.items():
        if any(code != 0 for _, _, code, _ in rows):
            raise SystemExit(f"side by side: {name} failed")
    return {name: (statistics.median(r[0] for r in rows), statistics.median(r[3] for r in rows),
                   max(r[1] for r in rows)) for name, rows in runs.items()}


def print_side_by_side(result: dict[str, tuple[float, float, float]], size: int) -> None:
    loop, base = result["loop"], result["baseline"]
    print(f"| run ({size:,} tasks) | wall time (median) | CPU time user+sys (median) | peak RSS |")
    print("|---|---:|---:|---:|")
    print(f"| `keystone-agent loop`, no change | {loop[0]:.3f} s | {loop[1]:.3f} s | {loop[2]:.0f} MiB |")
    print(f"| bare `python3` + libyaml parse of TASKS.yaml | {base[0]:.3f} s | {base[1]:.3f} s | {base[2]:.0f} MiB |")
    print(f"| ratio | {loop[0] / base[0]:.2f}× | {loop[1] / base[1]:.2f}× | |")


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
    parser.add_argument("--baseline-only", action="store_true",
                        help="only the side-by-side comparison with a bare libyaml parse (1,000 tasks)")
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(__file__).resolve().parents[1] / "python")],
                   check=False, stdout=subprocess.DEVNULL)
    sizes = [int(s) for s in args.sizes.split(",")]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        compared = side_by_side(root, 1000, max(args.repeat, 9))
        if args.baseline_only:
            print(f"load average before: {load}")
            print_side_by_side(compared, 1000)
            return
        for kind in ("no-change", "no-change, full", "ingest 100"):
            for size in sizes:
                wall, mem, cpu = scenario(root, size, kind, args.repeat)
                rows.append((kind, size, wall, cpu, mem))
                print(f"{kind:16} {size:>6} tasks  {wall:6.3f} s  cpu {cpu:6.3f} s  {mem:6.1f} MiB", file=sys.stderr)
        wall, mem, cpu = scenario(root, 10, "ingest 10,000", max(1, args.repeat // 2))
        rows.append(("ingest 10,000 new items", 10, wall, cpu, mem))
    print(f"load average before: {load}")
    print_side_by_side(compared, 1000)
    print()
    print("| scenario | queue size | wall time (median) | CPU time user+sys (median) | peak RSS |")
    print("|---|---:|---:|---:|---:|")
    for kind, size, wall, cpu, mem in rows:
        print(f"| {kind} | {size:,} | {wall:.3f} s | {cpu:.3f} s | {mem:.0f} MiB |")


if __name__ == "__main__":
    main()
