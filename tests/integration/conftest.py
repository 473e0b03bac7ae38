"""Fixtures for the coordination bus: one fleet of real users per session, each backend's bus per test."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import pytest

from keystone_agents.config import CoordinationSettings, LocalBusSettings, PostgresBusSettings


@pytest.fixture(scope="session")
def bus_world():
    from tests.support.bus import Unavailable, make_world

    try:
        world = make_world()
    except Unavailable as exc:
        pytest.skip(f"real users unavailable: {exc}")
    yield world
    world.close()


@dataclass
class BusEnv:
    backend: str
    world: object
    settings: CoordinationSettings
    database: object  # local: the SQLite path; postgresql: the database name

    @property
    def users(self):
        return self.world.users

    def run(self, key: str, fn):
        """fn(bus) as the Linux user of `key`, on this test's bus."""
        from keystone_agents.coordination.factory import open_bus

        def body():
            bus = open_bus(self.settings)
            try:
                return fn(bus)
            finally:
                bus.close()

        return self.users.as_user(key, body)

    def assert_store_refuses(self, key: str, msg_id: str) -> None:
        """The agent cannot go around the bus to its storage."""
        if self.backend == "local":
            path = str(self.database)

            def peek():
                try:
                    sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute("SELECT * FROM messages").fetchall()
                except sqlite3.Error as exc:
                    return str(exc)
                return "read"

            assert self.users.as_user(key, peek) != "read"
        else:
            from tests.support.postgres import direct_write_refused

            assert direct_write_refused(self, key, msg_id)

    def edit_audit_entry(self, seq: int, old: str, new: str) -> None:
        """Tamper as the database's owner (root for the broker's file, the superuser for PostgreSQL): one row's
        stored entry text, nothing else."""
        if self.backend == "local":
            with sqlite3.connect(self.database) as conn:
                changed = conn.execute("UPDATE audit_log SET entry = replace(entry, ?, ?) WHERE seq = ?"
                                       " AND instr(entry, ?) > 0", (old, new, seq, old)).rowcount
        else:
            old, new = old.replace(":", ": "), new.replace(":", ": ")  # jsonb's text form
            changed = self.world.postgres.superuser(self.database, lambda conn: conn.execute(
                "UPDATE keystone.audit_log SET entry = replace(entry, %s, %s) WHERE seq = %s"
                " AND strpos(entry, %s) > 0", (old, new, seq, old)).rowcount)
        assert changed == 1, "the tampering edit matched no row"

    def rehash_audit_from(self, seq: int, old: str, new: str) -> None:
        """The owner's better forgery: edit entry `seq` and recompute every hash from there (and the head), so
        the chain verifies on its own; only an anchor taken before shows it."""
        from keystone_agents.coordination.audit import chain_hash

        if self.backend == "local":
            with sqlite3.connect(self.database) as conn:
                rows = conn.execute("SELECT seq, entry, prev_hash FROM audit_log WHERE seq >= ? ORDER BY seq",
                                    (seq,)).fetchall()
                prev = bytes.fromhex(rows[0][2])
                for number, entry, _ in rows:
                    entry = entry.replace(old, new) if number == seq else entry
                    digest = chain_hash(prev, entry)
                    conn.execute("UPDATE audit_log SET entry = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                                 (entry, prev.hex(), digest.hex(), number))
                    prev = digest
            return
        old, new = old.replace(":", ": "), new.replace(":", ": ")

        def forge(conn):
            rows = conn.execute("SELECT seq, entry, prev_hash FROM keystone.audit_log WHERE seq >= %s ORDER BY seq",
                                (seq,)).fetchall()
            prev = bytes(rows[0][2])
            for number, entry, _ in rows:
                entry = entry.replace(old, new) if number == seq else entry
                digest = chain_hash(prev, entry)
                conn.execute("UPDATE keystone.audit_log SET entry = %s, prev_hash = %s, hash = %s WHERE seq = %s",
                             (entry, prev, digest, number))
                prev = digest
            conn.execute("UPDATE keystone.audit_head SET hash = %s", (prev,))

        self.world.postgres.superuser(self.database, forge)

    def refusals(self) -> int:
        if self.backend == "local":
            with sqlite3.connect(self.database) as conn:
                return conn.execute("SELECT count(*) FROM audit_events WHERE action = 'comms.refused'").fetchone()[0]
        return self.world.postgres.scalar(self.database, "SELECT count(*) FROM keystone.audit_events "
                                                         "WHERE action = 'comms.refused'")


@pytest.fixture(params=["local", "postgresql"])
def bus_env(request, bus_world):
    if request.param == "local":
        from tests.support.bus import fresh_database

        path = fresh_database(bus_world)
        settings = CoordinationSettings(backend="local", local=LocalBusSettings(
            socket=str(bus_world.socket), wake_dir=str(bus_world.wake_dir)))
        yield BusEnv("local", bus_world, settings, path)
        return
    from tests.support.postgres import fresh_pg_database

    name, settings = fresh_pg_database(bus_world)
    yield BusEnv("postgresql", bus_world, settings, name)


@pytest.fixture
def fleet(bus_env):
    """Agents on this test's bus, each a real Linux user with its own home under a fresh directory."""
    import secrets

    from tests.support.comms import CommsAgents

    root = bus_env.users.root / "homes" / secrets.token_hex(4)
    root.mkdir(parents=True)
    for d in (root.parent, root):
        d.chmod(0o755)
    agents = CommsAgents(bus_env, root)
    yield agents
    agents.close()
