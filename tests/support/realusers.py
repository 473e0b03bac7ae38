"""Real Linux users for multi-user tests (comms between agents): created with useradd, unique per test session
(random suffix: other test runs on this machine run in parallel), deleted at teardown.

`as_user(user, fn, *args)` runs `fn` in a forked child that has become that user (setgroups/setresgid/
setresuid): what the kernel reports to a unix socket peer (SO_PEERCRED) or to PostgreSQL's peer
authentication is that user. The result (or the exception) comes back pickled.
"""

from __future__ import annotations

import os
import pickle
import pwd
import secrets
import shutil
import subprocess
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path


class Unavailable(Exception):
    """Real users cannot be created here (not root, no useradd)."""


@dataclass
class RealUsers:
    prefix: str
    root: Path  # a world-traversable scratch directory (0755) for homes, sockets, databases
    users: dict[str, str] = field(default_factory=dict)  # key → user name

    @classmethod
    def create(cls, keys: list[str]) -> "RealUsers":
        if os.geteuid() != 0:
            raise Unavailable("real-user tests need root (useradd, setuid)")
        if not shutil.which("useradd"):
            raise Unavailable("useradd is not installed")
        prefix = "ks" + secrets.token_hex(3)
        root = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir="/tmp"))
        root.chmod(0o755)
        made = cls(prefix, root)
        try:
            for key in keys:
                made.add(key)
        except BaseException:
            made.cleanup()
            raise
        return made

    def add(self, key: str) -> str:
        name = f"{self.prefix}-{key}"[:32]
        home = self.root / "home" / key
        home.parent.mkdir(parents=True, exist_ok=True)
        home.parent.chmod(0o755)
        subprocess.run(["useradd", "-M", "-N", "-d", str(home), "-s", "/bin/sh", name], check=True,
                       capture_output=True)
        self.users[key] = name
        home.mkdir(mode=0o700)
        shutil.chown(home, name, "nogroup" if _group_exists("nogroup") else None)
        return name

    def __getitem__(self, key: str) -> str:
        return self.users[key]

    def uid(self, key: str) -> int:
        return pwd.getpwnam(self.users[key]).pw_uid

    def home(self, key: str) -> Path:
        return self.root / "home" / key

    def cleanup(self) -> None:
        for name in self.users.values():
            subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
            subprocess.run(["userdel", "-f", name], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def as_user(self, key: str, fn, *args, **kwargs):
        return as_user(self.users[key], fn, *args, **kwargs)

    def runuser(self, key: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """Run argv as the user (runuser, a login-less switch) with HOME set to its home."""
        env = kwargs.pop("env", None) or dict(os.environ)
        env = {**env, "HOME": str(self.home(key)), "USER": self.users[key], "LOGNAME": self.users[key]}
        return subprocess.run(["runuser", "-u", self.users[key], "--", *argv], env=env, **kwargs)


def _group_exists(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


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


def package_env(root: Path) -> Path:
    """A `keystone-agent` every user can run: a venv of Debian's /usr/bin/python3 (the test interpreter may
    live under /root, which other users cannot enter) that adds this checkout's site-packages (world-readable)
    to its path. Returns its bin directory."""
    import sys
    import sysconfig

    venv = root / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = sysconfig.get_paths()["purelib"]
    (venv / "lib" / version / "site-packages" / "keystone-tests.pth").write_text(
        f"import site; site.addsitedir({site!r})\n")
    bin_dir = venv / "bin"
    for script, target in (("keystone-agent", "keystone_agents.cli.agent"), ("agentctl", "keystone_agents.cli.ctl")):
        path = bin_dir / script
        path.write_text(f"#!{bin_dir / 'python'}\nimport sys\nfrom {target} import main\nsys.exit(main())\n")
        path.chmod(0o755)
    for path in [root, *root.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o755)
    return bin_dir
