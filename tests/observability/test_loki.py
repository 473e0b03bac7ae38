"""The Loki side, proven statically (Loki is not installable here): the events of real runs parse as logfmt
with a go-logfmt-compatible parser; every label and field the dashboard's LogQL uses is one the runtime emits;
the journald → Loki recipe (templates/loki/keystone-agents.alloy) labels real-shaped journal entries right,
agent names with dashes included."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import logfmtkv
import pytest

from keystone_agents.observability import alloy_recipe_path, dashboard_path
from tests.conftest import installed_script
from tests.support.loop import make_home

AGENT = "night-owl"
NASTY = 'say "hi" a=b c==d back\\slash\ttab'  # what the broken source prints (then a second line)
PAUSE_REASON = 'maintenance "window" until=tomorrow \\ done'
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def emitted(tmp_path_factory) -> dict:
    """Event lines of real runs: loop (sources, tasks completing / blocked / failing), a paused run, a quiet
    run, and the scheduler."""
    root = tmp_path_factory.mktemp("loki")
    lh = make_home(root)
    lh.config(agentName=AGENT, textfileDir=str(root / "prom"))
    bad = lh.script("bad.sh", f"printf '%s\\nsecond line =x\\n' '{NASTY}'")
    good = lh.script("good.sh", """echo '[{"title": "Reply to \\"Bob\\" about a=b", "id": 7}]'""")
    lh.write_projects(f"""
        projects: []
        sources:
          - name: broken
            command: ["{bad}"]
          - name: mail
            command: ["{good}"]
    """)
    lh.write_tasks("""
        tasks:
          - name: write-report
            description: "write it [fake:pr=https://github.com/o/r/pull/12]"
            status: pending
          - name: needs-human
            description: "stuck [fake:report=blocked]"
            status: pending
          - name: crashes
            description: "fails [fake:exit=1]"
            status: pending
    """)
    stderr = [lh.loop().stderr]
    assert lh.agent("pause", PAUSE_REASON).returncode == 0
    stderr.append(lh.loop().stderr)
    assert lh.agent("resume").returncode == 0
    stderr.append(lh.loop().stderr)
    sched = subprocess.run([installed_script("keystone-agent"), "schedule", "--home", str(lh.home)],
                           capture_output=True, text=True, env=lh.env(), timeout=60)
    stderr.append(sched.stderr)
    lines = [line for text in stderr for line in text.splitlines() if line.startswith("ts=")]
    return {"lines": lines, "events": [logfmtkv.parse(line, strict=True) for line in lines], "home": lh.home}


def test_every_event_line_parses_as_logfmt_and_keeps_its_values(emitted):
    events = emitted["events"]
    assert len(events) >= 20
    names = {e["event"] for e in events}
    assert {"run_start", "stage_start", "stage_finish", "task_start", "task_finish", "run_finish", "run_paused",
            "log"} <= names
    for line, event in zip(emitted["lines"], events):
        assert list(event)[:3] == ["ts", "event", "msg"], line
        assert event["agent"] == AGENT and event["unit"].startswith(f"agent-{AGENT}-") and event["host"], line
        assert all(isinstance(v, str) for v in event.values()), line  # every value quoted: no bare keys
    broken = next(e for e in events if e["event"] == "log" and e.get("source") == "broken" and "output_excerpt" in e)
    assert NASTY + "\nsecond line =x" in broken["output_excerpt"]
    [paused] = [e for e in events if e["event"] == "run_paused"]
    assert paused["reason"] == PAUSE_REASON
    finished = {e["task_name"]: e for e in events if e["event"] == "task_finish"}
    assert json.loads(finished["write-report"]["pr_urls"]) == ["https://github.com/o/r/pull/12"]
    assert finished["needs-human"]["outcome"] == "blocked" and finished["crashes"]["outcome"] == "failed"
    assert float(finished["write-report"]["token_total"]) > 0
    # the run logs hold the same lines
    run_logs = "".join(p.read_text() for p in (emitted["home"] / ".local/state/agent-task-loop/logs").glob("*.log"))
    loop_lines = [line for line in emitted["lines"] if "-task-loop" in line.split(" unit=", 1)[1][:60]]
    assert all(line in run_logs for line in loop_lines)


# ------------------------------------------------------------------ the dashboard's LogQL

def loki_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(dashboard_path().read_text())
    return [(p["title"], t["expr"]) for p in dashboard["panels"] if p.get("datasource", {}).get("type") == "loki"
            for t in p["targets"]]


def logql_uses(expr: str) -> dict:
    """Stream-selector labels, parsed fields (filters, unwrap, grouping, line_format) and a fixed event."""
    selector = re.match(r"^(?:[a-z_]+(?: by \([^)]*\))? ?\()*\s*\{([^}]*)\}", expr)
    stream = dict(re.findall(r'([a-z_]+)\s*=~?\s*"([^"]*)"', selector.group(1)))
    pipeline = expr[selector.end():]
    fields = set()
    if "| logfmt" in pipeline:
        fields |= set(re.findall(r"\|\s*([a-z_]+)\s*(?:=~|!=|!~|=|>|<)", pipeline))
        fields |= set(re.findall(r"unwrap ([a-z_]+)", pipeline))
        fields |= set(re.findall(r"\{\{\s*(?:if\s+)?\.([a-z_]+)", pipeline))
    grouping = {g.strip() for group in re.findall(r"by \(([^)]*)\)", expr) for g in group.split(",")}
    fixed = re.search(r'\| event="([a-z_]+)"', pipeline)
    return {"stream": stream, "fields": fields, "grouping": grouping, "event": fixed.group(1) if fixed else None}


RECIPE_LABELS = {"job", "host", "agent", "unit"}
JOBS = {"keystone-agents", "keystone-agent-task-logs"}


def test_every_logql_label_and_field_is_one_the_runtime_emits(emitted):
    queries = loki_queries()
    assert len(queries) >= 6
    by_event: dict[str, set[str]] = {}
    for event in emitted["events"]:
        by_event.setdefault(event["event"], set()).update(event)
    every_field = set().union(*by_event.values())
    for title, expr in queries:
        uses = logql_uses(expr)
        assert set(uses["stream"]) <= RECIPE_LABELS, (title, uses["stream"])
        assert uses["stream"]["job"] in JOBS, title
        available = by_event[uses["event"]] if uses["event"] else every_field
        if uses["event"]:
            assert uses["event"] in by_event, (title, uses["event"])
        assert uses["fields"] <= available, (title, uses["fields"] - available)
        assert uses["grouping"] <= available | RECIPE_LABELS, (title, uses["grouping"] - available)
    assert any("unwrap duration_seconds" in e for _, e in queries)
    assert any("unwrap token_total" in e for _, e in queries)


def test_dashboard_event_and_outcome_choices_exist_in_the_runtime():
    variables = {v["name"]: v for v in json.loads(dashboard_path().read_text())["templating"]["list"]}
    source = "".join(p.read_text() for p in (REPO / "python/keystone_agents").rglob("*.py"))
    emitted_names = set(re.findall(r'\.(?:info|warning|error)\(\s*"([a-z_]+)"', source))
    assert set(variables["event"]["query"].split(",")) <= emitted_names
    outcomes = set(variables["outcome"]["query"].split(","))
    execute = (REPO / "python/keystone_agents/loop/execute.py").read_text()
    assert all(f'"{o}"' in execute for o in outcomes), outcomes
    assert {"host", "agent"} <= set(variables)
    for name in ("host", "agent"):
        assert variables[name]["allValue"] == ".+" and variables[name]["multi"]


# ------------------------------------------------------------------ the journald → Loki recipe

def alloy_string(text: str) -> str:
    return json.loads(text)  # Alloy strings use Go's escapes, which JSON's match for what the recipe uses


def relabel_rules() -> list[dict]:
    recipe = alloy_recipe_path().read_text()
    block = re.search(r'loki\.relabel "keystone_agents_journal" \{(.*?)\n\}', recipe, re.S).group(1)
    rules = []
    for body in re.findall(r"rule \{(.*?)\n  \}", block, re.S):
        rule = {"action": "replace", "replacement": "$1", "regex": "(.*)"}
        for key, value in re.findall(r"(\w+)\s*=\s*(\[.*?\]|\"(?:[^\"\\]|\\.)*\")", body):
            rule[key] = json.loads(value) if value.startswith("[") else alloy_string(value)
        rules.append(rule)
    return rules


def relabel(labels: dict[str, str], rules: list[dict]) -> dict[str, str] | None:
    """Prometheus relabelling as Alloy applies it: source values joined by ';', the regex fully anchored."""
    labels = dict(labels)
    for rule in rules:
        value = ";".join(labels.get(name, "") for name in rule["source_labels"])
        match = re.fullmatch(rule["regex"], value)
        if rule["action"] == "drop":
            if match:
                return None
        elif match:
            labels[rule["target_label"]] = match.expand(re.sub(r"\$(\d)", r"\\\1", rule["replacement"]))
    return labels


def process_stages(line: str, labels: dict[str, str]) -> dict[str, str]:
    """The recipe's loki.process: stage.logfmt (mapping) then stage.labels (set when extracted)."""
    recipe = alloy_recipe_path().read_text()
    block = re.search(r'loki\.process "keystone_agents_events" \{(.*?)\n\}', recipe, re.S).group(1)
    mapping = dict(re.findall(r'"(\w+)"\s*=\s*"(\w+)"', re.search(r"stage\.logfmt \{(.*?)\}", block, re.S).group(1)))
    label_map = dict(re.findall(r'(\w+)\s*=\s*"(\w+)"', re.search(r"stage\.labels \{(.*?)\n  \}", block, re.S).group(1)))
    try:
        parsed = logfmtkv.parse(line, strict=True)
    except logfmtkv.LogfmtError:
        parsed = {}
    extracted = {name: parsed[key] for name, key in mapping.items() if isinstance(parsed.get(key), str)}
    out = dict(labels)
    for label, name in label_map.items():
        if extracted.get(name):
            out[label] = extracted[name]
    return out


def journal_entry(unit: str, message: str, hostname: str = "ocean.example.net") -> dict[str, str]:
    """What `journalctl -o json` shows for a line of an agent's user unit (SyslogIdentifier = the unit)."""
    return {"MESSAGE": message, "_HOSTNAME": hostname, "_SYSTEMD_USER_UNIT": unit, "_SYSTEMD_UNIT": "user@4001.service",
            "SYSLOG_IDENTIFIER": unit.removesuffix(".service"), "_UID": "4001", "PRIORITY": "6", "_TRANSPORT": "stdout"}


def labels_for(entry: dict[str, str]) -> dict[str, str] | None:
    labels = {"__journal_" + key.lower(): value for key, value in entry.items()} | {"job": "keystone-agents"}
    labels = relabel(labels, relabel_rules())
    if labels is None:
        return None
    visible = {k: v for k, v in labels.items() if not k.startswith("__")}
    return process_stages(entry["MESSAGE"], visible)


def test_recipe_labels_every_real_event_with_its_own_fields(emitted):
    assert len(relabel_rules()) == 4
    for line, event in zip(emitted["lines"], emitted["events"]):
        entry = journal_entry(event["unit"] + ".service", line, hostname=event["host"] + ".example.net")
        assert labels_for(entry) == {"job": "keystone-agents", "host": event["host"], "agent": AGENT,
                                     "unit": event["unit"]}, line


@pytest.mark.parametrize("unit, agent", [
    ("agent-ops-bot-task-loop.service", "ops-bot"),
    ("agent-a-b-c-scheduler.service", "a-b-c"),
    ("agent-x-task-loop-notes-sync.service", "x-task-loop"),
    ("agent-drago-notes-sync.service", "drago"),
])
def test_recipe_agent_names_with_dashes_from_the_journal(unit, agent):
    labels = labels_for(journal_entry(unit, "Traceback (most recent call last):"))
    assert labels == {"job": "keystone-agents", "host": "ocean", "agent": agent, "unit": unit.removesuffix(".service")}


@pytest.mark.parametrize("unit", ["sshd.service", "agent-drago-labwc.service", "keystone-notes-sync.service", ""])
def test_recipe_drops_other_units(unit):
    assert labels_for(journal_entry(unit, 'ts="x" event="log" msg="not ours"')) is None


def test_recipe_task_log_path_gives_agent_and_task(emitted):
    recipe = alloy_recipe_path().read_text()
    expression = alloy_string(re.search(r'stage\.regex \{\s*expression = ("(?:[^"\\]|\\.)*")', recipe).group(1))
    paths = {e["task_name"]: e["task_log_path"] for e in emitted["events"] if e["event"] == "task_start"}
    assert paths
    state = str(emitted["home"]) + "/"
    for task, path in paths.items():
        as_deployed = path.replace(state, "/home/agent-night-owl/")
        match = re.fullmatch(expression, as_deployed)
        assert match and match["agent"] == AGENT and match["task_name"] == task, as_deployed
    # the file source's glob covers the same place
    assert '"/home/agent-*/.local/state/agent-task-loop/logs/tasks/*.log"' in recipe
