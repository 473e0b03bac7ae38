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
    ("no-such-task", "task 'no-such-task' is not in TASKS.yaml"),
])
def test_task_that_cannot_run_is_an_error(lh, name, message):
    lh.write_tasks(QUEUE)
    result = lh.loop("--task", name)
    assert result.returncode == 1
    assert any(message in e.get("msg", "") for e in events(result.stderr, "log"))
    assert lh.calls("claude") == []


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
