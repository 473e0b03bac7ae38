"""Loop building blocks: ingest mapping, prioritize order and rules, provider output parsing, the OpenAI
provider against a local HTTP server, history migration, metrics format, config defaults."""

from __future__ import annotations

import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from keystone_agents import history
from keystone_agents.config import OpenAIProviderSettings, RuntimeRule, WorkflowRule, parse_config
from keystone_agents.loop import ingest, prioritize
from keystone_agents.profiles import Runtime
from keystone_agents.providers import ProviderError, get
from keystone_agents.providers.base import ProviderResult, found_urls
from keystone_agents.providers.openai import OpenAIProvider
from keystone_agents.providers.process import RunOptions
from keystone_agents.sources import FetchResult
from keystone_agents.taskfile import TaskFile


def test_ingest_mapping_and_dedup():
    fetched = [
        FetchResult("tracker", "web", [
            {"title": "Fix Login!", "url": "https://x/issues/1", "body": "Users cannot log in"},
            {"name": "Fix login", "id": 9},
            {"id": 3, "description": "no title here"},
            "Free text request\nwith details",
            42,
        ], 0.0),
        FetchResult("gh", None, {"github-issues": [{"title": "Issue", "url": "https://x/issues/2"}],
                                 "github-prs": []}, 0.0),
    ]
    items, unusable = ingest.collect(fetched)
    assert unusable == 1
    assert [(i.source, i.source_ref, i.title, i.free_text) for i in items][:3] == [
        ("tracker", "https://x/issues/1", "Fix Login!", False),
        ("tracker", "tracker-9", "Fix login", False),
        ("tracker", "tracker-3", "no title here", True),
    ]
    assert items[3].free_text and items[3].source_ref.startswith("tracker-")
    assert items[4].source == "github-issues"
    namer = ingest.Namer(["fix-login"])
    tasks, _ = ingest.new_tasks(items + items, {"https://x/issues/2"}, namer, "2026-01-01T00:00:00Z")
    assert [t["name"] for t in tasks] == ["fix-login-2", "fix-login-3", "no-title-here", "free-text-request"]
    assert tasks[0] == {"name": "fix-login-2", "description": "Users cannot log in", "status": "pending",
                        "project": "web", "source": "tracker", "source_ref": "https://x/issues/1",
                        "created_at": "2026-01-01T00:00:00Z"}


def test_prioritize_orders_pending_only_and_rules_fill_gaps(tmp_path):
    path = tmp_path / "TASKS.yaml"
    path.write_text("""tasks:
  - {name: done, description: d, status: completed}
  - {name: loose, description: l, status: pending, created_at: "2026-01-01T00:00:00Z"}
  - {name: low-new, description: write the press release, status: pending, project: low, created_at: "2026-01-03T00:00:00Z"}
  - {name: running, description: r, status: in_progress}
  - {name: high, description: h, status: pending, project: high, created_at: "2026-01-05T00:00:00Z", workflow: keep/me}
  - {name: low-old, description: o, status: pending, project: low, created_at: "2026-01-02T00:00:00Z"}
""")
    tf = TaskFile.load(path)
    assert prioritize.order(tf, {"high": 0, "low": 1}) is True
    assert [e.name for e in tf.entries] == ["done", "high", "low-old", "running", "low-new", "loose"]
    assert prioritize.order(tf, {"high": 0, "low": 1}) is False
    rules = [WorkflowRule(keywords=["Press Release"], workflow="press_release/write"), WorkflowRule(workflow="never/used")]
    runtime = [RuntimeRule(project="low", profile="fast", model="haiku")]
    assert prioritize.apply_rules(tf, rules, runtime) == 3
    assert tf.find("loose").data["workflow"] == "never/used"
    assert tf.find("low-new").data["workflow"] == "press_release/write"
    assert tf.find("high").data["workflow"] == "keep/me"
    assert tf.find("low-old").data["profile"] == "fast" and tf.find("low-old").data["model"] == "haiku"
    assert "workflow" not in tf.find("done").data
    tf.save()
    again = TaskFile.load(path)
    assert prioritize.apply_rules(again, rules, runtime) == 0 and not again.changed()


def _parse(name: str, stdout: str, stderr: str = "", exit_code: int = 0) -> ProviderResult:
    result = ProviderResult(exit_code=exit_code, timed_out=False, duration_seconds=1.0, output=stdout + stderr)
    get(name, parse_config({"agentName": "x", "commandProvider": {"argv": ["x"]}})).parse(stdout, stderr, result)
    return result


def test_provider_output_parsing():
    claude = _parse("claude", json.dumps({"type": "result", "subtype": "success", "is_error": False,
                                          "result": "ok", "total_cost_usd": 0.5,
                                          "usage": {"input_tokens": 10, "cache_read_input_tokens": 5,
                                                    "output_tokens": 7}}))
    assert (claude.usage.input_tokens, claude.usage.output_tokens, claude.usage.cost_usd) == (15, 7, 0.5)
    assert claude.usage.total() == 22 and not claude.is_error
    err = _parse("claude", json.dumps({"type": "result", "is_error": True, "subtype": "success",
                                       "result": 'API Error: 404 {"error":{"type":"not_found_error"}}'}), exit_code=1)
    assert err.is_error and err.model_error
    gem = _parse("gemini", json.dumps({"response": "hi", "stats": {"models": {"m": {"tokens": {
        "prompt": 3, "candidates": 4, "total": 9}}}}}))
    assert (gem.usage.input_tokens, gem.usage.output_tokens, gem.usage.total()) == (3, 4, 9)
    assert _parse("codex", "done", "[t] tokens used: 1,234\n").usage.total() == 1234
    assert _parse("codex", "done", "tokens used\n56,789\n").usage.total() == 56789
    cmd = _parse("command", "answer", "prompt eval count:    42 token(s)\neval count:           17 token(s)")
    assert (cmd.usage.input_tokens, cmd.usage.output_tokens) == (42, 17)
    assert found_urls("see https://github.com/o/r/pull/3, and https://git.x/o/r/issues/4. https://x.y/z") == (
        ["https://github.com/o/r/pull/3"], ["https://git.x/o/r/issues/4"])
    with pytest.raises(ProviderError):
        get("command", parse_config({"agentName": "x"}))
    with pytest.raises(ProviderError):
        get("nope", parse_config({"agentName": "x"}))


class _ChatHandler(BaseHTTPRequestHandler):
    requests: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _ChatHandler.requests.append((self.path, self.headers.get("Authorization"), body))
        if body["model"] == "missing":
            payload, code = {"error": {"message": "model 'missing' not found", "type": "not_found_error"}}, 404
        else:
            payload, code = {"id": "c1", "object": "chat.completion", "model": body["model"], "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "done"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}}, 200
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_openai_provider_against_a_local_chat_completions_server(tmp_path):
    server = HTTPServer(("127.0.0.1", 0), _ChatHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        key = tmp_path / "key"
        key.write_text("sekret\n")
        provider = OpenAIProvider(OpenAIProviderSettings(f"http://127.0.0.1:{server.server_port}/v1", str(key)))
        opts = RunOptions(log_path=tmp_path / "task.log", timeout=10)
        ok = provider.run("hello", Runtime("openai", None, "qwen3:4b", None, None), opts)
        assert ok.succeeded and ok.usage.total() == 16 and ok.output == "done"
        assert _ChatHandler.requests[-1] == ("/v1/chat/completions", "Bearer sekret", {
            "model": "qwen3:4b", "messages": [{"role": "user", "content": "hello"}]})
        bad = provider.run("hello", Runtime("openai", None, "missing", None, None), opts)
        assert not bad.succeeded and bad.model_error
        assert "done" in (tmp_path / "task.log").read_text() and "sekret" not in (tmp_path / "task.log").read_text()
    finally:
        server.shutdown()


def test_history_migration_adds_task_executions_to_an_existing_database(tmp_path):
    db = tmp_path / "history.sqlite3"
    conn = sqlite3.connect(db)
    conn.executescript(history.MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO runs (run_id, kind, started_at) VALUES ('old', 'task-loop', '2026-01-01T00:00:00Z')")
    conn.commit()
    conn.close()
    with history.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(history.MIGRATIONS)
        history.record_execution(conn, {"run_id": "r", "task": "t", "outcome": "completed",
                                        "started_at": "2026-01-01T00:00:00Z", "pull_requests": ["u"]})
        assert history.add_failure(conn, "t", "x", "now") == 1 and history.add_failure(conn, "t", "y", "now") == 2
        history.reset_failures(conn, "t")
        assert history.failures(conn, "t") == 0
    assert history.recent_runs(db)[0]["run_id"] == "old"
    assert history.executions(db, task="t")[0]["pull_requests"] == ["u"]


def test_metrics_text_parses_with_prometheus_client(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from keystone_agents.metrics import write_metrics

    path = tmp_path / "m.prom"
    write_metrics(path, {"host": 'h"1', "agent": "a\\b", "unit": "u\nx"},
                  {"keystone_agent_task_loop_last_exit_code": ("Exit code.\nSecond line", 3)})
    family = next(text_string_to_metric_families(path.read_text()))
    assert family.type == "gauge"
    assert family.samples[0].value == 3
    assert family.samples[0].labels == {"host": 'h"1', "agent": "a\\b", "unit": "u\nx"}


def test_new_config_keys_have_schema_defaults_equal_to_the_dataclass():
    from keystone_agents.config import Config, json_key
    from keystone_agents.schemas import load_schema

    schema = load_schema("config")["properties"]
    defaults = Config(agent_name="x")
    for name in ("source_timeout_seconds", "kill_grace_seconds", "task_token_budget", "llm_triage",
                 "workflow_rules", "runtime_rules", "command_provider", "openai_provider"):
        assert schema[json_key(name)]["default"] == getattr(defaults, name), name


def test_keywords_match_on_word_boundaries_case_insensitively():
    from keystone_agents.loop.prioritize import has_keyword

    assert has_keyword(["PR"], "review the pr please") and has_keyword(["PR"], "(PR)")
    assert not has_keyword(["PR"], "press the button") and not has_keyword(["PR"], "improve")
    assert not has_keyword(["CAD"], "over a decade") and has_keyword(["CAD"], "the CAD model")
    assert has_keyword(["press release"], "a Press\n Release draft")
    assert has_keyword(["3D print"], "3D print the case") and not has_keyword(["3D print"], "3D printing")
    assert has_keyword(["STL"], "export an .stl file") and not has_keyword(["STL"], "bristles")
