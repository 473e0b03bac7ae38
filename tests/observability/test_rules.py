"""The alert rules: rendered from the template, accepted by `promtool check rules`, and `promtool test rules`
proves each alert fires when it should and stays silent when it should (tests/observability/*.test.yml)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from keystone_agents import observability
from keystone_agents.observability import RULE_PARAMETERS, render_rules

HERE = Path(__file__).resolve().parent
UNIT_TESTS = HERE / "keystone-agents.rules.test.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.skip("promtool not installed (scripts/install-system-deps installs Debian's prometheus)")
    return exe


def promtool_test(promtool: str, tmp_path: Path, rules: str) -> subprocess.CompletedProcess:
    (tmp_path / "keystone-agents.rules.yml").write_text(rules)
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    return subprocess.run([promtool, "test", "rules", UNIT_TESTS.name], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)


def test_rendered_rules_pass_promtool_check(promtool, tmp_path):
    path = tmp_path / "keystone-agents.rules.yml"
    path.write_text(render_rules())
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout


def test_each_alert_fires_and_stays_silent_as_its_unit_tests_say(promtool, tmp_path):
    result = promtool_test(promtool, tmp_path, render_rules())
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {case["alertname"] for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
              for case in test["alert_rule_test"]}
    alerts = {r["alert"] for g in yaml.safe_load(render_rules())["groups"] for r in g["rules"]}
    assert tested == alerts and len(alerts) == 10


@pytest.mark.parametrize("parameter, value, broken_alert", [
    ("blockedThreshold", 9, "KeystoneAgentBlockedSurge"),          # 9 blocked no longer fires
    ("stalledAfterSeconds", 20000, "KeystoneAgentStalled"),       # 3 h without success is no longer stalled
    ("tokenSpendThreshold", 3000000, "KeystoneAgentTokenSpend"),  # 2.4 M tokens a day is under the threshold
])
def test_parameters_reach_the_rules(promtool, tmp_path, parameter, value, broken_alert):
    """The unit tests are written for the defaults: another threshold makes exactly that alert's test fail."""
    result = promtool_test(promtool, tmp_path, render_rules(**{parameter: value}))
    assert result.returncode != 0
    assert f"alertname: {broken_alert}" in result.stdout + result.stderr


def test_bad_parameters_are_refused_with_their_name():
    with pytest.raises(ValueError, match="tokenSpendWindow"):
        render_rules(tokenSpendWindow="a day")
    with pytest.raises(ValueError, match="blockedThreshold"):
        render_rules(blockedThreshold="five")
    with pytest.raises(ValueError, match="unknown rule parameter"):
        render_rules(blockedTreshold=3)


def test_every_placeholder_is_a_documented_parameter():
    template = observability.rules_template().read_text()
    import re

    assert set(re.findall(r"@([A-Za-z]+)@", template)) == set(RULE_PARAMETERS)
    docs = (HERE.parents[1] / "docs/observability.md").read_text()
    for name, (default, _) in RULE_PARAMETERS.items():
        assert f"| `{name}` | `{default}` |" in docs


def test_cli_prints_rules_with_parameters(capsys):
    assert observability.main(["rules", "--set", "blockedThreshold=12"]) == 0
    assert "> 12" in capsys.readouterr().out
    assert observability.main(["rules", "--set", "tokenSpendWindow=soon"]) == 2
