"""How long one pre-tool hook call takes: `keystone-agent policy check --cli claude --policy FILE` as the CLIs
run it (a process per tool call, the hook JSON on stdin), for an autonomous decision (no bus involved).

    .venv/bin/python benchmarks/policy_hook_benchmark.py [--runs 30]

Prints the median, p95 and max wall time, and the same for a bare `python -c pass` (the interpreter's floor)
and for `keystone-agent --version` (click's start-up), so the hook's own cost can be read off."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from keystone_agents.policy import model


def measure(argv: list[str], stdin: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{argv}: exit {done.returncode}: {done.stderr}")
    return sorted(times)


def report(name: str, times: list[float]) -> None:
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    print(f"{name:<34} median {statistics.median(times) * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms  "
          f"max {times[-1] * 1000:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    program = str(Path(sys.executable).parent / "keystone-agent")
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.json"
        policy.write_text(json.dumps(model.document("bench", "coder", {"rules": [
            {"match": {"shell": "terraform apply*"}, "tier": "approval_required"}]}, "/home/agent-bench")))
        payload = json.dumps({"session_id": "s", "cwd": "/tmp", "hook_event_name": "PreToolUse", "tool_name": "Bash",
                              "tool_input": {"command": "git status && ls -la"}})
        env_note = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        print(env_note)
        report("python -c pass", measure([sys.executable, "-c", "pass"], "", args.runs))
        report("keystone-agent --version", measure([program, "--version"], "", args.runs))
        report("keystone-agent policy check", measure([program, "policy", "check", "--cli", "claude", "--policy",
                                                       str(policy)], payload, args.runs))


if __name__ == "__main__":
    main()
