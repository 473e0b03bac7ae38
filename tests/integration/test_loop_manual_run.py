"""`keystone-agent loop --task NAME` and `--prompt TEXT`: what `agentctl <agent> run` triggers."""

from __future__ import annotations

import pytest

from tests.support.loop import events, make_home


@pytest.fixture
def lh(tmp_path):
    return make_home(tmp_path)


QUEUE = """
    tasks:
      - name: first-in-line
        description: "Would normally run first"
        status: pending
      - name: wanted-now
        description: "Run me now"
        status: blocked
        blocked_reason: "waiting for a human"
      - name: done-already
        description: "Finished"
        status: completed
"""


def test_task_runs_only_that_task_even_if_blocked(lh):
    lh.write_tasks(QUEUE)
    result = lh.loop("--task", "wanted-now")
    assert result.returncode == 0, result.stderr
    assert [c["task"] for c in lh.calls("claude")] == ["wanted-now"]
    tasks = {t["name"]: t for t in lh.task_list()}
    assert tasks["wanted-now"]["status"] == "completed" and "blocked_reason" not in tasks["wanted-now"]
    assert tasks["first-in-line"]["status"] == "pending"


@pytest.mark.parametrize("name,message", [
    ("done-already", "task 'done-already' is completed; only pending or blocked tasks can be run"),
    ("no-such-task", "task 'no-such-task' is not in "),
    ("wanted-nwo", "did you mean 'wanted-now'?"),
])
def test_task_that_cannot_run_is_a_usage_error_not_a_run(lh, name, message):
    lh.write_tasks(QUEUE)
    result = lh.loop("--task", name)
    assert result.returncode == 2
    assert message in result.stderr
    assert lh.calls("claude") == []
    # usage errors are not runs: no history row, no metrics saying the loop failed
    assert not lh.metrics_file.exists()
    assert not (lh.state / "history.sqlite3").exists()


def test_task_whose_needs_are_not_done_is_refused(lh):
    lh.write_tasks("""
        tasks:
          - name: base
            description: "Base"
            status: pending
          - name: top
            description: "Top"
            status: pending
            needs: [base]
    """)
    result = lh.loop("--task", "top")
    assert result.returncode == 1
    assert any("needs base to be completed first" in e.get("msg", "") for e in events(result.stderr))
    assert lh.calls("claude") == []


def test_prompt_becomes_an_adhoc_task_and_runs_alone(lh):
    lh.write_tasks(QUEUE)
    text = 'Summarise "$(whoami)"; then stop'
    result = lh.loop("--prompt", text)
    assert result.returncode == 0, result.stderr
    [call] = lh.calls("claude")
    assert call["task"].startswith("adhoc-") and call["argv"][-1].endswith(f"Description: {text}")
    adhoc = next(t for t in lh.task_list() if t["name"].startswith("adhoc-"))
    assert (adhoc["status"], adhoc["source"], adhoc["description"]) == ("completed", "manual", text)
    assert lh.task("first-in-line")["status"] == "pending"


def test_task_and_prompt_exclude_each_other(lh):
    result = lh.loop("--task", "a", "--prompt", "b")
    assert result.returncode == 2 and "exclude each other" in result.stderr


# ---------------------------------------------------------------- a human's request is never dropped (issue 21)

SLOW = """
    tasks:
      - name: slow
        description: "Takes a while [fake:sleep=3]"
        status: pending
"""


def _wait_until_running(lh, proc, timeout=30):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c["task"] == "slow" for c in lh.calls("claude")):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the slow loop never started its task")


def test_prompt_waits_for_a_running_loop_then_runs(lh):
    lh.write_tasks(SLOW)
    slow = lh.popen()
    _wait_until_running(lh, slow)
    result = lh.loop("--prompt", "Do this after the slow one")
    slow.communicate(timeout=60)
    assert slow.returncode == 0
    assert result.returncode == 0, result.stderr
    assert "Waiting for the running task loop" in result.stderr
    assert [c["task"] for c in lh.calls("claude")][0] == "slow"
    adhoc = next(t for t in lh.task_list() if t["name"].startswith("adhoc-"))
    assert adhoc["status"] == "completed"


def test_no_wait_and_wait_timeout_exit_75_without_running(lh):
    lh.write_tasks(SLOW + """
      - name: other
        description: "Other"
        status: pending
    """)
    slow = lh.popen("--max-tasks", "1")
    _wait_until_running(lh, slow)
    no_wait = lh.loop("--task", "other", "--no-wait")
    short = lh.loop("--prompt", "anything", "--wait-timeout", "0.5")
    slow.communicate(timeout=60)
    for result in (no_wait, short):
        assert result.returncode == 75, result.stderr
        assert "not run" in result.stderr
    assert [c["task"] for c in lh.calls("claude")] == ["slow"]
    assert not any(t["name"].startswith("adhoc-") for t in lh.task_list())
    assert lh.task("other")["status"] == "pending"


def test_paused_agent_refuses_a_request_unless_forced(lh):
    lh.write_tasks(QUEUE)
    paused = lh.agent("pause", "--", "maintenance window")
    assert paused.returncode == 0, paused.stderr
    refused = lh.loop("--task", "first-in-line")
    assert refused.returncode == 75
    assert "paused" in refused.stderr and "maintenance window" in refused.stderr
    assert lh.calls("claude") == []
    forced = lh.loop("--task", "first-in-line", "--force")
    assert forced.returncode == 0, forced.stderr
    assert lh.task("first-in-line")["status"] == "completed"
    # the timer's run still respects the pause
    assert lh.loop().returncode == 0 and [c["task"] for c in lh.calls("claude")] == ["first-in-line"]
