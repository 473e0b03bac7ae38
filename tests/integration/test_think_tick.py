"""Proactive think cycles and tick cycles through the real runner: the briefing decides whether a model is
called at all; a tick agent ends itself and stops its own timer (a recording systemctl); tick refuses hosted
providers (validate and the run itself)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from keystone_agents.loop import runner

from tests.conftest import FAKEBIN
from tests.support.loop import events, make_home


@pytest.fixture
def lh(tmp_path, clean_env, monkeypatch):
    lh = make_home(tmp_path)
    recorder = tmp_path / "sysbin"
    recorder.mkdir()
    (recorder / "systemctl").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {tmp_path}/systemctl.log\n')
    (recorder / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{recorder}{os.pathsep}{FAKEBIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_BIN_LOG", str(lh.fake_log))
    lh.write_tasks("""
        tasks:
          - name: known
            description: "Already here"
            status: blocked
            blocked_reason: "waits for a human"
    """)
    return lh


def systemctl_calls(lh) -> list[str]:
    path = lh.root / "systemctl.log"
    return path.read_text().splitlines() if path.exists() else []


def cycle(lh, trigger: str) -> int:
    return runner.run(lh.home, None, trigger=trigger)


def test_an_empty_briefing_calls_no_model_over_100_cycles_and_a_change_calls_exactly_one(lh):
    lh.config(exec={"mode": "proactive", "thinkInterval": 30, "instructions": "Keep the queue moving."})
    for _ in range(100):
        assert cycle(lh, "think") == 0
    assert lh.calls() == []  # 0 provider calls, 0 tokens
    tasks = lh.tasks.read_text() + '  - name: fresh\n    description: "New work"\n    status: pending\n'
    lh.tasks.write_text(tasks)
    assert cycle(lh, "think") == 0
    [call] = lh.calls()
    assert call["tool"] == "claude" and call["task"].startswith("think-")
    prompt = call["argv"][-1]
    assert prompt.startswith("Execute this task.") and "Keep the queue moving." in prompt
    assert "New task fresh (pending)." in prompt and "known" not in prompt
    think = next(t for t in lh.task_list() if t["name"].startswith("think-"))
    assert (think["source"], think["status"]) == ("think", "completed")
    for _ in range(5):  # the think's own bookkeeping is not news: idle again
        assert cycle(lh, "think") == 0
    assert len(lh.calls()) == 1


def test_the_briefing_is_deterministic_and_lists_status_changes(lh):
    from keystone_agents.config import load_config
    from keystone_agents.modes import cycles
    from keystone_agents.space import AgentSpace

    lh.config(exec={"mode": "proactive", "thinkInterval": 30})
    assert cycle(lh, "think") == 0  # baseline
    lh.tasks.write_text(lh.tasks.read_text().replace("status: blocked", "status: pending"))
    config = load_config(None, lh.home)
    space = AgentSpace.from_home(lh.home)
    first, _ = cycles.briefing(space, config, now=1000.0)
    again, _ = cycles.briefing(space, config, now=1000.0)
    assert first.items == again.items == ["Task known changed: blocked -> pending."]


def test_max_quiet_seconds_thinks_with_an_empty_briefing(lh):
    lh.config(exec={"mode": "proactive", "thinkInterval": 30, "maxQuietSeconds": 1})
    assert cycle(lh, "think") == 0
    assert lh.calls() == []
    time.sleep(1.1)
    assert cycle(lh, "think") == 0
    assert len(lh.calls()) == 1 and "No think for" in lh.calls()[0]["argv"][-1]


def tick_config(lh, instructions: str, **extra):
    lh.config(exec={"mode": "tick", "thinkInterval": 5, "instructions": instructions, **extra},
              defaults={"provider": "command", "model": "tiny"},
              commandProvider={"argv": ["fake-llm", "run", "{model}"]})


def test_a_tick_agent_that_ends_itself_stops_its_timer(lh):
    tick_config(lh, "Count the sheep.")
    assert cycle(lh, "tick") == 0
    assert cycle(lh, "tick") == 0
    assert [c["task"] for c in lh.calls("fake-llm")] == [
        t["name"] for t in lh.task_list() if t["name"].startswith("tick-")]
    assert "Tick 2." in lh.calls("fake-llm")[1]["stdin"] and systemctl_calls(lh) == []
    tick_config(lh, "Count the sheep, then stop. [fake:report=end_tick]")
    assert cycle(lh, "tick") == 0
    assert systemctl_calls(lh) == ["--user stop agent-demo-tick.timer"]
    assert (lh.state / "tick-ended").exists()
    assert cycle(lh, "tick") == 0  # a late tick does nothing
    assert len(lh.calls("fake-llm")) == 3


def test_the_session_deadline_stops_the_tick_timer(lh):
    tick_config(lh, "Tick.", timeout=1)
    assert cycle(lh, "tick") == 0
    time.sleep(1.1)
    assert cycle(lh, "tick") == 0
    assert len(lh.calls("fake-llm")) == 1
    assert systemctl_calls(lh) == ["--user stop agent-demo-tick.timer"]


def test_tick_with_a_hosted_provider_is_refused_by_validate_and_by_the_run(lh):
    lh.config(exec={"mode": "tick", "thinkInterval": 5})
    result = lh.agent("validate")
    assert result.returncode == 1
    assert "exec.mode tick needs a local provider: provider claude is hosted" in result.stdout
    assert cycle(lh, "tick") == 1
    assert lh.calls() == []
    lh.config(exec={"mode": "tick", "thinkInterval": 5}, defaults={"provider": "openai", "model": "m"},
              openaiProvider={"baseUrl": "https://api.openai.com/v1"})
    assert "loopback" in lh.agent("validate").stdout
    lh.config(exec={"mode": "tick"})  # no thinkInterval: the schema says which key
    bad = lh.agent("validate")
    assert bad.returncode == 1 and "thinkInterval" in bad.stdout


def test_watch_prefixes_without_a_bus_are_refused_by_validate(lh):
    lh.config(exec={"mode": "proactive", "thinkInterval": 60, "watchPrefixes": ["jobs/"]})
    bad = lh.agent("validate")
    assert bad.returncode == 1 and "exec.watchPrefixes needs the coordination bus" in bad.stdout


def test_tick_with_codex_on_a_local_model_server(lh):
    lh.config(exec={"mode": "tick", "thinkInterval": 5, "instructions": "Tick."},
              defaults={"provider": "codex", "model": "gpt-oss:20b"}, codexProvider={"localProvider": "ollama"})
    assert lh.agent("validate").returncode == 0
    assert cycle(lh, "tick") == 0
    [call] = lh.calls("codex")
    assert call["argv"][:6] == ["exec", "--json", "--full-auto", "--oss", "--local-provider=ollama",
                                "--model=gpt-oss:20b"]
    assert call["parsed"]["local_provider"] == "ollama"
