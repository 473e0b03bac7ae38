"""A throwaway PostgreSQL cluster per test session (Debian's postgresql package): initdb into a temporary
directory as the `postgres` OS user, peer authentication on a unix socket in that directory (no TCP), a free
port number for the socket's name. Agents connect as their own Linux users (peer auth maps user = role)."""

from __future__ import annotations

import glob
import json
import shutil
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

# imported here, in the test process: children forked as other users cannot read an interpreter under /root
import psycopg  # noqa: F401,E402
import psycopg.types.json  # noqa: F401,E402
import psycopg.errors  # noqa: F401,E402

from keystone_agents.config import CoordinationSettings, PostgresBusSettings
from tests.support.asuser import as_user


class Unavailable(Exception):
    pass


def pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise Unavailable("PostgreSQL is not installed (scripts/install-system-deps installs postgresql)")
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    data: Path
    sockdir: Path
    port: int
    bin: Path

    def stop(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.data), "-m",
                        "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.data.parent, ignore_errors=True)

    def superuser(self, database: str, fn):
        """fn(conn) as the postgres superuser (peer auth), autocommit."""
        host, port = str(self.sockdir), self.port

        def body():
            import psycopg

            with psycopg.connect(host=host, port=port, dbname=database, autocommit=True) as conn:
                return fn(conn)

        return as_user("postgres", body)

    def scalar(self, database: str, query: str, args=()):
        return self.superuser(database, lambda conn: conn.execute(query, args).fetchone()[0])


def start(root: Path) -> Cluster:
    import os

    if os.geteuid() != 0:
        raise Unavailable("the throwaway cluster runs as the postgres user: needs root")
    binary = pg_bin()
    base = root / "pg"
    base.mkdir(mode=0o755)
    shutil.chown(base, "postgres")
    data, sockdir = base / "data", base / "sock"
    sockdir.mkdir(mode=0o755)
    shutil.chown(sockdir, "postgres")
    port = free_port()
    run = lambda argv: subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True,
                                      timeout=120, cwd="/")
    done = run([str(binary / "initdb"), "-D", str(data), "--auth-local=peer", "--auth-host=reject", "-E", "UTF8",
                "--no-instructions"])
    if done.returncode != 0:
        raise Unavailable(f"initdb failed: {done.stderr.strip()[-300:]}")
    opts = f"-c listen_addresses='' -c unix_socket_directories={sockdir} -p {port} -c fsync=off"
    done = run([str(binary / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(base / "log"), "-w", "start"])
    if done.returncode != 0:
        raise Unavailable(f"pg_ctl start failed: {done.stderr.strip()[-300:]}")
    return Cluster(data, sockdir, port, binary)


def ensure_cluster(world) -> Cluster:
    """The session's cluster, with the template database migrated by `bus migrate` (as postgres)."""
    if world.postgres is None:
        world.postgres = start(world.users.root)
        cluster = world.postgres
        data = json.loads(world.host_config.read_text())
        data["coordination"]["postgresql"] = {"host": str(cluster.sockdir), "port": cluster.port,
                                              "database": "keystone"}
        world.host_config.write_text(json.dumps(data, indent=2))
        migrated = subprocess.run(["runuser", "-u", "postgres", "--", str(world.bin_dir / "keystone-agent"), "bus",
                                   "migrate", "--host-config", str(world.host_config), "--database", "kstemplate",
                                   "--json"], capture_output=True, text=True, timeout=120, cwd="/")
        if migrated.returncode != 0:
            raise RuntimeError(f"bus migrate failed: {migrated.stderr}")
        world.extra["migrate_report"] = json.loads(migrated.stdout)
    return world.postgres


def fresh_pg_database(world) -> tuple[str, CoordinationSettings]:
    cluster = ensure_cluster(world)
    name = "t_" + uuid.uuid4().hex[:10]
    cluster.superuser("postgres", lambda conn: conn.execute(f'CREATE DATABASE "{name}" TEMPLATE kstemplate') and None)
    settings = CoordinationSettings(backend="postgresql", postgresql=PostgresBusSettings(
        host=str(cluster.sockdir), port=cluster.port, database=name))
    return name, settings


def direct_write_refused(env, key: str, msg_id: str) -> bool:
    """The agent's role cannot write the table directly, nor read another's rows."""
    settings = env.settings.postgresql

    def attempt():
        import psycopg

        with psycopg.connect(host=settings.host, port=settings.port, dbname=settings.database, autocommit=True) as c:
            try:
                c.execute("UPDATE keystone.messages SET sender = 'forged' WHERE msg_uuid = %s", (msg_id,))
                return False
            except psycopg.errors.InsufficientPrivilege:
                pass
            rows = c.execute("SELECT count(*) FROM keystone.messages WHERE msg_uuid = %s", (msg_id,)).fetchone()[0]
            return rows == 0

    return env.users.as_user(key, attempt)
