"""The provider's supervisor: a tiny process between the loop and the provider that records the provider's exit.

Started by the process runner (providers/process.py) as `python -I -S supervisor.py CTL STATUS` when the caller
asks for an exit record (the task loop's exit journal, loop/journal.py). It is a separate process so that the
fact "the provider finished" survives the loop being killed at any moment: the loop may die between the
provider's exit and its own journal line (a thread it cannot make run in time on a busy machine), the
supervisor does not die with it.

What it does, in order:

1. reads its instructions (JSON) from the CTL pipe: the provider's argv, env, cwd, the loop's pid, the journal's
   file descriptor (inherited, opened O_APPEND and flock'd by the loop), the fields of the journal line, the
   read ends of the provider's stdout/stderr pipes (inherited; the loop reads them) and the task log's path;
2. starts the provider with the very `subprocess.Popen` call the runner makes without a supervisor (same argv
   and PATH lookup, same env, same cwd, its own session, PR_SET_PDEATHSIG=SIGKILL tied to the supervisor). The
   provider inherits the supervisor's stdin, stdout and stderr — the loop's pipes — unchanged, so a prompt on
   stdin (over 100 KiB, docs/untrusted-input.md) goes straight from the loop to the provider; the supervisor
   then closes its own copies (a provider that stops reading its stdin still gives the loop EPIPE, and the
   loop's readers see EOF when the provider and what it left running close theirs);
3. reports `{"pid": N}` (or `{"error": …}` when the provider cannot start) on the STATUS pipe;
4. waits, with every signal that concerns it blocked and taken synchronously (`sigtimedwait`), for one of:
   - SIGCHLD: the provider exited — it appends `{…fields, "phase": "exited", "exit_code": N}` to the journal
     and fsyncs it, then stays (at most 5 s, killing what the provider left in its group) until the loop has
     read everything the provider printed: it holds the read ends of the provider's stdout and stderr pipes too
     and watches how much is unread (FIONREAD). If the loop dies before, it appends the unread rest to the
     task log itself, so recovery judges the execution from its output (the journal stays at `exited`: what
     the loop had read but not yet written may be missing, and recovery treats the log accordingly).
     Then it reports `{"exit": N, "recorded": true}` and exits;
   - SIGUSR1 from the loop: the loop is killing the provider itself (timeout, stall); its end is then not a
     finished execution and is not recorded;
   - SIGUSR2, its PR_SET_PDEATHSIG: the loop died. A provider that had already exited, or exits within 2 s
     (ORPHAN_GRACE: one whose work is done and that is only being descheduled on a busy machine), is
     recorded — that is the point; one still running then is killed (SIGKILL to its process group, as the
     provider's own PDEATHSIG did at once before the supervisor existed) and not recorded, so the next run
     retries the task;
   - its hard deadline (the runner's timeout + kill grace + 60 s): the provider group is killed, not recorded.
   SIGTERM, SIGINT and SIGHUP are blocked, not acted on: `systemctl stop` signals the whole unit, the provider
   gets its own SIGTERM and may finish gracefully, and the supervisor stays to record how it ended.

The supervisor never writes to stdout or stderr (they are the provider's output, teed to the task log); any
problem of its own goes to the STATUS pipe. It uses the standard library only (`-I -S`: no site-packages, no
PYTHON* variables), and the provider's environment is passed explicitly, so the interpreter's start-up (e.g.
C-locale coercion) cannot change what the provider sees.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import struct
import subprocess
import sys
import termios
import time

# signals blocked in the supervisor from its first instruction on (the runner blocks them in the child before
# exec, so there is no moment at which the loop's death would kill the supervisor instead of informing it)
KILLING = signal.SIGUSR1  # from the loop: it kills the provider (timeout/stall); do not record that end
ORPHANED = signal.SIGUSR2  # PR_SET_PDEATHSIG: the loop died
WAITED = (signal.SIGCHLD, KILLING, ORPHANED)
BLOCKED = (*WAITED, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PARENT_CHECK = 5.0  # seconds between checks that the loop still lives (PDEATHSIG is the fast path)
DRAIN_WAIT = 5.0  # seconds it waits, after recording the exit, for the loop to read the provider's output
ORPHAN_GRACE = 2.0  # seconds a provider may still take to exit after the loop died, before it is killed


def _libc_prctl():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except Exception:  # noqa: BLE001 - not glibc: the runner's recorded pgid still lets recovery clean up
        return None


def _child_setup(prctl) -> None:
    """In the provider, before exec: the signal mask it would have had without us, and death with us."""
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    if prctl is not None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _reap(pid: int) -> int | None:
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return -signal.SIGKILL  # cannot happen (only we reap it); treat as killed, never as finished
    return os.waitstatus_to_exitcode(status) if done else None


def supervise(config: dict, report) -> int:
    parent = config["parent"]
    signal.pthread_sigmask(signal.SIG_BLOCK, BLOCKED)
    if os.getppid() != parent:  # the loop died before we were started: run nothing
        report({"error": "the task loop exited before the provider could be started"})
        return 1
    prctl = _libc_prctl()
    try:
        child = subprocess.Popen(config["argv"], env=config["env"], cwd=config["cwd"], start_new_session=True,
                                 preexec_fn=lambda: _child_setup(prctl))
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in argv or the environment
        report({"error": getattr(exc, "strerror", None) or str(exc), "not_started": True})
        return 1
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    report({"pid": child.pid})
    deadline = time.monotonic() + config["deadline"] if config.get("deadline") else None
    stopped_by = None  # "loop" (SIGUSR1), "orphaned" (the loop died), "deadline"
    orphaned = False
    while True:
        code = _reap(child.pid)
        if code is not None:
            break
        now = time.monotonic()
        if deadline is not None and stopped_by is None and now >= deadline:
            stopped_by = "deadline" if not orphaned else "orphaned"
            _kill_group(child.pid)
        wait = PARENT_CHECK
        if deadline is not None and stopped_by is None:
            wait = max(0.0, min(wait, deadline - now))
        info = signal.sigtimedwait(WAITED, wait)
        signo = info.si_signo if info is not None else None
        if signo == KILLING:
            stopped_by = stopped_by or "loop"
        elif signo != signal.SIGCHLD and not orphaned and (signo == ORPHANED or os.getppid() != parent):
            # the loop died: a provider that is just finishing (its work done, not yet exited) gets a
            # moment to exit and be recorded; then it is killed, and not recorded
            orphaned = True
            if stopped_by is None:
                deadline = time.monotonic() + ORPHAN_GRACE if deadline is None else min(
                    deadline, time.monotonic() + ORPHAN_GRACE)
            else:
                _kill_group(child.pid)
    finished = stopped_by is None or (stopped_by != "loop" and code != -signal.SIGKILL)
    orphaned = orphaned or os.getppid() != parent
    if orphaned:
        _kill_group(child.pid)  # what it left running: nobody is left to wait for it
    recorded, error = False, None
    journal_fd = config.get("journal_fd")
    if finished and journal_fd is not None:
        try:
            _record(journal_fd, config.get("fields", {}), "exited", code)
            recorded = True
        except OSError as exc:
            error = f"cannot record the provider's exit: {exc.strerror or exc}"
    pipes = config.get("pipes") or []
    if recorded and pipes:
        if not orphaned:  # stay until the loop has read all the provider printed, or died trying
            _kill_group(child.pid)  # what it left running (the loop does the same when it sees us exit)
            end = time.monotonic() + DRAIN_WAIT
            while _unread(pipes) and time.monotonic() < end:
                if signal.sigtimedwait((ORPHANED,), 0.005) is not None or os.getppid() != parent:
                    orphaned = True
                    break
        if orphaned and config.get("log_path"):
            # not recorded as `drained`: a chunk the loop had read but not yet written when it died is lost, so
            # recovery must still treat the log as possibly incomplete (an exit 0 without evidence is blocked
            # for a human, never judged "no evidence" and retried)
            try:
                _save_output(pipes, config["log_path"])
            except OSError as exc:
                error = f"cannot save the provider's output: {exc.strerror or exc}"
    report({"exit": code, "recorded": recorded, "stopped_by": stopped_by, **({"error": error} if error else {})})
    return 0


def _record(fd: int, fields: dict, phase: str, code: int) -> None:
    line = json.dumps({**fields, "phase": phase, "exit_code": code}, sort_keys=True, default=str) + "\n"
    os.write(fd, line.encode("utf-8"))  # one append: a later run sees it from here on
    os.fsync(fd)


def _unread(fds: list[int]) -> int:
    """Bytes waiting in these pipes (FIONREAD): what the loop has not read yet."""
    total = 0
    for fd in fds:
        try:
            total += struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        except OSError:
            pass
    return total


def _save_output(fds: list[int], log_path: str) -> None:
    """The loop died before reading all the provider printed: append the rest to the task log (fsync'd), so
    recovery judges the execution from all of its output. Reads only what is there (never blocks on a pipe
    that something escaped from the group still holds open)."""
    with open(log_path, "ab") as log:
        for fd in fds:
            while (size := _unread([fd])) > 0:
                chunk = os.read(fd, size)
                if not chunk:
                    break
                log.write(chunk)
        log.flush()
        os.fsync(log.fileno())


def main(argv: list[str]) -> int:
    ctl, status = int(argv[1]), int(argv[2])
    out = os.fdopen(status, "w", encoding="utf-8", buffering=1)

    def report(message: dict) -> None:
        try:
            out.write(json.dumps(message) + "\n")
            out.flush()
        except (OSError, ValueError):
            pass  # the loop is gone: the journal is what counts

    try:
        with os.fdopen(ctl, "rb") as handle:
            config = json.loads(handle.read())
        return supervise(config, report)
    except Exception as exc:  # noqa: BLE001 - never a traceback into the provider's output
        report({"error": f"supervisor: {type(exc).__name__}: {exc}"})
        return 70


if __name__ == "__main__":
    sys.exit(main(sys.argv))
