"""Interactive sessions with the composed system prompt, and shell completion."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import installed_script

PROJECTS = """projects:
  - name: Web Shop
    slug: web
    description: The storefront
    status: active
    priority: 1
    updated: "2026-11-01"
    repos: ["git@example.com:acme/shop.git"]
"""


def _claude_prompt(argv: list[str]) -> str:
    return argv[argv.index("--append-system-prompt") + 1]


def test_claude_session_gets_composed_prompt_and_preferred_model(fleet):
    home = fleet.homes["alpha"]
    (home / "PROJECTS.yaml").write_text(PROJECTS)
    assert fleet.run("prefs", "set", "alpha", "--model", "opus").returncode == 0
    result = fleet.run("alpha", "claude", "--role", "implementation", "--roles", "architect", "--project", "web",
                       "--resume", "abc")
    assert result.returncode == 0, result.stderr
    [argv] = fleet.argvs("claude")
    assert argv[:2] == ["--dangerously-skip-permissions", "--model=opus"]
    assert argv[-2:] == ["--resume", "abc"]
    prompt = _claude_prompt(argv)
    notes = home / "notes"
    order = [
        (notes / "AGENTS.md").read_text().strip().splitlines()[0],
        "# Project Context",
        "Project: Web Shop (web)",
        (notes / ".agents/shared/rfc2119-preamble.md").read_text().strip().splitlines()[0],
        "# Role: software engineer",
        "# Role: architect",
        "# Convention: version control",  # the engineer archetype's first
        "# Convention: the Nix dev shell",
        "# Convention: pull requests",
    ]
    positions = [prompt.index(marker) for marker in order]
    assert positions == sorted(positions)
    assert prompt.count("# Convention: feature delivery") == 1  # archetype and mode both name it


def test_codex_session_reads_instructions_from_a_file(fleet):
    assert fleet.run("prefs", "set", "alpha", "--provider", "claude", "--model", "opus").returncode == 0
    result = fleet.run("alpha", "codex", "--role", "code-review")
    assert result.returncode == 0, result.stderr
    [argv] = fleet.argvs("codex")
    assert argv[0] == "--full-auto" and not any(a.startswith("--model") for a in argv)  # the preferred model is for claude only
    option = argv[argv.index("-c") + 1]
    key, _, value = option.partition("=")
    assert key == "model_instructions_file"
    path = Path(json.loads(value))
    assert "# Role: code reviewer" in path.read_text()


def test_gemini_session_keeps_caller_mode_flag(fleet):
    assert fleet.run("alpha", "gemini", "--approval-mode", "auto_edit").returncode == 0
    assert fleet.argvs("gemini") == [["--approval-mode", "auto_edit"]]


def test_session_for_other_user_goes_through_the_helper(fleet):
    assert fleet.run("beta", "claude", "-r", "architecture").returncode == 0
    [sudo] = fleet.argvs("sudo")
    helper = str(Path(__file__).parent / "bin" / "agent-helper")
    assert sudo == ["-u", "agent-beta", "--", helper, "claude", "--role", "architecture", "--"]
    assert "# Role: architect" in _claude_prompt(fleet.argvs("claude")[0])


def test_session_errors_name_the_missing_piece(fleet):
    result = fleet.run("alpha", "claude", "--role", "no-such-mode")
    assert result.returncode == 1 and "mode 'no-such-mode' is not defined" in result.stderr
    result = fleet.run("alpha", "claude", "--project", "nope")
    assert result.returncode == 1 and "project 'nope' not found" in result.stderr
    assert fleet.argvs("claude") == []


def test_remote_session_is_forwarded(fleet):
    assert fleet.run("gamma", "claude", "--role", "implementation", "--", "-p", "hi; there").returncode == 0
    assert fleet.ssh.remote_argvs() == [["gamma", "claude", "--role", "implementation", "--", "-p", "hi; there"]]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(fleet, shell):
    result = fleet.run("completion", shell)
    assert result.returncode == 0
    assert "_AGENTCTL_COMPLETE" in result.stdout
    assert f"{shell}_complete" in result.stdout


def _complete(fleet, words: str) -> list[str]:
    env = {**fleet.env, "_AGENTCTL_COMPLETE": "bash_complete", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
    out = subprocess.run([installed_script("agentctl")], env=env, capture_output=True, text=True, timeout=30).stdout
    return [line.split(",", 1)[1] for line in out.splitlines() if line]


def test_completion_knows_agents_and_verbs(fleet):
    assert _complete(fleet, "agentctl ") == ["approvals", "audit", "completion", "hierarchy", "list", "prefs", "shared",
                                              "show", "status", "watch", "alpha", "beta", "gamma"]
    assert _complete(fleet, "agentctl be") == ["beta"]
    assert _complete(fleet, "agentctl alpha pa") == ["pause", "paused"]
    assert _complete(fleet, "agentctl show g") == ["gamma"]
    # task actions, then the task names of a local agent's TASKS.yaml
    (fleet.homes["alpha"] / "TASKS.yaml").write_text(
        "tasks:\n  - {name: write-report, description: x, status: pending}\n"
        "  - {name: fix-login, description: y, status: blocked}\n")
    assert _complete(fleet, "agentctl alpha task ") == ["add", "show", "retry", "cancel", "edit"]
    assert _complete(fleet, "agentctl alpha task show w") == ["write-report"]
    assert _complete(fleet, "agentctl alpha task retry ") == ["write-report", "fix-login"]


def test_session_runs_in_the_dev_shell_when_the_space_has_a_flake(fleet, tmp_path):
    notes = fleet.homes["alpha"] / "notes"
    (notes / "flake.nix").write_text("{ outputs = _: {}; }\n")
    fakebin = tmp_path / "fakenix"
    fakebin.mkdir()
    (fakebin / "nix").write_text("#!/bin/sh\nexit 0\n")
    (fakebin / "nix").chmod(0o755)
    env = {**fleet.env, "PATH": f"{fakebin}{os.pathsep}{fleet.env['PATH']}"}
    base = [installed_script("keystone-agent"), "session", "--home", str(fleet.homes["alpha"]), "--print-argv"]
    session = json.loads(subprocess.run([*base, "claude"], env=env, capture_output=True, text=True, check=True).stdout)
    assert session["argv"][:7] == ["nix", "develop", str(notes), "--no-update-lock-file", "--accept-flake-config",
                                   "--command", "claude"]
    assert session["cwd"] == str(notes)
    session = json.loads(subprocess.run([*base, "--no-devshell", "claude"], env=env, capture_output=True, text=True,
                                        check=True).stdout)
    assert session["argv"][:3] == ["claude", "--dangerously-skip-permissions", "--append-system-prompt"]
