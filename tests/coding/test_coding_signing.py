"""Issue 15: a commit the coding subagent's provider makes is the agent's own and signed (one git identity
with notes sync), and the clone lives in the agent space's .repos/{owner}/{repo}."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from keystone_agents.cli.agent import cli
from tests.coding.conftest import git
from tests.coding.test_coding_flow import TASK, clone_dir, code, commit, github  # noqa: F401 - fixture
from tests.support.signing import make_key, verify_commit


def test_a_coding_subagent_commit_is_signed_by_the_agent(coding_env, github, tmp_path):  # noqa: F811
    key = make_key(tmp_path / "keys", "agent")  # a key file: git signs with it directly (no ssh-agent needed)
    config_path = Path(github["config"])
    data = json.loads(config_path.read_text())
    data.update(fullName="Drago", email="drago@example.com", git={"signingKey": str(key.private)})
    config_path.write_text(json.dumps(data))
    configured = CliRunner().invoke(cli, ["configure", "--home", str(coding_env.home), "--config", str(config_path),
                                          "--json"], catch_exceptions=False)
    assert configured.exit_code == 0, configured.output
    signers = Path(json.loads(configured.stdout)["allowed_signers"])

    coding_env.script([commit({"README.md": "# demo\nHello!\n"}), {"do": "review", "output": "VERDICT: PASS\n"}])
    result, data = code(coding_env, "--repo", github["repo"], "--task", TASK, config=config_path)
    assert data["outcome"] == "ready", (data["message"], result.stderr[-2000:])
    work = clone_dir(coding_env, github["repo"])
    assert work == coding_env.home / "notes" / ".repos" / github["repo"]
    head = git("rev-parse", data["branch"], cwd=work)
    checked = verify_commit(work, head, signers)
    assert checked.returncode == 0, checked.stderr
    assert 'Good "git" signature for drago@example.com' in checked.stderr
    # the pushed commit is the same signed commit
    assert git("--git-dir", str(github["upstream"]), "rev-parse", data["branch"]) == head
