"""The policy model, the hook's adapters for the three CLIs' documented payloads, fail-closed answers, and the
role catalog against the seed's tool matrix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keystone_agents.policy import hook, model, render
from keystone_agents.policy.model import Action

HOME = "/home/agent-t"
SEED = Path("/work/shared/seeds")


def policy(role=None, **body) -> model.Policy:
    return model.from_document({"agent": "t", "role": role, "policy": body}, home=HOME)


def tier(p: model.Policy, kind: str, target: str, project=None) -> str:
    return p.decide(Action(kind, target), project).tier


# ------------------------------------------------------------------ the model


def test_most_restrictive_matching_rule_wins_over_every_layer():
    p = policy("coder", rules=[{"match": {"shell": "git push*"}, "tier": "autonomous"},
                               {"match": {"shell": "make deploy*"}, "tier": "approval_required"},
                               {"match": {"shell": "make *", "project": "prod-*"}, "tier": "blocked"}])
    assert tier(p, "shell", "git push origin main") == "notify"  # the role's git.push notify beats the agent's
    assert tier(p, "shell", "make deploy") == "approval_required"
    assert tier(p, "shell", "make deploy", project="prod-eu") == "blocked"  # a project rule
    assert tier(p, "shell", "make test", project="dev") == "autonomous"  # the coder's default
    assert tier(p, "shell", "sudo ls") == "blocked"


def test_compound_and_wrapped_commands_are_decided_by_their_worst_part():
    p = policy("coder")
    assert tier(p, "shell", "ls && sudo rm -rf /") == "blocked"
    assert tier(p, "shell", "echo ok; git push --force origin x") == "approval_required"
    assert tier(p, "shell", "bash -c 'sudo id'") == "blocked"
    assert tier(p, "shell", "FOO=1 git push origin main") == "notify"  # env assignments are not the command


def test_paths_hosts_mcp_and_acts():
    p = policy(None, default="blocked", rules=[
        {"match": {"write": "~/notes/**"}, "tier": "autonomous"},
        {"match": {"fetch": "*.github.com"}, "tier": "notify"},
        {"match": {"mcp": "keystone/comms_*"}, "tier": "autonomous"},
        {"match": {"act": "comms.send"}, "tier": "approval_required"},
        {"match": {"shell": "keystone-agent *"}, "tier": "autonomous"}])
    assert tier(p, "file.write", f"{HOME}/notes/a/b.md") == "autonomous"
    assert tier(p, "file.write", f"{HOME}/other.md") == "blocked"  # the default
    assert tier(p, "web.fetch", "api.github.com") == "notify"
    assert tier(p, "mcp", "keystone/comms_inbox") == "autonomous"
    # the runtime act a tool performs counts too: comms_send is comms.send
    assert tier(p, "mcp", "keystone/comms_send") == "approval_required"
    assert tier(p, "shell", "keystone-agent comms send --to beta") == "approval_required"
    assert tier(p, "shell", "keystone-agent comms inbox") == "autonomous"


def test_bad_policies_are_refused_with_the_field_named():
    with pytest.raises(model.PolicyError, match=r"policy.rules\[0\].tier"):
        policy(None, rules=[{"match": {"shell": "x"}, "tier": "sometimes"}])
    with pytest.raises(model.PolicyError, match=r"policy.rules\[0\].match.command: unknown match key"):
        policy(None, rules=[{"match": {"command": "x"}, "tier": "blocked"}])
    with pytest.raises(model.PolicyError, match="unknown role 'wizard'"):
        policy("wizard")
    with pytest.raises(model.PolicyError, match="names none of the acts"):
        policy(None, rules=[{"match": {"act": "launch.missiles"}, "tier": "blocked"}])


def test_no_role_and_no_policy_means_no_hook():
    assert not model.configured(None, {})
    assert model.configured("coder", {}) and model.configured(None, {"default": "notify"})


# ------------------------------------------------------------------ the seed's role matrix


def _allowed(role: str, seed_tool: str) -> bool:
    kind, target = model.SEED_TOOLS[seed_tool]
    target = target.replace("~", HOME).replace("/home/agent", HOME)
    return policy(role).decide(Action(kind, target)).tier in ("autonomous", "notify")


@pytest.mark.parametrize("role", sorted(model.BUILTIN_ROLES))
def test_role_defaults_match_the_seed_tool_matrix(role):
    """seeds/003 (foxctl): every role has the read/search tools; fs_write_file is the coder's; the agent_*
    tools are the overseer's."""
    for tool in model.SEED_ROLE_TOOLS["all"]:
        assert _allowed(role, tool), f"{role} lacks {tool}, which every role has"
    assert _allowed(role, "fs_write_file") == (role == "coder")
    for tool in model.SEED_ROLE_TOOLS["overseer"]:
        assert _allowed(role, tool) == (role == "overseer"), f"{role} / {tool}"


def test_the_matrix_names_the_seeds_tools():
    seeds = sorted(SEED.glob("003_*.txt")) if SEED.is_dir() else []
    if not seeds:
        pytest.skip("the seed texts are not on this machine")
    text = seeds[0].read_text()
    matrix = text[text.index("Each role has a defined set of tools"):][:1500]
    assert "researchercoderoverseer" in matrix.replace(" ", "")
    for tool in model.SEED_TOOLS:
        assert tool in matrix, tool


# ------------------------------------------------------------------ the hook's adapters (documented payloads)

CLAUDE_BASH = {"session_id": "abc", "transcript_path": "/t.jsonl", "cwd": "/home/agent-t/notes",
               "permission_mode": "dontAsk", "hook_event_name": "PreToolUse", "tool_name": "Bash",
               "tool_input": {"command": "sudo rm -rf /", "description": "clean"}, "tool_use_id": "toolu_01"}
CODEX_PATCH = {"session_id": "s", "cwd": "/home/agent-t/notes", "hook_event_name": "PreToolUse", "model": "gpt-5",
               "tool_name": "apply_patch", "tool_input": {"command": "*** Begin Patch\n*** Update File: /etc/hosts\n"
                                                                      "+x\n*** End Patch\n"}}
GEMINI_WRITE = {"session_id": "s", "transcript_path": "/t", "cwd": "/home/agent-t/notes", "hook_event_name": "BeforeTool",
                "timestamp": "2026-11-30T20:00:00Z", "tool_name": "write_file",
                "tool_input": {"file_path": "out/a.md", "content": "x"}}
GEMINI_MCP = {"session_id": "s", "cwd": "/", "hook_event_name": "BeforeTool", "tool_name": "mcp__keystone__comms_send",
              "tool_input": {"to": "beta"}, "mcp_context": {"server_name": "keystone", "tool_name": "comms_send"}}


def test_payloads_normalize_to_actions():
    assert hook.actions("claude", CLAUDE_BASH) == [Action("shell", "sudo rm -rf /", "Bash", CLAUDE_BASH["tool_input"])]
    assert [a.key() for a in hook.actions("codex", CODEX_PATCH)] == ["file.write:/etc/hosts"]
    assert [a.key() for a in hook.actions("gemini", GEMINI_WRITE)] == ["file.write:/home/agent-t/notes/out/a.md"]
    assert [a.key() for a in hook.actions("gemini", GEMINI_MCP)] == ["mcp:keystone/comms_send"]
    web = {"tool_name": "WebFetch", "tool_input": {"url": "https://Docs.Example.org/x", "prompt": "?"}}
    assert [a.key() for a in hook.actions("claude", web)] == ["web.fetch:docs.example.org"]


def _run(cli, payload, policy_doc, tmp_path, text=None):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy_doc))
    return hook.run(cli, str(path), None, text if text is not None else json.dumps(payload))


@pytest.mark.parametrize("cli", hook.CLIS)
def test_each_cli_gets_its_documented_answer(cli, tmp_path):
    doc = model.document("t", "coder", {}, HOME)
    code, out, err = _run(cli, CLAUDE_BASH, doc, tmp_path)
    if cli == "claude":
        assert code == 0 and json.loads(out)["hookSpecificOutput"]["permissionDecision"] == "deny"
        assert "sudo" in json.loads(out)["hookSpecificOutput"]["permissionDecisionReason"]
    elif cli == "gemini":
        data = json.loads(out)  # stdout holds the JSON and nothing else
        assert code == 0 and data["decision"] == "deny" and "sudo" in data["reason"]
    else:
        assert code == 2 and out == "" and "sudo" in err
    ok = {**CLAUDE_BASH, "tool_input": {"command": "ls -la"}}
    code, out, err = _run(cli, ok, doc, tmp_path)
    assert code == 0 and err == ""
    if cli != "codex":
        decision = json.loads(out)
        assert decision.get("decision", (decision.get("hookSpecificOutput") or {}).get("permissionDecision")) == "allow"


@pytest.mark.parametrize("cli", hook.CLIS)
@pytest.mark.parametrize("broken", ["not json", "[]", '{"tool_input": {}}', '{"tool_name": "Bash", "tool_input": 3}',
                                    '{"tool_name": "Bash", "tool_input": {}}'])
def test_malformed_input_fails_closed(cli, broken, tmp_path):
    code, out, err = _run(cli, None, model.document("t", None, {"default": "autonomous"}, HOME), tmp_path, broken)
    assert code == 2 and "refused" in err


@pytest.mark.parametrize("cli", hook.CLIS)
def test_an_unreadable_or_broken_policy_fails_closed(cli, tmp_path):
    bad = tmp_path / "policy.json"
    bad.write_text('{"role": "coder", "policy": {"rules": [{"match": {"shell": "x"}, "tier": "maybe"}]}}')
    assert hook.run(cli, str(bad), None, json.dumps(CLAUDE_BASH))[0] == 2
    assert hook.run(cli, str(tmp_path), None, json.dumps(CLAUDE_BASH))[0] == 2  # a directory: IsADirectoryError
    assert hook.run(cli, str(tmp_path / "missing.json"), None, json.dumps(CLAUDE_BASH))[0] == 2


def test_a_crash_inside_the_check_fails_closed(tmp_path, monkeypatch):
    def crash(self, cli, payload):
        raise RuntimeError("boom")

    monkeypatch.setattr(hook.Checker, "check", crash)
    code, out, err = _run("claude", CLAUDE_BASH, model.document("t", None, {}, HOME), tmp_path)
    assert code == 2 and "boom" in err and out == ""


def test_the_command_line_exits_2_even_when_keystone_agent_cannot_start(tmp_path):
    """Claude reads exit 1 (a crashed interpreter, a missing program) as a non-blocking error: the rendered
    hook command turns every failure into exit 2."""
    command = render.hook_command("claude", tmp_path / "policy.json", program=str(tmp_path / "no-such-program"))
    done = subprocess.run(["sh", "-c", command], input="{}", capture_output=True, text=True)
    assert done.returncode == 2
    crash = tmp_path / "crash"
    crash.write_text("#!/bin/sh\nexit 1\n")
    crash.chmod(0o755)
    done = subprocess.run(["sh", "-c", render.hook_command("claude", "/x", program=str(crash))], input="{}",
                          capture_output=True, text=True)
    assert done.returncode == 2


def test_policy_check_command_end_to_end(tmp_path):
    """`keystone-agent policy check` as the CLIs run it: a process, stdin JSON, exit code."""
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(model.document("t", "reviewer", {}, HOME)))
    argv = [sys.executable, "-m", "keystone_agents", "policy", "check", "--cli", "codex", "--policy", str(path)]
    env = {**os.environ}
    env.pop("KEYSTONE_POLICY_LOG", None)
    done = subprocess.run(argv, input=json.dumps(GEMINI_WRITE | {"tool_name": "Write"}), capture_output=True,
                          text=True, env=env)
    assert done.returncode == 2 and "Blocked by the agent's policy" in done.stderr
    done = subprocess.run(argv, input=json.dumps({**CLAUDE_BASH, "tool_input": {"command": "git status"}}),
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout == ""


# ------------------------------------------------------------------ rendering


def test_rendered_claude_settings_hook_every_tool_and_deny_the_blocked(tmp_path):
    p = policy("coder", rules=[{"match": {"shell": "rm -rf*"}, "tier": "blocked"}])
    settings = render.claude_settings(p, tmp_path / "policy.json", "/run/ka")
    assert settings["permissions"]["defaultMode"] == "dontAsk"
    assert "Bash(rm -rf*)" in settings["permissions"]["deny"] and "Edit(//etc/**)" in settings["permissions"]["deny"]
    [group] = settings["hooks"]["PreToolUse"]
    assert group["matcher"] == "*"
    assert group["hooks"][0]["command"].endswith("|| exit 2") and "--cli claude" in group["hooks"][0]["command"]
    gemini = render.gemini_settings(tmp_path / "policy.json")
    assert gemini["hooks"]["BeforeTool"][0]["matcher"] == ".*"
    codex = render.codex_overrides(tmp_path / "policy.json")
    import tomllib

    hooks = tomllib.loads("v = " + codex[-1].split("=", 2)[2])["v"]
    assert "--cli codex" in hooks[0]["hooks"][0]["command"]


def test_outcome_of_a_run(tmp_path):
    from keystone_agents.policy import outcome

    log = tmp_path / "d.jsonl"
    log.write_text("\n".join(json.dumps(e) for e in [
        {"action": {"kind": "shell", "target": "sudo x"}, "tier": "blocked", "allowed": False},
        {"action": {"kind": "shell", "target": "rm y"}, "tier": "blocked", "allowed": False}]) + "\n")
    verdict = outcome.read(log)
    assert verdict.override()[0] == "policy"
    assert verdict.override()[1]["status"] == "blocked"
    with log.open("a") as handle:
        handle.write(json.dumps({"action": {"kind": "shell", "target": "ls"}, "tier": "autonomous",
                                 "allowed": True}) + "\n")
    assert outcome.read(log).override() is None
    with log.open("a") as handle:
        handle.write(json.dumps({"action": {"kind": "shell", "target": "git push"}, "tier": "approval_required",
                                 "allowed": False, "approval": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"}) + "\n")
    got = outcome.read(log).override()
    assert got[0] == "blocked" and got[1]["blocked_reason"] == "approval:1b4e28ba-2fa1-11d2-883f-0016d3cca427"


def test_render_writes_read_only_files_and_the_settings_of_a_nix_policy(tmp_path):
    from click.testing import CliRunner

    from keystone_agents.cli.agent_cli import cli

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"agentName": "t", "role": "reviewer", "policy": {"rules": [
        {"match": {"shell": "rm *"}, "tier": "blocked"}]}}))
    out = tmp_path / "etc"
    result = CliRunner().invoke(cli, ["policy", "render", "--config", str(config), "--agent-home", HOME, "--out",
                                      str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(Path(p).name for p in json.loads(result.output)["written"]) == [
        "claude-settings.json", "gemini-settings.json", "policy.json"]
    assert all((out / n).stat().st_mode & 0o777 == 0o444 for n in ("policy.json", "claude-settings.json"))
    assert json.loads((out / "policy.json").read_text())["role"] == "reviewer"
    # what the NixOS module does: policy.json written by Nix, the settings rendered from it
    nix = tmp_path / "nix-policy.json"
    nix.write_text(json.dumps(model.document("t", "coder", {}, HOME)))
    result = CliRunner().invoke(cli, ["policy", "render", "--from-policy", str(nix), "--policy-path",
                                      "/etc/keystone-agents/agents/t/policy.json", "--out", str(tmp_path / "nixout")])
    assert result.exit_code == 0, result.output
    claude = json.loads((tmp_path / "nixout/claude-settings.json").read_text())
    assert "--policy /etc/keystone-agents/agents/t/policy.json" in claude["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
    assert not (tmp_path / "nixout/policy.json").exists()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(model.document("t", "wizard", {}, HOME)))
    result = CliRunner().invoke(cli, ["policy", "render", "--from-policy", str(bad), "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "unknown role 'wizard'" in result.output and "Traceback" not in result.output


def test_validate_names_policy_problems(tmp_path):
    from keystone_agents.config import parse_config
    from keystone_agents.validation import check_policy

    def problems(**data):
        return [(p.field, p.message) for p in check_policy(parse_config({"agentName": "t", **data}), "c.json",
                                                           lambda path: None)]

    assert problems(role="coder") == []
    [(field, message)] = problems(role="researcher")  # its shell default is approval_required: needs the bus
    assert field == "policy" and "coordination backend" in message
    [(field, message)] = problems(role="wizard")
    assert field == "role" and "unknown role 'wizard'" in message
    [(field, message)] = problems(policy={"rules": [{"match": {"act": "launch.*"}, "tier": "blocked"}]})
    assert field == "policy.rules[0].match.act" and "names none of the acts" in message
    [(field, message)] = problems(role="coder", policyFile=str(tmp_path / "nope.json"))
    assert field == "policyFile" and "policy render" in message
    mine = tmp_path / "policy.json"
    mine.write_text("{}")
    mine.chmod(0o666)
    [(field, message)] = problems(role="coder", policyFile=str(mine))
    assert "owned by root and writable by nobody else" in message


def test_provider_argv_with_a_policy_drops_the_blanket_bypass(tmp_path):
    """The task loop's providers and the coding subagent's: the rendered settings instead of skipping permissions."""
    from keystone_agents.coding.providers import provider_env
    from keystone_agents.profiles import Runtime
    from keystone_agents.providers.claude import ClaudeProvider
    from keystone_agents.providers.codex import CodexProvider
    from keystone_agents.providers.gemini import GeminiProvider

    policy_file = str(tmp_path / "policy.json")
    runtime = Runtime(provider="claude", profile=None, model=None, fallback_model=None, effort=None)
    claude = ClaudeProvider()
    claude.policy_file = policy_file
    argv = claude.invocation("do it", runtime).argv
    assert "--dangerously-skip-permissions" not in argv
    assert f"--settings={tmp_path / 'claude-settings.json'}" in argv and "--permission-mode=dontAsk" in argv
    assert "--dangerously-skip-permissions" in ClaudeProvider().invocation("do it", runtime).argv  # no policy
    gemini = GeminiProvider()
    gemini.policy_file = policy_file
    inv = gemini.invocation("do it", runtime)
    assert "--yolo" not in inv.argv and "--approval-mode=yolo" in inv.argv
    assert inv.env["GEMINI_CLI_SYSTEM_SETTINGS_PATH"] == str(tmp_path / "gemini-settings.json")
    codex = CodexProvider()
    codex.policy_file = policy_file
    assert any(a.startswith("--config=hooks.PreToolUse=") for a in codex.invocation("do it", runtime).argv)
    # the coding subagent's runs are built by the same providers (coding/providers.py), with its system prompt; the
    # policy comes from the run's environment, which reaches the CLI (its hook reads it)
    env = provider_env(base={"KEYSTONE_POLICY_FILE": policy_file, "KEYSTONE_POLICY_LOG": "/log", "PATH": "/bin"})
    assert env == {"KEYSTONE_POLICY_FILE": policy_file, "KEYSTONE_POLICY_LOG": "/log", "PATH": "/bin"}
    coder = ClaudeProvider()
    coder.system_prompt, coder.policy_file = "system", env["KEYSTONE_POLICY_FILE"]
    coding = coder.invocation("task", runtime).argv
    assert "--dangerously-skip-permissions" not in coding and "--permission-mode=dontAsk" in coding
    assert "--append-system-prompt=system" in coding


def test_the_hook_fast_path_takes_only_its_own_options():
    from keystone_agents.cli.agent import hook_invocation

    assert hook_invocation(["policy", "check", "--cli", "claude", "--policy=/p.json"]) == {
        "--cli": "claude", "--policy": "/p.json"}
    assert hook_invocation(["policy", "check", "--policy", "/p"]) is None  # no --cli: click explains
    assert hook_invocation(["policy", "check", "--cli", "claude", "--help"]) is None
    assert hook_invocation(["policy", "explain", "shell", "ls"]) is None
    assert hook_invocation(["policy", "check", "--cli"]) is None


def test_pending_approvals_as_metrics():
    import datetime as dt

    from keystone_agents.agentctl.approvals import metrics_text

    now = dt.datetime(2026, 11, 30, 20, 0, tzinfo=dt.timezone.utc)
    items = [{"agent": "ada", "state": "pending", "requested_at": "2026-11-30T19:30:00.000Z"},
             {"agent": "ada", "state": "pending", "requested_at": "2026-11-30T19:50:00.000Z"},
             {"agent": "bob", "state": "approved", "requested_at": "2026-11-30T18:00:00.000Z"}]
    text = metrics_text(items, now)
    lines = {line.split("{")[0] + "|" + line.split('agent="')[1].split('"')[0] if 'agent="' in line else line.split("{")[0]:
             float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line and not line.startswith("#")}
    assert lines["keystone_approvals_pending|ada"] == 2
    assert lines["keystone_approvals_oldest_pending_age_seconds|ada"] == 1800
    assert "keystone_approvals_pending|bob" not in lines  # decided approvals are not pending
    assert lines["keystone_approvals_pending_total"] == 2


@pytest.mark.parametrize("mode", [["--permission-mode=dontAsk"], ["--dangerously-skip-permissions"],
                                  ["--permission-mode=bypassPermissions"]])
def test_the_deny_holds_in_every_claude_permission_mode(tmp_path, mode):
    """The stand-in claude runs the rendered PreToolUse hook as Claude Code does; a blocked command never runs,
    bypass mode included (a hook's deny and deny rules hold in every mode)."""
    repo = Path(__file__).resolve().parents[2]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"agentName": "t", "role": "coder", "policy": {"rules": [
        {"match": {"shell": "touch *"}, "tier": "blocked"}]}}))
    out = tmp_path / "etc"
    render.write_all(out, __import__("keystone_agents.config", fromlist=["x"]).load_config(config), str(tmp_path),
                     str(Path(sys.executable).parent / "keystone-agent"))
    marker, allowed = tmp_path / "marker", tmp_path / "allowed"
    env = {**os.environ, "PATH": f"{repo / 'tests/fakebin'}:{os.environ['PATH']}",
           "FAKE_BIN_LOG": str(tmp_path / "log.jsonl")}
    env.pop("KEYSTONE_POLICY_LOG", None)
    done = subprocess.run(["claude", "--print", "--output-format", "json", f"--settings={out / 'claude-settings.json'}",
                           *mode, "--", f"go [fake:bash=touch {marker}] [fake:bash=echo ok > {allowed}]"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not marker.exists() and allowed.exists()
    calls = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    [refused] = [c for c in calls if c.get("event") == "tool-call" and not c["allowed"]]
    assert "Blocked by the agent's policy" in refused["reason"]


def test_explain_and_roles_for_people_and_scripts(tmp_path):
    from click.testing import CliRunner

    from keystone_agents.cli.agent_cli import cli

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"agentName": "t", "role": "coder", "policy": {"rules": [
        {"match": {"shell": "terraform apply*"}, "tier": "approval_required"}]}}))
    result = CliRunner().invoke(cli, ["policy", "explain", "shell", "ls && terraform apply -auto-approve", "--config",
                                      str(config), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["tier"] == "approval_required" and "terraform apply*" in data["rule"]
    assert {p["action"] for p in data["parts"]} >= {"shell:ls", "shell:terraform apply -auto-approve"}
    result = CliRunner().invoke(cli, ["policy", "explain", "shell", "git push", "--config", str(config)])
    assert result.exit_code == 0 and result.output.startswith("notify")
    roles = json.loads(CliRunner().invoke(cli, ["policy", "roles", "--json"]).output)
    assert set(roles) == {"researcher", "coder", "reviewer", "planner", "overseer"}
    assert roles["coder"]["default"] == "autonomous" and roles["reviewer"]["default"] == "blocked"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"agentName": "t", "role": "wizard"}))
    result = CliRunner().invoke(cli, ["policy", "explain", "shell", "ls", "--config", str(bad)])
    assert result.exit_code == 1 and "unknown role 'wizard'" in result.output and "Traceback" not in result.output


def test_runtime_acts_are_decided_like_tool_calls(tmp_path, monkeypatch):
    """The coding orchestrator's own push and pull request (policy/acts.py): same rules, same decision log."""
    from keystone_agents.policy import acts, outcome

    path = tmp_path / "policy.json"
    path.write_text(json.dumps(model.document("t", "coder", {"rules": [{"match": {"act": "pr.create"},
                                                                        "tier": "blocked"}]}, HOME)))
    log = tmp_path / "decisions.jsonl"
    assert acts.check("git.push", "x") == (True, "")  # no policy in the environment: today's behaviour
    monkeypatch.setenv("KEYSTONE_POLICY_FILE", str(path))
    monkeypatch.setenv("KEYSTONE_POLICY_LOG", str(log))
    monkeypatch.setenv("KEYSTONE_TASK_NAME", "ship")
    assert acts.check("git.push", "git push origin b")[0] is True  # the coder's notify (no bus: recorded only)
    allowed, reason = acts.check("pr.create", "draft pull request")
    assert allowed is False and "act:pr.create" in reason
    tiers = [(d["action"]["target"], d["tier"], d["allowed"]) for d in outcome.read(log).decisions]
    assert tiers == [("git.push", "notify", True), ("pr.create", "blocked", False)]
    path.chmod(0o000) if os.geteuid() != 0 else path.write_text("{ broken")
    assert acts.check("git.push", "x")[0] is False  # fails closed


# ---------------------------------------------------------------- the session an approved retry resumes


def test_an_approved_session_is_resumed_once_and_its_prompt_does_not_repeat_the_task(tmp_path):
    import types

    from keystone_agents.policy import outcome

    space = types.SimpleNamespace(state_dir=tmp_path)
    outcome.remember_session(space, "deploy", "a-1", "claude", "sess-9")
    assert outcome.approved_session(space, "deploy") is None  # not decided yet: nothing to resume
    outcome._mark_session(space, "deploy", "other-id", {"decided_by": "alice"})  # another approval: ignored
    assert outcome.approved_session(space, "deploy") is None
    outcome._mark_session(space, "deploy", "a-1", {"decided_by": "alice", "note": "once", "action": "shell:make"})
    stored = outcome.approved_session(space, "deploy")
    assert (stored["session_id"], stored["provider"], stored["approval"]) == ("sess-9", "claude", "a-1")
    assert outcome.approved_session(space, "deploy") is None  # taken once
    prompt = outcome.approval_prompt(stored)
    assert "approval a-1 for shell:make" in prompt and "alice" in prompt and "once" in prompt
    assert "Task:" not in prompt and "Description:" not in prompt

    outcome.remember_session(space, "deploy", "a-2", "claude", "sess-9")
    outcome._mark_session(space, "deploy", "a-2", None)  # rejected: forgotten
    assert not (tmp_path / "policy" / "sessions" / "deploy.json").exists()
    outcome.remember_session(space, "deploy", "a-3", "claude", None)  # no session id: the retry re-runs
    outcome._mark_session(space, "deploy", "a-3", {"decided_by": "alice"})
    assert outcome.approved_session(space, "deploy") is None
