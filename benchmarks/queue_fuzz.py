#!/usr/bin/env python3
"""The large run of the queue-file fuzz suite (the CI runs the same invariants at a small size:
tests/unit/test_queue_fuzz.py).

For each of N mutated files (tests/support/hostile.py: fragments the issue's 10,000-file run used — anchors
and aliases, tags, directives, flow style, tabs, control bytes, BOMs, invalid UTF-8, huge numbers and
strings, deep nesting, bad dates — spliced into, deleted from, duplicated in and swapped around a few seed
files) plus the hand-made corpus:

  * every reader reads it (the fast TASKS reader, the round-trip reader for all four kinds, the lenient
    archive reader, the scheduler's archive dedup, the coding route's PROJECTS lookup, the schedule checks):
    counted are exceptions other than ValidationFailed, and reads over the wall-time bound;
  * the loop's kinds of edits are made and saved: counted are saves that made a loadable file unloadable or
    read back differently, and rejected files or invalid entries that changed;
  * the fast and the round-trip reader are compared: counted are different verdicts and different problems.

Usage: .venv/bin/python benchmarks/queue_fuzz.py [--files 10000] [--seed 1] [--bound 10]
Prints a Markdown table (docs/performance.md holds the published one). Exit 1 if any invariant broke.
"""

from __future__ import annotations

import argparse
import collections
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keystone_agents import queuefile  # noqa: E402
from keystone_agents.problems import ValidationFailed  # noqa: E402
from keystone_agents.taskfile import TaskFile  # noqa: E402
from tests.support import hostile  # noqa: E402


def verdict(read):
    try:
        problems = read()
    except ValidationFailed as exc:
        return "rejected", sorted((p.line, p.field, p.message) for p in exc.problems)
    return "loaded", sorted((p.line, p.field, p.message) for p in problems)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bound", type=float, default=10.0, help="wall-time bound of one read, seconds")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # ruamel warns about odd input; the run counts outcomes, not warnings

    rng = random.Random(args.seed)
    inputs = list(hostile.CORPUS.values())
    inputs += [hostile.mutate(rng.choice(hostile.SEEDS), rng, rng.choice([1, 1, 2, None]))
               for _ in range(args.files)]
    counts: collections.Counter = collections.Counter()
    broken: list[str] = []
    slowest: list[float] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        tasks = directory / "TASKS.yaml"
        for number, data in enumerate(inputs):
            try:
                times = hostile.read_all(directory, data, args.bound)
                slowest.append(max(times.values()))
            except hostile.InvariantBroken as exc:
                kind = "over the time bound" if " took " in str(exc) else "reader exceptions"
                counts[kind] += 1
                broken.append(f"file {number}: {exc}"[:500])
                continue
            tasks.write_bytes(data)
            try:
                counts["edit: " + hostile.edit_and_check(tasks, rng)] += 1
            except hostile.InvariantBroken as exc:
                text = str(exc)
                kind = ("edits making a loadable file unloadable" if "unloadable" in text
                        else "kept text changed" if "byte for byte" in text or "refused edit changed" in text
                        else "edits reading back differently")
                counts[kind] += 1
                broken.append(f"file {number}: {text}"[:500])
            tasks.write_bytes(data)
            fast = verdict(lambda: TaskFile.load(tasks).problems)
            slow = verdict(lambda: queuefile.load(tasks, queuefile.TASKS).problems)
            if fast[0] != slow[0]:
                counts["readers: different verdicts"] += 1
                broken.append(f"file {number}: the readers disagree: {data[:300]!r}\n fast {fast}\n slow {slow}"[:1500])
            elif fast != slow:
                counts["readers: different problems"] += 1
                broken.append(f"file {number}: the readers disagree: {data[:300]!r}\n fast {fast}\n slow {slow}"[:1500])
            else:
                counts["readers: same verdict and problems"] += 1
    elapsed = time.monotonic() - started
    slowest.sort()
    rows = [
        ("files (hand-made corpus + mutated)", f"{len(inputs):,}"),
        ("reader exceptions (anything but ValidationFailed)", counts["reader exceptions"]),
        (f"reads over the {args.bound:g} s bound", counts["over the time bound"]),
        ("edits making a loadable file unloadable", counts["edits making a loadable file unloadable"]),
        ("edits reading back differently", counts["edits reading back differently"]),
        ("rejected files or invalid entries changed", counts["kept text changed"]),
        ("files rejected as a whole (never written)", counts["edit: rejected"]),
        ("edits saved (fast or round-trip path)", counts["edit: saved"]),
        ("edits refused (file left as it was)", counts["edit: refused"]),
        ("edits that changed nothing (nothing written)", counts["edit: unchanged"]),
        ("fast vs round-trip reader: same verdict and problems", counts["readers: same verdict and problems"]),
        ("fast vs round-trip reader: different problems", counts["readers: different problems"]),
        ("fast vs round-trip reader: different verdicts", counts["readers: different verdicts"]),
        ("slowest file, all readers (median / p99 / max)",
         f"{statistics.median(slowest) * 1000:.1f} / {slowest[int(len(slowest) * 0.99)] * 1000:.1f} / "
         f"{slowest[-1] * 1000:.1f} ms" if slowest else "-"),
        ("wall time of the run", f"{elapsed:.0f} s"),
    ]
    print("| measure | value |\n|---|---:|")
    for label, value in rows:
        print(f"| {label} | {value} |")
    for line in broken[:20]:
        print(line, file=sys.stderr)
    invariants = ("reader exceptions", "over the time bound", "edits making a loadable file unloadable",
                  "edits reading back differently", "kept text changed")
    return 1 if any(counts[k] for k in invariants) else 0


if __name__ == "__main__":
    sys.exit(main())
