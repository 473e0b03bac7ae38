"""The loop and the scheduler both write TASKS.yaml: neither loses the other's change.

The loop holds the tasks lock from loading TASKS.yaml to the end of its run, except while a provider executes a
task; the scheduler re-reads, appends and saves under the same lock.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.conftest import installed_script
from tests.support.loop import make_home


@pytest.fixture
def lh(tmp_path):
    return make_home(tmp_path)


def test_a_schedule_created_while_a_task_runs_survives_the_loops_save(lh):
    lh.write_tasks("""
        tasks:
          - name: slow-task
            description: "Takes three seconds [fake:sleep=3]"
            status: pending
    """)
    (lh.home / "SCHEDULES.yaml").write_text(
        "schedules:\n  - name: daily-report\n    description: Write the report\n    schedule: daily\n")
    config = json.loads((lh.home / ".config/keystone-agent/config.json").read_text())
    config["scheduler"] = {"wakeCommand": []}
    (lh.home / ".config/keystone-agent/config.json").write_text(json.dumps(config))

    loop = lh.popen()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not lh.calls("claude"):
        time.sleep(0.05)
    assert lh.calls("claude"), "provider never started"
    schedule = subprocess.run(
        [installed_script("keystone-agent"), "schedule", "--home", str(lh.home), "--now", "2026-11-21T12:00:00Z"],
        capture_output=True, text=True, env=lh.env(), timeout=60)
    assert schedule.returncode == 0, schedule.stderr
    out, err = loop.communicate(timeout=60)
    assert loop.returncode == 0, err

    tasks = {t["name"]: t for t in lh.task_list()}
    assert tasks["slow-task"]["status"] == "completed"
    assert tasks["daily-report-2026-11-21"]["source_ref"] == "schedule-daily-report-2026-11-21"
    # the loop saw the new task when it took TASKS.yaml back, and ran it in the same run
    assert [c["task"] for c in lh.calls("claude")] == ["slow-task", "daily-report-2026-11-21"]
    assert tasks["daily-report-2026-11-21"]["status"] == "completed"


def test_the_scheduler_waits_for_the_loops_transaction(lh):
    """While the loop holds the lock (here: a held lock file), the scheduler waits instead of writing."""
    from keystone_agents.lock import hold

    (lh.home / "SCHEDULES.yaml").write_text(
        "schedules:\n  - name: daily-report\n    description: Write the report\n    schedule: daily\n")
    lock = lh.state / "tasks.lock"
    with hold(lock):
        proc = subprocess.Popen(
            [installed_script("keystone-agent"), "schedule", "--home", str(lh.home), "--now", "2026-11-21T12:00:00Z"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=lh.env())
        time.sleep(1.0)
        assert proc.poll() is None, "the scheduler wrote TASKS.yaml while the lock was held"
        assert "daily-report" not in lh.tasks.read_text()
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "daily-report-2026-11-21" in lh.tasks.read_text()


def test_task_add_while_a_loop_runs_loses_nothing(lh):
    """`keystone-agent task add` (real subprocesses, three at once) while the loop executes: every change
    survives the loop's save, and the loop runs the added tasks in the same run once it takes TASKS.yaml back."""
    lh.write_tasks("""
        tasks:
          - name: slow-task
            description: "Takes six seconds [fake:sleep=6]"
            status: pending
    """)
    loop = lh.popen()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not lh.calls("claude"):
        time.sleep(0.05)
    assert lh.calls("claude"), "provider never started"
    adders = [subprocess.Popen([installed_script("keystone-agent"), "task", "add", f"added-{i}", "--description",
                                f"Added while the loop ran ({i})", "--home", str(lh.home)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=lh.env())
              for i in range(3)]
    results = [(a.wait(timeout=120), a.stderr.read()) for a in adders]
    assert all(code == 0 for code, _ in results), results
    out, err = loop.communicate(timeout=120)
    assert loop.returncode == 0, err
    tasks = {t["name"]: t for t in lh.task_list()}
    assert tasks["slow-task"]["status"] == "completed"
    assert all(tasks[f"added-{i}"]["source"] == "manual" for i in range(3))  # nothing lost
    ran = [c["task"] for c in lh.calls("claude")]
    assert ran[0] == "slow-task" and sorted(ran[1:]) == ["added-0", "added-1", "added-2"], ran
    assert all(tasks[f"added-{i}"]["status"] == "completed" for i in range(3))


def test_task_add_waits_for_the_loops_transaction(lh):
    """While the loop holds the tasks lock outside a provider run, `task add` waits, then appends."""
    from keystone_agents.lock import hold

    lh.write_tasks("""
        tasks:
          - name: existing
            description: "Exists"
            status: completed
    """)
    with hold(lh.home / ".local/state/agent-task-loop/state/tasks.lock"):
        proc = subprocess.Popen([installed_script("keystone-agent"), "task", "add", "late-one", "-d", "Late",
                                 "--home", str(lh.home)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=lh.env())
        time.sleep(1.0)
        assert proc.poll() is None  # still waiting for the lock
        assert "late-one" not in lh.tasks.read_text()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert [t["name"] for t in lh.task_list()] == ["existing", "late-one"]
