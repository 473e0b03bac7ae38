"""agentctl against a fleet of two local agents and one behind a real sshd (see conftest.py)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from keystone_agents import history
from keystone_agents.space import AgentSpace

SHOW_KEYS = {
    "agent", "user", "configuredHost", "preferredHost", "local", "project", "provider", "model", "fallbackModel",
    "vncPort", "desktop", "pause", "lastRun", "nextTimer", "taskCounts", "errors",
    # issue 16: the fleet view
    "running", "today", "lastRunFailure", "notesConflict", "state", "probe", "unknown", "warnings",
}


def test_list_json_shape_for_local_and_remote_agents(fleet):
    result = fleet.run("list", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["agent"] for r in rows] == ["alpha", "beta", "gamma"]
    for row in rows:
        assert set(row) == SHOW_KEYS
        assert set(row["pause"]) == {"state", "pausedAt", "pausedBy", "reason"}
        assert row["errors"] == [] and row["probe"] == {"ok": True, "error": None} and row["unknown"] == []
        assert row["state"] == "idle" and row["today"] == {"tokens": 0, "costUsd": 0.0}
        assert row["taskCounts"] == {"in_progress": 0, "pending": 0, "blocked": 0, "completed": 0, "invalid": 0}
    alpha, beta, gamma = rows
    assert (alpha["vncPort"], beta["vncPort"], gamma["vncPort"]) == (5901, None, 5903)
    assert (alpha["local"], beta["local"], gamma["local"]) == (True, True, False)
    assert gamma["configuredHost"] == "remotebox" and alpha["configuredHost"] is None
    assert alpha["nextTimer"] == "2026-01-01T00:00:00Z"  # the systemctl stand-in's @1767225600
    # gamma was asked on its host, over ssh, by the remote agentctl
    assert fleet.ssh.remote_argvs() == [["show", "gamma", "--json"]]
    # beta (another user) was asked through sudo and its helper; alpha (this user) directly
    sudo = fleet.argvs("sudo")
    helper = str(Path(__file__).parent / "bin" / "agent-helper")
    beta_home = str(fleet.homes["beta"])
    assert sudo == [
        ["-n", "-u", "agent-beta", "--", helper, "info", "--json"],
        ["-n", "-u", "agent-beta", "--", helper, "show", "agent-beta-task-loop.timer",
         "--property=NextElapseUSecRealtime", "--value", "--timestamp=unix"],
    ]
    # the helper ran the allow-list's expansion as the agent
    assert ["info", "--home", beta_home, "--config", f"{beta_home}/.config/keystone-agent/config.json",
            "--json"] in fleet.argvs("keystone-agent")
    assert ["--user", "show", "agent-alpha-task-loop.timer", "--property=NextElapseUSecRealtime", "--value",
            "--timestamp=unix"] in fleet.argvs("systemctl")


def test_show_reports_last_run_and_task_counts(fleet):
    space = AgentSpace.from_home(fleet.homes["alpha"])
    (fleet.homes["alpha"] / "TASKS.yaml").write_text(
        "tasks:\n"
        "  - {name: a, description: A, status: pending, project: web}\n"
        "  - {name: b, description: B, status: pending}\n"
        "  - {name: c, description: C, status: completed, project: web}\n"
        "  - {name: '', description: broken, status: pending}\n"
    )
    history.record_run(space.history_db, {"run_id": "r1", "kind": "task-loop", "started_at": "2026-11-20T10:00:00Z",
                                           "finished_at": "2026-11-20T10:01:00Z", "status": "success", "exit_code": 0})
    history.record_run(space.history_db, {"run_id": "r2", "kind": "task-loop", "started_at": "2026-11-20T10:05:00Z",
                                           "status": "error", "exit_code": 1})
    report = fleet.show("alpha")
    assert report["lastRun"]["status"] == "error" and report["lastRun"]["startedAt"] == "2026-11-20T10:05:00Z"
    assert report["taskCounts"] == {"in_progress": 0, "pending": 2, "blocked": 0, "completed": 1, "invalid": 1}
    assert fleet.show("alpha", "--project", "web")["taskCounts"]["pending"] == 1


@pytest.mark.parametrize("agent", ["alpha", "beta", "gamma"])
def test_pause_and_resume_are_visible_in_show(fleet, agent):
    assert fleet.show(agent)["pause"]["state"] == "active"
    result = fleet.run(agent, "pause", "deploy", "freeze; $(reboot)")
    assert result.returncode == 0, result.stderr
    pause = fleet.show(agent)["pause"]
    assert pause["state"] == "paused"
    assert pause["reason"] == "deploy freeze; $(reboot)"
    assert pause["pausedAt"] and pause["pausedBy"]
    assert fleet.run(agent, "resume").returncode == 0
    assert fleet.show(agent)["pause"] == {"state": "active", "pausedAt": None, "pausedBy": None, "reason": None}
    if agent == "gamma":
        assert ["gamma", "pause", "deploy", "freeze; $(reboot)"] in fleet.ssh.remote_argvs()
    if agent == "beta":
        assert [argv[4:] for argv in fleet.argvs("sudo") if argv[4] == "pause"] == [["pause", "deploy", "freeze; $(reboot)"]]


HOSTILE = ["it's", 'say "hi"', "$(touch {canary})", "`touch {canary}`", "a; touch {canary}", "two\nlines",
           "back\\slash", "  spaced  ", "", "*", "--flag-like", "$HOME"]


def test_forwarded_argv_with_hostile_characters_arrives_intact(fleet, tmp_path):
    canary = tmp_path / "canary"
    args = [a.format(canary=canary) for a in HOSTILE]
    result = fleet.run("gamma", "exec", "printf", "[%s]\\n", *args)
    assert result.returncode == 0, result.stderr
    assert fleet.ssh.remote_argvs() == [["gamma", "exec", "printf", "[%s]\\n", *args]]
    assert result.stdout == "".join(f"[{a}]\n" for a in args)  # and the remote side ran exactly that argv
    assert not canary.exists()


def test_forwarding_uses_ssh_with_a_quoted_command(fleet, monkeypatch):
    from keystone_agents.agentctl import remote
    from keystone_agents.agentctl.hostconfig import load

    config = load(fleet.config)
    argv = remote.ssh_argv(config, "remotebox", ["gamma", "exec", "echo", "a b", "$(x)"], tty=True)
    assert argv[:-1] == [*fleet.ssh.ssh_command, "-t", "--", "remotebox"]
    assert shlex.split(argv[-1]) == ["agentctl", "gamma", "exec", "echo", "a b", "$(x)"]


@pytest.mark.parametrize("verb", ["edit", "set-environment", "import-environment", "bogus-verb"])
@pytest.mark.parametrize("agent", ["alpha", "beta", "gamma"])
def test_refused_verbs_never_reach_the_agent(fleet, agent, verb):
    result = fleet.run(agent, verb, "agent-x-task-loop.service")
    assert result.returncode == 2
    assert f"Error: verb '{verb}' is not allowed" in result.stderr
    assert "Allowed verbs:" in result.stderr
    if verb != "bogus-verb":
        assert "not an agentctl verb" not in result.stderr  # a specific reason is given
    assert fleet.calls() == [] and fleet.ssh.remote_argvs() == []


def test_unknown_agent_lists_known_ones(fleet):
    result = fleet.run("zeta", "status")
    assert result.returncode == 1
    assert "Error: unknown agent 'zeta'" in result.stderr and "Known agents: alpha, beta, gamma" in result.stderr


def test_systemctl_journalctl_and_exec_argv(fleet):
    helper = str(Path(__file__).parent / "bin" / "agent-helper")
    assert fleet.run("alpha", "status", "agent-alpha-task-loop.timer").returncode == 0
    assert fleet.run("beta", "restart", "agent-beta-task-loop.service").returncode == 0
    assert fleet.run("beta", "journalctl", "-u", "agent-beta-task-loop", "-n", "20").returncode == 0
    assert fleet.run("alpha", "list-timers", "--all").returncode == 0
    assert fleet.argvs("systemctl") == [
        ["--user", "status", "agent-alpha-task-loop.timer"],
        ["--user", "restart", "agent-beta-task-loop.service"],
        ["--user", "list-timers", "--all"],
    ]
    assert fleet.argvs("sudo") == [
        ["-u", "agent-beta", "--", helper, "restart", "agent-beta-task-loop.service"],
        ["-u", "agent-beta", "--", helper, "journalctl", "-u", "agent-beta-task-loop", "-n", "20"],
    ]
    assert fleet.argvs("journalctl") == [["--user", "-u", "agent-beta-task-loop", "-n", "20"]]


def test_exit_code_of_the_agent_command_is_returned(fleet):
    assert fleet.run("alpha", "exec", "sh", "-c", "exit 7").returncode == 7
    assert fleet.run("gamma", "exec", "sh", "-c", "exit 5").returncode == 5


def test_runs_logs_and_run_invoke_the_loop_commands(fleet):
    alpha = str(fleet.homes["alpha"])
    cfg = f"{alpha}/.config/keystone-agent/config.json"
    assert fleet.run("alpha", "runs", "--limit", "5", "--json").returncode == 0
    assert fleet.run("alpha", "logs", "fix-the-bug", "--follow").returncode == 0
    assert fleet.run("alpha", "run", "--task", "fix-the-bug").returncode == 0
    assert fleet.run("alpha", "run", "--prompt", "Summarise; $(today)").returncode == 0
    assert fleet.run("alpha", "run", "--task", "x", "--no-wait", "--force").returncode == 0
    assert fleet.run("alpha", "run", "--task", "y", "--wait-timeout", "60").returncode == 0
    assert fleet.argvs("keystone-agent") == [
        ["runs", "--home", alpha, "--config", cfg, "--limit", "5", "--json"],
        ["logs", "--home", alpha, "--config", cfg, "fix-the-bug", "--follow"],
        ["loop", "--home", alpha, "--config", cfg, "--task", "fix-the-bug"],
        ["loop", "--home", alpha, "--config", cfg, "--prompt", "Summarise; $(today)"],
        ["loop", "--home", alpha, "--config", cfg, "--task", "x", "--no-wait", "--force"],
        ["loop", "--home", alpha, "--config", cfg, "--task", "y", "--wait-timeout", "60"],
    ]
    assert fleet.run("beta", "run").returncode == 0
    assert fleet.argvs("systemctl")[-1] == ["--user", "start", "--no-block", "agent-beta-task-loop.service"]
    assert fleet.run("alpha", "run", "--task", "a", "--prompt", "b").returncode == 2


def test_runs_on_remote_agent_is_forwarded(fleet):
    assert fleet.run("gamma", "runs", "--limit", "3").returncode == 0
    assert fleet.ssh.remote_argvs() == [["gamma", "runs", "--limit", "3"]]
    remote_log = fleet.ssh.root.parent / "remote-standins.log"
    calls = [json.loads(line) for line in remote_log.read_text().splitlines()]
    assert [c["argv"][0] for c in calls if c["prog"] == "keystone-agent"] == ["runs"]


def test_vnc_runs_here_and_is_not_forwarded(fleet):
    assert fleet.run("alpha", "vnc").returncode == 0
    assert fleet.run("gamma", "vnc", "--full-screen").returncode == 0
    assert fleet.argvs("remote-viewer") == [["vnc://localhost:5901"], ["vnc://remotebox:5903", "--full-screen"]]
    assert fleet.ssh.remote_argvs() == []
    result = fleet.run("beta", "vnc")
    assert result.returncode == 1 and "has no desktop" in result.stderr


def test_email_and_shell(fleet):
    assert fleet.run("alpha", "email", "--page", "2").returncode == 0
    assert fleet.argvs("himalaya") == [["envelope", "list", "--page", "2"]]


@pytest.mark.parametrize("agent", ["alpha", "beta"])
def test_mail_send_goes_out_as_the_agent_through_a_real_smtp_server(fleet, mail_server, agent, tmp_path):
    mail_server.clear("tester")
    config_file = fleet.homes[agent] / ".config/keystone-agent/config.json"
    config = json.loads(config_file.read_text())
    config["mail"] = mail_server.mail_config("agent", tmp_path)
    config_file.write_text(json.dumps(config))
    subject = f"Hello from {agent}"
    result = fleet.run(agent, "mail", "send", "--to", mail_server.address("tester"), "--subject", subject,
                       "--json", input="Sent through agentctl.\n")
    assert result.returncode == 0, result.stderr
    delivered = mail_server.wait_for("tester", lambda m: m["Subject"] == subject)
    assert delivered is not None
    assert delivered.get_body(("plain",)).get_content().strip() == "Sent through agentctl."
    assert json.loads(result.stdout)["Subject"] == subject
    [argv] = fleet.argvs("keystone-agent")
    assert argv[:4] == ["mail", "send", "--home", str(fleet.homes[agent])]
    refused = fleet.run(agent, "mail", "list")
    assert refused.returncode == 2 and "mail takes: send" in refused.stderr


def test_prefs_persist_across_processes_and_feed_show(fleet):
    assert fleet.run("prefs", "set", "alpha", "--provider", "codex", "--model", "gpt-5").returncode == 0
    assert fleet.run("prefs", "set", "alpha", "--project", "web", "--model", "o3", "--host", "testhost").returncode == 0
    got = json.loads(fleet.run("prefs", "get", "alpha").stdout)
    assert got == {"agent": "alpha", "project": None, "host": None, "provider": "codex", "model": "gpt-5",
                   "fallbackModel": None}
    got = json.loads(fleet.run("prefs", "get", "alpha", "--project", "web").stdout)
    assert (got["provider"], got["model"], got["host"]) == ("codex", "o3", "testhost")
    stored = json.loads((fleet.root / "admin-xdg" / "keystone" / "agentctl-prefs.json").read_text())
    assert stored["agents"]["alpha"] == {"provider": "codex", "model": "gpt-5"}
    report = fleet.show("alpha")
    assert (report["provider"], report["model"], report["fallbackModel"]) == ("codex", "gpt-5", None)
    assert fleet.show("alpha", "--project", "web")["preferredHost"] == "testhost"
    assert fleet.run("prefs", "clear", "alpha", "--project", "web").returncode == 0
    assert json.loads(fleet.run("prefs", "get", "alpha", "--project", "web").stdout)["model"] == "gpt-5"
    assert fleet.run("prefs", "clear", "alpha").returncode == 0
    assert fleet.show("alpha")["provider"] == "claude"
    assert fleet.run("prefs", "set", "alpha", "--provider", "nope").returncode == 2
    assert fleet.run("prefs", "set", "alpha").returncode == 2


def test_preferred_host_redirects_commands(fleet):
    """A preferred host other than this one makes agentctl forward (here: alpha moved to remotebox, where the
    remote agentctl does not know alpha)."""
    assert fleet.run("prefs", "set", "alpha", "--host", "remotebox").returncode == 0
    result = fleet.run("alpha", "status")
    assert fleet.ssh.remote_argvs() == [["alpha", "status"]]
    assert result.returncode == 1 and "unknown agent 'alpha'" in result.stderr


def test_click_runner_show_and_refusal(fleet):
    result = fleet.invoke("show", "beta", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["pause"]["state"] == "active"
    result = fleet.invoke("beta", "edit")
    assert result.exit_code == 2 and "is not allowed" in result.stderr
    assert fleet.invoke("alpha", "pause", "from the runner").exit_code == 0
    assert json.loads(fleet.invoke("show", "alpha", "--json").stdout)["pause"]["reason"] == "from the runner"


def test_invalid_host_config_names_file_line_and_field(fleet):
    fleet.config.write_text('{"agents": [\n  {"name": "Bad Name", "user": "agent-x", "home": "/h"}\n]}\n')
    result = fleet.run("list")
    assert result.returncode == 1
    assert f"{fleet.config}:2: agents[0].name:" in result.stderr

