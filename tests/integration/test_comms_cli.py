"""Comms through the CLI, as real processes of real users, on both backends: send/ask/reply/inbox/show/drain/
info, messages becoming tasks exactly once, the runtime's reply, `ask --wait` with its exit codes, the
emulated path unit (ping-pong), SIGKILLed drains and parallel drains."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time

import pytest

from tests.support.comms import PathUnit, expected_answer, new_id, ok

pytestmark = pytest.mark.slow


def test_send_drain_once_and_inbox(fleet):
    alpha, beta = fleet.agent("alpha"), fleet.agent("beta")
    msg_id = new_id()
    first = ok(alpha.run("comms", "send", "--to", "beta", "--subject", "Deploy notes", "--id", msg_id,
                         input="Please read the deploy notes.\n")).strip()
    again = ok(alpha.run("comms", "send", "--to", "beta", "--subject", "Deploy notes", "--id", msg_id,
                         "--body", "Please read the deploy notes.")).strip()
    assert first == again == msg_id
    other = ok(alpha.run("comms", "send", "--to", "beta", "--priority", "high", "--body", "second")).strip()
    inbox = json.loads(ok(beta.run("comms", "inbox", "--json")))
    assert [m["id"] for m in inbox] == [other, msg_id]  # high priority first
    assert inbox[1]["from"] == "alpha" and inbox[1]["subject"] == "Deploy notes"

    drained = json.loads(ok(beta.run("comms", "drain", "--json")))
    assert sorted(drained["received"]) == sorted([msg_id, other]) and len(drained["tasks_created"]) == 2
    tasks = beta.tasks()
    assert sorted(t["source_ref"] for t in tasks) == sorted(f"comms-{i}" for i in (msg_id, other))
    assert {t["source"] for t in tasks} == {"comms"} and {t["status"] for t in tasks} == {"pending"}
    deploy = next(t for t in tasks if t["source_ref"] == f"comms-{msg_id}")
    assert deploy["name"] == "deploy-notes" and deploy["description"].startswith("Please read the deploy notes.")
    assert (beta.state / "run-requested").exists()
    assert json.loads(ok(beta.run("comms", "drain", "--json")))["received"] == []
    assert len(beta.tasks()) == 2
    shown = json.loads(ok(alpha.run("comms", "show", msg_id, "--json")))
    assert shown[0]["state"] == "delivered" and shown[0]["task_ref"] == f"comms-{msg_id}"
    assert json.loads(ok(beta.run("comms", "inbox", "--json"))) == []


def test_refusals_are_clear_errors_without_tracebacks(fleet):
    beta = fleet.agent("beta")
    fleet.agent("gamma")
    done = beta.run("comms", "send", "--to", "gamma", "--body", "hi")
    assert done.returncode == 1 and "does not accept messages from beta" in done.stderr
    assert "Traceback" not in done.stderr
    done = beta.run("comms", "send", "--to", "nobody", "--body", "hi", "--json")
    assert done.returncode == 1 and json.loads(done.stdout)["error"] == "NotFound"
    done = beta.run("comms", "show", "not-a-uuid")
    assert done.returncode == 2 and "not a UUID" in done.stderr


def test_info_names_backend_identity_and_wake_file(fleet):
    alpha = fleet.agent("alpha")
    info = alpha.info()
    assert info["backend"] == fleet.bus_env.backend
    assert info["identity"]["name"] == "alpha" and info["identity"]["role"] == alpha.user
    if fleet.bus_env.backend == "local":
        assert info["wake_file"] == str(fleet.bus_env.world.wake_dir / "alpha")
    else:
        assert info["wake_file"] == str(alpha.state / "comms-wake")


def test_ask_wait_timeout_then_runtime_reply_becomes_a_task(fleet):
    alpha, beta = fleet.agent("alpha"), fleet.agent("beta")
    done = alpha.run("comms", "ask", "--to", "beta", "--question", "which port?", "--wait", "--timeout", "0.5")
    assert done.returncode == 4 and "no reply" in done.stderr
    ask_id = done.stderr.split("ask ")[1].split()[0]
    ok(beta.run("comms", "drain"))
    ok(beta.run("loop"))  # the stand-in provider answers; the runtime sends the reply
    [task] = beta.tasks()
    assert task["status"] == "completed" and task["source_ref"] == f"comms-{ask_id}"
    thread = json.loads(ok(alpha.run("comms", "show", ask_id, "--json")))
    assert [(m["kind"], m["state"]) for m in thread] == [("ask", "done"), ("reply", "queued")]
    assert thread[1]["body"] == expected_answer("which port?")
    ok(alpha.run("comms", "drain"))  # the late reply is a task for the asker: never lost
    [late] = alpha.tasks()
    assert late["source_ref"] == f"comms-{thread[1]['id']}" and expected_answer("which port?") in late["description"]
    # the runtime replied once: a second loop run (or a retry) sends nothing more
    ok(beta.run("loop"))
    assert len(json.loads(ok(alpha.run("comms", "show", ask_id, "--json")))) == 2


def test_failed_task_replies_failed_and_ask_exits_3(fleet):
    alpha = fleet.agent("alpha")
    beta = fleet.agent("beta", commandProvider={"argv": ["/bin/false"]}, maxAttempts=1)
    waiter = alpha.popen("comms", "ask", "--to", "beta", "--question", "impossible?", "--wait", "--timeout", "60",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 20
    while time.time() < deadline and not beta.tasks():
        beta.run("comms", "drain")
        time.sleep(0.2)
    assert beta.run("loop").returncode == 3  # degraded: the task failed (and is blocked after maxAttempts 1)
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 3, err
    assert "failed 1 times" in out


def test_ping_pong_with_the_path_unit(fleet):
    """A asks B with --wait; B's path unit (emulated) drains and runs B's loop; A prints B's answer."""
    alpha, beta = fleet.agent("alpha"), fleet.agent("beta")
    listener = None
    if fleet.bus_env.backend == "postgresql":  # agent-beta-listen.service
        listener = beta.popen("comms", "listen", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        fleet.listeners.append(listener)
    from pathlib import Path

    unit = PathUnit(beta, Path(beta.info()["wake_file"]))
    try:
        time.sleep(0.5)
        question = f"what is the code word {new_id()[:8]}?"
        done = alpha.run("comms", "ask", "--to", "beta", "--question", question, "--wait", "--timeout", "90",
                         timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected_answer(question)
        assert unit.wakes, "the wake file never changed"
    finally:
        unit.close()
    [task] = beta.tasks()
    assert task["status"] == "completed"
    assert alpha.tasks() == []  # the waiter took the reply: it is no task


def test_killed_drains_lose_nothing_and_duplicate_nothing(fleet):
    """200 random SIGKILLs of `comms drain` over 1,000 messages: every message becomes exactly one task."""
    from keystone_agents.coordination.factory import open_bus

    alpha = fleet.agent("alpha")
    beta = fleet.agent("beta", coordination={"leaseSeconds": 1, "maxDeliveries": 1000})
    settings = fleet.bus_env.settings

    def send_many():
        bus = open_bus(settings)
        try:
            return [bus.send("beta", f"message {n}", subject=f"m{n}").id for n in range(1000)]
        finally:
            bus.close()

    sent = fleet.bus_env.users.as_user("alpha", send_many)
    rng = random.Random(17)
    kills = 0
    while kills < 200:
        proc = beta.popen("comms", "drain", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 0.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    time.sleep(1.2)  # the last killed drain's leases expire
    for _ in range(5):
        if json.loads(ok(beta.run("comms", "drain", "--json")))["received"] == []:
            break
        time.sleep(1.2)
    refs = [t["source_ref"] for t in beta.tasks()]
    assert len(refs) == len(set(refs)), "duplicate tasks"
    assert sorted(refs) == sorted(f"comms-{i}" for i in sent), "lost messages"
    inbox = fleet.bus_env.run("beta", lambda bus: bus.stats())["inbox"]
    assert inbox["delivered"] == 1000 and inbox["queued"] == inbox["leased"] == inbox["failed"] == 0
    del alpha


def test_parallel_drains_claim_each_message_once(fleet):
    from keystone_agents.coordination.factory import open_bus

    fleet.agent("alpha")
    beta = fleet.agent("beta")
    settings = fleet.bus_env.settings

    def send_many():
        bus = open_bus(settings)
        try:
            return [bus.send("beta", f"parallel {n}").id for n in range(200)]
        finally:
            bus.close()

    sent = fleet.bus_env.users.as_user("alpha", send_many)
    procs = [beta.popen("comms", "drain", "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(10)]
    received = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        received += json.loads(out)["received"]
    assert sorted(received) == sorted(sent), "a message was claimed twice or not at all"
    refs = [t["source_ref"] for t in beta.tasks()]
    assert sorted(refs) == sorted(f"comms-{i}" for i in sent)


def drain_metrics(agent) -> dict[str, float]:
    """The drain metrics file as node_exporter's textfile collector reads it (prometheus-client's parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = (agent.home / "metrics" / f"keystone-agent-comms-drain-{agent.key}.prom").read_text()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.labels == {"host": sample.labels["host"], "agent": agent.key,
                                     "unit": f"agent-{agent.key}-comms"}
            values[sample.name] = sample.value
    return values


def test_a_failed_drain_is_measured_by_the_drain_and_by_its_on_failure_unit(fleet):
    alpha, beta = fleet.agent("alpha"), fleet.agent("beta")
    ok(beta.run("comms", "drain"))
    assert drain_metrics(beta) == {"keystone_agent_comms_drain_failures_total": 0,
                                   "keystone_agent_comms_last_drain_success": 1}
    msg_id = ok(alpha.run("comms", "send", "--to", "beta", "--body", "are you there?")).strip()

    # the bus is unreachable for beta's drain (the drain service of systemd run id inv-1)
    good = beta.config_path.read_text()
    data = json.loads(good)
    if data["coordination"]["backend"] == "local":
        data["coordination"]["local"]["socket"] = str(beta.home / "no-such-bus.sock")
    else:
        data["coordination"]["postgresql"]["host"] = str(beta.home / "no-such-socket-dir")
    beta.config_path.write_text(json.dumps(data))
    done = subprocess.run(beta.argv("comms", "drain"), env={**beta.env(), "INVOCATION_ID": "inv-1"},
                          capture_output=True, text=True, timeout=120, cwd="/")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert 'event="comms_drain_failed"' in done.stderr
    assert drain_metrics(beta) == {"keystone_agent_comms_drain_failures_total": 1,
                                   "keystone_agent_comms_last_drain_success": 0}

    # systemd starts the OnFailure= unit for that same run: it is not counted twice
    def on_failure(invocation: str, result: str) -> subprocess.CompletedProcess:
        env = {**beta.env(), "MONITOR_INVOCATION_ID": invocation, "MONITOR_SERVICE_RESULT": result,
               "MONITOR_EXIT_CODE": "exited", "MONITOR_EXIT_STATUS": "1", "MONITOR_UNIT": "agent-beta-comms.service"}
        return subprocess.run(beta.argv("comms", "drain-failed"), env=env, capture_output=True, text=True,
                              timeout=120, cwd="/")

    recorded = on_failure("inv-1", "exit-code")
    assert recorded.returncode == 0, recorded.stderr
    assert 'event="comms_drain_failed"' in recorded.stderr and 'service_result="exit-code"' in recorded.stderr
    assert drain_metrics(beta)["keystone_agent_comms_drain_failures_total"] == 1
    # a drain killed by its timeout never got to count itself: its OnFailure= unit does
    assert on_failure("inv-2", "timeout").returncode == 0
    assert drain_metrics(beta) == {"keystone_agent_comms_drain_failures_total": 2,
                                   "keystone_agent_comms_last_drain_success": 0}

    # the bus is back: the next drain delivers the message and clears the gauge; the counter keeps its count
    beta.config_path.write_text(good)
    drained = json.loads(ok(beta.run("comms", "drain", "--json")))
    assert drained["received"] == [msg_id]
    assert drain_metrics(beta) == {"keystone_agent_comms_drain_failures_total": 2,
                                   "keystone_agent_comms_last_drain_success": 1}


def test_humans_use_comms_as_themselves_through_agentctl(fleet):
    alpha, beta = fleet.agent("alpha"), fleet.agent("beta")
    human = fleet.bus_env.users["human"]
    sent = ok(fleet.agentctl("human", "alpha", "send", "--subject", "hello", "--body", "from a human")).strip()
    [received] = json.loads(ok(alpha.run("comms", "inbox", "--json")))
    assert (received["id"], received["from"], received["to"]) == (sent, human, "alpha")
    assert [m["id"] for m in json.loads(ok(fleet.agentctl("human", "alpha", "inbox", "--json")))] == [sent]
    ask_id = ok(fleet.agentctl("human", "beta", "ask", "--question", "status?")).strip()
    ok(beta.run("comms", "drain"))
    ok(beta.run("loop"))
    [reply] = [m for m in json.loads(ok(fleet.agentctl("human", "beta", "outbox", "--json"))) if m["kind"] == "reply"]
    assert (reply["to"], reply["in_reply_to"], reply["body"]) == (human, ask_id, expected_answer("status?"))
    tree = json.loads(ok(fleet.agentctl("human", "hierarchy", ask_id, "--json")))
    assert [(m["kind"], m["from"], m["depth"]) for m in tree] == [("ask", human, 0), ("reply", "beta", 0)]
    assert "reply beta[timer] -> " in ok(fleet.agentctl("human", "hierarchy", ask_id))  # with its mode
    # `ask --wait` ends as the agents' `comms ask --wait` does (one function prints both): exit 4 on timeout, the
    # same JSON error, and the human is told where a later reply can be read
    waited = fleet.agentctl("human", "beta", "ask", "--question", "later?", "--wait", "--timeout", "0.5", "--json")
    timeout_error = json.loads(waited.stdout)
    assert waited.returncode == 4 and timeout_error["error"] == "Timeout" and timeout_error["timeout_seconds"] == 0.5
    waited = fleet.agentctl("human", "beta", "ask", "--question", "later?", "--wait", "--timeout", "0.5")
    assert waited.returncode == 4 and "within 0.5s; read a later reply with `agentctl beta outbox`" in waited.stderr
    # the configuration does not know this user: the bus refuses it, whatever it claims
    refused = fleet.agentctl("outsider", "alpha", "send", "--body", "let me in")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "refuse" in refused.stderr


def test_mcp_server_gives_a_provider_session_comms(fleet):
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
                tools = sorted(t.name for t in (await client.list_tools()).tools)
                sent = await client.call_tool("comms_send", {"to": "beta", "body": "via MCP", "subject": "mcp"})
                refused = await client.call_tool("comms_send", {"to": "nobody", "body": "who?"})
                return tools, sent, refused

    tools, sent, refused = asyncio.run(session())
    assert tools == ["approval_status", "comms_ask", "comms_inbox", "comms_reply", "comms_send", "shared_get",
                     "shared_list", "shared_set", "state_get", "state_set"]
    envelope = sent.structured_content or json.loads(sent.content[0].text)
    assert envelope["from"] == "alpha" and envelope["to"] == "beta" and envelope["subject"] == "mcp"
    [received] = json.loads(ok(beta.run("comms", "inbox", "--json")))
    assert received["id"] == envelope["id"] and received["body"] == "via MCP"
    answer = refused.structured_content or json.loads(refused.content[0].text)
    assert answer["ok"] is False and answer["error"] == "NotFound"


def test_messages_and_replies_are_in_the_watch_stream(fleet):
    """Issue 19: the sender's message_sent, the receiver's message_received (the drain) and the runtime's or the
    agent's reply_sent are events of each agent's own table, read back by `keystone-agent watch`."""
    alpha, beta = fleet.agent("alpha"), fleet.agent("beta")
    ask = ok(alpha.run("comms", "ask", "--to", "beta", "--question", "Which release ships the fix?")).strip()
    ok(beta.run("comms", "drain"))
    ok(beta.run("comms", "reply", ask, "--body", "Release 4.2."))

    def watch(agent, types):
        return [json.loads(line) for line in ok(agent.run("watch", "--types", types)).splitlines()]

    [sent] = watch(alpha, "message_sent")
    assert sent["agent"] == "alpha" and sent["event"] == "message_sent" and sent["message_id"] == ask
    got = watch(beta, "message_received,reply_sent")
    assert [e["event"] for e in got] == ["message_received", "reply_sent"]
    assert got[0]["message_id"] == ask and got[0]["sender"] == "alpha" and all(e["agent"] == "beta" for e in got)


def test_hierarchy_shows_each_agents_execution_mode(fleet):
    """Issue 19: `agentctl hierarchy` names every agent of the tree with its exec.mode (the host configuration's
    `mode`, written by the NixOS module)."""
    alpha, beta = fleet.agent("alpha"), fleet.agent("beta")
    path = fleet.host_config()
    data = json.loads(path.read_text())
    for entry in data["agents"]:
        entry["mode"] = {"alpha": "autonomous", "beta": "reactive"}.get(entry["name"], "timer")
    path.write_text(json.dumps(data))
    ask_id = ok(alpha.run("comms", "ask", "--to", "beta", "--question", "Ready to ship?")).strip()
    ok(beta.run("comms", "drain"))
    ok(beta.run("comms", "reply", ask_id, "--body", "Yes."))
    text = ok(fleet.agentctl("human", "hierarchy", ask_id))
    assert "ask alpha[autonomous] -> beta[reactive] depth=0" in text
    assert "reply beta[reactive] -> alpha[autonomous]" in text
