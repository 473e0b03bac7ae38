"""The module's coordination part: backends, the broker's units, per-agent comms units, triggers, PostgreSQL, the
assertions, and the generated units accepted by systemd-analyze verify. What the module writes is read by
the real runtime (the config schema, the host-config loader and the bus registry)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from keystone_agents.agentctl import hostconfig
from keystone_agents.coordination.registry import from_host_config
from tests.nix.test_nix_module import valid_agent_config

LOCAL = '''{
  networking.hostName = "ocean";
  keystone.os.agentRuntime = { admins = [ "alice" ]; coordination.backend = "local"; };
  keystone.os.agents.drago = { triggers = [ "comms" "manual" ]; comms = { acceptFrom = [ "luce" "admins" ]; maxDepth = 2; sendsPerHour = 30; }; };
  keystone.os.agents.luce = { };
}'''

PG = '''{
  networking.hostName = "ocean";
  keystone.os.agentRuntime = { admins = [ "alice" ]; coordination.backend = "postgresql"; };
  keystone.os.agents.drago = { triggers = [ "schedule" "comms" ]; };
  keystone.os.agents.luce = { triggers = [ "comms" ]; };
}'''


def test_local_backend_units_configs_and_registry(evaluate):
    ev = evaluate(LOCAL)
    assert ev["failedAssertions"] == []
    socket = ev["sockets"]["keystone-bus"]
    assert socket["listenStreams"] == ["/run/keystone-bus/bus.sock"]
    assert socket["socketConfig"]["Accept"] is True and socket["socketConfig"]["SocketMode"] == "0666"
    broker = ev["services"]["keystone-bus@"]["serviceConfig"]
    assert broker["User"] == "keystone-bus" and broker["StandardInput"] == "socket"
    assert broker["ExecStart"].endswith("bin/keystone-agent bus serve --stdio --host-config /etc/keystone-agents/agentctl.json")
    assert broker["StateDirectoryMode"] == "0700" and broker["PrivateNetwork"] is True
    assert ev["users"]["keystone-bus"]["group"] == "keystone-bus"
    assert "d /run/keystone-bus/wake 0755 keystone-bus keystone-bus -" in ev["tmpfiles"]

    # drago reacts to comms and has no task-loop timer; luce keeps the default triggers (schedule, manual)
    assert "agent-drago-task-loop" not in ev["userTimers"] and "agent-luce-task-loop" in ev["userTimers"]
    path = ev["userPaths"]["agent-drago-comms"]["pathConfig"]
    assert path["PathChanged"] == "/run/keystone-bus/wake/drago" and path["Unit"] == "agent-drago-comms.service"
    rerun = ev["userPaths"]["agent-drago-loop-rerun"]["pathConfig"]
    assert rerun["PathExists"] == "/home/agent-drago/.local/state/agent-task-loop/state/run-requested"
    assert rerun["Unit"] == "agent-drago-task-loop.service"
    assert "agent-luce-comms" not in ev["userPaths"] and "agent-drago-listen" not in ev["userServices"]
    drain = ev["userServices"]["agent-drago-comms"]
    assert drain["serviceConfig"]["ExecStart"].endswith("keystone-agent comms drain --config /etc/keystone-agents/agents/drago.json")
    assert drain["unitConfig"]["ConditionUser"] == "agent-drago"

    config = valid_agent_config(ev, "drago")
    assert config["coordination"]["backend"] == "local"
    assert config["coordination"]["local"]["socket"] == "/run/keystone-bus/bus.sock"
    assert config["mcpServers"]["keystone"]["args"] == ["mcp", "serve", "--config", "/etc/keystone-agents/agents/drago.json"]

    host = hostconfig.parse(ev.host_config(), "agentctl.json")  # the runtime's own loader and schema
    registry = from_host_config(host, include_root=False)
    drago = registry.agent("drago")
    assert (drago.role, drago.accept_from, drago.max_depth, drago.sends_per_hour) == (
        "agent-drago", ("luce", "admins"), 2, 30)
    assert [p.name for p in registry.admins] == ["alice"]
    assert host.coordination["local"]["database"] == "/var/lib/keystone-bus/bus.sqlite3"


def test_postgresql_backend(evaluate):
    ev = evaluate(PG)
    assert ev["failedAssertions"] == []
    pg = ev["postgresql"]
    assert pg["enable"] is True and pg["ensureDatabases"] == ["keystone"]
    assert [u["name"] for u in pg["ensureUsers"]] == ["agent-drago", "agent-luce", "alice"]
    assert pg["enableTCPIP"] is False and pg["authentication"] == ""
    migrate = ev["services"]["keystone-db-migrate"]
    assert migrate["after"] == ["postgresql.service"] and migrate["serviceConfig"]["User"] == "postgres"
    assert "bus migrate --host-config /etc/keystone-agents/agentctl.json --database keystone" in \
        migrate["serviceConfig"]["ExecStart"]
    listen = ev["userServices"]["agent-luce-listen"]["serviceConfig"]
    assert listen["Restart"] == "always" and listen["ExecStart"].endswith("comms listen --config /etc/keystone-agents/agents/luce.json")
    assert ev["userPaths"]["agent-luce-comms"]["pathConfig"]["PathChanged"] == \
        "/home/agent-luce/.local/state/agent-task-loop/state/comms-wake"
    assert "agent-drago-task-loop" in ev["userTimers"] and "agent-luce-task-loop" not in ev["userTimers"]
    config = valid_agent_config(ev, "luce")
    assert config["coordination"]["postgresql"] == {"host": "/run/postgresql", "port": 5432, "database": "keystone"}
    assert "keystone-bus" not in ev["users"] and ev["sockets"] == {}


def test_remote_database_with_client_certificates(evaluate):
    ev = evaluate('''{
      networking.hostName = "ocean";
      keystone.os.agentRuntime.coordination = { backend = "postgresql";
        postgresql = { createLocally = false; host = "db.example.org"; caFile = "/run/secrets/ca.pem"; }; };
      keystone.os.agents.drago = { triggers = [ "comms" ];
        postgres = { clientCertFile = "/run/secrets/drago.crt"; clientKeyFile = "/run/secrets/drago.key"; }; };
      keystone.os.agents.luce.host = "river";
    }''')
    assert ev["failedAssertions"] == []
    assert ev["postgresql"]["enable"] is False
    env = ev["userServices"]["agent-drago-comms"]["environment"]
    assert (env["PGSSLCERT"], env["PGSSLKEY"], env["PGSSLMODE"], env["PGSSLROOTCERT"]) == (
        "/run/secrets/drago.crt", "/run/secrets/drago.key", "verify-full", "/run/secrets/ca.pem")
    assert valid_agent_config(ev, "drago")["coordination"]["postgresql"]["host"] == "db.example.org"


@pytest.mark.parametrize("module,needle", [
    ('keystone.os.agentRuntime.coordination.backend = "local"; keystone.os.agents.drago.triggers = [ "comms" ]; '
     'keystone.os.agents.luce.host = "river";', 'coordination.backend = \\"postgresql\\"'),
    ('keystone.os.agents.drago.triggers = [ "comms" ];', 'backend is \\"none\\"'),
    ('keystone.os.agentRuntime.coordination = { backend = "postgresql"; postgresql.createLocally = false; }; '
     'keystone.os.agents.drago = { };', "set host"),
    ('keystone.os.agentRuntime.coordination = { backend = "postgresql"; postgresql = { createLocally = false; '
     'host = "db"; }; }; keystone.os.agents.drago = { };', "clientCertFile and clientKeyFile for drago"),
    ('keystone.os.agentRuntime.coordination.backend = "postgresql"; keystone.os.agents.drago = { }; '
     'keystone.os.agents.luce.host = "river";', "set allowedNetworks and caFile"),
])
def test_assertions_tell_the_operator_how_to_fix_it(evaluate, module, needle):
    ev = evaluate('{ networking.hostName = "ocean"; %s }' % module)
    assert any(needle.replace('\\"', '"') in message for message in ev["failedAssertions"]), ev["failedAssertions"]


def test_allowed_networks_render_hostssl_cert_lines(evaluate):
    ev = evaluate('''{
      networking.hostName = "ocean";
      keystone.os.agentRuntime.coordination = { backend = "postgresql";
        postgresql = { allowedNetworks = [ "10.0.0.0/24" ]; caFile = "/run/secrets/ca.pem"; }; };
      keystone.os.agents.drago = { };
      keystone.os.agents.luce.host = "river";
    }''')
    assert ev["failedAssertions"] == []
    assert ev["postgresql"]["enableTCPIP"] is True
    assert ev["postgresql"]["authentication"].strip() == "hostssl keystone all 10.0.0.0/24 cert clientcert=verify-full"
    assert [u["name"] for u in ev["postgresql"]["ensureUsers"]] == ["agent-drago", "agent-luce"]


# ------------------------------------------------------------------ systemd-analyze verify


def _value(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def render(unit: dict, kind: str) -> str:
    """A unit's attributes as NixOS writes them (lists become repeated keys)."""
    sections: dict[str, list[tuple[str, object]]] = {"Unit": [], kind: [], "Install": []}
    if unit.get("description"):
        sections["Unit"].append(("Description", unit["description"]))
    for key in ("after", "requires", "wants"):
        for name in unit.get(key) or []:
            sections["Unit"].append((key.capitalize(), name))
    for key, value in (unit.get("unitConfig") or {}).items():
        sections["Unit"].append((key, value))
    for name, value in (unit.get("environment") or {}).items():
        sections[kind].append(("Environment", '"%s=%s"' % (name, value)))  # quoted, as NixOS writes it
    for stream in unit.get("listenStreams") or []:
        sections[kind].append(("ListenStream", stream))
    for attr in ("serviceConfig", "socketConfig", "pathConfig", "timerConfig"):
        for key, value in (unit.get(attr) or {}).items():
            sections[kind].append((key, value))
    for target in unit.get("wantedBy") or []:
        sections["Install"].append(("WantedBy", target))
    lines = []
    for section, entries in sections.items():
        if not entries:
            continue
        lines.append(f"[{section}]")
        for key, value in entries:
            for item in value if isinstance(value, list) else [value]:
                lines.append(f"{key}={_value(item)}")
    return "\n".join(lines) + "\n"


def _package_bin(ev, root: Path) -> None:
    bin_dir = root / ev["package"]["name"] / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("keystone-agent",):
        (bin_dir / name).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / name).chmod(0o755)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed (Debian systemd)")
@pytest.mark.parametrize("scenario", [LOCAL, PG])
def test_generated_units_pass_systemd_analyze_verify(evaluate, tmp_path, scenario):
    root = tmp_path / "store"
    ev = evaluate(scenario, pkgs_root=root)
    _package_bin(ev, root)
    system, user = tmp_path / "system", tmp_path / "user"
    system.mkdir()
    user.mkdir()
    files = []
    for name, unit in ev["sockets"].items():
        files.append(system / f"{name}.socket")
        files[-1].write_text(render(unit, "Socket"))
    for name in ("keystone-bus@", "keystone-db-migrate"):
        if name in ev["services"]:
            path = system / f"{name}.service"
            path.write_text(render(ev["services"][name], "Service"))
            files.append(path)
    assert files, "no system units generated"
    checked = [f for f in files if "@" not in f.name]  # a template is checked through its socket
    verify = subprocess.run(["systemd-analyze", "verify", *map(str, checked)], capture_output=True, text=True,
                            cwd=system)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr

    user_files = []
    for name, unit in ev["userPaths"].items():
        user_files.append(user / f"{name}.path")
        user_files[-1].write_text(render(unit, "Path"))
    for name, unit in ev["userServices"].items():
        if name.endswith(("-comms", "-listen", "-task-loop")):
            path = user / f"{name}.service"
            path.write_text(render(unit, "Service"))
            user_files.append(path)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), "SYSTEMD_UNIT_PATH": f"{user}:"}
    verify = subprocess.run(["systemd-analyze", "--user", "verify", *map(str, user_files)], capture_output=True,
                            text=True, env=env, cwd=user)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    # and a broken unit would be caught: the check is real
    broken = user / "agent-broken.path"
    broken.write_text("[Path]\nPathChanged=relative/path\nUnit=agent-drago-comms.service\n")
    verify = subprocess.run(["systemd-analyze", "--user", "verify", str(broken)], capture_output=True, text=True,
                            env=env, cwd=user)
    assert "relative" in verify.stderr or verify.returncode != 0


SHARED = '''{
  networking.hostName = "ocean";
  keystone.os.agentRuntime = { admins = [ "alice" ]; coordination = { backend = "BACKEND";
    shared = { maxValueBytes = 4096; quotaBytes = 1048576; }; auditAnchor.onCalendar = "*:0/30"; }; };
  keystone.os.agents.drago = { shared.writePrefixes = [ "deploy/" ]; };
  keystone.os.agents.luce = { };
}'''


@pytest.mark.parametrize("backend, user", [("local", "root"), ("postgresql", "alice")])
def test_shared_state_limits_and_the_audit_anchor_timer(evaluate, backend, user):
    ev = evaluate(SHARED.replace("BACKEND", backend))
    assert ev["failedAssertions"] == []
    anchor = ev["services"]["keystone-audit-anchor"]["serviceConfig"]
    assert anchor["User"] == user and anchor["Type"] == "oneshot"
    assert "bin/keystone-agent audit anchor --host-config /etc/keystone-agents/agentctl.json --textfile-dir " in \
        anchor["ExecStart"]
    assert ev["timers"]["keystone-audit-anchor"]["timerConfig"]["OnCalendar"] == "*:0/30"
    host = hostconfig.parse(ev.host_config(), "agentctl.json")  # the runtime's own loader and schema
    registry = from_host_config(host, include_root=False)
    assert registry.agent("drago").write_prefixes == ("deploy/",)
    assert registry.agent("luce").write_prefixes == ("",)
    assert (registry.max_value_bytes, registry.quota_bytes) == (4096, 1048576)
