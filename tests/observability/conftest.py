"""Session fixtures: a real node_exporter (textfile collector only) and a real Prometheus scraping it, both on
loopback high ports with their own dirs; the rules Prometheus loads are the shipped template, rendered."""

from __future__ import annotations

import shutil

import pytest

from keystone_agents.observability import render_rules
from tests.observability import servers

# the pipeline's rule parameters: a spend threshold two loop runs exceed within the window
PIPELINE_RULE_PARAMETERS = {"tokenSpendThreshold": 1, "tokenSpendWindow": "10m", "approvalPendingSeconds": 1}


@pytest.fixture(scope="session")
def textfile_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("textfiles")


@pytest.fixture(scope="session")
def node_exporter(textfile_dir, tmp_path_factory):
    if not (shutil.which(servers.NODE_EXPORTER) or shutil.which("node_exporter")):
        pytest.skip("prometheus-node-exporter not installed (scripts/install-system-deps installs it)")
    proc, address = servers.start_node_exporter(textfile_dir, tmp_path_factory.mktemp("node-exporter") / "log")
    yield address
    servers.stop(proc)


@pytest.fixture(scope="session")
def prometheus(node_exporter, tmp_path_factory):
    if not shutil.which("prometheus"):
        pytest.skip("prometheus not installed (scripts/install-system-deps installs Debian's prometheus)")
    root = tmp_path_factory.mktemp("prometheus")
    rules = root / "keystone-agents.rules.yml"
    rules.write_text(render_rules(**PIPELINE_RULE_PARAMETERS))
    server = servers.start_prometheus(root, node_exporter, rules)
    yield server
    servers.stop(server.proc)
