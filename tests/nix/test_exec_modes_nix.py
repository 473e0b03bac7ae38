"""keystone.os.agents.<name>.exec: the runtime config it writes, the think/tick units (checked by
systemd-analyze verify), and the assertions — the tick's "local provider" rule against the runtime's own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from keystone_agents.config import parse_config
from keystone_agents.modes import local_provider_problem

from tests.nix.test_nix_module import valid_agent_config


def agent(body: str) -> str:
    return '{ networking.hostName = "ocean"; keystone.os.agents.drago = ' + body + '; }'


def test_exec_defaults_and_maxturns_alias(evaluate):
    ev = evaluate(agent("{ notes.taskLoop.maxTurns = 7; }"))
    assert ev["failedAssertions"] == []
    data = valid_agent_config(ev, "drago")
    assert data["exec"] == {"mode": "timer", "maxAutoTurns": 1, "watchPrefixes": []}
    config = parse_config(data)
    assert config.max_iterations == 7  # the deprecated alias still limits
    assert not [u for u in ev["userTimers"] if u.endswith(("-think", "-tick"))]


def test_exec_options_reach_the_runtime(evaluate):
    ev = evaluate(agent('{ exec = { mode = "autonomous"; maxIterations = 12; maxAutoTurns = 4; maxContextTokens = 90000; '
                        'instructions = "Keep the queue short."; watchPrefixes = [ "team/" ]; }; '
                        'notes.taskLoop.maxTurns = 7; }'))
    assert ev["failedAssertions"] == []
    config = parse_config(valid_agent_config(ev, "drago"))
    assert (config.exec.mode, config.max_iterations, config.exec.max_auto_turns) == ("autonomous", 12, 4)
    assert config.execution_token_budget == 90000 and config.exec.watch_prefixes == ["team/"]
    assert config.exec.instructions.strip() == "Keep the queue short."


def test_proactive_needs_think_interval(evaluate):
    ev = evaluate(agent('{ exec.mode = "proactive"; }'))
    assert any("exec.thinkInterval" in m for m in ev["failedAssertions"])


def test_reactive_needs_comms(evaluate):
    ev = evaluate(agent('{ exec.mode = "reactive"; }'))
    assert any("reactive" in m and "comms" in m for m in ev["failedAssertions"])
    ev = evaluate(agent('{ exec.mode = "reactive"; triggers = [ "comms" ]; }'))
    assert any('coordination.backend is "none"' in m for m in ev["failedAssertions"])


REACTIVE_BODY = '{ exec.mode = "reactive"; triggers = [ "comms" "manual" ]; }'


def reactive(body: str = REACTIVE_BODY) -> str:
    """A reactive agent on a host with the local bus (coordination.nix defines its comms units)."""
    return ('{ networking.hostName = "ocean"; keystone.os.agentRuntime.coordination.backend = "local"; '
            'keystone.os.agents.drago = ' + body + '; }')


def test_reactive_agent_is_woken_by_its_wake_file_and_has_no_timer(evaluate):
    ev = evaluate(reactive())
    assert ev["failedAssertions"] == []
    # the comms units are coordination.nix's (one definition): wake file → drain → run-requested → task loop
    comms = ev["userPaths"]["agent-drago-comms"]
    assert comms["pathConfig"]["PathChanged"] == "/run/keystone-bus/wake/drago"
    assert comms["pathConfig"]["Unit"] == "agent-drago-comms.service"
    rerun = ev["userPaths"]["agent-drago-loop-rerun"]
    assert rerun["pathConfig"]["PathExists"].endswith("/.local/state/agent-task-loop/state/run-requested")
    assert rerun["pathConfig"]["Unit"] == "agent-drago-task-loop.service"
    drain = ev["userServices"]["agent-drago-comms"]["serviceConfig"]["ExecStart"]
    assert drain.endswith("keystone-agent comms drain --config /etc/keystone-agents/agents/drago.json")
    assert "agent-drago-task-loop" not in ev["userTimers"]  # no "schedule" trigger: no sweep timer
    assert "agent-drago-task-loop" in ev["userServices"]  # the loop itself is still there, for the path unit
    assert {a["name"]: (a["triggers"], a["mode"]) for a in ev.host_config()["agents"]} == \
        {"drago": (["comms", "manual"], "reactive")}
    # with "schedule" the timer stays as the sweep
    ev = evaluate(reactive(REACTIVE_BODY.replace('[ "comms" "manual" ]', '[ "schedule" "comms" ]')))
    assert "agent-drago-task-loop" in ev["userTimers"]


def test_proactive_think_timer(evaluate):
    ev = evaluate(agent('{ exec = { mode = "proactive"; thinkInterval = 30; }; }'))
    assert ev["failedAssertions"] == []
    timer = ev["userTimers"]["agent-drago-think"]
    assert timer["timerConfig"] == {"OnActiveSec": 1, "AccuracySec": "1s", "OnUnitInactiveSec": 30,
                                    "Unit": "agent-drago-think.service"}
    service = ev["userServices"]["agent-drago-think"]
    assert service["serviceConfig"]["ExecStart"].endswith(
        "keystone-agent loop --trigger think --config /etc/keystone-agents/agents/drago.json")
    assert "agent-drago-task-loop" in ev["userTimers"]  # the sweep stays


TICK_LOCAL = '{ exec = { mode = "tick"; thinkInterval = 5; }; notes.taskLoop.execute.provider = "command"; ' \
             'settings.commandProvider.argv = [ "ollama" "run" "{model}" ]; }'


def test_tick_with_hosted_provider_is_refused(evaluate):
    ev = evaluate(agent('{ exec = { mode = "tick"; thinkInterval = 5; }; }'))
    assert any("local execute provider" in m and "claude is hosted" in m for m in ev["failedAssertions"])
    ev = evaluate(agent(TICK_LOCAL))
    assert ev["failedAssertions"] == []
    timer = ev["userTimers"]["agent-drago-tick"]
    assert timer["timerConfig"]["OnUnitActiveSec"] == 5 and timer["timerConfig"]["AccuracySec"] == "1s"
    assert timer["unitConfig"]["ConditionPathExists"] == "!%h/.local/state/agent-task-loop/state/tick-ended"


CASES = [
    ("command", None, True), ("openai", "http://127.0.0.1:11434/v1", True), ("openai", "http://localhost:8080", True),
    ("openai", "http://[::1]:8080/v1", True), ("openai", "https://api.openai.com/v1", False),
    ("openai", "http://127.evil.example/v1", False), ("claude", None, False), ("codex", None, False),
    ("gemini", None, False), ("auto", None, False), ("codex", "ollama", True), ("codex", "lmstudio", True),
]


@pytest.mark.parametrize("provider,url,local", CASES)
def test_local_provider_rule_is_the_same_in_nix_and_python(evaluate, provider, url, local):
    key = "codexProvider.localProvider" if provider == "codex" else "openaiProvider.baseUrl"
    settings = f'settings.{key} = "{url}";' if url else ""
    ev = evaluate(agent(f'{{ exec = {{ mode = "tick"; thinkInterval = 5; }}; notes.taskLoop.execute.provider = '
                        f'"{provider}"; settings.commandProvider.argv = [ "ollama" "run" "x" ]; {settings} }}'))
    nix_local = not any("local execute provider" in m for m in ev["failedAssertions"])
    python_local = local_provider_problem(parse_config(ev.agent_config("drago"))) is None
    assert nix_local == python_local == local


def _ini(unit: dict, section: str) -> str:
    def value(v):
        return " ".join(map(str, v)) if isinstance(v, list) else ("yes" if v is True else "no" if v is False else str(v))

    lines = ["[Unit]", f"Description={unit['description']}"]
    lines += [f"{k}={value(v)}" for k, v in (unit.get("unitConfig") or {}).items()]
    lines.append(f"[{section}]")
    body = {"Service": unit.get("serviceConfig"), "Timer": unit.get("timerConfig"), "Path": unit.get("pathConfig")}[section]
    lines += [f"{k}={value(v)}" for k, v in body.items()]
    if section == "Service":
        lines += [f'Environment="{k}={v}"' for k, v in (unit.get("environment") or {}).items()]
    if unit.get("wantedBy"):
        lines += ["[Install]", "WantedBy=" + " ".join(unit["wantedBy"])]
    return "\n".join(lines) + "\n"


def test_think_and_tick_units_pass_systemd_analyze_verify(evaluate, tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed (Debian systemd)")
    root = tmp_path / "store"
    bindir = root / "keystone-agents-0.1.0" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "keystone-agent").symlink_to(Path(sys.executable).parent / "keystone-agent")
    units = tmp_path / "units"
    units.mkdir()
    for body, trigger in ((TICK_LOCAL, "tick"), ('{ exec = { mode = "proactive"; thinkInterval = 30; }; }', "think")):
        ev = evaluate(agent(body), pkgs_root=root)
        name = f"agent-drago-{trigger}"
        (units / f"{name}.service").write_text(_ini(ev["userServices"][name], "Service"))
        (units / f"{name}.timer").write_text(_ini(ev["userTimers"][name], "Timer"))
    ev = evaluate(reactive(), pkgs_root=root)
    for name in ("agent-drago-comms", "agent-drago-task-loop"):
        (units / f"{name}.service").write_text(_ini(ev["userServices"][name], "Service"))
    for name in ("agent-drago-comms", "agent-drago-loop-rerun"):
        (units / f"{name}.path").write_text(_ini(ev["userPaths"][name], "Path"))
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "HOME": str(tmp_path)}
    files = sorted(str(p) for p in units.iterdir())
    verify = subprocess.run(["systemd-analyze", "--user", "verify", *files], env=env, capture_output=True, text=True)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    # the check can fail: an ExecStart whose program is missing
    (bindir / "keystone-agent").unlink()
    broken = subprocess.run(["systemd-analyze", "--user", "verify", str(units / "agent-drago-tick.service")], env=env,
                            capture_output=True, text=True)
    assert broken.returncode != 0 and "keystone-agent" in broken.stderr


def test_host_config_carries_each_agents_mode(evaluate):
    from keystone_agents.agentctl.hostconfig import parse

    ev = evaluate('{ networking.hostName = "ocean"; keystone.os.agents.drago = { exec.mode = "autonomous"; }; '
                  'keystone.os.agents.luce = { }; }')
    host = ev.host_config()
    assert {a["name"]: a["mode"] for a in host["agents"]} == {"drago": "autonomous", "luce": "timer"}
    assert parse(host).get("drago").mode == "autonomous"  # agentctl's own loader reads it


def test_host_config_carries_watch_prefixes_for_the_bus(evaluate):
    """exec.watchPrefixes reaches the host configuration, from which the broker and `bus migrate` know whom a
    shared-state write wakes (coordination.registry.watchers)."""
    from keystone_agents.agentctl.hostconfig import parse
    from keystone_agents.coordination.registry import from_host_config

    ev = evaluate('{ networking.hostName = "ocean"; keystone.os.agents.drago = { exec.watchPrefixes = [ "jobs/" ]; }; '
                  'keystone.os.agents.luce = { }; }')
    host = ev.host_config()
    assert {a["name"]: a["watchPrefixes"] for a in host["agents"]} == {"drago": ["jobs/"], "luce": []}
    registry = from_host_config(parse(host), include_root=False)
    luce = registry.agent("luce")
    assert [p.name for p in registry.watchers("jobs/build", luce)] == ["drago"]
    assert registry.watchers("jobs/build", registry.agent("drago")) == []  # its own write wakes nobody
    assert registry.watchers("other/x", luce) == []
