"""The admin protocol end to end on real users: the admin runs agentctl, which runs real sudo with the
module's rules, which runs keystone-agent-svc as the agent, which runs the allow-listed command. No stand-in
sits between agentctl and the agent; only the model CLI is a stand-in (tests/fakebin/claude)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from keystone_agents.agentctl import verbs
from keystone_agents.space import AgentSpace

BUS = "Failed to connect to bus"  # systemctl's own message where no user manager runs (no systemd as PID 1)
TOO_FEW = "Too few arguments."     # systemctl's own message for a verb that needs a unit

# One real-host case per verb the helper runs: (ARGS, expected exit code, text expected in stdout+stderr).
# A verb added to verbs.VERBS without a case here fails test_every_helper_verb_has_a_case.
CASES: dict[str, tuple[list[str], int, str]] = {
    "tasks": (["--json"], 0, "["),
    "pause": (["--", "maintenance"], 0, "Paused task loop"),
    # each xdist worker drives the verbs in its own order: resume and paused answer for either state
    "resume": ([], 0, "ask loop"),
    "paused": (["--json"], (0, 1), '"state"'),  # like systemctl is-active: 0 active, 1 paused
    "task": (["show", "no-such-task"], 1, "no task 'no-such-task' in TASKS.yaml"),
    "runs": (["--json"], 0, "["),
    "logs": ([], 1, "no log of any task-loop run"),
    "info": (["--json"], 0, '"taskCounts"'),
    "kill": (["--json"], 1, '"killed": false'),
    "watch": (["--types", "nothing_such"], 0, ""),
    "validate": ([], 0, "ok: TASKS.yaml"),
    "status": ([], 1, BUS),
    "start": (["agent-x-task-loop.service"], 1, BUS),
    "stop": (["agent-x-task-loop.service"], 1, BUS),
    "restart": (["agent-x-task-loop.service"], 1, BUS),
    # enable/disable work on unit files without a manager: systemctl answers about the (missing) unit
    "enable": (["agent-x-task-loop.timer"], 1, "unit agent-x-task-loop.timer does not exist"),
    "disable": (["agent-x-task-loop.timer"], 0, "unit agent-x-task-loop.timer does not exist"),
    "list-units": ([], 1, BUS),
    "list-timers": (["--all"], 1, BUS),
    "show": (["agent-x-task-loop.timer"], 1, BUS),
    "cat": (["agent-x-task-loop.service"], 1, BUS),
    "is-active": (["agent-x-task-loop.service"], 1, BUS),
    "is-enabled": (["agent-x-task-loop.service"], 1, "Failed to get unit file state for agent-x-task-loop.service"),
    "is-failed": (["agent-x-task-loop.service"], 1, BUS),
    "daemon-reload": ([], 1, BUS),
    "reset-failed": ([], 1, BUS),
    "journalctl": (["-n", "5"], 0, "No journal files were found"),
    "exec": (["id", "-un"], 0, "agent-"),
    "shell": ([], 0, ""),
    "email": (["--page", "2"], 127, "keystone-agent-svc: command not found: himalaya"),
    # keystone-agent mail send as the agent: it reaches the runtime, which says no account is configured
    "mail": (["send", "--to", "someone@example.test", "--subject", "hi"], 1, "no mail account configured"),
    "run": ([], 1, BUS),
    # sessions start the (stand-in) model CLI as the agent, with the prompt composed from its notes
    "claude": (["--no-devshell", "--", "--print", "hello"], 0, "hello"),
    "codex": (["--no-devshell", "--", "exec", "hello"], 0, "hello"),
    "gemini": (["--no-devshell", "--", "--prompt", "hello"], 0, "hello"),
}


def output(result) -> str:
    return result.stdout + result.stderr


def test_every_helper_verb_has_a_case():
    assert set(CASES) == set(verbs.HELPER_VERBS)
    # the rest run on the admin's side only (vnc, and the comms verbs that act as the admin's own principal)
    assert {name for name, verb in verbs.VERBS.items() if verb.host_only} >= {"vnc"}


@pytest.mark.parametrize("verb", sorted(CASES))
def test_every_verb_runs_through_real_sudo_as_the_agent(host, a, verb):
    """agentctl and the helper agree on every verb: none is refused by either, none is denied by sudo; each
    reaches its command as the agent (systemctl verbs fail only at systemctl, with systemctl's message)."""
    args, code, says = CASES[verb]
    result = host.agentctl(host.admin, a.name, verb, *args)
    text = output(result)
    assert "is not allowed" not in text and "sudo:" not in text, text
    assert result.returncode in (code if isinstance(code, tuple) else (code,)), text
    assert says in text
    if verb == "exec":
        assert result.stdout.strip() == a.user.name  # it ran as the agent, not as the admin
    if verb == "pause":  # `paused` exits 1 while paused: leave the shared agent active for the next cases
        assert host.agentctl(host.admin, a.name, "resume").returncode == 0
    if verb in ("start", "status", "show") and args:
        assert BUS in result.stderr  # systemctl itself answered, for the agent's user manager


def test_the_helper_refuses_what_agentctl_refuses(host, a):
    """Called directly through sudo (as agentctl would), the helper gives the same refusal, exit 2."""
    for verb in [*verbs.REFUSED, "bogus-verb"]:
        via_agentctl = host.agentctl(host.admin, a.name, verb, "x.service")
        direct = host.sudo_as(host.admin, ["-u", a.user.name, "--", str(host.helper), verb, "x.service"])
        assert via_agentctl.returncode == 2 and direct.returncode == 2, (verb, output(direct))
        assert via_agentctl.stderr.strip() == direct.stderr.strip() == verbs.refusal(verb)
    # vnc runs on the admin's side only: the helper does not run it as the agent
    direct = host.sudo_as(host.admin, ["-u", a.user.name, "--", str(host.helper), "vnc"])
    assert direct.returncode == 2 and "runs on the admin's side" in direct.stderr
    for args, says in [
        (["journalctl", "--vacuum-size=1K"], "'journalctl --vacuum-size=1K' is not allowed"),
        (["status", "--system"], "'systemctl --system' is not allowed"),
        (["exec"], "exec needs a command"),
        (["run", "--task"], "run takes nothing, or --task NAME / --prompt TEXT"),
    ]:
        direct = host.sudo_as(host.admin, ["-u", a.user.name, "--", str(host.helper), *args])
        assert direct.returncode == 2 and says in direct.stderr, (args, output(direct))


def test_pause_records_the_admin_and_the_file_stays_the_agents(host, a):
    result = host.agentctl(host.admin, a.name, "pause", "deploy", "freeze; $(reboot)")
    assert result.returncode == 0, output(result)
    state = json.loads(host.agentctl(host.admin, a.name, "paused", "--json").stdout)
    assert state["state"] == "paused" and state["reason"] == "deploy freeze; $(reboot)"
    assert state["pausedBy"] == host.admin.name  # the human who asked (SUDO_USER), not the agent
    pause_file = AgentSpace.from_home(a.home).pause_file
    assert pause_file.stat().st_uid == a.user.uid
    show = json.loads(host.agentctl(host.admin, "show", a.name, "--json").stdout)
    assert show["pause"]["pausedBy"] == host.admin.name
    assert host.agentctl(host.admin, a.name, "resume").returncode == 0
    assert not pause_file.exists()


def test_list_and_show_read_each_agent_as_itself(host, a, b):
    result = host.agentctl(host.admin, "list", "--json")
    assert result.returncode == 0, output(result)
    rows = {row["agent"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {a.name, b.name}
    for row in rows.values():
        assert row["provider"] == "claude" and row["pause"]["state"] in ("active", "paused")
        assert set(row["taskCounts"]) >= {"pending", "in_progress", "completed"}
        # the NEXT column asks the agent's user manager: here there is none, and systemctl says so; that is an
        # unknown next timer, not a failed probe
        assert row["nextTimer"] is None and row["errors"] == [] and row["unknown"] == ["nextTimer"]
        assert row["probe"]["ok"] and len(row["warnings"]) == 1 and BUS in row["warnings"][0]
    table = host.agentctl(host.admin, "list")
    assert table.returncode == 0 and a.name in table.stdout and "NEXT" in table.stdout


def test_run_prompt_executes_as_the_agent_and_its_files_stay_its_own(host, a):
    result = host.agentctl(host.admin, a.name, "run", "--prompt", "Summarise the day; $(touch /tmp/pwned)",
                           timeout=180)
    assert result.returncode == 0, output(result)
    calls = [json.loads(line) for line in (a.home / "fake-calls.jsonl").read_text().splitlines()]
    assert any("Summarise the day; $(touch /tmp/pwned)" in json.dumps(call) for call in calls)
    space = AgentSpace.from_home(a.home)
    written = [space.tasks_file, space.history_db, *space.logs_dir.rglob("*.log")]
    assert len(written) > 2
    for path in written:
        assert path.stat().st_uid == a.user.uid, path
    tasks = json.loads(host.agentctl(host.admin, a.name, "tasks", "--json").stdout)
    assert any(t["name"].startswith("adhoc-") and t["status"] == "completed" for t in tasks)
    runs = json.loads(host.agentctl(host.admin, a.name, "runs", "--json").stdout)
    assert runs and runs[0]["status"] == "success"
    logs = host.agentctl(host.admin, a.name, "logs")
    assert logs.returncode == 0 and "run_finish" in logs.stdout


def test_task_add_through_sudo_writes_the_agents_queue(host, b):
    result = host.agentctl(host.admin, b.name, "task", "add", "water-plants", "--description", "Water; $(rm -rf ~)")
    assert result.returncode == 0, output(result)
    shown = host.agentctl(host.admin, b.name, "task", "show", "water-plants")
    assert shown.returncode == 0 and "Water; $(rm -rf ~)" in shown.stdout
    tasks_file = AgentSpace.from_home(b.home).tasks_file
    assert tasks_file.stat().st_uid == b.user.uid


def test_the_helper_sets_the_agents_environment_itself(host, a):
    result = host.run_as(host.admin, ["sudo", "-n", "-u", a.user.name, "--", str(host.helper), "exec", "env"],
                         env={**host.env(), "HOME": "/root", "KEYSTONE_AGENT_CONFIG": "/tmp/evil.json",
                              "PATH": f"/tmp/evil:{host.env()['PATH']}"})
    assert result.returncode == 0, output(result)
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    uid = a.user.uid
    assert env["HOME"] == str(a.home) and env["USER"] == a.user.name
    assert env["XDG_RUNTIME_DIR"] == f"/run/user/{uid}"
    assert env["DBUS_SESSION_BUS_ADDRESS"] == f"unix:path=/run/user/{uid}/bus"
    assert env["KEYSTONE_AGENT_CONFIG"] == str(a.config_path)
    assert env["PATH"].startswith(str(host.bin)) and "/tmp/evil" not in env["PATH"]
    assert env["SUDO_USER"] == host.admin.name
    pwd = host.agentctl(host.admin, a.name, "exec", "pwd")
    assert pwd.stdout.strip() == str(a.home)


def test_a_system_unit_goes_to_the_system_manager_through_its_own_sudo_rule(host, a):
    unit = a.system_units[0]
    for verb in verbs.SYSTEM_UNIT_VERBS:
        result = host.agentctl(host.admin, a.name, verb, unit)
        text = output(result)
        # sudo allowed it (no password asked); systemctl itself says there is no system manager here
        assert "sudo:" not in text and "is not allowed" not in text, text
        assert "System has not been booted with systemd" in text and result.returncode != 0
    # only those verbs, those units, exactly that argv
    for argv in (
        [host.systemctl, "start", f"{a.system_units[0]}.service", "--now"],
        [host.systemctl, "start", "ssh.service"],
        [host.systemctl, "enable", f"{a.system_units[0]}.service"],
        [host.systemctl, "edit", f"{a.system_units[0]}.service"],
        ["/bin/sh", "-c", "id"],
    ):
        denied = host.sudo_as(host.admin, ["--", *argv])
        assert denied.returncode == 1 and "a password is required" in denied.stderr, argv
    refused = host.agentctl(host.admin, a.name, "status", unit, "-n", "50")
    assert refused.returncode == 2 and "exactly one unit" in refused.stderr


# ------------------------------------------------------------------ refusals, by sudo and by the kernel


def test_an_outsider_and_another_agent_cannot_use_sudo(host, a, b):
    for user in (host.outsider, b.user):
        result = host.agentctl(user, a.name, "tasks")
        assert result.returncode != 0 and "sudo:" in result.stderr and "password" in result.stderr, output(result)
        direct = host.sudo_as(user, ["-u", a.user.name, "--", str(host.helper), "tasks"])
        assert direct.returncode == 1 and "a password is required" in direct.stderr
        unit = host.sudo_as(user, ["--", host.systemctl, "stop", f"{a.system_units[0]}.service"])
        assert unit.returncode == 1 and "a password is required" in unit.stderr


def test_the_admin_may_run_nothing_but_the_helper_as_an_agent(host, a):
    for argv in (["-u", a.user.name, "--", "/bin/sh", "-c", "id"],
                 ["-u", a.user.name, "--", str(host.bin / "keystone-agent"), "tasks"],
                 ["--", str(host.helper), "tasks"]):  # nor the helper as root
        result = host.sudo_as(host.admin, argv)
        assert result.returncode == 1 and "a password is required" in result.stderr, argv


def _private_paths(agent) -> list:
    space = AgentSpace.from_home(agent.home)
    return [agent.home, agent.state_dir, space.history_db, space.logs_dir, space.tasks_file, agent.config_path]


def test_another_agent_and_an_outsider_cannot_read_an_agents_files(host, a, b):
    # make sure the history database and logs exist
    host.agentctl(host.admin, a.name, "run", "--prompt", "hello", timeout=180)
    for user in (b.user, host.outsider):
        for path in _private_paths(a):
            assert path.exists(), path
            verb = "ls" if path.is_dir() else "cat"
            result = host.run_as(user, [verb, str(path)])
            assert result.returncode != 0 and "Permission denied" in result.stderr, (user.name, str(path))
        # nor write into the home
        touch = host.run_as(user, ["touch", str(a.home / "intruder")])
        assert touch.returncode != 0 and "Permission denied" in touch.stderr


def test_an_agent_cannot_reach_another_through_its_own_helper(host, a, b):
    """agentctl as agent b for agent a: b is not an admin, sudo asks a password; and the helper, run as b,
    pointed at a's home, is stopped by the kernel."""
    result = host.agentctl(b.user, b.name, "tasks", "--home", str(a.home))
    assert result.returncode != 0 and f"Directory '{a.home}' is not readable" in result.stderr, output(result)
    result = host.agentctl(b.user, b.name, "exec", "cat", str(a.home / "TASKS.yaml"))
    assert result.returncode != 0 and "Permission denied" in result.stderr


def test_admins_read_homes_but_change_files_only_as_the_agent(host, a):
    home = host.run_as(host.admin, ["ls", str(a.home)])
    assert home.returncode == 0 and "TASKS.yaml" in home.stdout
    tasks = host.run_as(host.admin, ["cat", str(a.home / "TASKS.yaml")])
    assert tasks.returncode == 0
    write = host.run_as(host.admin, ["touch", str(a.home / "by-admin")])
    assert write.returncode != 0 and "Permission denied" in write.stderr
    config = host.run_as(host.admin, ["cat", str(a.config_path)])
    assert config.returncode == 0 and a.name in config.stdout  # 0440 agent:admins
    via = host.agentctl(host.admin, a.name, "exec", "touch", str(a.home / "by-agent"))
    assert via.returncode == 0 and (a.home / "by-agent").stat().st_uid == a.user.uid


def test_modes_are_what_the_module_declares(host, a, b):
    import grp

    admins = grp.getgrnam(host.admins_group).gr_gid
    for agent in (a, b):
        st = agent.home.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, agent.user.uid, admins)
        st = agent.config_path.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o440, agent.user.uid, admins)
        assert host.admins_group not in host.run_as(agent.user, ["id", "-Gn"]).stdout.split()
    assert stat.S_IMODE(host.host_config.stat().st_mode) == 0o444
    assert host.admins_group in host.run_as(host.admin, ["id", "-Gn"]).stdout.split()
    st = host.textfile_dir.stat()
    assert stat.S_IMODE(st.st_mode) == 0o1775 and st.st_gid == grp.getgrnam(host.agents_group).gr_gid
    assert os.stat(host.sudoers).st_mode & 0o777 == 0o440
