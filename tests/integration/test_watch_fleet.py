"""Issue 19: the PostgreSQL bus's fleet event table (bus migration 005) for `watch` across hosts. Agents' runs
and commands append their events (as themselves: the agent is the caller's role); `agentctl watch --all` reads
every agent's as an admin; an agent reads only its own; the cursor is gap-free under a transaction that holds
an id and commits late (the xmin horizon). Real users and a real PostgreSQL 15 cluster."""

from __future__ import annotations

import json

import pytest

from tests.support.comms import ok

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("bus_env", ["postgresql"], indirect=True)]


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_agentctl_watch_all_reads_every_agents_events_from_the_bus(fleet):
    alpha, beta = fleet.agent("alpha"), fleet.agent("beta")
    ok(alpha.run("comms", "send", "--to", "beta", "--subject", "hello", "--body", "Build is green."))
    ok(beta.run("comms", "drain"))
    ok(beta.run("loop"))
    ok(alpha.run("shared", "set", "jobs/fleet", "--expected-version", "0", "--value", "1"))

    everything = lines(ok(fleet.agentctl("human", "watch", "--all")))
    ids = [e["id"] for e in everything]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    by_agent = {name: [e for e in everything if e["agent"] == name] for name in ("alpha", "beta")}
    # the bus has the twin of every event of each agent's own table, in the same order
    for agent, mine in ((alpha, by_agent["alpha"]), (beta, by_agent["beta"])):
        local = lines(ok(agent.run("watch")))
        assert [e["event"] for e in mine] == [e["event"] for e in local]
        assert [e.get("run_id") for e in mine] == [e.get("run_id") for e in local]
        assert all(e["host"] for e in mine)
    assert [e["event"] for e in by_agent["alpha"]] == ["message_sent", "shared_set"]
    beta_events = [e["event"] for e in by_agent["beta"]]
    assert beta_events[0] == "message_received" and "run_start" in beta_events and "task_finish" in beta_events
    finish = next(e for e in by_agent["beta"] if e["event"] == "task_finish")
    assert finish["status"] == "completed" and finish["task_name"]

    only = lines(ok(fleet.agentctl("human", "watch", "--all", "--agent", "alpha", "--types", "shared_set")))
    assert [(e["agent"], e["event"], e["key"]) for e in only] == [("alpha", "shared_set", "jobs/fleet")]
    after = lines(ok(fleet.agentctl("human", "watch", "--all", "--since", str(ids[-2]))))
    assert [e["id"] for e in after] == ids[-1:]

    # an agent reads its own events only, and cannot write the table but through event_append (as itself)
    def own_view():
        from keystone_agents.coordination.factory import open_bus

        bus = open_bus(fleet.bus_env.settings)
        try:
            seen = {e["agent"] for e in bus.events_after(0, ["beta"], [], 5000)}
            try:
                bus.conn.execute("INSERT INTO keystone.events (agent, type) VALUES ('beta', 'forged')")
                forged = True
            except Exception:  # noqa: BLE001 - InsufficientPrivilege
                forged = False
            return seen, forged
        finally:
            bus.close()

    seen, forged = fleet.bus_env.users.as_user("alpha", own_view)
    assert seen == {"alpha"} and forged is False


def test_the_cursor_holds_back_rows_behind_a_transaction_still_in_flight(fleet):
    """alpha's transaction takes an id and commits late; beta's later id is committed at once. A reader must
    not get beta's row before alpha's commits (it would skip alpha's forever): the xmin horizon."""
    fleet.agent("alpha"), fleet.agent("beta")
    users, settings = fleet.bus_env.users, fleet.bus_env.settings.postgresql
    roles = {key: users[key] for key in ("alpha", "beta", "human")}

    def scenario():
        import psycopg

        def conn(role, autocommit=True):
            c = psycopg.connect(host=settings.host, port=settings.port, dbname=settings.database,
                                autocommit=autocommit)
            c.execute(f'SET SESSION AUTHORIZATION "{role}"')  # session_user = the agent's role
            return c

        def append(c, event):
            return c.execute("SELECT keystone.event_append('h', now(), NULL, NULL, %s, '{}')", (event,)).fetchone()[0]

        def read(c):
            rows = c.execute("SELECT keystone.events_after(0, ARRAY[]::text[], ARRAY['late','early'], 100)").fetchone()[0]
            return [(r["agent"], r["event"]) for r in rows]

        slow, fast, reader = conn(roles["alpha"], autocommit=False), conn(roles["beta"]), conn(roles["human"])
        try:
            early_id = append(slow, "early")  # not committed yet
            late_id = append(fast, "late")
            during = read(reader)
            slow.commit()
            after = read(reader)
            return early_id, late_id, during, after
        finally:
            for c in (slow, fast, reader):
                c.close()

    early_id, late_id, during, after = _as_postgres(scenario)
    assert early_id < late_id
    assert during == []  # beta's committed row waits behind alpha's open transaction
    assert after == [("alpha", "early"), ("beta", "late")]


def _as_postgres(fn):
    from tests.support.asuser import as_user

    return as_user("postgres", fn)
