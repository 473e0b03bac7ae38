"""`keystone-agent shared|state|audit` and `agentctl shared|audit` as real processes of real users, on both
backends: exit 5 and its --json shape, owner_agent, another agent cannot read private state, verify and
anchors through the commands a human and the anchor timer run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.support.comms import ok

pytestmark = pytest.mark.slow


def test_shared_cli_conflict_exit_5_and_humans(fleet):
    alpha, beta = fleet.agent("alpha"), fleet.agent("beta")
    assert ok(alpha.run("shared", "set", "jobs/build", "--expected-version", "0", input='{"state": "queued"}\n')) \
        .strip() == "1"
    missing = beta.run("shared", "get", "jobs/nope")
    assert missing.returncode == 1 and "no such key: jobs/nope" in missing.stderr
    stale = beta.run("shared", "set", "jobs/build", "--expected-version", "0", "--value", '"x"')
    assert stale.returncode == 5 and "VersionConflict: jobs/build is at version 1" in stale.stderr
    stale_json = beta.run("shared", "set", "jobs/build", "--expected-version", "0", "--value", '"x"', "--json")
    assert stale_json.returncode == 5
    assert {k: v for k, v in json.loads(stale_json.stdout).items() if k in ("error", "current_version")} == {
        "error": "VersionConflict", "current_version": 1}
    got = json.loads(ok(beta.run("shared", "get", "jobs/build", "--json")))
    assert (got["value"], got["version"], got["owner_agent"]) == ({"state": "queued"}, 1, "alpha")
    # a human reads and writes as human:<user>
    human = fleet.bus_env.users["human"]
    assert ok(fleet.agentctl("human", "shared", "set", "jobs/build", "--expected-version", "1", "--value",
                             '{"state": "held"}')).strip() == "2"
    history = json.loads(ok(fleet.agentctl("human", "shared", "history", "jobs/build", "--json")))
    assert [(v["version"], v["owner_agent"]) for v in history] == [(1, "alpha"), (2, f"human:{human}")]
    assert [e["key"] for e in json.loads(ok(fleet.agentctl("human", "shared", "list", "--json")))] == ["jobs/build"]
    watched = [json.loads(line) for line in ok(beta.run("shared", "watch", "--prefix", "jobs/")).splitlines()]
    assert [(c["key"], c["version"]) for c in watched] == [("jobs/build", 1), ("jobs/build", 2)]
    # the audit log, for admins: query, verify; agents are refused
    rows = json.loads(ok(fleet.agentctl("human", "audit", "query", "--action", "shared", "--json")))
    assert [r["action"] for r in rows] == ["shared.set", "shared.set.conflict", "shared.set.conflict", "shared.set"]
    assert rows[0]["actor"] == fleet.bus_env.users["alpha"]
    assert "audit log intact: 4 entries" in ok(fleet.agentctl("human", "audit", "verify"))
    assert fleet.agentctl("alpha", "audit", "verify").returncode == 1


def test_private_state_is_the_agents_own(fleet):
    alpha, beta = fleet.agent("alpha"), fleet.agent("beta")
    assert ok(alpha.run("state", "set", "notes/plan", "--expected-version", "0", "--value", '"secret plan"')) \
        .strip() == "1"
    assert json.loads(ok(alpha.run("state", "get", "notes/plan", "--json")))["value"] == "secret plan"
    db = alpha.state / "private-state.sqlite3"
    assert db.exists() and (db.stat().st_mode & 0o077) == 0
    for companion in alpha.state.glob("private-state.sqlite3*"):  # -wal, -shm while they exist
        assert (companion.stat().st_mode & 0o077) == 0, companion
    # beta, a real other user, can neither read the file nor point its own command at alpha's home
    peek = subprocess.run(["runuser", "-u", beta.user, "--", "cat", str(db)], capture_output=True, cwd="/")
    assert peek.returncode != 0 and b"Permission denied" in peek.stderr
    borrowed = beta.run("state", "get", "notes/plan", "--home", str(alpha.home))
    assert borrowed.returncode != 0 and "secret plan" not in borrowed.stdout
    assert beta.run("state", "get", "notes/plan").returncode == 1  # its own state has no such key


def test_anchor_then_tamper_is_evident(fleet):
    alpha = fleet.agent("alpha")
    for n in range(3):
        ok(alpha.run("shared", "set", f"k{n}", "--expected-version", "0", "--value", str(n)))
    admin_dir = fleet.root / "anchor"
    admin_dir.mkdir()
    shutil.chown(admin_dir, fleet.bus_env.users["human"])
    record, prom = admin_dir / "anchors.ndjson", admin_dir / "prom"
    # the timer's command, as an admin (root on a broker host; an admin role on PostgreSQL)
    anchor = subprocess.run(["runuser", "-u", fleet.bus_env.users["human"], "--",
                             str(fleet.bus_env.world.bin_dir / "keystone-agent"), "audit", "anchor", "--host-config",
                             str(fleet.host_config()), "--record", str(record), "--textfile-dir", str(prom)],
                            capture_output=True, text=True, cwd="/", env={"PATH": os.environ["PATH"]})
    assert anchor.returncode == 0, anchor.stderr
    line = anchor.stdout.strip()
    assert line.startswith("event=audit_anchor") and " seq=3 " in line
    assert 'keystone_audit_head_seq{backend="' in (prom / "keystone-audit-anchor.prom").read_text()
    journal = fleet.root / "journal.txt"
    journal.write_text(f"Nov 30 18:00:00 host keystone-agent[1]: {line}\n")
    assert "1 anchors match" in ok(fleet.agentctl("human", "audit", "verify", "--anchors", str(journal)))
    # the owner rewrites entry 2 and re-hashes the whole chain: only the anchor shows it
    fleet.bus_env.rehash_audit_from(2, '"key":"k1"', '"key":"kX"')
    assert ok(fleet.agentctl("human", "audit", "verify")).startswith("audit log intact")
    broken = fleet.agentctl("human", "audit", "verify", "--anchors", str(record))
    assert broken.returncode == 1 and "BROKEN at seq 3" in broken.stderr


def test_mcp_state_tools_and_a_conflict_the_model_can_act_on(fleet):
    """`keystone-agent mcp serve` as alpha, driven by the official MCP client over stdio."""
    import asyncio

    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    alpha, beta = fleet.agent("alpha"), fleet.agent("beta")
    argv = alpha.argv("mcp", "serve")

    async def session():
        params = StdioServerParameters(command=argv[0], args=argv[1:], env=alpha.env())
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as client:
                await client.initialize()
                made = await client.call_tool("shared_set", {"key": "plan", "value": {"n": 1}, "expected_version": 0})
                stale = await client.call_tool("shared_set", {"key": "plan", "value": {"n": 2}, "expected_version": 0})
                got = await client.call_tool("shared_get", {"key": "plan"})
                listed = await client.call_tool("shared_list", {"prefix": "pl"})
                mine = await client.call_tool("state_set", {"key": "memo", "value": "x", "expected_version": 0})
                read_back = await client.call_tool("state_get", {"key": "memo"})
                return made, stale, got, listed, mine, read_back

    made, stale, got, listed, mine, read_back = asyncio.run(session())

    def data(result):
        assert not result.is_error, result.content[0].text
        return json.loads(result.content[0].text)

    assert data(made) == {"key": "plan", "version": 1}
    assert stale.is_error and "VersionConflict: plan is at version 1" in stale.content[0].text
    assert "expected_version=1" in stale.content[0].text
    entry = data(got)
    assert entry["value"] == {"n": 1} and entry["owner_agent"] == "alpha"
    assert "plan" in listed.content[0].text
    assert data(mine) == {"key": "memo", "version": 1}
    assert data(read_back)["value"] == "x"
    assert json.loads(ok(alpha.run("state", "get", "memo", "--json")))["version"] == 1
    assert beta.run("state", "get", "memo").returncode == 1


def race_writer(bus, me: str) -> dict:
    """10 versions of its own key, 5 successful increments of a key everyone writes (retrying conflicts), and
    writes outside the watched prefix."""
    from keystone_agents.kv.model import VersionConflict
    from keystone_agents.kv.shared import SharedState

    store = SharedState(bus)
    version = 0
    for n in range(10):
        version = store.set(f"race/{me}", n, version)
        store.set(f"elsewhere/{me}/{n}", n, 0)
    done = 0
    while done < 5:
        entry = store.get("race/shared")
        try:
            store.set("race/shared", entry.value + 1, entry.version)
            done += 1
        except VersionConflict:
            pass
    return {"own": version}


def test_watch_follow_sees_every_concurrent_change_in_commit_order(fleet):
    """`shared watch --follow` (the command, as beta) while three writer processes of two other agents write
    concurrently: it prints every change under the prefix exactly once, in commit (seq) order, and nothing
    else; what it printed is exactly what a later `watch` from the start returns."""
    from concurrent.futures import ThreadPoolExecutor

    from keystone_agents.kv.shared import SharedState

    bus_env = fleet.bus_env
    beta = fleet.agent("beta")
    bus_env.run("alpha", lambda bus: SharedState(bus).set("race/shared", 0, 0))
    total = 1 + 3 * (10 + 5)
    watcher = beta.popen("shared", "watch", "--prefix", "race/", "--follow", "--count", str(total),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = json.loads(watcher.stdout.readline())  # following now: the rest arrives while it waits
        assert (first["key"], first["version"]) == ("race/shared", 1)
        writers = [("alpha", "w1"), ("gamma", "w2"), ("alpha", "w3")]
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda w: bus_env.run(w[0], lambda bus: race_writer(bus, w[1])), writers))
        assert [r["own"] for r in results] == [10, 10, 10]
        out, err = watcher.communicate(timeout=120)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert watcher.returncode == 0, err
    seen = [first] + [json.loads(line) for line in out.splitlines()]
    assert len(seen) == total
    seqs = [c["seq"] for c in seen]
    assert seqs == sorted(set(seqs))  # commit order, no repeats
    for key in ("race/w1", "race/w2", "race/w3"):
        assert [(c["version"], c["value"]) for c in seen if c["key"] == key] == [(n + 1, n) for n in range(10)]
    assert [(c["version"], c["value"]) for c in seen if c["key"] == "race/shared"] == [(n + 1, n) for n in range(16)]
    assert not [c for c in seen if not c["key"].startswith("race/")]
    # the same changes, read again from the start by another agent
    again = [json.loads(line) for line in ok(fleet.agent("gamma").run("shared", "watch", "--prefix", "race/"))
             .splitlines()]
    assert again == seen
    everything = bus_env.run("gamma", lambda bus: SharedState(bus).changes("", 0))
    assert [c["seq"] for c in everything if c["key"].startswith("race/")] == seqs


def test_audit_verify_names_the_row_the_database_owner_edited(fleet):
    """`agentctl audit verify` (the command an admin runs) after the database's owner edits one row: exit 1
    naming exactly that seq; with --json the same as data."""
    alpha, beta = fleet.agent("alpha"), fleet.agent("beta")
    for n in range(4):
        ok(alpha.run("shared", "set", f"v/{n}", "--expected-version", "0", "--value", str(n)))
    assert beta.run("shared", "set", "v/1", "--expected-version", "0", "--value", "9").returncode == 5
    intact = json.loads(ok(fleet.agentctl("human", "audit", "verify", "--json")))
    assert intact["ok"] is True and intact["entries"] == 5
    fleet.bus_env.edit_audit_entry(3, '"key":"v/2"', '"key":"v/7"')
    broken = fleet.agentctl("human", "audit", "verify")
    assert broken.returncode == 1 and "BROKEN at seq 3" in broken.stderr, broken.stderr
    data = json.loads(fleet.agentctl("human", "audit", "verify", "--json").stdout)
    assert data["ok"] is False and data["first_bad_seq"] == 3
