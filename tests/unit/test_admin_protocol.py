"""The admin protocol's one allow-list (agentctl/verbs.py) and the helper (agentctl/svc.py), as the user running
the tests. The same protocol through real sudo and real agent users: tests/realhost/test_admin_protocol.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from keystone_agents.agentctl import svc, verbs
from keystone_agents.agentctl.hostconfig import AgentEntry, current_user
from keystone_agents.cli import ctl

AGENT = AgentEntry("drago", "agent-drago", "/home/agent-drago", config_path="/etc/ka/drago.json",
                   system_units=("agent-drago-ssh-agent",))


def test_agentctl_offers_exactly_the_allow_list():
    assert set(ctl.VERBS) == set(verbs.VERBS)
    assert set(verbs.HELPER_VERBS) == {name for name, verb in verbs.VERBS.items() if not verb.host_only}
    assert "vnc" not in verbs.HELPER_VERBS
    assert not set(verbs.REFUSED) & set(verbs.VERBS)


@pytest.mark.parametrize("verb, args, argv", [
    ("tasks", ["--json"], ["keystone-agent", "tasks", "--home", "/home/agent-drago", "--config", "/etc/ka/drago.json", "--json"]),
    ("pause", ["a", "b"], ["keystone-agent", "pause", "--home", "/home/agent-drago", "--config", "/etc/ka/drago.json", "--", "a", "b"]),
    ("task", ["add", "x"], ["keystone-agent", "task", "add", "--home", "/home/agent-drago", "--config", "/etc/ka/drago.json", "x"]),
    ("status", ["u.service"], ["systemctl", "--user", "status", "u.service"]),
    ("journalctl", ["-n", "5"], ["journalctl", "--user", "-n", "5"]),
    ("exec", ["id", "-u"], ["id", "-u"]),
    ("run", [], ["systemctl", "--user", "start", "--no-block", "agent-drago-task-loop.service"]),
    ("run", ["--prompt", "$(x)"], ["keystone-agent", "loop", "--home", "/home/agent-drago", "--config", "/etc/ka/drago.json", "--prompt", "$(x)"]),
    ("claude", ["--role", "r", "--"], ["keystone-agent", "session", "--home", "/home/agent-drago", "--config", "/etc/ka/drago.json", "claude", "--role", "r", "--"]),
])
def test_expansions(verb, args, argv):
    assert verbs.expand(verb, AGENT, args) == argv


@pytest.mark.parametrize("verb, args, says", [
    ("edit", [], "is not allowed: it opens an editor"),
    ("bogus", [], "not an agentctl verb"),
    ("status", ["--system"], "'systemctl --system' is not allowed"),
    ("status", ["-Hother"], "'systemctl -Hother' is not allowed"),
    ("journalctl", ["--vacuum-time=1s"], "'journalctl --vacuum-time=1s' is not allowed"),
    ("journalctl", ["--file", "/x"], "'journalctl --file' is not allowed"),
    ("exec", [], "exec needs a command"),
    ("run", ["--task"], "run takes nothing"),
    ("shell", ["x"], "shell takes no arguments"),
    ("vnc", [], "runs on the admin's side"),
])
def test_refusals(verb, args, says):
    with pytest.raises(verbs.Refused, match=None) as info:
        verbs.expand(verb, AGENT, args)
    assert says in str(info.value)


def test_an_option_after_double_dash_is_an_argument():
    assert verbs.expand("journalctl", AGENT, ["--", "--rotate"]) == ["journalctl", "--user", "--", "--rotate"]


def test_the_helper_environment_comes_from_the_host_config_not_the_caller():
    agent = AgentEntry("drago", "agent-drago", "/home/agent-drago", config_path="/c.json", path="/p/bin",
                       ssh_auth_sock="/run/s.sock")
    env = svc.agent_environment(agent, 4001, {"HOME": "/root", "PATH": "/evil", "SUDO_USER": "alice",
                                              "LD_PRELOAD": "/evil.so", "LC_ALL": "C", "KEYSTONE_AGENT_CONFIG": "/x"})
    assert env == {
        "SUDO_USER": "alice", "LC_ALL": "C", "HOME": "/home/agent-drago", "USER": "agent-drago",
        "LOGNAME": "agent-drago", "XDG_RUNTIME_DIR": "/run/user/4001",
        "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/4001/bus", "PATH": "/p/bin",
        "SSH_AUTH_SOCK": "/run/s.sock", "KEYSTONE_AGENT_CONFIG": "/c.json",
    }


def _helper(tmp_path, user: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    config = tmp_path / "agentctl.json"
    config.write_text(json.dumps({"hostName": "h", "agents": [
        {"name": "me", "user": user, "home": str(home), "path": os.environ.get("PATH", "/usr/bin:/bin")}]}))
    code = ("import sys; from pathlib import Path; from keystone_agents.agentctl.svc import main; "
            f"sys.exit(main(sys.argv[1:], host_config=Path({str(config)!r})))")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})


def test_the_helper_acts_only_for_the_user_it_runs_as(tmp_path):
    result = _helper(tmp_path, "agent-somebody-else", "tasks")
    assert result.returncode == 1
    assert f"{current_user()} is not an agent of this host" in result.stderr and "Traceback" not in result.stderr


def test_the_helper_runs_the_verb_as_the_agent_in_its_home(tmp_path):
    result = _helper(tmp_path, current_user(), "exec", "sh", "-c", 'pwd; echo "$HOME|$SUDO_USER|${EVIL:-}"',
                     env={"SUDO_USER": "alice", "EVIL": "1", "HOME": "/nowhere"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(tmp_path / "home"), f"{tmp_path / 'home'}|alice|"]


def test_the_helper_refuses_like_agentctl(tmp_path):
    result = _helper(tmp_path, current_user(), "edit", "x.service")
    assert result.returncode == 2 and result.stderr.strip() == verbs.refusal("edit")
    result = _helper(tmp_path, current_user())
    assert result.returncode == 2 and "usage: sudo -u agent-<name> -- keystone-agent-svc VERB" in result.stderr
    result = _helper(tmp_path, current_user(), "exec", "no-such-program-anywhere")
    assert result.returncode == 127 and "command not found: no-such-program-anywhere" in result.stderr


def test_the_helper_reports_a_broken_host_config(tmp_path):
    config = tmp_path / "agentctl.json"
    config.write_text("{not json")
    code = ("import sys; from pathlib import Path; from keystone_agents.agentctl.svc import main; "
            f"sys.exit(main(['tasks'], host_config=Path({str(config)!r})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "not valid JSON" in result.stderr and str(config) in result.stderr


def test_the_console_script_reads_the_fixed_path():
    assert svc.HOST_CONFIG.as_posix() == "/etc/keystone-agents/agentctl.json"
