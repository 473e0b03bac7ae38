"""The coordination bus for tests, on real components: real Linux users, the real broker driven as systemd
drives it (socket activation, Accept=yes), and a real PostgreSQL cluster (tests/support/postgres.py).

- `SocketActivator` listens on a unix socket and, for every connection, starts `keystone-agent bus serve
  --stdio` as the broker's own user with the accepted connection as its stdin/stdout (what
  keystone-bus.socket + keystone-bus@.service do).
- `World` is one test session's fleet: agents alpha, beta, gamma (accepts only alpha, maxDepth 1) and delta
  (3 sends per hour), a human admin, an outsider the configuration does not know, and the broker's user.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.asuser import as_user
from tests.support.realhost import RealUsers, package_env, unavailable

AGENTS = ("alpha", "beta", "gamma", "delta")
KEYS = (*AGENTS, "human", "outsider", "bus")


class SocketActivator:
    """systemd's Accept=yes socket (tests/support/activator.py, a process of its own): one `bus serve --stdio`
    per connection, as the broker's user. `database` selects the SQLite file the next brokers use."""

    def __init__(self, socket_path: Path, argv: list[str], user: str | None):
        import sys

        self.socket_path = socket_path
        self.db_file = socket_path.parent / "database"
        self.db_file.write_text("")
        repo = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.support.activator", str(socket_path), user or "root",
                                      str(self.db_file), str(socket_path.parent / "broker.log"), *argv],
                                     cwd=repo, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    @property
    def database(self) -> Path | None:
        text = self.db_file.read_text().strip()
        return Path(text) if text else None

    @database.setter
    def database(self, path: Path | None) -> None:
        self.db_file.write_text(str(path or ""))

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.socket_path.unlink(missing_ok=True)


class Unavailable(Exception):
    """Real users cannot be created here."""


class Fleet:
    """The session's users by key (alpha … bus), made with realhost.RealUsers."""

    def __init__(self, keys):
        reason = unavailable()
        if reason:
            raise Unavailable(reason)
        self.real = RealUsers().__enter__()
        try:
            group = self.real.add_group("comms")
            self.by_key = {key: self.real.add_user(self.real.group_name(key), group, home_mode=0o700) for key in keys}
        except BaseException:
            self.real.close()
            raise

    @property
    def root(self) -> Path:
        return self.real.root

    def __getitem__(self, key: str) -> str:
        return self.by_key[key].name

    def home(self, key: str) -> Path:
        return self.by_key[key].home

    def uid(self, key: str) -> int:
        return self.by_key[key].uid

    def as_user(self, key: str, fn, *args, **kwargs):
        return as_user(self[key], fn, *args, **kwargs)

    def cleanup(self) -> None:
        self.real.close()


@dataclass
class World:
    users: Fleet
    host_config: Path
    bus_dir: Path  # the broker's state (0700, its user)
    run_dir: Path  # socket and wake files (0755)
    bin_dir: Path  # keystone-agent every user can run
    activator: SocketActivator | None = None
    postgres: object | None = None  # tests.support.postgres.Cluster, started on first use
    template_db: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return self.run_dir / "bus.sock"

    @property
    def wake_dir(self) -> Path:
        return self.run_dir / "wake"

    def name(self, key: str) -> str:
        return key if key in AGENTS else self.users[key]

    def close(self) -> None:
        if self.activator:
            self.activator.close()
        if self.postgres is not None:
            self.postgres.stop()
        self.users.cleanup()


def host_config_data(users: Fleet, run_dir: Path, bus_dir: Path, pg: dict | None = None,
                     backend: str = "local") -> dict:
    comms = {"alpha": {"sendsPerHour": 100000}, "gamma": {"acceptFrom": ["alpha"], "maxDepth": 1},
             "delta": {"sendsPerHour": 3}}
    shared = {"delta": {"writePrefixes": ["delta/"]}}  # the others write every key
    watch = {"beta": ["watch/"]}  # exec.watchPrefixes: writes there wake beta (tests/integration/test_watched_keys.py)
    return {
        "version": 1,
        "coordination": {
            "backend": backend,
            "admins": [users["human"]],
            "adminGroup": None,
            "local": {"socket": str(run_dir / "bus.sock"), "database": str(bus_dir / "bus.sqlite3"),
                      "wakeDir": str(run_dir / "wake")},
            "shared": {"quotaBytes": 200 * 1024},
            **({"postgresql": pg} if pg else {}),
        },
        "agents": [
            {"name": key, "user": users[key], "home": str(users.home(key)), "comms": comms.get(key, {}),
             "triggers": ["comms", "manual"], **({"shared": shared[key]} if key in shared else {}),
             **({"watchPrefixes": watch[key]} if key in watch else {})}
            for key in AGENTS
        ],
    }


def make_world() -> World:
    users = Fleet(KEYS)
    try:
        run_dir = users.root / "run"
        run_dir.mkdir(mode=0o755)
        (run_dir / "wake").mkdir(mode=0o755)
        shutil.chown(run_dir / "wake", users["bus"])
        bus_dir = users.root / "bus-state"
        bus_dir.mkdir(mode=0o700)
        shutil.chown(bus_dir, users["bus"])
        host_config = users.root / "agentctl.json"
        host_config.write_text(json.dumps(host_config_data(users, run_dir, bus_dir), indent=2))
        host_config.chmod(0o644)
        bin_dir = package_env(users.root / "pkg")
        world = World(users, host_config, bus_dir, run_dir, bin_dir)
        argv = [str(bin_dir / "keystone-agent"), "bus", "serve", "--stdio", "--host-config", str(host_config),
                "--wake-dir", str(run_dir / "wake")]
        world.activator = SocketActivator(world.socket, argv, users["bus"])
        return world
    except BaseException:
        users.cleanup()
        raise


def fresh_database(world: World) -> Path:
    """A new broker database for one test (the broker creates it on first connection)."""
    path = world.bus_dir / f"bus-{uuid.uuid4().hex[:8]}.sqlite3"
    world.activator.database = path
    return path
