#!/usr/bin/env python3
"""What the one HTTP layer (httpclient.py, on `requests`) costs at start-up, next to the hand-written urllib
clients it replaced: median wall time and CPU time of fresh interpreters that only import, N runs each.

    .venv/bin/python benchmarks/http_import.py [--repeat 15]

The import happens only in a run that uses HTTP (a configured Forgejo source, the openai provider, the
Forgejo coding adapter); docs/performance.md has the numbers and what they mean for the five-minute tick."""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time

CASES = {
    "interpreter only": "pass",
    "urllib (before)": "import json, urllib.request, urllib.error, urllib.parse",
    "httpclient (requests)": "import keystone_agents.httpclient",
    "forgejo source module": "import keystone_agents.sources.forgejo, keystone_agents.httpclient",
}


def measure(code: str, repeat: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    print("| import | wall (median) | CPU user+sys (median) |\n|---|---:|---:|")
    for name, code in CASES.items():
        wall, cpu = measure(code, args.repeat)
        print(f"| {name} | {wall * 1000:.0f} ms | {cpu * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
