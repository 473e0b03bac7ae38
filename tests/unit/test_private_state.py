"""`keystone-agent state …` through click's runner: create/update/conflict (exit 5, its --json shape), delete,
list, history and the 100-version window, the size limit, and the file's mode."""

from __future__ import annotations

import json
import stat

from keystone_agents.kv.model import HISTORY_KEEP
from keystone_agents.kv.private import FILE_NAME, PrivateState


def test_create_update_conflict_delete(run_agent, agent_home):
    h = ("--home", str(agent_home))
    missing = run_agent("state", "get", "plan", *h)
    assert missing.exit_code == 1 and "no such key: plan" in missing.output
    created = run_agent("state", "set", "plan", "--expected-version", "0", "--value", '{"step": 1}', *h)
    assert created.exit_code == 0 and created.output.strip() == "1"
    again = run_agent("state", "set", "plan", "--expected-version", "0", *h, input='{"step": 9}')
    assert again.exit_code == 5 and "VersionConflict: plan is at version 1" in again.output
    as_json = run_agent("state", "set", "plan", "--expected-version", "0", "--value", "2", "--json", *h)
    assert as_json.exit_code == 5
    assert json.loads(as_json.output)["error"] == "VersionConflict"
    assert json.loads(as_json.output)["current_version"] == 1
    updated = run_agent("state", "set", "plan", "--expected-version", "1", *h, input='{"step": 2}')
    assert updated.exit_code == 0 and updated.output.strip() == "2"
    got = json.loads(run_agent("state", "get", "plan", "--json", *h).output)
    assert (got["key"], got["value"], got["version"], got["owner_agent"]) == ("plan", {"step": 2}, 2, "demo")
    assert got["updated_at"].endswith("Z")
    stale = run_agent("state", "delete", "plan", "--expected-version", "1", *h)
    assert stale.exit_code == 5
    assert run_agent("state", "delete", "plan", "--expected-version", "2", *h).exit_code == 0
    assert run_agent("state", "get", "plan", *h).exit_code == 1
    history = json.loads(run_agent("state", "history", "plan", "--json", *h).output)
    assert [(v["version"], v["deleted"], v["value"]) for v in history] == [
        (1, False, {"step": 1}), (2, False, {"step": 2}), (3, True, None)]
    # re-created: versions continue (history stays unambiguous)
    assert run_agent("state", "set", "plan", "--expected-version", "0", "--value", "[]", *h).output.strip() == "4"


def test_list_prefix_and_bad_input(run_agent, agent_home):
    h = ("--home", str(agent_home))
    for key in ("a/1", "a/2", "b/1"):
        assert run_agent("state", "set", key, "--expected-version", "0", "--value", '"x"', *h).exit_code == 0
    listed = json.loads(run_agent("state", "list", "--prefix", "a/", "--json", *h).output)
    assert [e["key"] for e in listed] == ["a/1", "a/2"]
    assert len(json.loads(run_agent("state", "list", "--json", *h).output)) == 3
    bad = run_agent("state", "set", "k", "--expected-version", "0", "--value", "{not json", *h)
    assert bad.exit_code == 2 and "not valid JSON" in bad.output
    big = run_agent("state", "set", "k", "--expected-version", "0", "--value", json.dumps("x" * 70000), *h)
    assert big.exit_code == 1 and "maximum is 65536 bytes" in big.output
    assert run_agent("state", "get", "k", *h).exit_code == 1  # nothing written


def test_history_keeps_the_last_100_versions_and_the_file_is_private(tmp_path):
    store = PrivateState(tmp_path / "state" / FILE_NAME, "demo")
    for n in range(HISTORY_KEEP + 20):
        assert store.set("counter", n, n) == n + 1
    versions = store.history("counter")
    assert [v.version for v in versions] == list(range(21, HISTORY_KEEP + 21))
    assert versions[-1].value == HISTORY_KEEP + 19
    store.close()
    for path in (tmp_path / "state").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
