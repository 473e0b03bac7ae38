"""`validate`, `loop` and `schedule`, run as the timers and a human run them (real subprocesses), over the
hand-made hostile corpus (tests/support/hostile.py): no traceback, a documented exit code, and nothing that
had to be kept is lost — a rejected TASKS.yaml is not written, invalid entries come back byte for byte.

Documented exit codes: validate 0 ok / 1 problems (docs/cli.md); loop 0 / 1 error / 3 degraded
(docs/task-loop.md); schedule 0 / 1 (docs/scheduler.md)."""

from __future__ import annotations

import subprocess

import pytest

from keystone_agents.problems import ValidationFailed
from keystone_agents.taskfile import TaskFile
from tests.conftest import installed_script
from tests.support import hostile
from tests.support.loop import make_home

GOOD_TASKS = "tasks:\n  - name: keep-me\n    description: a valid task\n    status: pending\n"
GOOD_SCHEDULES = "schedules:\n  - name: daily-one\n    description: every day\n    schedule: daily\n"
# the corpus files that are hostile to the lenient readers in distinct ways
ARCHIVE_CASES = ["invalid-utf8", "tasks-not-a-list", "alias-bomb", "tag-python", "status-list"]


def run(lh, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([installed_script("keystone-agent"), *args, "--home", str(lh.home)], capture_output=True,
                          text=True, env=lh.env(), timeout=120)


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]


@pytest.mark.parametrize("name", sorted(hostile.CORPUS))
def test_validate_loop_and_schedule_survive_a_hostile_queue(tmp_path, name):
    lh = make_home(tmp_path)
    data = hostile.CORPUS[name]
    for file in ("TASKS.yaml", "SCHEDULES.yaml", "ISSUES.yaml"):
        (lh.home / file).write_bytes(data)
    try:
        before = TaskFile.load(lh.tasks)
        invalid = [e.source for e in before.entries if not e.valid]
        loadable = True
    except ValidationFailed:
        invalid, loadable = [], False

    result = run(lh, "validate")
    no_traceback(result)
    assert result.returncode == (0 if name == "empty" else 1), result.stdout + result.stderr
    if not loadable or before.problems:
        assert f"{lh.tasks}:" in result.stdout

    result = run(lh, "loop", "--max-tasks", "1")
    no_traceback(result)
    assert result.returncode in (0, 1, 3), result.stderr[-2000:]
    if not loadable:
        assert result.returncode == 1
        assert lh.tasks.read_bytes() == data  # a rejected file is never written
    else:
        text = lh.tasks.read_text(encoding="utf-8")
        for source in invalid:
            assert source in text  # invalid entries byte for byte
        TaskFile.load(lh.tasks)  # still loads

    result = run(lh, "schedule", "--now", "2026-03-02T08:00:00Z")
    no_traceback(result)
    assert result.returncode in (0, 1), result.stderr[-2000:]


@pytest.mark.parametrize("name", ARCHIVE_CASES)
def test_a_hostile_archive_or_projects_file_degrades_one_run_step(tmp_path, name):
    lh = make_home(tmp_path)
    data = hostile.CORPUS[name]
    lh.tasks.write_text(GOOD_TASKS)
    (lh.home / "TASKS.archive.yaml").write_bytes(data)
    (lh.home / "PROJECTS.yaml").write_bytes(data)
    (lh.home / "SCHEDULES.yaml").write_text(GOOD_SCHEDULES)

    result = run(lh, "loop", "--max-tasks", "1")
    no_traceback(result)
    assert result.returncode in (0, 3), result.stderr[-2000:]  # the valid task still ran
    assert lh.task("keep-me")["status"] != "pending"
    assert (lh.home / "TASKS.archive.yaml").read_bytes() == data

    result = run(lh, "schedule", "--now", "2026-03-02T08:00:00Z")
    no_traceback(result)
    archive_readable = name in ("far-future", "status-list")
    assert result.returncode == (0 if archive_readable else 1), result.stdout + result.stderr
    if not archive_readable:  # no dedup against the archive possible: nothing created rather than duplicates
        assert "cannot read for deduplication" in result.stderr
        assert "daily-one" not in lh.tasks.read_text()


def test_a_never_firing_cron_does_not_stop_the_other_schedules(tmp_path):
    lh = make_home(tmp_path)
    (lh.home / "SCHEDULES.yaml").write_bytes(hostile.CORPUS["never-firing-cron"])
    result = run(lh, "validate")
    assert result.returncode == 1
    assert "SCHEDULES.yaml:4: schedules[0].schedule: '0 0 30 2 *' never fires" in result.stdout
    result = run(lh, "schedule", "--now", "2026-03-02T08:00:00Z")
    no_traceback(result)
    assert result.returncode == 1
    assert "never fires" in result.stderr
    assert "daily-one-2026-03-02" in lh.tasks.read_text()
