"""Issue 19 × shared state: a write under an agent's exec.watchPrefixes wakes it like a message (the broker's
wake file; on PostgreSQL sql/004's NOTIFY through `comms listen`), its drain makes one task per changed key
(a proactive agent: starts its think cycle, whose briefing lists the change and its unread messages), and the
writes and changes are events of `keystone-agent watch`. Real users, both backends.

The session's host configuration (tests/support/bus.py) gives beta `watchPrefixes: ["watch/"]`."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.comms import PathUnit, ok

pytestmark = pytest.mark.slow

WATCH = {"watchPrefixes": ["watch/"]}


def shared_set(agent, key: str, value, expected: int) -> None:
    ok(agent.run("shared", "set", key, "--expected-version", str(expected), "--value", json.dumps(value)))


def listen(fleet, agent) -> Path:
    """The agent's wake file, with its listener running on PostgreSQL (agent-<name>-listen.service)."""
    wake = Path(agent.info()["wake_file"])
    if fleet.bus_env.backend == "postgresql":
        fleet.listeners.append(agent.popen("comms", "listen", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.time() + 30
        while time.time() < deadline and not wake.exists():  # touched once the LISTEN is in place
            time.sleep(0.1)
        time.sleep(0.3)
    return wake


def stamp(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def woken(path: Path, before: str | None, within: float) -> bool:
    deadline = time.time() + within
    while time.time() < deadline:
        if stamp(path) != before:
            return True
        time.sleep(0.05)
    return False


def events(agent, types: str) -> list[dict]:
    return [json.loads(line) for line in ok(agent.run("watch", "--types", types)).splitlines()]


def test_a_watched_write_wakes_the_watcher_and_becomes_one_task(fleet):
    alpha = fleet.agent("alpha")
    beta = fleet.agent("beta", exec={"mode": "reactive", **WATCH})
    wake = listen(fleet, beta)
    ok(beta.run("comms", "drain"))  # the first drain records where the watching starts

    before = stamp(wake)
    shared_set(alpha, "other/build", {"ok": True}, 0)
    assert not woken(wake, before, 1.5), "a write outside watchPrefixes woke beta"
    shared_set(alpha, "watch/build", {"commit": "abc123", "ok": False}, 0)
    assert woken(wake, before, 10), "a write under watchPrefixes did not wake beta"

    unit = PathUnit(beta, wake)  # agent-beta-comms.path + loop-rerun.path, emulated
    try:
        before = stamp(wake)
        shared_set(alpha, "watch/build", {"commit": "def456", "ok": True}, 1)
        assert woken(wake, before, 10)
        deadline = time.time() + 90
        while time.time() < deadline and not any(t["status"] == "completed" for t in beta.tasks()):
            time.sleep(0.2)
    finally:
        unit.close()
    # nothing drained version 1 before the unit did: one task per key, its newest version
    tasks = beta.tasks()
    refs = sorted(t["source_ref"] for t in tasks)
    assert refs == ["shared-watch/build@v2"], refs
    [task] = tasks
    assert task["source"] == "shared" and task["status"] == "completed"
    assert "Shared key watch/build changed to version 2 by alpha" in task["description"]
    assert '"def456"' in task["description"]

    # beta's own write is no news; the same version is never a second task
    shared_set(beta, "watch/mine", 1, 0)
    drained = json.loads(ok(beta.run("comms", "drain", "--json")))
    assert drained["watched"]["changes"] == [] and drained["watched"]["tasks_created"] == []
    assert len(beta.tasks()) == 1

    # the events: alpha's writes in alpha's stream, the change beta saw in beta's
    sets = events(alpha, "shared_set")
    assert [(e["key"], e["version"]) for e in sets] == [("other/build", 1), ("watch/build", 1), ("watch/build", 2)]
    assert all(e["agent"] == "alpha" and e["event"] == "shared_set" for e in sets)
    [seen] = events(beta, "shared_changed")
    assert (seen["key"], seen["version"], seen["writer"]) == ("watch/build", 2, "alpha")
    assert seen["source_ref"] == "shared-watch/build@v2"


def test_the_loops_sweep_catches_a_change_whose_wake_was_missed(fleet):
    alpha = fleet.agent("alpha")
    beta = fleet.agent("beta", exec=WATCH)
    ok(beta.run("comms", "drain"))  # baseline
    shared_set(alpha, "watch/deploy", "go", 0)
    shared_set(alpha, "watch/deploy", "stop", 1)
    shared_set(alpha, "watch/gone", 1, 0)
    ok(alpha.run("shared", "delete", "watch/gone", "--expected-version", "1"))
    ok(beta.run("loop"))  # no drain ran: the sweep (source `shared`) reads the changes
    tasks = {t["source_ref"]: t for t in beta.tasks()}
    assert sorted(tasks) == ["shared-watch/deploy@v2", "shared-watch/gone@v2"]
    assert {t["status"] for t in tasks.values()} == {"completed"}
    assert "was deleted by alpha" in tasks["shared-watch/gone@v2"]["description"]
    ok(beta.run("loop"))
    assert len(beta.tasks()) == 2  # the cursor moved: nothing twice


def test_a_conflicting_write_is_an_event(fleet):
    alpha = fleet.agent("alpha")
    shared_set(alpha, "jobs/x", 1, 0)
    done = alpha.run("shared", "set", "jobs/x", "--expected-version", "0", "--value", "2")
    assert done.returncode == 5
    [conflict] = events(alpha, "shared_conflict")
    assert (conflict["key"], conflict["expected_version"], conflict["current_version"]) == ("jobs/x", 0, 1)
    assert conflict["status"] == "conflict"


def recording_systemctl(root: Path) -> tuple[dict, Path]:
    """A `systemctl` that records its arguments (no systemd user manager here), first on PATH."""
    bin_dir = root / "fake-systemctl"
    bin_dir.mkdir(mode=0o755)
    log = root / "systemctl.log"
    log.touch()
    log.chmod(0o666)
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\n')
    (bin_dir / "systemctl").chmod(0o755)
    return {"PATH": f"{bin_dir}:"}, log


def test_proactive_briefing_lists_watched_keys_and_unread_messages_once(fleet):
    alpha = fleet.agent("alpha")
    beta = fleet.agent("beta", exec={"mode": "proactive", "thinkInterval": 60, **WATCH,
                                     "instructions": "You coordinate the build."})
    extra, systemctl_log = recording_systemctl(fleet.root)

    def run(agent, *args):
        env = agent.env()
        env["PATH"] = extra["PATH"] + env["PATH"]
        return subprocess.run(agent.argv(*args), env=env, capture_output=True, text=True, timeout=120, cwd="/")

    def think_tasks():
        return [t for t in beta.tasks() if str(t.get("name", "")).startswith("think-")]

    for _ in range(3):  # baseline, then idle: no model call
        ok(run(beta, "loop", "--trigger", "think"))
    assert think_tasks() == []
    # nothing changed: a wake (drain) starts no think
    assert json.loads(ok(run(beta, "comms", "drain", "--json")))["watched"]["think_started"] is False

    shared_set(alpha, "watch/plan", {"step": 2}, 0)
    shared_set(alpha, "elsewhere/plan", {"step": 9}, 0)
    drained = json.loads(ok(run(beta, "comms", "drain", "--json")))
    assert drained["watched"] == {"changes": ["watch/plan"], "tasks_created": [], "think_started": True}
    assert systemctl_log.read_text().splitlines() == ["--user start --no-block agent-beta-think.service"]
    msg_id = ok(alpha.run("comms", "send", "--to", "beta", "--subject", "status?", "--body", "How far?")).strip()

    ok(run(beta, "loop", "--trigger", "think"))
    [task] = think_tasks()
    assert task["status"] == "completed"
    assert "You coordinate the build." in task["description"]
    assert "Shared key watch/plan changed to version 1 by alpha." in task["description"]
    assert f"Unread message {msg_id} from alpha (status?)." in task["description"]
    assert "elsewhere/plan" not in task["description"]

    for _ in range(3):  # briefed once: idle again (the message became a task in the think's run)
        ok(run(beta, "loop", "--trigger", "think"))
    assert len(think_tasks()) == 1
    skipped = events(beta, "think_skipped")
    assert len(skipped) == 6


def test_proactive_briefing_lists_decided_approvals_once(fleet):
    """The approval queue (policy tiers) feeds the briefing's approvals section: a decision a human made since
    the last think is news once."""
    import uuid

    beta = fleet.agent("beta", exec={"mode": "proactive", "thinkInterval": 60})
    settings = fleet.bus_env.settings

    def think_tasks():
        return [t for t in beta.tasks() if str(t.get("name", "")).startswith("think-")]

    ok(beta.run("loop", "--trigger", "think"))  # baseline
    approval_id = str(uuid.uuid4())

    def request():
        from keystone_agents.coordination.factory import open_bus

        bus = open_bus(settings)
        try:
            bus.approval_request(approval_id, "deploy", "run-1", {"command": "make deploy"}, "shell: make deploy",
                                 "0" * 64, "shell make deploy: approval_required")
        finally:
            bus.close()

    def decide():
        from keystone_agents.coordination.factory import open_bus

        bus = open_bus(settings)
        try:
            bus.approval_decide(approval_id, True, "go ahead")
        finally:
            bus.close()

    fleet.bus_env.users.as_user("beta", request)
    ok(beta.run("loop", "--trigger", "think"))  # pending: not news yet
    assert think_tasks() == []
    fleet.bus_env.users.as_user("human", decide)
    ok(beta.run("loop", "--trigger", "think"))
    [task] = think_tasks()
    human = fleet.bus_env.users["human"]
    assert f"Approval {approval_id} (shell: make deploy, task deploy) was approved by {human}." in task["description"]
    ok(beta.run("loop", "--trigger", "think"))
    assert len(think_tasks()) == 1
