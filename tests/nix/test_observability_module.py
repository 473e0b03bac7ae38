"""modules/os/agents/observability.nix: node_exporter's textfile collector, the dashboard into Grafana and the
rendered alert rules into Prometheus on the host that runs them; the rules Nix renders are byte-identical to
Python's rendering, and promtool accepts them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from keystone_agents.observability import dashboard_path, render_rules

AGENT = """
  networking.hostName = "ocean";
  keystone.os.agents.ops-bot = { fullName = "Ops Bot"; };
"""


def test_nothing_is_provisioned_on_a_host_without_grafana_or_prometheus(evaluate):
    result = evaluate("{ " + AGENT + " }")
    assert result["prometheus"]["rules"] == [] and not result["prometheus"]["nodeExporter"]["enable"]
    assert result["grafana"]["provision"]["providers"] == []
    assert not any(name.startswith("grafana-dashboards/") for name in result["etc"])


def test_host_running_grafana_and_prometheus_gets_dashboard_and_default_rules(evaluate):
    result = evaluate("""{
      services.grafana.enable = true;
      services.prometheus.enable = true;
      keystone.os.observability.nodeExporter.enable = true;
    """ + AGENT + "}")
    [provider] = result["grafana"]["provision"]["providers"]
    assert provider["folder"] == "Keystone" and provider["options"]["path"] == "/etc/grafana-dashboards/keystone-agents"
    assert result["grafana"]["provision"]["enable"]
    source = result["etcSources"]["grafana-dashboards/keystone-agents/keystone-agents.json"]
    assert json.loads(Path(source).read_text()) == json.loads(dashboard_path().read_text())
    assert result["prometheus"]["rules"] == [render_rules()]  # Nix renders exactly what Python renders
    exporter = result["prometheus"]["nodeExporter"]
    assert exporter["enable"] and exporter["enabledCollectors"] == ["textfile"]
    assert exporter["extraFlags"] == ["--collector.textfile.directory=/var/lib/prometheus-node-exporter"]


def test_alert_parameters_and_textfile_directory_reach_the_rules_and_exporter(evaluate, tmp_path):
    result = evaluate("""{
      services.prometheus.enable = true;
      keystone.os.observability.nodeExporter = { enable = true; textfileDirectory = "/srv/textfiles"; };
      keystone.os.observability.agents.alerts = {
        stalledAfterSeconds = 3600; blockedThreshold = 12; tokenSpendThreshold = 500000; tokenSpendWindow = "6h";
      };
    """ + AGENT + "}")
    [rules] = result["prometheus"]["rules"]
    assert rules == render_rules(stalledAfterSeconds=3600, blockedThreshold=12, tokenSpendThreshold=500000,
                                 tokenSpendWindow="6h")
    assert "> 12" in rules and "[6h]" in rules and "> 3600" in rules and "@" not in rules.split("groups:", 1)[1]
    assert result["prometheus"]["nodeExporter"]["extraFlags"] == ["--collector.textfile.directory=/srv/textfiles"]
    assert "d /srv/textfiles 1775 root agents -" in result["tmpfiles"]
    promtool = shutil.which("promtool")
    if promtool:
        path = tmp_path / "rules.yml"
        path.write_text(rules)
        check = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_provisioning_can_be_turned_off_on_a_host_that_runs_both(evaluate):
    result = evaluate("""{
      services.grafana.enable = true;
      services.prometheus.enable = true;
      keystone.os.observability.agents = { grafana.enable = false; prometheus.enable = false; };
    """ + AGENT + "}")
    assert result["prometheus"]["rules"] == [] and result["grafana"]["provision"]["providers"] == []


@pytest.mark.parametrize("setting", ['tokenSpendWindow = "a day"', "blockedThreshold = -1"])
def test_bad_alert_parameters_are_refused(evaluate, setting):
    from tests.nix.nixeval import NixError

    with pytest.raises(NixError, match="tokenSpendWindow|blockedThreshold"):
        evaluate("{ services.prometheus.enable = true; keystone.os.observability.agents.alerts." + setting + "; "
                 + AGENT + "}")
