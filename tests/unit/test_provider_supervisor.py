"""The provider's supervisor (providers/supervisor.py): it records the provider's exit in the exit journal itself,
so the record does not depend on the loop being alive or scheduled; it never leaves a provider running after
the loop died; and the provider sees exactly the argv, environment, working directory and stdin it sees
without it."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keystone_agents.loop import journal
from keystone_agents.providers.process import ExitRecord, RunOptions, group_alive, run_process

# A stand-in for the task loop: runs one provider through the supervisor with an exit record, reports the
# provider's pgid the way the loop does (on_spawn), and is then frozen or killed by the test.
LOOP = """
import json, os, sys
from pathlib import Path
from keystone_agents.providers.process import ExitRecord, RunOptions, run_process
d = Path(sys.argv[1])
fd = os.open(d / "journal", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
run_process(json.loads(sys.argv[2]), None, RunOptions(
    log_path=d / "task.log", timeout=120, exit_record=ExitRecord(fd, {"task": "t", "run_id": "r1"}),
    on_spawn=lambda pgid: (d / "pgid").write_text(str(pgid))))
"""


def _wait_for(predicate, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _start_loop(tmp_path: Path, provider: list[str]) -> tuple[subprocess.Popen, int]:
    loop = subprocess.Popen([sys.executable, "-c", LOOP, str(tmp_path), json.dumps(provider)], cwd=tmp_path)
    _wait_for(lambda: (tmp_path / "pgid").exists() and (tmp_path / "pgid").read_text(), what="the provider's pgid")
    return loop, int((tmp_path / "pgid").read_text())


def test_the_exit_is_recorded_while_the_loop_cannot_run_and_survives_its_death(tmp_path):
    # the provider prints 50 KB the frozen loop never reads: the supervisor saves it into the task log
    provider = ["/bin/sh", "-c", "while [ ! -e go ]; do sleep 0.01; done; head -c 50000 /dev/zero | tr '\\0' x; "
                "echo; echo 'the end' >&2; exit 7"]
    loop, pgid = _start_loop(tmp_path, provider)
    try:
        os.kill(loop.pid, signal.SIGSTOP)  # the loop gets no CPU at all from here on
        (tmp_path / "go").touch()
        _wait_for(lambda: not group_alive(pgid), what="the provider's exit")
        _wait_for(lambda: _records(tmp_path / "journal"), what="the supervisor's journal line")
        assert "x" * 100 not in (tmp_path / "task.log").read_text()  # the loop read nothing of it
        os.kill(loop.pid, signal.SIGKILL)
        _wait_for(lambda: "the end" in (tmp_path / "task.log").read_text(), what="the output saved")
    finally:
        loop.kill()
        loop.wait(timeout=30)
    # the journal stays at `exited` (a chunk a dying loop had read but not written could be missing)
    assert _records(tmp_path / "journal") == [{"task": "t", "run_id": "r1", "phase": "exited", "exit_code": 7}]
    log = (tmp_path / "task.log").read_text()
    assert "x" * 50000 + "\n" in log and "the end\n" in log


def test_a_provider_still_running_when_the_loop_dies_is_killed_with_its_group_and_not_recorded(tmp_path):
    # a grandchild in the provider's group must go too (the supervisor kills the group, not only the leader),
    # once the provider has had its 2 s to finish
    provider = ["/bin/sh", "-c", "sleep 300 & echo $! > grandchild; touch ready; wait"]
    loop, pgid = _start_loop(tmp_path, provider)
    _wait_for(lambda: (tmp_path / "ready").exists(), what="the provider")
    grandchild = int((tmp_path / "grandchild").read_text())
    loop.kill()
    loop.wait(timeout=30)
    killed_at = time.monotonic()
    _wait_for(lambda: not group_alive(pgid), timeout=10, what="the provider group to be killed")
    assert time.monotonic() - killed_at < 8
    with pytest.raises(ProcessLookupError):
        os.kill(grandchild, 0)
    assert _records(tmp_path / "journal") == []  # killed, not finished: the next run retries the task


def test_the_supervisor_writes_the_record_and_on_exit_is_not_called_twice(tmp_path):
    fd = os.open(tmp_path / "journal", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    exits, drained = [], []
    result = run_process(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], None, RunOptions(
        log_path=tmp_path / "task.log", timeout=30, exit_record=ExitRecord(fd, {"task": "t"}),
        on_exit=exits.append, on_drained=drained.append))
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert _records(tmp_path / "journal") == [{"task": "t", "phase": "exited", "exit_code": 3}]
    assert exits == [] and drained == [3]
    assert (tmp_path / "task.log").read_text().count("out\n") == 1


def test_a_provider_the_loop_kills_on_timeout_is_not_recorded(tmp_path):
    fd = os.open(tmp_path / "journal", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    exits = []
    result = run_process(["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 60 & wait"], None, RunOptions(
        log_path=tmp_path / "task.log", timeout=3, kill_grace=5, exit_record=ExitRecord(fd, {"task": "t"}),
        on_exit=exits.append))
    assert result.timed_out and result.exit_code == 0  # it ended gracefully on our SIGTERM: still not finished
    assert _records(tmp_path / "journal") == [] and exits == []


def test_a_provider_that_cannot_start_gives_the_same_error_as_without_the_supervisor(tmp_path):
    fd = os.open(tmp_path / "journal", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    options = RunOptions(log_path=tmp_path / "task.log", timeout=10, env={"PATH": str(tmp_path)})
    plain = run_process(["no-such-provider", "-p"], None, options)
    supervised = run_process(["no-such-provider", "-p"], None,
                             RunOptions(**{**options.__dict__, "exit_record": ExitRecord(fd, {"task": "t"})}))
    assert plain.exit_code == supervised.exit_code == 127
    assert plain.stderr == supervised.stderr == "cannot start 'no-such-provider': No such file or directory\n"
    assert _records(tmp_path / "journal") == []


PROBE = """
import hashlib, json, os, sys
data = sys.stdin.buffer.read()
signals = open("/proc/self/status").read().split("SigBlk:")[1].split()[0]
print(json.dumps({"argv": sys.argv, "env": dict(os.environ), "cwd": os.getcwd(), "stdin": len(data),
                  "sha": hashlib.sha256(data).hexdigest(), "blocked": signals,
                  "ignored": open("/proc/self/status").read().split("SigIgn:")[1].split()[0]}))
"""


def test_the_provider_sees_the_same_argv_env_cwd_and_stdin_with_and_without_the_supervisor(tmp_path):
    # a prompt over 100 KiB goes on stdin (docs/untrusted-input.md); argv with what a shell would interpret
    prompt = "Prüfe $(rm -rf /) `id` \"quoted\" 'single' ; | & \n" * 4000
    argv = [sys.executable, "-c", PROBE, "--flag", "a b", "$HOME", "line\nbreak", "", tmp_path / "a path"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C", "KEYSTONE_TASK_NAME": "t 1",
           "EMPTY": "", "UNICODE": "ü€"}
    fd = os.open(tmp_path / "journal", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    seen = []
    for record in (None, ExitRecord(fd, {"task": "t"})):
        result = run_process(argv, prompt, RunOptions(log_path=tmp_path / "task.log", timeout=60, env=env,
                                                      cwd=tmp_path, exit_record=record))
        assert result.exit_code == 0, result.stderr
        seen.append(json.loads(result.stdout))
    plain, supervised = seen
    assert supervised == plain
    assert supervised["stdin"] == len(prompt.encode()) > 100 * 1024
    assert supervised["sha"] == hashlib.sha256(prompt.encode()).hexdigest()
    assert supervised["argv"][1:] == [str(a) for a in argv[3:]] and supervised["cwd"] == str(tmp_path)
    assert supervised["blocked"] == "0" * 16  # the supervisor's blocked signals are not inherited
    assert len(_records(tmp_path / "journal")) == 1


def test_recovery_waits_while_a_dead_runs_writer_holds_the_journal(tmp_path):
    exit_journal = journal.Journal(tmp_path, {"task": "t"}).open()
    holder = subprocess.Popen(["sleep", "30"], pass_fds=(exit_journal._fd,))
    exit_journal.close()  # the loop is gone; its supervisor (here: `sleep`) still shares the lock
    try:
        assert journal.wait_for_writers(tmp_path, timeout=0.3) is False
    finally:
        holder.kill()
        holder.wait()
    assert journal.wait_for_writers(tmp_path, timeout=5) is True


def test_a_provider_that_exits_just_after_the_loop_died_is_recorded(tmp_path):
    # its work is done when the loop is killed; it exits a moment later (a busy machine): finished, recorded
    provider = ["/bin/sh", "-c", "touch ready; while [ ! -e go ]; do sleep 0.01; done; sleep 0.3; exit 4"]
    loop, pgid = _start_loop(tmp_path, provider)
    _wait_for(lambda: (tmp_path / "ready").exists(), what="the provider")
    loop.kill()
    loop.wait(timeout=30)
    (tmp_path / "go").touch()
    _wait_for(lambda: _records(tmp_path / "journal"), what="the supervisor's journal line")
    assert _records(tmp_path / "journal")[0] == {"task": "t", "run_id": "r1", "phase": "exited", "exit_code": 4}
