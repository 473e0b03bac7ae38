"""The task-loop timer's invocation skips click (start-up cost); everything else goes through click."""

from __future__ import annotations

import json
import subprocess
import sys

from keystone_agents.cli.agent import timer_invocation


def test_only_the_timers_exact_shape_is_taken(tmp_path, monkeypatch):
    monkeypatch.delenv("KEYSTONE_AGENT_HOME", raising=False)
    monkeypatch.delenv("KEYSTONE_AGENT_LOG_FORMAT", raising=False)
    assert timer_invocation(["loop"]) == {"home": None, "config": None}
    assert timer_invocation(["loop", "--config", "/etc/a.json"]) == {"home": None, "config": "/etc/a.json"}
    assert timer_invocation(["loop", "--home=/h", "--config", "c.json"]) == {"home": "/h", "config": "c.json"}
    for argv in (["loop", "--dry-run"], ["loop", "--json"], ["loop", "-q"], ["loop", "--home"],
                 ["loop", "--home", "/a", "--home", "/b"], ["loop", "--home", "--config"], ["tasks"],
                 ["loop", "--help"], []):
        assert timer_invocation(argv) is None, argv
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert timer_invocation(["loop", "--home", str(a_file)]) is None  # click explains the error
    assert timer_invocation(["loop", "--config", str(tmp_path)]) is None
    monkeypatch.setenv("KEYSTONE_AGENT_HOME", "/from/env")
    assert timer_invocation(["loop"]) == {"home": "/from/env", "config": None}
    monkeypatch.setenv("KEYSTONE_AGENT_LOG_FORMAT", "yaml")
    assert timer_invocation(["loop"]) is None


PROBE = """
import sys
sys.argv = ["keystone-agent", *sys.argv[1:]]
from keystone_agents.cli.agent import main
try:
    main()
except SystemExit as exc:
    code = exc.code
print("RESULT", code, "click" in sys.modules, file=sys.stderr)
"""


def test_fast_and_click_paths_run_the_same_loop(agent_home, clean_env):
    import shutil

    (agent_home / "TASKS.yaml").write_text("tasks: []\n")
    runs = {}
    for label, extra in (("fast", []), ("click", ["--log-format", "logfmt"])):
        home = agent_home.parent / label
        shutil.copytree(agent_home, home, symlinks=True)
        result = subprocess.run([sys.executable, "-c", PROBE, "loop", "--home", str(home), *extra],
                                capture_output=True, text=True, timeout=60)
        *events, last = result.stderr.strip().splitlines()
        runs[label] = (last, [line.split('event="')[1].split('"')[0] for line in events if 'event="' in line])
    assert runs["fast"][0] == "RESULT 0 False"  # ran the loop, never imported click
    assert runs["click"][0] == "RESULT 0 True"
    assert runs["fast"][1] == runs["click"][1] and runs["fast"][1][0] == "run_start"
    bad = subprocess.run([sys.executable, "-c", PROBE, "loop", "--home", str(agent_home / "TASKS.yaml")],
                         capture_output=True, text=True, timeout=60)
    assert "RESULT 2 True" in bad.stderr and "is a file" in bad.stderr
    other = subprocess.run([sys.executable, "-c", PROBE, "paused", "--home", str(agent_home), "--json"],
                           capture_output=True, text=True, timeout=60)
    assert json.loads(other.stdout)["state"] == "active" and "RESULT 0 True" in other.stderr
