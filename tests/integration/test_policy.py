"""Policy tiers end to end, as real processes of real users: the task loop runs the stand-in claude/codex/
gemini, which call their pre-tool hooks as the real CLIs document; the hook is `keystone-agent policy check`
reading a root-owned rendered policy; decisions reach the bus (audit log, admin messages, approval queue).

A marker file proves whether a shell command ran."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.support.comms import CommsAgents, PathUnit

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RULES = [{"match": {"shell": "touch *blocked*"}, "tier": "blocked"},
         {"match": {"shell": "touch *notify*"}, "tier": "notify"},
         {"match": {"shell": "touch *approve*"}, "tier": "approval_required"}]


class PolicyAgent:
    """An agent with a role and rules, its policy rendered root-owned, running one provider CLI (a stand-in)."""

    def __init__(self, fleet: CommsAgents, key: str, cli: str):
        self.fleet, self.cli = fleet, cli
        world = fleet.bus_env.world
        fakebin = fleet.root / "fakebin"
        if not fakebin.exists():  # the checkout may not be reachable for other users: a copy they can run
            shutil.copytree(REPO / "tests/fakebin", fakebin)
            for path in [fakebin, *fakebin.iterdir()]:
                path.chmod(0o755)
        self.etc = fleet.root / "etc" / key
        self.agent = fleet.agent(key, defaults={"provider": cli}, role="coder", policy={"rules": RULES},
                                 policyFile=str(self.etc / "policy.json"), maxAttempts=1,
                                 environment={"FAKE_BIN_LOG": str(fleet.root / key / "fake-bin.jsonl")})
        done = subprocess.run([str(world.bin_dir / "keystone-agent"), "policy", "render", "--config",
                               str(self.agent.config_path), "--agent-home", str(self.agent.home), "--out",
                               str(self.etc), "--keystone-agent", str(world.bin_dir / "keystone-agent")],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        (fleet.root / "etc").chmod(0o755)
        self.log = self.agent.home / "fake-bin.jsonl"
        self.markers = self.agent.home / "markers"
        self.markers.mkdir()
        for path in (self.markers,):
            shutil.chown(path, self.agent.user)

        base = self.agent.env

        def env() -> dict:  # every run as this agent (the emulated path unit's too) finds the stand-in CLIs
            found = base()
            found["PATH"] = f"{fleet.root / 'fakebin'}:{found['PATH']}"
            return found

        self.agent.env = env

    def env(self) -> dict:
        return self.agent.env()

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.agent.argv(*args), env=self.env(), capture_output=True, text=True, timeout=300,
                              cwd="/")

    def add_task(self, name: str, description: str) -> None:
        path = self.agent.home / "TASKS.yaml"
        data = yaml.safe_load(path.read_text()) if path.exists() else {"tasks": []}
        data["tasks"].append({"name": name, "description": description, "status": "pending"})
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        shutil.chown(path, self.agent.user)

    def task(self, name: str) -> dict:
        return next(t for t in self.agent.tasks() if t["name"] == name)

    def tool_calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [e for e in map(json.loads, self.log.read_text().splitlines()) if e.get("event") == "tool-call"]

    def marker(self, name: str) -> Path:
        return self.markers / name


def audit(fleet, action: str) -> list[dict]:
    done = fleet.agentctl("human", "audit", "query", "--action", action, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
def test_blocked_never_runs_and_notify_runs_reported(fleet, cli):
    if fleet.bus_env.backend != "local":
        pytest.skip("the hook's tiers are the same on both backends; the queue is tested on both below")
    a = PolicyAgent(fleet, "alpha", cli)
    blocked, notified = a.marker("blocked"), a.marker("notify")
    a.add_task("blocked-task", f"Do it. [fake:bash=touch {blocked}]")
    a.add_task("notify-task", f"Do it. [fake:bash=touch {notified}]")
    done = a.run("loop")
    assert not blocked.exists(), f"a blocked command ran: {done.stderr[-2000:]}"
    assert notified.exists(), f"a notify command did not run: {a.tool_calls()} {done.stdout[-3000:]}"
    calls = {c["input"].get("command", c["input"].get("file_path")): c for c in a.tool_calls()}
    assert calls[f"touch {blocked}"]["allowed"] is False and "Blocked by the agent's policy" in calls[f"touch {blocked}"]["reason"]
    # every attempted action of the task was refused: outcome policy, the task blocked with the reason
    task = a.task("blocked-task")
    assert task["status"] == "blocked" and task["blocked_reason"].startswith("policy: every action was refused")
    assert a.task("notify-task")["status"] == "completed"
    decisions = [json.loads(r["entry"]) if isinstance(r.get("entry"), str) else r for r in audit(fleet, "policy.decision")]
    tiers = {(d["detail"]["tier"], d["detail"]["action"]) for d in decisions}
    assert ("blocked", f"shell:touch {blocked}") in tiers and ("notify", f"shell:touch {notified}") in tiers
    # the admin got a message about the notify action (their bus inbox)
    inbox = fleet.bus_env.run("human", lambda bus: bus.inbox())
    assert any(m.subject.startswith("[notify] alpha") and str(notified) in m.subject for m in inbox)


def test_approval_required_waits_then_runs_once(fleet):
    """approval_required: refused with the approval's id, the task blocked approval:<id>, listed for humans; the
    agent cannot approve; after `agentctl approvals approve` the drain resumes the task and the retry runs the
    action once; a second identical action in the same task needs a new approval."""
    a = PolicyAgent(fleet, "beta", "claude")
    marker = a.marker("approve")
    count = a.markers / "count"
    command = f"touch {marker} && echo x >> {count}"
    a.add_task("push", f"Ship it. [fake:bash={command}] [fake:bash={command}]")
    a.run("loop")
    assert not marker.exists()
    task = a.task("push")
    assert task["status"] == "blocked" and task["blocked_reason"].startswith("approval:")
    approval_id = task["blocked_reason"].split(":", 1)[1]
    calls = a.tool_calls()
    assert [c["allowed"] for c in calls] == [False, False]
    assert f"waiting for human approval {approval_id}" in calls[0]["reason"]

    listed = json.loads(fleet.agentctl("human", "approvals", "list", "--json").stdout)
    [item] = [i for i in listed if i["id"] == approval_id]
    assert set(item) >= {"id", "agent", "task", "action", "requested_at", "state"}
    assert (item["agent"], item["task"], item["state"]) == ("beta", "push", "pending")
    assert item["action"].startswith(f"shell:touch {marker}")
    metrics = fleet.agentctl("human", "approvals", "metrics").stdout
    assert 'agent="beta"} 1' in metrics.split("keystone_approvals_pending{", 1)[1].splitlines()[0]
    assert "keystone_approvals_oldest_pending_age_seconds{" in metrics

    # an agent can never approve: not its own request, not another's
    from keystone_agents.coordination.base import NotAllowed

    def self_approve(bus):
        try:
            bus.approval_decide(approval_id, True, "me")
        except NotAllowed as exc:
            return str(exc)
        return "approved"

    assert "never approve" in fleet.bus_env.run("beta", self_approve)
    assert "never approve" in fleet.bus_env.run("alpha", self_approve)

    wake = fleet.bus_env.world.wake_dir / "beta"
    before = wake.stat().st_mtime_ns if wake.exists() else 0
    done = fleet.agentctl("human", "approvals", "approve", approval_id, "--note", "ok once", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "approved"
    if fleet.bus_env.backend == "local":  # the broker touched the agent's wake file (its comms path unit)
        assert wake.exists() and wake.stat().st_mtime_ns != before
    assert a.run("comms", "drain").returncode == 0  # what the wake starts
    assert a.task("push")["status"] == "pending"
    a.run("loop")
    assert marker.exists() and count.read_text() == "x\n"  # the approved action ran once
    task = a.task("push")
    assert task["status"] == "blocked" and task["blocked_reason"].startswith("approval:")
    second = task["blocked_reason"].split(":", 1)[1]
    assert second != approval_id  # the second identical action needs a new approval
    states = {i["id"]: i["state"] for i in json.loads(fleet.agentctl("human", "approvals", "list", "--state", "all",
                                                                        "--json").stdout)}
    assert states[approval_id] == "consumed" and states[second] == "pending"
    actions = [json.loads(r["entry"])["action"] if isinstance(r.get("entry"), str) else r["action"]
               for r in audit(fleet, "approval")]
    assert {"approval.requested", "approval.decided", "approval.consumed"} <= set(actions)

    done = fleet.agentctl("human", "approvals", "reject", second, "--note", "not twice")
    assert done.returncode == 0, done.stderr
    a.run("comms", "drain")
    task = a.task("push")
    assert task["status"] == "blocked" and "rejected by" in task["blocked_reason"] and "not twice" in task["blocked_reason"]


def test_the_agent_cannot_edit_its_rendered_policy(fleet):
    if fleet.bus_env.backend != "local":
        pytest.skip("file modes, not the bus")
    a = PolicyAgent(fleet, "gamma", "claude")
    policy_file = a.etc / "policy.json"
    assert policy_file.stat().st_uid == 0 and (policy_file.stat().st_mode & 0o777) == 0o444

    def attack():
        results = {}
        for name, fn in [("write", lambda: policy_file.write_text("{}")),
                         ("chmod", lambda: os.chmod(policy_file, 0o666)),
                         ("replace", lambda: (a.etc / "x").write_text("{}")),
                         ("unlink", lambda: policy_file.unlink())]:
            try:
                fn()
                results[name] = "done"
            except PermissionError:
                results[name] = "refused"
        return results

    assert fleet.bus_env.users.as_user("gamma", attack) == {"write": "refused", "chmod": "refused",
                                                            "replace": "refused", "unlink": "refused"}
    assert json.loads(policy_file.read_text())["role"] == "coder"


def test_a_broken_policy_blocks_every_tool_call(fleet):
    """Fail closed through a real CLI run: the hook cannot read its policy, the command does not run."""
    if fleet.bus_env.backend != "local":
        pytest.skip("no bus involved")
    a = PolicyAgent(fleet, "delta", "claude")
    (a.etc / "policy.json").chmod(0o644)
    (a.etc / "policy.json").write_text("{ broken")
    (a.etc / "policy.json").chmod(0o444)
    marker = a.marker("harmless")
    a.add_task("harmless", f"Do it. [fake:bash=touch {marker}]")
    a.run("loop")
    assert not marker.exists()
    [call] = a.tool_calls()
    assert call["allowed"] is False and "refused" in call["reason"]


def test_approval_wakes_the_agent_through_the_bus(fleet):
    """The decision reaches the agent without anyone running it: the broker's wake file (local) or the
    PostgreSQL listener (agent-<name>-listen) → the comms path unit → drain → loop → the action runs once."""
    a = PolicyAgent(fleet, "alpha", "gemini")
    marker = a.marker("approve-woken")
    a.add_task("woken", f"Do it. [fake:bash=touch {marker}]")
    a.run("loop")
    reason = a.task("woken")["blocked_reason"]
    assert reason.startswith("approval:") and not marker.exists()
    listener = None
    if fleet.bus_env.backend == "postgresql":  # agent-alpha-listen.service (its own process group: runuser's
        listener = a.agent.popen("comms", "listen", stdout=subprocess.DEVNULL,  # child dies with it below)
                                 stderr=subprocess.DEVNULL, start_new_session=True)
    unit = PathUnit(a.agent, Path(a.agent.info()["wake_file"]))
    try:
        time.sleep(1.0)
        woken_before = len(unit.wakes)
        done = fleet.agentctl("human", "approvals", "approve", reason.split(":", 1)[1])
        assert done.returncode == 0, done.stderr
        deadline = time.time() + 90
        while time.time() < deadline and a.task("woken")["status"] != "completed":
            time.sleep(0.3)
    finally:
        unit.close()
        if listener is not None:
            import signal

            os.killpg(listener.pid, signal.SIGKILL)
            listener.wait()
    assert len(unit.wakes) > woken_before
    assert marker.exists() and a.task("woken")["status"] == "completed"


def _invocations(a: PolicyAgent, task: str) -> list[dict]:
    """The stand-in CLI's invocations of `task` (not its events), oldest first."""
    rows = [json.loads(line) for line in a.log.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("task") == task and not r.get("event") and r.get("tool") == a.cli]


def _resumes(argv: list[str], cli: str, session: str) -> bool:
    if cli == "codex":
        return "resume" in argv and argv[argv.index("resume") + 1] == session
    return f"--resume={session}" in argv or ("--resume" in argv and argv[argv.index("--resume") + 1] == session)


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
def test_an_approved_retry_resumes_the_same_cli_session(fleet, cli):
    """After `approvals approve`, the retried task resumes the CLI session it waited in: the same session id on
    the retry's argv, a prompt that says the action was approved and does not repeat the task; the approved
    action runs once (the marker), and the session's second identical action needs a new approval."""
    if fleet.bus_env.backend != "local":
        pytest.skip("resuming is the execute stage's; the queue is tested on both backends above")
    a = PolicyAgent(fleet, "alpha", cli)
    marker, count = a.marker("approve-resumed"), a.markers / "count-resumed"
    command = f"touch {marker} && echo x >> {count}"
    description = f"Deploy the resumable thing. [fake:bash={command}] [fake:bash={command}]"
    a.add_task("deploy", description)
    a.run("loop")
    approval_id = a.task("deploy")["blocked_reason"].split(":", 1)[1]
    stored = json.loads((a.agent.state / "policy" / "sessions" / "deploy.json").read_text())
    session = stored["session_id"]
    assert (stored["approval"], stored["provider"]) == (approval_id, cli) and session
    [first] = _invocations(a, "deploy")
    assert not _resumes(first["argv"], cli, session)

    assert fleet.agentctl("human", "approvals", "approve", approval_id, "--note", "go").returncode == 0
    assert a.run("comms", "drain").returncode == 0
    done = a.run("loop")
    first_run, retry = _invocations(a, "deploy")
    assert _resumes(retry["argv"], cli, session), retry["argv"]
    [resumed] = [e for e in map(json.loads, a.log.read_text().splitlines()) if e.get("event") == "resumed"]
    assert resumed["session_id"] == session
    prompt = resumed["prompt"]
    assert f"approved the action you were waiting for: approval {approval_id}" in prompt and "go" in prompt
    assert "Deploy the resumable thing" not in prompt and "[fake:" not in prompt  # the task is not repeated
    assert marker.exists() and count.read_text() == "x\n", done.stderr[-2000:]  # the approved action ran once
    second = a.task("deploy")["blocked_reason"].split(":", 1)[1]  # the same action again: a new approval
    assert second != approval_id
    states = {i["id"]: i["state"] for i in json.loads(fleet.agentctl("human", "approvals", "list", "--state", "all",
                                                                        "--json").stdout)}
    assert states[approval_id] == "consumed" and states[second] == "pending"

    if cli != "claude":
        return
    # no session to resume (its record lost, as with a provider that has none): the task is re-run, the
    # approval noted in its prompt; the grant still allows the action once
    (a.agent.state / "policy" / "sessions" / "deploy.json").unlink()
    assert fleet.agentctl("human", "approvals", "approve", second).returncode == 0
    assert a.run("comms", "drain").returncode == 0
    a.run("loop")
    rerun = _invocations(a, "deploy")[-1]
    assert not any(arg.startswith("--resume") for arg in rerun["argv"])
    assert "Deploy the resumable thing" in rerun["parsed"]["prompt"]
    assert f"Approval {second} granted" in rerun["parsed"]["prompt"]
    assert count.read_text() == "x\nx\n"
    assert a.task("deploy")["blocked_reason"].split(":", 1)[1] not in (approval_id, second)
