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
