"""Helpers for task-loop tests: an agent home with config, stand-in provider CLIs on PATH, and readers for
what they recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.conftest import FAKEBIN, installed_script
from keystone_agents import scaffold


@dataclass
class LoopHome:
    home: Path
    root: Path

    @property
    def tasks(self) -> Path:
        return self.home / "TASKS.yaml"

    @property
    def state(self) -> Path:
        return self.home / ".local/state/agent-task-loop/state"

    @property
    def fake_log(self) -> Path:
        return self.root / "fake-calls.jsonl"

    @property
    def prom_dir(self) -> Path:
        return self.root / "textfiles"

    @property
    def metrics_file(self) -> Path:
        return self.prom_dir / "keystone-agent-task-loop-demo.prom"

    def config(self, **values) -> None:
        base = {"agentName": "demo", "killGraceSeconds": 0.5, "defaults": {"provider": "claude"},
                "textfileDir": str(self.prom_dir)}
        # providers get a clean environment: what the stand-in CLIs need reaches them through the config
        environment = {"FAKE_BIN_LOG": str(self.fake_log), **values.pop("environment", {})}
        base.update(values)
        base["environment"] = environment
        path = self.home / ".config/keystone-agent/config.json"
        path.write_text(json.dumps(base, indent=2))

    def write_tasks(self, text: str) -> None:
        self.tasks.write_text(textwrap.dedent(text).lstrip())

    def write_projects(self, text: str) -> None:
        (self.home / "PROJECTS.yaml").write_text(textwrap.dedent(text).lstrip())

    def script(self, name: str, body: str) -> Path:
        path = self.root / name
        path.write_text("#!/bin/sh\n" + textwrap.dedent(body).lstrip())
        path.chmod(0o755)
        return path

    def env(self, **extra) -> dict:
        env = dict(os.environ)
        for var in ("KEYSTONE_AGENT_CONFIG", "KEYSTONE_AGENT_HOME", "PROMETHEUS_TEXTFILE_DIR"):
            env.pop(var, None)
        env.update({
            "HOME": str(self.home),
            "PATH": f"{FAKEBIN}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "FAKE_BIN_LOG": str(self.fake_log),
        })
        env.update(extra)
        return env

    def _pass_to_providers(self, env: dict) -> None:
        """FAKE_* variables for the stand-in CLIs go into the config's `environment` (providers see no other)."""
        fakes = {k: v for k, v in env.items() if k.startswith("FAKE_")}
        if not fakes:
            return
        path = self.home / ".config/keystone-agent/config.json"
        data = json.loads(path.read_text())
        data["environment"] = {**data.get("environment", {}), **fakes}
        path.write_text(json.dumps(data, indent=2))

    def loop(self, *args: str, timeout: float = 120, **env) -> subprocess.CompletedProcess:
        self._pass_to_providers(env)
        return subprocess.run([installed_script("keystone-agent"), "loop", "--home", str(self.home), *args],
                              capture_output=True, text=True, env=self.env(**env), timeout=timeout)

    def popen(self, *args: str, **env) -> subprocess.Popen:
        self._pass_to_providers(env)
        return subprocess.Popen([installed_script("keystone-agent"), "loop", "--home", str(self.home), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env(**env))

    def agent(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([installed_script("keystone-agent"), *args, "--home", str(self.home)],
                              capture_output=True, text=True, env=self.env(), timeout=60)

    def calls(self, tool: str | None = None) -> list[dict]:
        """Invocations recorded by the stand-in CLIs (not their `finished` markers)."""
        if not self.fake_log.exists():
            return []
        rows = [json.loads(line) for line in self.fake_log.read_text().splitlines() if line.strip()]
        return [r for r in rows if not r.get("event") and (tool is None or r["tool"] == tool)]

    def task_list(self) -> list[dict]:
        return yaml.safe_load(self.tasks.read_text())["tasks"] or []

    def task(self, name: str) -> dict:
        return next(t for t in self.task_list() if t.get("name") == name)

    def metrics(self) -> dict[str, float]:
        from prometheus_client.parser import text_string_to_metric_families

        values = {}
        for family in text_string_to_metric_families(self.metrics_file.read_text()):
            for sample in family.samples:
                values[sample.name] = sample.value
        return values


def make_home(tmp_path: Path) -> LoopHome:
    home = tmp_path / "home"
    scaffold.init(home, scaffold.context("demo", "Demo Agent", "demo@example.com"))
    lh = LoopHome(home, tmp_path)
    lh.config()
    return lh


def events(stderr: str, name: str | None = None) -> list[dict]:
    """Parse the logfmt lines the loop wrote to stderr."""
    import shlex

    found = []
    for line in stderr.splitlines():
        if not line.startswith("ts="):
            continue
        fields = {}
        for part in shlex.split(line.replace("\\n", "\\\\n")):
            key, _, value = part.partition("=")
            fields[key] = value
        if name is None or fields.get("event") == name:
            found.append(fields)
    return found
