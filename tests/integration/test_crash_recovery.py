"""A finished execution is never run again (issue 21): the loop is SIGKILLed at random moments over a queue
of short tasks; a task whose provider had exited is finalized from the exit journal by the next run, never
started a second time. Only a task killed while its provider was still running is retried (or blocked when
it is marked `once`)."""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time

import pytest

from tests.support.loop import events, make_home

KILLS = int(os.environ.get("KS_CRASH_KILLS", "200"))
# Issue 21's target: at most 4 finished tasks started again per 200 kills (1 per 50). The provider's supervisor
# (providers/supervisor.py) records the exit itself, so a kill between the provider's exit and the loop's own
# bookkeeping no longer loses it; measured 0 with load averages up to 100 and CPU burners beside the test
# (docs/performance.md).
MAX_RERUN = 4

@pytest.fixture
def lh(tmp_path, clean_env):
    return make_home(tmp_path)


def provider_script(lh):
    # `start` when the provider begins, `done` once it has finished its work (after its answer): a task whose
    # `done` line is followed by another `start` was run again after it finished
    return lh.script("provider.sh", """
        cat >/dev/null
        echo "start $KEYSTONE_TASK_NAME" >> "$CRASH_LOG"
        sleep 0.03
        echo "did $KEYSTONE_TASK_NAME"
        echo "done $KEYSTONE_TASK_NAME" >> "$CRASH_LOG"
    """)


def add_tasks(lh, first: int, count: int) -> None:
    text = lh.tasks.read_text() if first else "tasks:\n"
    text += "".join(f"  - name: t{n}\n    description: short task {n}\n    status: pending\n"
                    for n in range(first, first + count))
    lh.tasks.write_text(text)


def reruns(log_text: str) -> list[str]:
    finished, again = set(), []
    for line in log_text.splitlines():
        what, _, task = line.partition(" ")
        if what == "start" and task in finished:
            again.append(task)
        elif what == "done":
            finished.add(task)
    return again


@pytest.mark.slow
def test_random_sigkills_rerun_at_most_four_finished_tasks(lh):
    crash_log = lh.root / "crash.log"
    lh.config(maxTasks=1000, defaults={"provider": "command"},
              commandProvider={"argv": ["/bin/sh", str(provider_script(lh))]},
              environment={"CRASH_LOG": str(crash_log)})
    rng = random.Random(int(os.environ.get("KS_CRASH_SEED", "21")))
    next_task = 0
    add_tasks(lh, next_task, 40)
    next_task += 40
    finalized = kills = 0
    while kills < KILLS:
        starts = crash_log.read_text().count("start ") if crash_log.exists() else 0
        proc = lh.popen()
        # kill while tasks execute (the start-up before the first task is not what this test is about)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline and (
                (crash_log.read_text().count("start ") if crash_log.exists() else 0) == starts):
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.6))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        _, stderr = proc.communicate(timeout=60)
        finalized += len(events(stderr, "task_finalized"))
        pending = sum(1 for t in lh.task_list() if t["status"] in ("pending", "in_progress"))
        if pending < 15:
            add_tasks(lh, next_task, 30)
            next_task += 30
    final = lh.loop(timeout=300)
    assert final.returncode == 0, final.stderr[-3000:]
    finalized += len(events(final.stderr, "task_finalized"))
    # every task is completed, except one whose provider exited as the loop died before reading its output:
    # that one is blocked for a human (its work cannot be judged), never run again
    unfinished = [t for t in lh.task_list() if t["status"] != "completed"]
    assert all(t["status"] == "blocked" and "before reading all of its output" in t["blocked_reason"]
               for t in unfinished), unfinished
    again = reruns(crash_log.read_text())
    print(f"{kills} kills, {next_task} tasks, {finalized} finalized from the exit journal, "
          f"{len(unfinished)} blocked unjudged, re-run after finishing: {again}", file=sys.stderr)
    assert len(again) <= MAX_RERUN, again
    assert finalized > 0, "no kill landed after a provider exit: the journal path was not exercised"
    assert not (lh.state / "exited.json").exists() and not (lh.state / "running.json").exists()
    # no provider outlived the loops that were killed (their supervisors killed the ones still running)
    assert _providers_alive(crash_log) == []


def _providers_alive(crash_log) -> list[int]:
    marker = f"CRASH_LOG={crash_log}".encode() + b"\0"
    alive = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as handle:
                    if marker in handle.read():
                        alive.append(int(entry.name))
            except OSError:
                pass
    return alive


def _dead_run(lh, phase: str, **record) -> None:
    """The state a loop leaves when it is killed right after its provider exited: the task in_progress,
    running.json, the provider's output in the task log, and the exit journal at `phase`."""
    lh.write_tasks("""
        tasks:
          - name: send-mail
            description: sends one email
            status: in_progress
            started_at: "2026-01-01T00:00:00Z"
    """)
    log = lh.home / ".local/state/agent-task-loop/logs/tasks/2026-01-01_000000_send-mail.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("[keystone-agent] task=send-mail provider=command\nmail sent https://forge.example/o/r/pulls/7\n")
    running = {"task": "send-mail", "run_id": "demo-task-loop-dead", "pid": 999999, "pgid": None,
               "started_at": "2026-01-01T00:00:00Z", "source_ref": None, "log_path": str(log),
               "provider": "command", "model": None, "profile": None}
    lh.state.mkdir(parents=True, exist_ok=True)
    (lh.state / "running.json").write_text(json.dumps(running))
    (lh.state / "exited.json").write_text(json.dumps({**running, "phase": phase, **record}))


@pytest.mark.parametrize("phase,record,outcome", [
    ("exited", {"exit_code": 0}, "completed"),  # only the exit status was recorded: the task log is parsed
    ("exited", {"exit_code": 1}, "failed"),
    ("result", {"exit_code": 0, "result": {"exit_code": 0, "timed_out": False, "duration_seconds": 1.0,
                                            "output": "mail sent https://forge.example/o/r/pulls/7",
                                            "evidence": True}, "report": None}, "completed"),
    ("decided", {"exit_code": 0, "outcome": "blocked", "updates": {"status": "blocked", "blocked_reason": "why"},
                 "message": "needs a human"}, "blocked"),
])
def test_a_task_whose_provider_exited_is_finalized_not_rerun(lh, phase, record, outcome):
    crash_log = lh.root / "crash.log"
    # maxTasks 0: a failed outcome sends the task back to pending, and this run must not retry it either
    lh.config(defaults={"provider": "command"}, commandProvider={"argv": ["/bin/sh", str(provider_script(lh))]},
              environment={"CRASH_LOG": str(crash_log)}, maxTasks=0)
    _dead_run(lh, phase, **record)
    result = lh.loop()
    assert result.returncode in (0, 3), result.stderr
    [event] = events(result.stderr, "task_finalized")
    assert event["outcome"] == outcome and event["journal_phase"] == phase
    assert not crash_log.exists(), "the provider was started again"
    expected = {"completed": "completed", "failed": "pending", "blocked": "blocked"}[outcome]
    assert lh.task("send-mail")["status"] == expected
    import sqlite3

    rows = sqlite3.connect(lh.state / "history.sqlite3").execute(
        "SELECT outcome, pull_requests FROM task_executions WHERE task = 'send-mail'").fetchall()
    assert [r[0] for r in rows] == [outcome]
    if outcome == "completed":
        assert rows[0][1] == '["https://forge.example/o/r/pulls/7"]'
    assert not (lh.state / "exited.json").exists()


def test_killed_while_running_retries_but_a_once_task_is_blocked(lh):
    lh.write_tasks("""
        tasks:
          - name: retry-me
            description: may run twice
            status: pending
          - name: only-once
            description: must not run twice
            status: pending
            once: true
    """)
    script = lh.script("provider.sh", """
        cat >/dev/null
        echo "$KEYSTONE_TASK_NAME" >> "$HOME/started.log"
        sleep 30
    """)
    lh.config(defaults={"provider": "command"}, commandProvider={"argv": ["/bin/sh", str(script)]})
    recovered = {}
    for name in ("retry-me", "only-once"):
        proc = lh.popen("--task", name)
        deadline = time.monotonic() + 30
        while name not in ((lh.home / "started.log").read_text() if (lh.home / "started.log").exists() else ""):
            assert time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=30)
        recovered.update({e["task_name"]: e["status"] for e in events(stderr, "task_recovered")})
    # recovery happens at the next run's start (a dry run does not recover: run one that executes nothing)
    lh.config(defaults={"provider": "command"}, commandProvider={"argv": ["/bin/true"]}, maxTasks=0)
    result = lh.loop()
    recovered.update({e["task_name"]: e["status"] for e in events(result.stderr, "task_recovered")})
    assert recovered == {"retry-me": "pending", "only-once": "blocked"}
    assert lh.task("retry-me")["status"] == "pending"
    blocked = lh.task("only-once")
    assert blocked["status"] == "blocked" and "once: true" in blocked["blocked_reason"]
