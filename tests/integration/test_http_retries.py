"""Transient network faults are retried (issue 21), through the one HTTP layer (httpclient.py) and the same
policy for `gh api` and IMAP/SMTP connects: 503, 503, 200 is ingested without a degraded run; 401 is asked
once; Retry-After is honoured; the OpenAI-compatible provider rides out a 503."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from keystone_agents import retry
from tests.integration.test_forge_sources import V1, forgejo_world, github_world
from tests.support.forge_api import serve
from tests.support.loop import events, make_home


@pytest.fixture
def api():
    server, stop = serve()
    yield server
    stop()


def count(api, path: str) -> int:
    return sum(1 for p in api.paths() if p.split("?")[0] == path)


def test_forgejo_503_503_200_is_ingested_without_a_degraded_run(api, tmp_path, clean_env):
    forgejo_world(api)
    api.fail_first(f"{V1}/notifications", 503, 503)
    api.fail_first(f"{V1}/repos/acme/app/issues/1", 502, headers={"Retry-After": "1"})
    lh = make_home(tmp_path)
    lh.config(maxTasks=0, forgejo={"url": api.url, "username": "agent"})
    started = time.monotonic()
    result = lh.loop()
    assert result.returncode == 0, result.stderr  # not degraded: the retries got through
    assert {t["source"] for t in lh.task_list()} == {"forgejo-issue", "forgejo-pr", "forgejo-pr-review"}
    assert count(api, f"{V1}/notifications") == 2 + 2  # two 503s, then both pages
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was waited for
    retried = [e for e in events(result.stderr, "log") if "retrying in" in e.get("msg", "")]
    assert len(retried) == 3 and any("HTTP 503" in e["msg"] for e in retried)


def test_forgejo_401_is_not_retried(api, tmp_path, clean_env):
    forgejo_world(api)
    api.unauthorized(f"{V1}/notifications")
    lh = make_home(tmp_path)
    lh.config(maxTasks=0, forgejo={"url": api.url, "username": "agent"})
    result = lh.loop()
    assert result.returncode == 3
    assert count(api, f"{V1}/notifications") == 1
    assert not [e for e in events(result.stderr, "log") if "retrying in" in e.get("msg", "")]


def test_gh_api_5xx_is_retried_and_401_is_not(api, tmp_path, clean_env):
    github_world(api)
    api.fail_first("/notifications", 503, 502)
    lh = make_home(tmp_path)
    token = tmp_path / "gh-token"
    token.write_text("ghp_x\n")
    lh.config(maxTasks=0, github={"username": "agent", "tokenFile": str(token)})
    result = lh.loop(FAKE_GH_API_URL=api.url)
    assert result.returncode == 0, result.stderr
    assert count(api, "/notifications") >= 3
    assert any(t["source"] == "github-issue" for t in lh.task_list())
    api.unauthorized("/notifications")
    (lh.state / "quiescent.json").unlink(missing_ok=True)
    before = count(api, "/notifications")
    again = lh.loop(FAKE_GH_API_URL=api.url)
    assert again.returncode == 3 and count(api, "/notifications") == before + 1


class FlakyChat(BaseHTTPRequestHandler):
    answers: list = []
    seen: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status = self.answers.pop(0) if self.answers else 200
        FlakyChat.seen.append(status)
        body = (json.dumps({"choices": [{"message": {"content": "done it"}}],
                            "usage": {"prompt_tokens": 3, "completion_tokens": 2}}) if status == 200
                else json.dumps({"error": {"message": "busy"}})).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if status == 429:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize("answers, outcome, calls", [
    ([503, 429], "completed", 3),
    ([400], "failed", 1),  # a client error is not retried
])
def test_openai_provider_retries_transient_answers_only(tmp_path, clean_env, answers, outcome, calls):
    FlakyChat.answers, FlakyChat.seen = list(answers), []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyChat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        lh = make_home(tmp_path)
        lh.config(openaiProvider={"baseUrl": f"http://127.0.0.1:{server.server_address[1]}/v1"},
                  defaults={"provider": "openai", "model": "llama3"})
        lh.write_tasks("tasks:\n  - name: ask\n    description: ask the model\n    status: pending\n")
        lh.loop()
        import sqlite3

        [row] = sqlite3.connect(lh.state / "history.sqlite3").execute(
            "SELECT outcome FROM task_executions").fetchall()
        assert row[0] == outcome and len(FlakyChat.seen) == calls
    finally:
        server.shutdown()
        server.server_close()


def test_retry_policy_units():
    assert retry.retry_after("7") == 7.0
    assert 59 <= retry.retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412420.0) <= 61
    assert retry.retry_after("soon") is None
    policy = retry.Policy(attempts=5, base=0.5, cap=2.0)
    for attempt in range(1, 8):
        assert 0 <= retry.backoff(attempt, policy) <= min(2.0, 0.5 * 2 ** (attempt - 1))
    assert retry.pause(5, policy, None) is None  # attempts used up
    assert retry.pause(1, policy, time.monotonic() + 0.1) is None  # no budget left for another try
    assert retry.pause(1, policy, None, hint=120) is None  # the server asks for longer than we wait
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError(111, "refused")
        return "ok"

    assert retry.call(flaky, lambda e: isinstance(e, ConnectionError), policy, sleep=lambda s: None) == "ok"
    with pytest.raises(PermissionError):
        retry.call(lambda: (_ for _ in ()).throw(PermissionError()), lambda e: isinstance(e, ConnectionError))


def test_smtp_connect_is_retried_but_a_message_is_never_sent_twice(tmp_path):
    from keystone_agents.config import Endpoint, MailSettings
    from keystone_agents.mail import send as mail_send

    # a port that refuses, then accepts: the second connect attempt finds a listening (fake) SMTP server
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    accepted = []

    def listen_later():
        time.sleep(0.05)
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen(1)
        conn, _ = server.accept()
        accepted.append(1)
        conn.sendall(b"554 no service\r\n")  # a refusal after connecting is not retried
        conn.close()
        server.close()

    threading.Thread(target=listen_later, daemon=True).start()
    settings = MailSettings(address="a@example.com", smtp=Endpoint(host="127.0.0.1", port=port, security="none"))
    msg = mail_send.build_message(settings, None, ["b@example.com"], "s", "body")
    with pytest.raises(mail_send.MailError) as failed:
        mail_send.send(settings, msg, timeout=5)
    assert accepted == [1] and "554" in str(failed.value)
