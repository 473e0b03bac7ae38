"""The coding subagent's provider runs go through the task loop's provider layer: the configured MCP servers reach
claude, codex and gemini exactly as in loop runs (a 0600 file under the state dir, removed afterwards; secrets from
files, never in argv or logs), and the CLI works in the clone inside the agent space. Driven through the real
`keystone-agent code` command with stand-in CLIs that record their argv and the MCP configuration they were given
while they ran."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.coding.test_coding_flow import PASS_WITH_COMMENTS, TASK, clone_dir, code, commit, github  # type: ignore[import-not-found]  # noqa: F401 - github is a fixture
from keystone_agents.space import AgentSpace

SECRET = "mcp-s3cret-value-7f3a"


def configure_servers(coding_env, config: Path, secret_file: Path | None = None) -> Path:
    if secret_file is None:
        secret_file = coding_env.root / "forge-mcp-token"
        secret_file.write_text(SECRET + "\n")
    data = json.loads(config.read_text())
    data["mcpServers"] = {
        "deepwork": {"command": "deepwork", "args": ["serve", "--path", "."], "env": {"LOG_LEVEL": "info"}},
        "forge": {"command": "/opt/forge-mcp", "args": [], "env": {}, "envFiles": {"FORGE_TOKEN": str(secret_file)}},
    }
    config.write_text(json.dumps(data))
    return secret_file


def mcp_dir(coding_env) -> Path:
    return AgentSpace(coding_env.home).mcp_run_config("x").parent


def assert_no_secret_anywhere(coding_env, result) -> None:
    assert SECRET not in result.stdout and SECRET not in result.stderr
    for call in coding_env.agent_calls():
        assert SECRET not in json.dumps(call["argv"])
    for path in coding_env.home.rglob("*"):
        if path.is_file() and ".repos" not in path.parts:
            assert SECRET not in path.read_bytes().decode("utf-8", errors="replace"), path


def test_claude_coding_and_review_runs_get_exactly_the_configured_servers(coding_env, github):
    configure_servers(coding_env, github["config"])
    coding_env.script([commit({"README.md": "# demo\nHello!\n"}), {"do": "review", "output": PASS_WITH_COMMENTS}])
    result, data = code(coding_env, "--repo", github["repo"], "--task", TASK, config=github["config"])
    assert result.exit_code == 0 and data["outcome"] == "ready", data["message"]
    calls = coding_env.agent_calls()
    assert [c["action"] for c in calls] == ["commit", "review"]
    paths = []
    for call in calls:
        argv = call["argv"]
        assert call.get("error") is None, call
        # the working directory is the clone, inside the agent space
        assert os.path.realpath(call["cwd"]) == os.path.realpath(clone_dir(coding_env, github["repo"]))
        assert os.path.realpath(call["cwd"]).startswith(os.path.realpath(coding_env.home / "notes") + "/")
        [index] = [i for i, a in enumerate(argv) if a.startswith("--mcp-config=")]
        path = argv[index].split("=", 1)[1]
        assert argv[index + 1] == "--strict-mcp-config"  # never the prompt right after --mcp-config's values
        assert call["mcp"]["strict"] is True
        given = call["mcp"]["files"][path]
        assert given["mode"] == "0o600"
        assert given["config"] == {"mcpServers": {
            "deepwork": {"type": "stdio", "command": "deepwork", "args": ["serve", "--path", "."],
                         "env": {"LOG_LEVEL": "info"}},
            "forge": {"type": "stdio", "command": "/opt/forge-mcp", "args": [], "env": {"FORGE_TOKEN": SECRET}}}}
        assert Path(path).parent == mcp_dir(coding_env)
        paths.append(path)
    assert len(set(paths)) == 2  # one file per provider run
    assert not list(mcp_dir(coding_env).glob("*.json"))  # removed after each run
    # the review still parsed from claude's JSON result (`result`)
    assert data["verdicts"] == ["PASS"]
    assert_no_secret_anywhere(coding_env, result)


def test_codex_gets_the_servers_as_overrides_and_the_secret_only_in_its_environment(coding_env, github):
    configure_servers(coding_env, github["config"])
    coding_env.script([commit({"README.md": "# demo\nHello!\n"}), {"do": "review", "output": "VERDICT: PASS\n"}])
    result, data = code(coding_env, "--repo", github["repo"], "--task", TASK, "--provider", "codex",
                        config=github["config"])
    assert data["outcome"] == "ready", data["message"]
    for call in coding_env.agent_calls():
        assert call["cli"] == "codex" and call.get("error") is None
        assert call["mcp"]["overrides"] == {
            "mcp_servers.deepwork.command": "deepwork",
            "mcp_servers.deepwork.args": ["serve", "--path", "."],
            "mcp_servers.deepwork.env": {"LOG_LEVEL": "info"},
            "mcp_servers.forge.command": "/opt/forge-mcp",
            "mcp_servers.forge.args": [],
            "mcp_servers.forge.env_vars": ["FORGE_TOKEN"],
        }
        assert call["mcp"]["forwarded_env_present"] == {"FORGE_TOKEN": True}
        assert call["argv"][:2] == ["exec", "--json"]
    assert_no_secret_anywhere(coding_env, result)


def test_gemini_gets_a_private_settings_file_removed_afterwards(coding_env, github):
    configure_servers(coding_env, github["config"])
    coding_env.script([commit({"README.md": "# demo\nHello!\n"}), {"do": "review", "output": "VERDICT: PASS\n"}])
    result, data = code(coding_env, "--repo", github["repo"], "--task", TASK, "--provider", "gemini",
                        config=github["config"])
    assert data["outcome"] == "ready", data["message"]
    for call in coding_env.agent_calls():
        assert call["cli"] == "gemini" and call.get("error") is None
        given = call["mcp"]
        assert sorted(given["allowed"]) == ["deepwork", "forge"]
        assert given["mode"] == "0o600" and Path(given["path"]).parent == mcp_dir(coding_env)
        assert given["settings"]["mcpServers"]["forge"] == {"command": "/opt/forge-mcp", "args": [],
                                                           "env": {"FORGE_TOKEN": SECRET}}
        assert not Path(given["path"]).exists()
    assert_no_secret_anywhere(coding_env, result)


def test_no_configured_servers_means_no_mcp_flags(coding_env, github):
    coding_env.script([commit({"README.md": "# demo\nHello!\n"})])
    _, data = code(coding_env, "--repo", github["repo"], "--task", TASK, "--skip-review", config=github["config"])
    assert data["outcome"] == "draft", data["message"]
    [call] = coding_env.agent_calls()
    assert not any(a.startswith("--mcp-config") or a == "--strict-mcp-config" for a in call["argv"])


def test_a_missing_secret_file_stops_the_run_before_anything_is_touched(coding_env, github):
    absent = coding_env.root / "absent-token"
    configure_servers(coding_env, github["config"], secret_file=absent)
    coding_env.script([commit({"README.md": "# demo\nHello!\n"})])
    result, data = code(coding_env, "--repo", github["repo"], "--task", TASK, config=github["config"])
    assert result.exit_code == 1 and data["outcome"] == "error"
    assert data["message"] == f"MCP server 'forge': envFiles.FORGE_TOKEN: secret file {absent} does not exist"
    assert coding_env.agent_calls() == [] and data["branch"] is None
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("provider", ["claude", "codex", "gemini"])
def test_a_missing_agent_space_is_a_clear_error(coding_env, github, provider):
    (coding_env.home / "notes").rmdir()
    result, data = code(coding_env, "--repo", github["repo"], "--task", TASK, "--provider", provider,
                        config=github["config"])
    assert result.exit_code == 1 and data["outcome"] == "error"
    assert f"agent space {coding_env.home / 'notes'} does not exist" in data["message"]
    assert coding_env.agent_calls() == []
