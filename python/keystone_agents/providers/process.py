"""Run one provider process: own process group, output teed to the task log, timeout kills the group.

The child gets its own session (so a timeout can kill everything it started, grandchildren included) and
PR_SET_PDEATHSIG=SIGKILL (so it does not outlive a loop that was killed itself). The pgid is reported
through `on_spawn` before any output is read, so a later run can kill leftovers of a crashed one.

Stdin is /dev/null, or the prompt followed by EOF: a CLI that waits for input must see EOF, never hang. Without
an explicit `env` the child gets the allow-listed clean environment (providers/environment.py).

Exit record (`exit_record`): the caller (the task loop's exit journal) needs the fact "the provider finished" to
survive its own death at any moment. Then the provider is started through a tiny supervisor process
(providers/supervisor.py) that waits for it and appends the exit line to the journal itself (fsync'd) before it
exits; a loop killed between the provider's exit and its own bookkeeping no longer loses it. The provider's
argv, env, cwd and stdin are exactly what they are without the supervisor; its pgid is still the one reported.

Stall watchdog: besides the wall-clock `timeout`, a child whose stdout, stderr and watched transcript files
(`watch`: files or directories whose files the CLI writes as it works) have not grown or changed for
`stall_timeout` seconds is killed and reported `stalled`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

from keystone_agents.providers.environment import clean_env

MAX_KEEP = 4 * 1024 * 1024  # characters of each stream kept in memory for parsing (the log has all)


@dataclass
class ExitRecord:
    """Where the supervisor records the provider's exit: one JSON line `{**fields, "phase": "exited",
    "exit_code": N}` appended to `fd` (an O_APPEND descriptor the runner passes to it) and fsync'd."""
    fd: int
    fields: dict


@dataclass
class RunOptions:
    log_path: Path
    timeout: float
    kill_grace: float = 10.0
    env: dict[str, str] | None = None
    cwd: Path | None = None
    on_spawn: Callable[[int], None] | None = None
    echo: TextIO | None = None  # also copy output here (e.g. stderr for the journal)
    stall_timeout: float | None = None  # kill after this long without output (None: wall clock only)
    watch: list[Path] = field(default_factory=list)  # transcript files/directories that count as output
    # called with every stdout chunk as it arrives; a returned reason stops the process group (maxIterations)
    on_stdout: Callable[[str], str | None] | None = None
    # called with the exit code the moment the child is reaped, before its output is parsed or anything else is
    # done (the loop records it durably there: loop/journal.py); not called for a child we killed
    on_exit: Callable[[int], None] | None = None
    # called after `on_exit` once everything the child printed is in the task log (its pipes reached EOF)
    on_drained: Callable[[int], None] | None = None
    # start the provider through the supervisor, which appends its exit to this record (then `on_exit` is not
    # called: the record is already written); None: no supervisor, `on_exit` records it
    exit_record: ExitRecord | None = None
    heartbeat: float | None = None  # call on_heartbeat(elapsed seconds, output bytes) this often while running
    on_heartbeat: Callable[[float, int], None] | None = None


@dataclass
class ProcessResult:
    exit_code: int | None
    timed_out: bool
    duration_seconds: float
    stdout: str = ""
    stderr: str = ""
    stalled: bool = False  # killed by the stall watchdog (timed_out is then True too)
    stopped: str = ""  # why `on_stdout` stopped the process group ("" when it did not)
    extra: dict = field(default_factory=dict)


_PRCTL: list = []  # [libc prctl] or [None]: looked up in the parent, never imported in a forked child


def _prctl():
    """libc's prctl, loaded before any fork (importing in the child of a threaded process could deadlock)."""
    if not _PRCTL:
        try:
            import ctypes

            _PRCTL.append(ctypes.CDLL("libc.so.6", use_errno=True).prctl)
        except Exception:  # noqa: BLE001 - not Linux/glibc: the recorded pgid still lets recovery clean up
            _PRCTL.append(None)
    return _PRCTL[0]


def _pdeathsig() -> None:
    if _PRCTL and _PRCTL[0] is not None:
        _PRCTL[0](1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def kill_group(pgid: int, grace: float) -> None:
    """SIGTERM the group, wait up to `grace`, then SIGKILL whatever is left."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


SUPERVISOR = Path(__file__).with_name("supervisor.py")
_SUPERVISOR_BLOCKED = _SUPERVISOR_ORPHANED = None  # set from providers/supervisor.py before the first start


def _supervisor_setup() -> None:
    """In the supervisor, before exec: its signals blocked from the first instant (it takes them with
    sigtimedwait), and SIGUSR2 when the loop dies (PR_SET_PDEATHSIG) — informed, not killed. Without prctl
    the supervisor notices within seconds (it checks its parent)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _SUPERVISOR_BLOCKED)
    if _PRCTL and _PRCTL[0] is not None:
        _PRCTL[0](1, _SUPERVISOR_ORPHANED)  # PR_SET_PDEATHSIG


class _Supervisor:
    """The loop's side of providers/supervisor.py: start it, learn the provider's pid, read how it ended."""

    def __init__(self, proc: subprocess.Popen, status, streams):
        self.proc, self.status = proc, status
        self.stdout, self.stderr = streams  # the provider's output (the supervisor writes nothing there)

    @classmethod
    def start(cls, argv: list[str], stdin: str | None, env: dict[str, str], options: RunOptions):
        """(supervisor, provider pid) or (None, error message)."""
        import json

        from keystone_agents.providers import supervisor

        global _SUPERVISOR_BLOCKED, _SUPERVISOR_ORPHANED
        _SUPERVISOR_BLOCKED, _SUPERVISOR_ORPHANED = supervisor.BLOCKED, supervisor.ORPHANED
        _prctl()
        record = options.exit_record
        ctl_r, ctl_w = os.pipe()
        status_r, status_w = os.pipe()
        # the provider's stdout/stderr pipes: the supervisor holds their read ends too, to save what the loop
        # had not read yet if the loop dies after the provider exited
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(SUPERVISOR), str(ctl_r), str(status_w)],
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
                env={},  # the provider's environment goes over the pipe, untouched by the interpreter
                start_new_session=True,
                pass_fds=(ctl_r, status_w, record.fd, out_r, err_r),
                preexec_fn=_supervisor_setup,
            )
        except OSError as exc:
            for fd in (ctl_w, status_r, out_r, err_r):
                os.close(fd)
            return None, f"cannot start the provider's supervisor: {exc.strerror or exc}"
        finally:
            for fd in (ctl_r, status_w, out_w, err_w):
                os.close(fd)
        status = os.fdopen(status_r, "rb")
        streams = os.fdopen(out_r, "rb"), os.fdopen(err_r, "rb")
        # str, bytes and paths as Popen takes them; lone surrogates (undecodable bytes) survive JSON both ways
        config = {"argv": [os.fsdecode(a) for a in argv],
                  "env": {os.fsdecode(k): os.fsdecode(v) for k, v in env.items()},
                  "cwd": os.fsdecode(options.cwd) if options.cwd is not None else None,
                  "parent": os.getpid(), "deadline": options.timeout + options.kill_grace + 60,
                  "journal_fd": record.fd, "fields": record.fields, "pipes": [out_r, err_r],
                  "log_path": os.fsdecode(options.log_path)}
        try:
            with os.fdopen(ctl_w, "wb") as handle:
                handle.write(json.dumps(config, default=str).encode("utf-8"))
        except OSError:
            pass  # it died at once: its status says nothing, handled below
        first = _status_line(status.readline())
        if "pid" in first:
            return cls(proc, status, streams), first["pid"]
        status.close()
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait()
        os.set_blocking(err_r, False)  # what the supervisor itself printed (a broken interpreter), if anything
        try:
            err = streams[1].read() or b""
        except OSError:
            err = b""
        for stream in streams:
            stream.close()
        if first.get("not_started"):  # what Popen said in the supervisor: the message the runner gives itself
            return None, f"cannot start {argv[0]!r}: {first.get('error')}"
        why = first.get("error") or err.decode("utf-8", "replace").strip()[-300:] or f"exit {proc.returncode}"
        return None, f"cannot start the provider's supervisor: {why}"

    def killing(self) -> None:
        """The loop kills the provider itself (timeout, stall): that end is not a finished execution."""
        from keystone_agents.providers import supervisor

        try:
            self.proc.send_signal(supervisor.KILLING)
        except OSError:
            pass

    def ended(self) -> tuple[int | None, bool]:
        """After the supervisor exited: the provider's exit code, and whether the exit is settled — recorded by
        the supervisor, or not a finished execution (it was killed: by us, at its deadline, or orphaned). Not
        settled (the supervisor could not write, or died itself): the caller's `on_exit` records it."""
        final: dict = {}
        try:
            for line in self.status.read().splitlines():
                final = _status_line(line) or final
        except OSError:
            pass
        self.status.close()
        if "exit" in final:
            return final["exit"], bool(final.get("recorded") or final.get("stopped_by"))
        return self.proc.returncode, False


def _status_line(raw: bytes) -> dict:
    import json

    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def run_process(argv: list[str], stdin: str | None, options: RunOptions) -> ProcessResult:
    options.log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(options.log_path, "a", encoding="utf-8", errors="replace")
    lock = threading.Lock()
    started = time.monotonic()
    env = options.env if options.env is not None else clean_env()
    supervised = None
    if options.exit_record is not None and sys.executable:  # no interpreter path: `on_exit` records it
        supervised, spawned = _Supervisor.start(argv, stdin, env, options)
        if supervised is None:
            log.write(spawned + "\n")
            log.close()
            return ProcessResult(exit_code=127, timed_out=False, duration_seconds=0.0, stderr=spawned + "\n")
        proc, pgid = supervised.proc, spawned  # the provider leads its own group (its own session)
    else:
        _prctl()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=options.cwd,
                start_new_session=True,
                preexec_fn=_pdeathsig,
            )
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in argv or the environment
            message = f"cannot start {argv[0]!r}: {getattr(exc, 'strerror', None) or exc}"
            log.write(message + "\n")
            log.close()
            return ProcessResult(exit_code=127, timed_out=False, duration_seconds=0.0, stderr=message + "\n")
        pgid = proc.pid  # start_new_session: the child leads its own group
    if options.on_spawn:
        options.on_spawn(pgid)
    buffers: dict[str, list[str]] = {"stdout": [], "stderr": []}
    sizes = {"stdout": 0, "stderr": 0}
    activity = [time.monotonic()]  # monotonic time of the last output seen
    stopped: list[str] = []

    def stop(why: str) -> None:
        with lock:
            log.write(f"\n[keystone-agent] {why}: killing process group {pgid}\n")
            log.flush()
        stopped.append(why)
        threading.Thread(target=kill_group, args=(pgid, options.kill_grace), daemon=True).start()

    total_bytes = [0]  # bytes of output so far (heartbeat lines report it)

    def pump(stream, key: str) -> None:
        for chunk in iter(lambda: stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536), b""):
            text = chunk.decode("utf-8", errors="replace")
            with lock:
                total_bytes[0] += len(chunk)
                log.write(text)
                log.flush()
                if options.echo is not None:
                    try:
                        options.echo.write(text)
                    except (OSError, ValueError):
                        pass
                buffers[key].append(text)
                activity[0] = time.monotonic()
                sizes[key] += len(text)
                while sizes[key] > MAX_KEEP and len(buffers[key]) > 1:
                    sizes[key] -= len(buffers[key].pop(0))
            if key == "stdout" and options.on_stdout is not None and not stopped:
                why = options.on_stdout(text)
                if why:
                    stop(why)
        stream.close()

    out, err = (supervised.stdout, supervised.stderr) if supervised else (proc.stdout, proc.stderr)
    threads = [
        threading.Thread(target=pump, args=(out, "stdout"), daemon=True),
        threading.Thread(target=pump, args=(err, "stderr"), daemon=True),
    ]
    for thread in threads:
        thread.start()
    if stdin is not None:
        def feed() -> None:
            try:
                proc.stdin.write(stdin.encode("utf-8"))
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass

        threading.Thread(target=feed, daemon=True).start()
    timed_out = stalled = False
    deadline = started + options.timeout
    stall = options.stall_timeout
    poll = min(1.0, stall / 10) if stall else 1.0
    # A blocking waitpid in its own thread sees the exit at once (Popen.wait(timeout) polls every 50 ms). With a
    # supervisor, what it reaps is the supervisor, which has already recorded the provider's exit; without one,
    # the gap between the provider's exit and `on_exit` is what a crash of this process could lose.
    exited = threading.Event()
    killing = threading.Event()

    def notify(callback, code) -> None:
        if callback is not None and not killing.is_set():
            try:
                callback(code)
            except Exception:  # noqa: BLE001 - the caller records the result again after parsing
                pass

    exit_code: list[int | None] = [None]

    def reap() -> None:
        proc.wait()
        exit_code[0], settled = supervised.ended() if supervised else (proc.returncode, False)
        if not settled:
            notify(options.on_exit, exit_code[0])
        exited.set()
        for thread in threads:  # EOF once the child and whatever it left running have closed the pipes
            thread.join()
        notify(options.on_drained, exit_code[0])

    reaper = threading.Thread(target=reap, daemon=True)
    # unsupervised, the reaper must get the GIL at once when the child exits (default switch interval: 5 ms)
    switch_interval = sys.getswitchinterval()
    if supervised is None and options.on_exit is not None:
        sys.setswitchinterval(0.0005)
    reaper.start()
    beat = options.heartbeat if options.on_heartbeat else None
    if beat:
        poll = min(poll, beat)
    next_beat = started + beat if beat else float("inf")
    while True:
        if exited.wait(timeout=max(0.0, min(poll, deadline - time.monotonic()))):
            break
        now = time.monotonic()
        if now >= next_beat:
            next_beat += beat
            with lock:
                size = total_bytes[0]
            try:
                options.on_heartbeat(now - started, size)
            except Exception:  # noqa: BLE001 - a display problem must not stop the task
                pass
        if now >= deadline:
            timed_out, why = True, f"timeout after {options.timeout:g}s"
        elif stall and now - activity[0] >= stall:
            touched = _last_change(options.watch)  # looked at only when the pipes were quiet for long
            if touched is not None:
                with lock:
                    activity[0] = max(activity[0], now - (time.time() - touched))
            if now - activity[0] >= stall:
                timed_out = stalled = True
                why = f"stalled: no output for {stall:g}s"
        if timed_out:
            with lock:
                log.write(f"\n[keystone-agent] {why}: killing process group {pgid}\n")
                log.flush()
            killing.set()
            if supervised:
                supervised.killing()
            kill_group(pgid, options.kill_grace)
            exited.wait()
            break
    # Whatever the provider left running in its group is done too (it holds our pipes open otherwise).
    if group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for thread in threads:
        thread.join(timeout=5)
    reaper.join(timeout=5)
    sys.setswitchinterval(switch_interval)
    log.close()
    return ProcessResult(
        exit_code=exit_code[0],
        timed_out=timed_out,
        duration_seconds=time.monotonic() - started,
        stdout="".join(buffers["stdout"]),
        stderr="".join(buffers["stderr"]),
        stalled=stalled,
        stopped=stopped[0] if stopped else "",
    )


def _last_change(paths: list[Path]) -> float | None:
    """The newest mtime (Unix time) among `paths` and the files directly inside those that are directories."""
    newest = None
    for path in paths:
        try:
            if path.is_dir():
                with os.scandir(path) as entries:
                    times = [e.stat().st_mtime for e in entries if e.is_file()]
            else:
                times = [path.stat().st_mtime]
        except OSError:
            continue
        if times and (newest is None or max(times) > newest):
            newest = max(times)
    return newest
