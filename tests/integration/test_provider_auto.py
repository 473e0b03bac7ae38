"""`provider: auto`: the resolver against real executables on a PATH and a real HTTP endpoint, and the loop
running the provider it resolved (with its `provider_resolved` event)."""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from keystone_agents.config import parse_config
from keystone_agents.providers import ProviderError, auto

from tests.conftest import FAKEBIN
from tests.support.loop import events, make_home


def bindir(tmp_path: Path, *tools: str) -> Path:
    path = tmp_path / ("bin-" + "-".join(tools or ("none",)))
    path.mkdir()
    for tool in tools:
        (path / tool).symlink_to(Path(FAKEBIN) / tool)
    return path


def ollama(path: Path, models: list[str]) -> None:
    rows = "".join(f"{m}\tabc123\t1.3 GB\t2 days ago\\n" for m in models)
    (path / "ollama").write_text(f'#!/bin/sh\n[ "$1" = list ] && printf "NAME\\tID\\tSIZE\\tMODIFIED\\n{rows}"\n')
    (path / "ollama").chmod(0o755)


@pytest.fixture
def endpoint():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"data": [{"id": "m"}]}).encode() if self.path == "/v1/models" else b"{}"
            self.send_response(200 if self.path == "/v1/models" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def config(**extra):
    return parse_config({"agentName": "a", "defaults": {"provider": "auto"}, **extra})


@pytest.mark.parametrize("tools,expected", [
    (("claude", "codex", "gemini"), "claude"), (("codex", "gemini"), "codex"), (("gemini",), "gemini")])
def test_the_first_cli_on_the_path_wins(tmp_path, tools, expected):
    found = auto.resolve(config(), path=str(bindir(tmp_path, *tools)))
    assert found.provider == expected and found.model is None


def test_then_a_pulled_ollama_model_then_a_reachable_openai(tmp_path, endpoint):
    path = bindir(tmp_path)
    ollama(path, [])
    with pytest.raises(ProviderError) as refused:
        auto.resolve(config(), path=str(path))
    assert "claude: not on the PATH" in str(refused.value) and "no ollama with a pulled model" in str(refused.value)
    found = auto.resolve(config(openaiProvider={"baseUrl": endpoint}), path=str(path))
    assert found.provider == "openai"
    ollama(path, ["llama3.2:1b", "qwen3:4b"])
    found = auto.resolve(config(openaiProvider={"baseUrl": endpoint}), path=str(path))
    assert (found.provider, found.model, found.command_argv) == ("command", "llama3.2:1b", auto.OLLAMA_ARGV)
    applied = auto.apply(config(), found)
    assert (applied.defaults.provider, applied.defaults.model) == ("command", "llama3.2:1b")
    assert applied.command_provider.argv == ["ollama", "run", "{model}"]


def test_an_unreachable_openai_is_not_usable(tmp_path):
    with pytest.raises(ProviderError, match="does not answer"):
        auto.resolve(config(openaiProvider={"baseUrl": "http://127.0.0.1:9/v1"}), path=str(bindir(tmp_path)))


def test_the_loop_runs_the_resolved_provider(tmp_path, clean_env):
    lh = make_home(tmp_path)
    lh.config(defaults={"provider": "auto"})
    lh.write_tasks("""
        tasks:
          - name: job
            description: "Do it"
            status: pending
    """)
    path = bindir(tmp_path, "codex", "gemini")
    result = lh.loop(PATH=f"{path}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin")
    assert result.returncode == 0, result.stderr
    [resolved] = events(result.stderr, "provider_resolved")
    assert resolved["provider"] == "codex" and "claude: not on the PATH" in resolved["tried"]
    assert [c["task"] for c in lh.calls("codex")] == ["job"] and lh.calls("gemini") == []
    assert events(result.stderr, "task_finish")[0]["provider"] == "codex"
    cli = lh.agent("resolve-provider", "--json")
    assert cli.returncode == 0 and json.loads(cli.stdout)["provider"] in ("claude", "codex", "gemini")
