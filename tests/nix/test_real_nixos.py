"""What the module does on real NixOS, each found by evaluating it against nixpkgs' real declarations of
users-groups.nix, sudo.nix, etc.nix and systemd/user.nix (mirrored in tests/nix/stubs.nix, whose constraints
are checked here too)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.nix import nixeval
from tests.nix.test_nix_module import by_name, ours


def one(ev) -> list[str]:
    return ours(ev["failedAssertions"])


# ------------------------------------------------------------------ /etc ownership by number


def test_config_files_are_owned_by_uid_and_gid_where_names_are_ignored(evaluate):
    for switch in ("system.etc.overlay.enable = true;", "services.userborn.enable = true;", ""):
        ev = evaluate('{ networking.hostName = "h"; ' + switch + ' keystone.os.agents.drago.uid = 4321; }')
        assert one(ev) == [] and ev["failedAssertions"] == []
        owner = ev["etcOwners"]["keystone-agents/agents/drago.json"]
        # never root:root (0440 would make the file unreadable for its agent)
        assert owner in ({"user": 4321, "group": 4099}, {"user": "agent-drago", "group": "agent-admins"}), switch
        assert ev["etc"]["keystone-agents/agents/drago.json"]["mode"] == "0440"
    assert ev["groups"]["agent-admins"]["gid"] == 4099 and ev["groups"]["agents"]["gid"] == 4000
    ev = evaluate('{ networking.hostName = "h"; keystone.os.agentRuntime.adminsGid = 5000; keystone.os.agents.drago = { }; }')
    assert ev["etc"]["keystone-agents/agents/drago.json"]["gid"] == 5000 == ev["groups"]["agent-admins"]["gid"]


# ------------------------------------------------------------------ switch: lingering and timers


@pytest.fixture
def recording_systemd(tmp_path):
    """A stand-in package root whose systemctl and loginctl record their argv; `systemctl list-units` lists the
    timers in $LOADED_TIMERS (what a running user manager would have loaded)."""
    root = tmp_path / "pkgs"
    log = tmp_path / "argv.log"
    for prog in ("systemctl", "loginctl"):
        exe = root / "systemd/bin" / prog
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text(
            "#!/bin/sh\n"
            f'printf "%s " "{prog}" "$@" >> "{log}"; echo >> "{log}"\n'
            'case "$*" in *list-units*) for t in $LOADED_TIMERS; do echo "$t loaded active waiting"; done;; esac\n')
        exe.chmod(0o755)
    coreutils = root / "coreutils/bin"
    coreutils.mkdir(parents=True)
    for prog in ("seq", "sleep"):
        (coreutils / prog).symlink_to(shutil.which(prog))
    return root, log


def test_a_switch_starts_new_timers_and_stops_removed_ones(evaluate, recording_systemd, tmp_path):
    root, log = recording_systemd
    before = evaluate('{ networking.hostName = "h"; keystone.os.agents.drago = { }; }', pkgs_root=root)
    after = evaluate('{ networking.hostName = "h"; keystone.os.agents.drago.notes.repo = "ssh://git@h/n.git"; }',
                     pkgs_root=root)
    unit = after["services"]["agent-drago-user-units"]
    assert unit["wantedBy"] == ["multi-user.target"] and unit["serviceConfig"]["RemainAfterExit"] is True
    # adding the notes-sync timer changes the unit, so the switch restarts it
    assert unit["restartTriggers"] != before["services"]["agent-drago-user-units"]["restartTriggers"]
    script = tmp_path / "user-units.sh"
    script.write_text(after["scripts"]["agent-drago-user-units"]["text"])
    assert unit["serviceConfig"]["ExecStart"] == after["scripts"]["agent-drago-user-units"]["path"]
    text = script.read_text().replace("/run/user/4001/bus", str(tmp_path / "bus"))
    script.write_text(text)
    import socket

    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "bus"))  # the user manager's bus is up
    env = {"PATH": "/usr/bin:/bin", "LOADED_TIMERS": "agent-drago-task-loop.timer agent-drago-old-report.timer"}
    result = subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, timeout=30)
    sock.close()
    assert result.returncode == 0, result.stderr
    calls = [line.split() for line in log.read_text().splitlines()]
    user = ["systemctl", "--user", "--machine=agent-drago@"]
    assert calls[0] == ["loginctl", "enable-linger", "agent-drago"]
    assert calls[1] == user + ["daemon-reload"]
    restarted = {c[-1] for c in calls if c[:4] == user + ["restart"]}
    assert restarted == {"agent-drago-task-loop.timer", "agent-drago-scheduler.timer", "agent-drago-notes-sync.timer"}
    assert [c[-1] for c in calls if c[:4] == user + ["stop"]] == ["agent-drago-old-report.timer"]


def test_lingering_never_uses_the_users_option(evaluate):
    """users.users.<name>.linger = true makes NixOS (where it is a plain bool) disable every other user's
    imperative lingering; the module enables lingering itself."""
    ev = evaluate('{ networking.hostName = "h"; keystone.os.agents = { a = { }; b = { }; }; }')
    assert all(user["linger"] is False for user in ev["users"].values())
    assert "enable-linger" in ev["scripts"]["agent-a-user-units"]["text"]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (scripts/install-system-deps)")
def test_generated_scripts_pass_shellcheck(evaluate, tmp_path):
    """Hosts with systemd.enableStrictShellChecks reject unit scripts shellcheck complains about."""
    ev = evaluate('{ networking.hostName = "h"; keystone.os.agents.drago.notes.repo = "ssh://git@h/n.git"; }')
    for name, script in ev["scripts"].items():
        path = tmp_path / f"{name}.sh"
        path.write_text("#!/bin/sh\n" + script["text"])
        result = subprocess.run(["shellcheck", "-s", "sh", str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout


# ------------------------------------------------------------------ names, fullName, uid


def test_an_agent_user_name_of_32_characters_is_our_assertion_not_an_abort(evaluate):
    name = "a" * 26  # agent-<26> = 32 characters
    ev = evaluate('{ networking.hostName = "h"; keystone.os.agents.' + name + ' = { }; }')
    [message] = one(ev)
    assert f"agent-{name} must be at most 31 characters" in message
    assert f"agent-{name}" not in ev["users"]
    ok = evaluate('{ networking.hostName = "h"; keystone.os.agents.' + "a" * 25 + ' = { }; }')
    assert one(ok) == [] and "agent-" + "a" * 25 in ok["users"]


def test_the_stubs_abort_like_nixos_for_long_names(evaluate):
    with pytest.raises(nixeval.NixError, match="longer than 31 characters"):
        evaluate('{ users.users.' + "u" * 32 + ' = { isNormalUser = true; }; }')
    with pytest.raises(nixeval.NixError, match="passwdEntry|colon|newline|not of type"):
        evaluate('{ users.users.bob = { isNormalUser = true; description = "a:b"; }; }')


@pytest.mark.parametrize("full_name", ["Drago: the agent", "Drago\\nSecond line"])
def test_a_full_name_passwd_cannot_hold_is_refused(evaluate, full_name):
    ev = evaluate('{ networking.hostName = "h"; keystone.os.agents.drago.fullName = "' + full_name + '"; }')
    [message] = one(ev)
    assert "keystone.os.agents.drago.fullName contains ':' or a newline" in message
    assert "agent-drago" not in ev["users"]


def test_a_uid_below_1000_is_refused_with_a_fix(evaluate):
    ev = evaluate('{ networking.hostName = "h"; keystone.os.agents.drago.uid = 999; }')
    [message] = one(ev)
    assert "need a UID of at least 1000" in message and "set keystone.os.agents.drago.uid to e.g. 4001" in message
    # NixOS's own, less helpful "Exactly one of isSystemUser and isNormalUser" does not fire: no account is made
    assert ev["failedAssertions"] == [message]


# ------------------------------------------------------------------ sudo, sudo-rs, execWheelOnly


def test_without_sudo_an_assertion_says_agentctl_needs_it(evaluate):
    ev = evaluate('{ networking.hostName = "h"; security.sudo.enable = false; keystone.os.agents.drago = { }; }')
    [message] = one(ev)
    assert "neither security.sudo.enable nor security.sudo-rs.enable" in message
    assert ev["sudoRules"] == [] and ev["sudoRsRules"] == []


def test_sudo_rs_gets_the_same_rules(evaluate):
    ev = evaluate('{ networking.hostName = "h"; security.sudo.enable = false; security.sudo-rs.enable = true;'
                  ' keystone.os.agents.drago = { }; }')
    assert one(ev) == []
    assert ev["sudoRules"] == [] and ev["sudoRsRules"][0]["runAs"] == "agent-drago"
    assert ev["sudoRsRules"][0]["commands"][0]["command"].endswith("/bin/keystone-agent-svc")


def test_exec_wheel_only_warns_naming_the_admins_who_lose_sudo(evaluate):
    ev = evaluate('''{ networking.hostName = "h"; security.sudo.execWheelOnly = true;
      users.users.alice = { isNormalUser = true; extraGroups = [ "wheel" ]; };
      users.users.bob = { isNormalUser = true; };
      keystone.os.agentRuntime.admins = [ "alice" "bob" ];
      keystone.os.agents.drago = { }; }''')
    [warning] = [w for w in ev["warnings"] if "execWheelOnly" in w]
    assert "the agent admins bob cannot use agentctl" in warning and "alice" not in warning


# ------------------------------------------------------------------ desktop and browser


def test_wayvnc_on_the_network_needs_authentication(evaluate):
    ev = evaluate('{ networking.hostName = "h"; keystone.os.agents.drago.desktop.vncBind = "0.0.0.0"; }')
    [message] = one(ev)
    assert "desktop.vncBind is 0.0.0.0" in message and "desktop.vncConfigFile" in message
    ev = evaluate('{ networking.hostName = "h"; keystone.os.agents.drago.desktop = { vncBind = "0.0.0.0";'
                  ' vncConfigFile = "/run/agenix/wayvnc.conf"; }; }')
    assert one(ev) == []
    assert ev["services"]["agent-drago-wayvnc"]["serviceConfig"]["ExecStart"].endswith(
        "wayvnc --config=/run/agenix/wayvnc.conf 0.0.0.0 5901")


def test_the_chrome_devtools_mcp_server_points_at_a_real_executable_or_is_left_out(evaluate):
    ev = evaluate('{ networking.hostName = "h"; keystone.os.agents.drago.chrome.mcp.enable = true; }')
    [warning] = [w for w in ev["warnings"] if "chrome-devtools" in w]
    assert "left out" in warning and "chrome.mcp.package" in warning
    assert "chrome-devtools" not in ev.agent_config("drago")["mcpServers"]
    ev = evaluate('{ pkgs, ... }: { networking.hostName = "h";'
                  ' keystone.os.agents.drago.chrome.mcp.package = pkgs.writeTextDir "bin/chrome-devtools-mcp" ""; }')
    server = ev.agent_config("drago")["mcpServers"]["chrome-devtools"]
    assert server["command"] == "/stand-in/textdir-chrome-devtools-mcp/bin/chrome-devtools-mcp"
    assert server["args"] == ["--browserUrl", "http://127.0.0.1:9222"]
    assert not [w for w in ev["warnings"] if "chrome-devtools" in w]


# ------------------------------------------------------------------ userborn / systemd-sysusers


@pytest.mark.parametrize("switch", ["services.userborn.enable = true;", "systemd.sysusers.enable = true;"])
def test_the_first_switch_with_userborn_or_sysusers_creates_homes(evaluate, switch):
    ev = evaluate('{ networking.hostName = "h"; ' + switch + ' keystone.os.agents.drago = { }; }')
    assert ev["failedAssertions"] == []
    assert ev["activationScripts"] == {}  # nothing runs before the users exist
    assert "d /home/agent-drago 0750 agent-drago agent-admins -" in ev["tmpfiles"]
