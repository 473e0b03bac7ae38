"""Shell completion of `keystone-agent` (commands, task names) in a real bash, the generated manual pages of
both CLIs, `keystone-agent monitoring …`, and "did you mean" for unknown commands and task names."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import installed_script


def bash_complete(words: str, env: dict) -> list[str]:
    """Source `keystone-agent completion bash` in bash and ask its function for the completions of `words`."""
    script = subprocess.run([installed_script("keystone-agent"), "completion", "bash"], capture_output=True,
                            text=True, env=env, check=True).stdout
    parts = words.split(" ")
    program = (f"{script}\nCOMP_WORDS=({' '.join(repr(p) for p in parts)}); COMP_CWORD={len(parts) - 1}\n"
               f"_keystone_agent_completion keystone-agent\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n")
    out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 0, out.stderr
    return [line for line in out.stdout.splitlines() if line]


@pytest.fixture
def env(agent_home, tmp_path):
    import os

    (agent_home / "TASKS.yaml").write_text(
        "tasks:\n  - name: write-report\n    description: x\n    status: pending\n"
        "  - name: write-docs\n    description: y\n    status: blocked\n  - name: fix-it\n    description: z\n"
        "    status: pending\n")
    return {**os.environ, "HOME": str(agent_home), "PATH": f"{installed_script('keystone-agent').rsplit('/', 1)[0]}:"
            + os.environ["PATH"]}


def test_bash_completes_commands_and_task_names(env):
    assert bash_complete("keystone-agent ta", env) == ["task", "tasks"]
    assert bash_complete("keystone-agent task re", env) == ["retry"]
    assert bash_complete("keystone-agent task show write", env) == ["write-report", "write-docs"]
    assert bash_complete("keystone-agent loop --task f", env) == ["fix-it"]
    assert bash_complete("keystone-agent logs w", env) == ["write-report", "write-docs"]
    assert bash_complete("keystone-agent monitoring ", env) == ["alloy", "dashboard", "rules"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_for_every_shell(run_agent, shell):
    result = run_agent("completion", shell)
    assert result.exit_code == 0
    assert "_KEYSTONE_AGENT_COMPLETE" in result.stdout and f"{shell}_complete" in result.stdout


def test_manual_pages_for_every_command_of_both_clis(tmp_path):
    pytest.importorskip("click_man", reason="click-man (the man page generator) is not installed")
    result = subprocess.run([sys.executable, "-m", "keystone_agents.manpages", str(tmp_path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    pages = {p.name for p in tmp_path.glob("*.1")}
    for page in ("keystone-agent.1", "keystone-agent-loop.1", "keystone-agent-task-add.1", "keystone-agent-runs.1",
                 "keystone-agent-monitoring-rules.1", "agentctl.1", "agentctl-list.1"):
        assert page in pages, page
    add = (tmp_path / "keystone-agent-task-add.1").read_text()
    assert add.startswith(".TH") and "\\-\\-description" in add and "\\-\\-name\\-from" in add
    if shutil.which("man"):
        shown = subprocess.run(["man", "-l", str(tmp_path / "keystone-agent-loop.1")], capture_output=True,
                               text=True, env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin"})
        assert "--log-format" in shown.stdout


def test_monitoring_commands_match_the_module_alias(run_agent):
    from keystone_agents import observability

    rules = run_agent("monitoring", "rules", "--set", "blockedThreshold=9")
    assert rules.exit_code == 0 and rules.stdout == observability.render_rules(blockedThreshold=9)
    alias = subprocess.run([sys.executable, "-m", "keystone_agents.observability", "rules", "--set",
                            "blockedThreshold=9"], capture_output=True, text=True)
    assert alias.stdout == rules.stdout
    assert run_agent("monitoring", "dashboard").stdout.strip() == str(observability.dashboard_path())
    assert run_agent("monitoring", "dashboard", "--content").stdout.startswith("{")
    assert run_agent("monitoring", "alloy").stdout.strip() == str(observability.alloy_recipe_path())
    bad = run_agent("monitoring", "rules", "--set", "blockedThreshold=lots")
    assert bad.exit_code == 2 and "expected a non-negative number" in bad.output


def test_did_you_mean(run_agent, agent_home):
    result = run_agent("lop")
    assert result.exit_code == 2 and "Did you mean 'loop'?" in result.output
    (agent_home / "TASKS.yaml").write_text("tasks:\n  - name: write-report\n    description: x\n    status: pending\n")
    result = run_agent("logs", "write-reprt", "--home", str(agent_home))
    assert result.exit_code == 1 and "did you mean write-report?" in result.stderr
