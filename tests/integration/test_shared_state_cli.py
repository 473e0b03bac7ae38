"""`keystone-agent shared|state|audit` and `agentctl shared|audit` as real processes of real users, on both
backends: exit 5 and its --json shape, owner_agent, another agent cannot read private state, verify and
anchors through the commands a human and the anchor timer run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.support.comms import CommsAgents

pytestmark = pytest.mark.slow


@pytest.fixture
def fleet(bus_env):
    import secrets

    root = bus_env.users.root / "homes" / secrets.token_hex(4)
    root.mkdir(parents=True)
    for d in (root.parent, root):
        d.chmod(0o755)
    agents = CommsAgents(bus_env, root)
    yield agents
    agents.close()


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return done.stdout


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
