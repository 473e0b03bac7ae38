"""The wheel carries the templates and the schemas, and declares both console scripts."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_ships_templates_schemas_and_scripts(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr
    wheel = next(tmp_path.glob("keystone_agents-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for schema in ("tasks", "projects", "schedules", "issues", "config"):
        assert f"keystone_agents/schemas/{schema}.schema.json" in names
    templates = {n for n in names if n.startswith("keystone_agents/templates/")}
    expected = {str(p.relative_to(REPO)) for p in (REPO / "templates").rglob("*") if p.is_file()}
    assert {"keystone_agents/" + e for e in expected} == templates
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "keystone-agent = keystone_agents.cli.agent:main" in entry_points
    assert "agentctl = keystone_agents.cli.ctl:main" in entry_points
