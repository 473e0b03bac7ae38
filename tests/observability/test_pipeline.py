"""The whole metrics pipeline with real components: `keystone-agent loop`, `schedule` and `sync` runs write
.prom files → a real node_exporter's textfile collector → a real Prometheus scraping it. Every documented
metric arrives; every Prometheus expression of the dashboard and of the alert rules evaluates and returns
data; every alert of the (rendered) rules is loaded healthy and pending or firing for the agent that earns it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from keystone_agents.observability import dashboard_path, render_rules
from tests.conftest import installed_script
from tests.observability.conftest import PIPELINE_RULE_PARAMETERS
from tests.support import notes_sync as ns
from tests.support.loop import make_home

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
FAILING, HEALTHY, WRITER = "ops-bot", "drago", "note-taker"  # names with dashes on purpose
BROKEN = "cannot-start"  # its configuration is invalid: labels come from the user name and the unit's environment


def loop_home(root: Path, agent: str, textfile_dir: Path, tasks: list[tuple[str, str]], interval: float = 300):
    lh = make_home(root / agent)
    lh.config(agentName=agent, textfileDir=str(textfile_dir), maxTasks=10, expectedIntervalSeconds=interval,
              scheduler={"expectedIntervalSeconds": 86400, "wakeCommand": []})
    add_tasks(lh, tasks)
    return lh


def add_tasks(lh, tasks: list[tuple[str, str]]) -> None:
    existing = lh.tasks.read_text() if lh.tasks.exists() else ""
    entries = "".join(f'  - name: {name}\n    description: "{text}"\n    status: pending\n' for name, text in tasks)
    if "tasks:" not in existing or "tasks: []" in existing:
        lh.tasks.write_text("tasks:\n" + entries)
    else:
        lh.tasks.write_text(existing.rstrip("\n") + "\n" + entries)


def documented_metrics() -> set[str]:
    text = (REPO / "docs/observability.md").read_text()
    return set(re.findall(r"^\| `(keystone_agent_[a-z_]+)`", text, re.M))


def start_comms(root: Path, lh, request, textfile_dir: Path) -> None:
    """The healthy agent on a real local bus (the broker listening itself; this test's user is the agent): one
    message dead-lettered, and one the wake path never drained, which the next loop's sweep finds late."""
    import getpass
    import os
    import time

    from keystone_agents.coordination.local import LocalBus

    run = root / "bus"
    run.mkdir()
    sock, host_config = run / "bus.sock", run / "agentctl.json"
    host_config.write_text(json.dumps({"coordination": {"backend": "local", "adminGroup": None}, "agents": [
        {"name": HEALTHY, "user": getpass.getuser(), "home": str(lh.home)}]}))
    broker = subprocess.Popen([installed_script("keystone-agent"), "bus", "serve", "--host-config", str(host_config),
                               "--database", str(run / "bus.sqlite3"), "--socket", str(sock), "--wake-dir",
                               str(run / "wake")], stderr=subprocess.DEVNULL)
    request.addfinalizer(lambda: (broker.kill(), broker.wait()))
    for _ in range(100):
        if sock.exists():
            break
        time.sleep(0.05)
    config_file = lh.home / ".config/keystone-agent/config.json"
    config = json.loads(config_file.read_text())
    config["coordination"] = {"backend": "local", "local": {"socket": str(sock), "wakeDir": str(run / "wake")},
                              "wakeGraceSeconds": 0.5, "maxDeliveries": 1}
    config_file.write_text(json.dumps(config))
    comms = [installed_script("keystone-agent"), "comms"]
    home = ["--home", str(lh.home)]
    env = lh.env()
    sent = subprocess.run([*comms, "send", *home, "--to", HEALTHY, "--body", "poison"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stderr
    bus = LocalBus(sock)
    assert [m.id for m in bus.claim(1, 0.1, 1).messages] == [sent.stdout.strip()]  # delivered, never acked
    bus.close()
    time.sleep(0.2)
    drained = subprocess.run([*comms, "drain", *home, "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(drained.stdout)["dead_lettered"] == [sent.stdout.strip()], drained.stderr
    late = subprocess.run([*comms, "send", *home, "--to", HEALTHY, "--body", "nobody woke me"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert late.returncode == 0, late.stderr
    time.sleep(0.7)  # older than wakeGraceSeconds when the next loop's sweep finds it
    # an action of the agent waiting for a human's approval (policy tier approval_required), exported as
    # keystone-approvals-metrics.timer does (`agentctl approvals metrics`, here from the agent's own view)
    import hashlib
    import uuid

    from keystone_agents.agentctl.approvals import metrics_text
    from keystone_agents.atomic import write_atomic

    bus = LocalBus(sock)
    bus.approval_request(str(uuid.uuid4()), "deploy", "", {"kind": "shell", "target": "terraform apply"},
                         "shell:terraform apply", hashlib.sha256(b"shell:terraform apply").hexdigest(), "agent rule")
    time.sleep(1.5)  # older than the pipeline's approvalPendingSeconds (1)
    write_atomic(textfile_dir / "keystone-approvals.prom", metrics_text(bus.approvals_list("pending")), mode=0o644)
    bus.close()
    del os


@pytest.fixture(scope="module")
def world(tmp_path_factory, textfile_dir, prometheus, request):
    """Real runs of three agents writing into node_exporter's textfile directory."""
    root = tmp_path_factory.mktemp("world")
    failing = loop_home(root, FAILING, textfile_dir,
                        [("crash", "fails [fake:exit=1]")] + [(f"stuck-{i}", "needs help [fake:report=blocked]") for i in range(6)],
                        interval=1)  # its "timer" should run every second: it soon misses runs
    healthy = loop_home(root, HEALTHY, textfile_dir, [("write-report", "write the report")])
    for lh in (failing, healthy):
        assert lh.loop().returncode in (0, 3)
    # an agent whose configuration is invalid: no agent name, no textfileDir from it; the unit's environment
    # (PROMETHEUS_TEXTFILE_DIR, the user agent-<name>) still gets its failure to Prometheus
    broken = make_home(root / BROKEN)
    (broken.home / ".config/keystone-agent/config.json").write_text('{"maxTasks": "many"}')
    result = broken.loop(USER=f"agent-{BROKEN}", PROMETHEUS_TEXTFILE_DIR=str(textfile_dir))
    assert result.returncode == 1 and "maxTasks" in result.stderr, result.stderr
    # the scheduler of the healthy agent
    sched = subprocess.run([installed_script("keystone-agent"), "schedule", "--home", str(healthy.home)],
                           capture_output=True, text=True, env=healthy.env(), timeout=60)
    assert sched.returncode == 0, sched.stderr
    # a real notes-sync conflict: two clones edit the same line; the second one's sync keeps both sides
    bare = ns.make_remote(root / "notes")
    home_a = ns.make_home(root / "notes", "a", str(bare))
    home_b = ns.make_home(root / "notes", "b", str(bare))
    for home, directory in ((home_a, root / "notes-a-metrics"), (home_b, textfile_dir)):
        cfg_file = home / ".config/keystone-agent/config.json"
        cfg = json.loads(cfg_file.read_text())
        cfg.update(agentName=WRITER, textfileDir=str(directory))
        cfg_file.write_text(json.dumps(cfg))
    sync = [installed_script("keystone-agent"), "sync", "--home"]
    env = healthy.env()
    for home in (home_a, home_b):
        assert subprocess.run([*sync, str(home)], env=env, capture_output=True, timeout=60).returncode == 0
    (home_a / "notes/TODO.md").write_text("A\n")
    (home_b / "notes/TODO.md").write_text("B\n")
    assert subprocess.run([*sync, str(home_a)], env=env, capture_output=True, timeout=60).returncode == 0
    assert subprocess.run([*sync, str(home_b)], env=env, capture_output=True, timeout=60).returncode == 1

    start_comms(root, healthy, request, textfile_dir)

    # counters must rise between scrapes for increase(): let Prometheus see the first values, run again
    prometheus.wait_for('count(keystone_agent_task_loop_tokens_cumulative_total) >= 2')
    add_tasks(healthy, [("write-more", "write another report")])
    add_tasks(failing, [("crash-again", "fails [fake:exit=1]")])
    for lh in (failing, healthy):
        assert lh.loop().returncode in (0, 3)
    rose = prometheus.wait_for(
        'count(sum by (agent) (increase(keystone_agent_task_loop_tokens_cumulative_total[10m])) > 0) >= 2',
        timeout=40)
    assert rose, "the token counters did not rise between scrapes"
    return {"failing": failing, "healthy": healthy}


def test_every_documented_metric_arrives_with_host_agent_unit(world, prometheus):
    documented = documented_metrics()
    assert len(documented) >= 25, documented
    scraped = set(prometheus.get("/api/v1/label/__name__/values"))
    ours = {name for name in scraped if name.startswith("keystone_agent_")}
    assert documented - ours == set(), "documented but not scraped"
    assert ours - documented == set(), "scraped but not documented in docs/observability.md"
    for name in sorted(ours):
        for series in prometheus.query(name):
            labels = series["metric"]
            assert labels["host"] and labels["agent"] in (FAILING, HEALTHY, WRITER, BROKEN), labels
            assert labels["unit"].startswith(f"agent-{labels['agent']}-"), labels


def test_values_reflect_what_the_runs_did(world, prometheus):
    def value(expr: str) -> float:
        [series] = prometheus.query(expr)
        return float(series["value"][1])

    assert value(f'keystone_agent_task_loop_last_exit_code{{agent="{FAILING}"}}') == 3
    assert value(f'keystone_agent_task_loop_last_exit_code{{agent="{HEALTHY}"}}') == 0
    assert value(f'keystone_agent_task_loop_last_exit_code{{agent="{BROKEN}"}}') == 1
    assert value(f'keystone_agent_task_loop_config_valid{{agent="{BROKEN}"}}') == 0
    assert value(f'keystone_agent_task_loop_config_valid{{agent="{FAILING}"}}') == 1
    assert value(f'keystone_agent_task_loop_last_success_timestamp_seconds{{agent="{FAILING}"}}') == 0
    assert value(f'keystone_agent_task_loop_queue_tasks{{agent="{FAILING}",status="blocked"}}') == 6
    # write-report, write-more, and the comms message the sweep turned into a task
    assert value(f'keystone_agent_task_loop_queue_tasks{{agent="{HEALTHY}",status="completed"}}') == 3
    assert value(f'keystone_agent_comms_dead_letters{{agent="{HEALTHY}"}}') == 1
    assert value(f'keystone_agent_comms_swept_late_messages{{agent="{HEALTHY}"}}') == 1
    assert value(f'keystone_agent_comms_messages{{agent="{HEALTHY}",state="delivered"}}') == 1
    assert value(f'keystone_agent_comms_wake_latency_seconds{{agent="{HEALTHY}"}}') >= 0.5
    assert value(f'keystone_agent_task_loop_runs_cumulative_total{{agent="{HEALTHY}",status="success"}}') == 2
    assert value(f'keystone_agent_task_loop_runs_cumulative_total{{agent="{FAILING}",status="degraded"}}') == 2
    assert value(f'keystone_agent_task_loop_tasks_completed_cumulative_total{{agent="{HEALTHY}"}}') == 3
    assert value(f'keystone_agent_task_loop_stage_outcome{{agent="{FAILING}",stage="execute",outcome="degraded"}}') == 1
    # the healthy agent's last run ingested the comms message; the failing agent has no sources: skipped
    assert value(f'keystone_agent_task_loop_stage_outcome{{agent="{HEALTHY}",stage="ingest",outcome="ok"}}') == 1
    assert value(f'keystone_agent_task_loop_stage_outcome{{agent="{FAILING}",stage="ingest",outcome="skipped"}}') == 1
    assert value(f'keystone_agent_notes_sync_conflict_pending{{agent="{WRITER}"}}') == 1
    assert value(f'keystone_agent_scheduler_last_exit_code{{agent="{HEALTHY}"}}') == 0
    assert value(f'keystone_agent_task_loop_tokens_cumulative_total{{agent="{HEALTHY}"}}') > \
        value(f'keystone_agent_task_loop_tokens_total{{agent="{HEALTHY}"}}') > 0


def substitute(expr: str) -> str:
    """Grafana's variables, as Grafana would fill them for "All" and a 1 h range."""
    for name, value in (("$__rate_interval", "1m"), ("$__interval", "1m"), ("$__range", "1h"),
                        ("$host", ".+"), ("$agent", f"{FAILING}|{HEALTHY}|{WRITER}|{BROKEN}")):
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def dashboard_prometheus_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads(dashboard_path().read_text())
    found = [(p["title"], t["expr"]) for p in dashboard["panels"] if p.get("datasource", {}).get("type") == "prometheus"
             for t in p.get("targets", [])]
    found += [(v["name"], v["query"]["query"]) for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return found


def test_every_dashboard_expression_returns_data(world, prometheus):
    exprs = dashboard_prometheus_exprs()
    assert len(exprs) >= 30
    for title, expr in exprs:
        if expr.startswith("label_values("):  # a Grafana function: the series it reads must exist
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", expr)
            series = prometheus.query(substitute(match.group(1)))
            assert {s["metric"][match.group(2)] for s in series}, title
            continue
        if "notify_queue_usage" in expr:  # PostgreSQL backend only; this world's bus is the local broker
            continue
        result = prometheus.query(substitute(expr))
        assert result, f"panel {title!r}: no data for {substitute(expr)}"


def rule_exprs() -> list[tuple[str, str]]:
    import yaml

    doc = yaml.safe_load(render_rules(**PIPELINE_RULE_PARAMETERS))
    return [(r["alert"], r["expr"]) for g in doc["groups"] for r in g["rules"]]


def test_every_rule_expression_returns_data_and_each_alert_is_active(world, prometheus):
    rules = rule_exprs()
    assert {name for name, _ in rules} == {"KeystoneAgentStalled", "KeystoneAgentTaskLoopFailing",
                                           "KeystoneAgentBlockedSurge", "KeystoneAgentNotesSyncConflict",
                                           "KeystoneAgentTokenSpend", "KeystoneAgentMissedRuns",
                                           "KeystoneAgentTaskLoopCannotStart",
                                           "KeystoneAgentCommsDeadLetters", "KeystoneAgentCommsWakeFailing",
                                           "KeystoneApprovalPending"}
    for name, expr in rules:
        assert prometheus.query(expr), f"{name}: no data for {expr}"
    # the agent that cannot start is also failing and stalled
    expected = {"KeystoneAgentStalled": (FAILING, BROKEN), "KeystoneAgentTaskLoopFailing": (FAILING, BROKEN),
                "KeystoneAgentBlockedSurge": FAILING, "KeystoneAgentNotesSyncConflict": WRITER,
                "KeystoneAgentTokenSpend": None, "KeystoneAgentMissedRuns": FAILING,
                "KeystoneAgentTaskLoopCannotStart": BROKEN,
                "KeystoneAgentCommsDeadLetters": HEALTHY, "KeystoneAgentCommsWakeFailing": HEALTHY,
                "KeystoneApprovalPending": HEALTHY}
    def want(agent) -> set:
        return {FAILING, HEALTHY} if agent is None else set(agent) if isinstance(agent, tuple) else {agent}

    def firing_agents(rule) -> set:
        return {a["labels"]["agent"] for a in rule.get("alerts") or []}

    def settled(active) -> bool:  # each rule is evaluated on its own tick: wait for every expected series
        return all(name in active and firing_agents(active[name]) >= want(agent) for name, agent in expected.items())

    groups = prometheus.wait_for("vector(1)") and None
    for _ in range(60):
        groups = prometheus.get("/api/v1/rules")["groups"]
        active = {r["name"]: r for g in groups for r in g["rules"] if r.get("alerts")}
        if settled(active):
            break
        import time

        time.sleep(0.5)
    rules_loaded = [r for g in groups for r in g["rules"]]
    assert len(rules_loaded) == 10 and all(r["health"] == "ok" for r in rules_loaded), rules_loaded
    for name, agent in expected.items():
        alerts = active[name]["alerts"]
        agents = {a["labels"]["agent"] for a in alerts}
        assert agents == want(agent), (name, alerts)
