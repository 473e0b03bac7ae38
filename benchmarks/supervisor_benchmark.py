#!/usr/bin/env python3
"""Cost of the provider's supervisor (providers/supervisor.py) per execution.

Runs the same trivial provider (`/bin/true`, and `cat` fed a 200 KiB prompt on stdin) through the one process
runner (`providers/process.py: run_process`) with and without an exit record (= with and without the
supervisor), alternately, so both see the same machine load. Reports per execution the median wall time, the
median CPU time (user+sys of this process and its children: the supervisor's interpreter start is CPU the
loop's machine pays), and the supervisor's peak RSS.

Usage: .venv/bin/python benchmarks/supervisor_benchmark.py [--repeat 50]
Prints a Markdown table (docs/performance.md holds the published one).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))

from keystone_agents.providers.process import ExitRecord, RunOptions, run_process  # noqa: E402


def cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def one(argv: list[str], stdin: str | None, directory: Path, supervised: bool) -> tuple[float, float]:
    record = None
    if supervised:
        fd = os.open(directory / "exited.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        record = ExitRecord(fd, {"task": "bench", "run_id": "bench"})
    t0, c0 = time.perf_counter(), cpu()
    result = run_process(argv, stdin, RunOptions(log_path=directory / "task.log", timeout=60, exit_record=record))
    wall, used = time.perf_counter() - t0, cpu() - c0
    if record is not None:
        os.close(record.fd)
    assert result.exit_code == 0, result
    return wall, used


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    prompt = "x" * (200 * 1024)
    cases = [("`/bin/true`, no stdin", ["/bin/true"], None), ("`cat`, 200 KiB prompt on stdin", ["cat"], prompt)]
    load = os.getloadavg()[0]
    print(f"load average at start: {load:.2f}, {os.cpu_count()} cores, repeat {args.repeat}\n")
    print("| provider | without supervisor: wall / CPU (median) | with supervisor: wall / CPU (median) "
          "| cost per execution: wall / CPU |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for label, argv, stdin in cases:
            plain, supervised = [], []
            one(argv, stdin, directory, True)  # warm the page cache for the supervisor's interpreter
            for _ in range(args.repeat):
                plain.append(one(argv, stdin, directory, False))
                supervised.append(one(argv, stdin, directory, True))
            pw, pc = (statistics.median(x[i] for x in plain) for i in (0, 1))
            sw, sc = (statistics.median(x[i] for x in supervised) for i in (0, 1))
            print(f"| {label} | {pw * 1000:.1f} ms / {pc * 1000:.1f} ms | {sw * 1000:.1f} ms / {sc * 1000:.1f} ms "
                  f"| +{(sw - pw) * 1000:.1f} ms / +{(sc - pc) * 1000:.1f} ms |")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\npeak RSS of any child (the supervisor's interpreter is the largest): {peak:.1f} MiB")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
