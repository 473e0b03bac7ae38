"""Run Python code as another real Linux user, in-process: `as_user(user, fn, *args)` forks, the child
becomes that user (setgroups/setresgid/setresuid) and runs `fn`; what the kernel reports to a unix socket
peer (SO_PEERCRED) or to PostgreSQL's peer authentication is that user. The result (or the exception) comes
back pickled. Users come from tests/support/realhost.py.

The child runs the test interpreter's already-imported modules: a module it imports afresh must be readable by
that user (the interpreter may live under /root), so import what it needs in the test process first.
"""

from __future__ import annotations

import os
import pickle
import pwd
import traceback


class ChildFailed(Exception):
    pass


def as_user(user: str, fn, *args, **kwargs):
    """fn(*args, **kwargs) in a forked child running as `user`; re-raises its exception in the parent."""
    entry = pwd.getpwnam(user)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        try:
            os.setgroups([])
            os.setresgid(entry.pw_gid, entry.pw_gid, entry.pw_gid)
            os.setresuid(entry.pw_uid, entry.pw_uid, entry.pw_uid)
            os.environ.update({"HOME": entry.pw_dir, "USER": user, "LOGNAME": user})
            try:
                payload = ("ok", fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - carried to the parent
                payload = ("error", exc, traceback.format_exc())
            try:
                data = pickle.dumps(payload)
            except Exception as exc:  # noqa: BLE001
                data = pickle.dumps(("error", ChildFailed(f"unpicklable result: {exc}\n{payload[-1]}"), ""))
            with os.fdopen(write_fd, "wb") as out:
                out.write(data)
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as inp:
        data = inp.read()
    os.waitpid(pid, 0)
    if not data:
        raise ChildFailed(f"the child running as {user} died without an answer")
    payload = pickle.loads(data)
    if payload[0] == "ok":
        return payload[1]
    exc = payload[1]
    exc.child_traceback = payload[2]
    raise exc
