"""Shared state and the audit log: one contract suite for both backends (local broker over SQLite;
PostgreSQL), every operation in a process that *is* the agent's Linux user (bus_env.run)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from keystone_agents.coordination import audit
from keystone_agents.coordination.base import NotAllowed
from keystone_agents.kv.model import KeyRefused, NoSuchKey, VersionConflict
from keystone_agents.kv.shared import SharedState

pytestmark = pytest.mark.slow


def kv(bus_env, key, fn):
    return bus_env.run(key, lambda bus: fn(SharedState(bus)))


def test_create_update_conflict_delete_and_owner(bus_env):
    assert kv(bus_env, "alpha", lambda s: s.set("plan/deploy", {"step": 1}, 0)) == 1
    with pytest.raises(VersionConflict) as conflict:
        kv(bus_env, "beta", lambda s: s.set("plan/deploy", {"step": 9}, 0))
    assert conflict.value.current_version == 1 and "plan/deploy is at version 1" in str(conflict.value)
    assert kv(bus_env, "beta", lambda s: s.set("plan/deploy", {"step": 2}, 1)) == 2
    entry = kv(bus_env, "gamma", lambda s: s.get("plan/deploy"))
    assert (entry.value, entry.version, entry.owner_agent) == ({"step": 2}, 2, "beta")
    human = bus_env.users["human"]
    assert kv(bus_env, "human", lambda s: s.set("plan/deploy", "by hand", 2)) == 3
    assert kv(bus_env, "alpha", lambda s: s.get("plan/deploy")).owner_agent == f"human:{human}"
    with pytest.raises(VersionConflict):
        kv(bus_env, "alpha", lambda s: s.delete("plan/deploy", 2))
    assert kv(bus_env, "alpha", lambda s: s.delete("plan/deploy", 3)) == 4
    with pytest.raises(NoSuchKey):
        kv(bus_env, "alpha", lambda s: s.get("plan/deploy"))
    with pytest.raises(NoSuchKey):
        kv(bus_env, "alpha", lambda s: s.delete("plan/deploy", 4))
    history = kv(bus_env, "delta", lambda s: s.history("plan/deploy"))
    assert [(v.version, v.owner_agent, v.deleted, v.value) for v in history] == [
        (1, "alpha", False, {"step": 1}), (2, "beta", False, {"step": 2}), (3, f"human:{human}", False, "by hand"),
        (4, "alpha", True, None)]
    assert kv(bus_env, "alpha", lambda s: s.set("plan/deploy", 1, 0)) == 5  # re-created: history continues
    for n in ("b", "a", "c"):
        kv(bus_env, "alpha", lambda s: s.set(f"list/{n}", n, 0))
    assert [e.key for e in kv(bus_env, "beta", lambda s: s.list("list/"))] == ["list/a", "list/b", "list/c"]


def test_prefix_size_and_quota_refusals(bus_env):
    # delta may write only under "delta/" (tests/support/bus.py); reading is open
    assert kv(bus_env, "delta", lambda s: s.set("delta/x", 1, 0)) == 1
    with pytest.raises(KeyRefused) as refused:
        kv(bus_env, "delta", lambda s: s.set("plan/x", 1, 0))
    assert "writePrefixes" in str(refused.value)
    kv(bus_env, "alpha", lambda s: s.set("plan/x", 1, 0))
    with pytest.raises(KeyRefused):
        kv(bus_env, "delta", lambda s: s.delete("plan/x", 1))
    assert kv(bus_env, "delta", lambda s: s.get("plan/x")).value == 1
    with pytest.raises(KeyRefused) as big:
        kv(bus_env, "alpha", lambda s: s.set("big", "x" * 70000, 0))
    assert "maximum is 65536 bytes" in str(big.value)
    with pytest.raises(NoSuchKey):
        kv(bus_env, "alpha", lambda s: s.get("big"))
    # quota (tests/support/bus.py: 200 KiB): four 60 KB values fit at most three times
    fits = 0
    with pytest.raises(KeyRefused) as quota:
        for n in range(5):
            kv(bus_env, "alpha", lambda s: s.set(f"fill/{n}", "y" * 60000, 0))
            fits += 1
    assert fits == 3 and "quota" in str(quota.value)
    rows = bus_env.run("human", lambda bus: bus.audit_rows(action="shared.refused"))
    assert len(rows) == 4  # prefix (set, delete), size, quota: each one audit entry


def increments(bus, rounds: int) -> dict:
    import time

    store = SharedState(bus)
    done = conflicts = 0
    slowest = 0.0  # the longest single set (reported with -s; speed targets live in benchmarks/)
    while done < rounds:
        entry = store.get("counter")
        started = time.monotonic()
        try:
            store.set("counter", entry.value + 1, entry.version)
            done += 1
        except VersionConflict:
            conflicts += 1
        slowest = max(slowest, time.monotonic() - started)
    return {"done": done, "conflicts": conflicts, "slowest_set": slowest}


def test_ten_processes_increment_one_counter_without_losing_an_update(bus_env):
    kv(bus_env, "alpha", lambda s: s.set("counter", 0, 0))
    # 10 processes of three agents (delta may write only under delta/), all on one counter
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda key: bus_env.run(key, lambda bus: increments(bus, 100)),
                                ["alpha", "beta", "gamma", "alpha", "beta", "gamma", "alpha", "beta", "gamma",
                                 "alpha"]))
    assert sum(r["done"] for r in results) == 1000
    final = kv(bus_env, "human", lambda s: s.get("counter"))
    assert final.value == 1000 and final.version == 1001
    history = kv(bus_env, "human", lambda s: s.history("counter"))
    # every version built on the one before it: no lost update
    assert [(v.version, v.value) for v in history] == [(n + 1, n) for n in range(1001)]
    conflicts = bus_env.run("human", lambda bus: bus.audit_rows(action="shared.set.conflict", limit=100000))
    assert len(conflicts) == sum(r["conflicts"] for r in results)
    print(f"\n{bus_env.backend}: 1000 increments, {sum(r['conflicts'] for r in results)} conflicts, slowest set "
          f"{max(r['slowest_set'] for r in results):.3f} s")


def test_brokers_queue_on_the_writer_lock(bus_env):
    """Every broker process queues on the database's writer lock (<database>.lock: a ticket taken under
    flock, store.WriterLock) before its write transaction: while the file is locked a write waits, reads do
    not, and the write completes as soon as the lock is released."""
    import fcntl
    import os
    import time

    if bus_env.backend != "local":
        pytest.skip("the writer lock is the local broker's (PostgreSQL queues on its row locks)")
    kv(bus_env, "alpha", lambda s: s.set("locked", 0, 0))  # the database (and its lock file) exist
    lock_path = bus_env.database.with_name(bus_env.database.name + ".lock")
    assert (os.stat(lock_path).st_mode & 0o777) == 0o600
    fd = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            write = pool.submit(lambda: kv(bus_env, "beta", lambda s: s.set("locked", 1, 1)))
            time.sleep(1.5)
            assert not write.done(), "a broker wrote while the writer lock was held"
            assert kv(bus_env, "gamma", lambda s: s.get("locked")).value == 0  # reads do not wait
            fcntl.flock(fd, fcntl.LOCK_UN)
            assert write.result(timeout=60) == 2
            assert time.monotonic() - started >= 1.5
    finally:
        os.close(fd)


def test_watch_sees_every_change_in_order(bus_env):
    def writer(bus):
        store = SharedState(bus)
        store.set("w/a", 1, 0)
        store.set("other", 1, 0)
        store.set("w/a", 2, 1)
        store.set("w/b", 1, 0)
        store.delete("w/a", 2)

    with ThreadPoolExecutor(1) as pool:
        follower = pool.submit(lambda: bus_env.run("beta", lambda bus: follow(bus, "w/", 4)))
        bus_env.run("alpha", writer)
        seen = follower.result(timeout=120)
    assert [(c["key"], c["version"], c["deleted"]) for c in seen] == [
        ("w/a", 1, False), ("w/a", 2, False), ("w/b", 1, False), ("w/a", 3, True)]
    assert [c["seq"] for c in seen] == sorted(c["seq"] for c in seen)
    again = kv(bus_env, "gamma", lambda s: s.changes("", 0))
    assert [c["key"] for c in again] == ["w/a", "other", "w/a", "w/b", "w/a"]


def follow(bus, prefix, count):
    import io

    from keystone_agents.commands.shared import watch

    out = io.StringIO()
    watch(SharedState(bus), prefix, 0, True, poll=5.0, out=out, limit=count)
    import json

    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_audit_chain_verifies_and_a_single_row_edit_is_found_at_its_seq(bus_env):
    msg = bus_env.run("alpha", lambda bus: bus.send("beta", "hello"))
    kv(bus_env, "alpha", lambda s: s.set("a", 1, 0))
    with pytest.raises(VersionConflict):
        kv(bus_env, "beta", lambda s: s.set("a", 2, 0))
    kv(bus_env, "beta", lambda s: s.set("a", 2, 1))
    kv(bus_env, "beta", lambda s: s.delete("a", 2))
    rows = bus_env.run("human", lambda bus: bus.audit_rows())
    actions = [r["action"] for r in rows]
    assert actions == ["comms.send", "shared.set", "shared.set.conflict", "shared.set", "shared.delete"]
    assert rows[0]["actor"] == bus_env.users["alpha"] and msg.id in rows[0]["entry"]
    verdict = audit.verify(rows)
    assert verdict.ok and verdict.entries == 5 and verdict.head_seq == 5
    head = bus_env.run("human", lambda bus: bus.audit_head())
    assert head == {"seq": 5, "hash": verdict.head_hash}
    # agents read nothing of it and cannot append
    with pytest.raises(NotAllowed):
        bus_env.run("alpha", lambda bus: bus.audit_rows())
    with pytest.raises(NotAllowed):
        bus_env.run("alpha", lambda bus: bus.audit_append("audit.anchor", {}))
    # the database owner edits one row: verify names exactly that seq
    bus_env.edit_audit_entry(3, '"expected":0', '"expected":7')
    rows = bus_env.run("human", lambda bus: bus.audit_rows())
    bad = audit.verify(rows)
    assert (bad.ok, bad.first_bad_seq, bad.entries) == (False, 3, 2)
    # and an anchor taken before the rewrite exposes a re-hashed chain
    assert audit.verify(rows[:2], anchors=[{"seq": 2, "hash": rows[1]["hash"]}]).ok
    forged = [dict(r) for r in rows[:2]]
    forged[1]["hash"] = "00" * 32
    assert audit.verify(forged).first_bad_seq == 2
