"""Fixtures of the coding-subagent tests: bare upstream repositories, a git smart-HTTP server that wants a
token (real `git http-backend`), a Forgejo API stand-in on loopback, stand-in CLIs on PATH, configs."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REAL_GIT = shutil.which("git") or "git"  # the server side never goes through a test wrapper
BIN = Path(__file__).resolve().parent / "bin"
TOKEN = "ghp_TESTtoken0123456789abcdefSECRET"
FORGEJO_TOKEN = "fj_TESTtoken9876543210fedcbaSECRET"
GIT_ENV = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "Test",
           "GIT_COMMITTER_EMAIL": "t@example.com"}


def git(*args, cwd=None, check=True) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {args}: {proc.stderr}")
    return proc.stdout.strip()


def make_upstream(root: Path, owner: str, name: str, default: str = "main") -> Path:
    """A bare repository with one commit on `default` (README.md, AGENTS.md)."""
    bare = root / owner / f"{name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "--bare", f"--initial-branch={default}", str(bare))
    seed = root / f".seed-{owner}-{name}"
    git("init", "-q", f"--initial-branch={default}", str(seed))
    (seed / "README.md").write_text("# demo\n")
    (seed / "AGENTS.md").write_text("Run `true` as the test suite.\n")
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "Initial commit", cwd=seed)
    git("push", "-q", str(bare), f"{default}:{default}", cwd=seed)
    return bare


# --- git smart HTTP with a token (the GitHub HTTPS path) ----------------------------------------------
@dataclass
class GitHttpServer:
    root: Path
    url: str
    auth_seen: list = field(default_factory=list)  # (method, path, username, token_matched)


class _GitHandler(BaseHTTPRequestHandler):
    server_version = "git-http-test"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _handle(self):
        info: GitHttpServer = self.server.info  # type: ignore[attr-defined]
        header = self.headers.get("Authorization", "")
        user = token_ok = None
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            token_ok = password == TOKEN
        info.auth_seen.append((self.command, self.path, user, token_ok))
        if not token_ok:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="GitHub"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(info.root), "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command, "REMOTE_USER": user or "",
            "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
        }
        for key, value in self.headers.items():
            env["HTTP_" + key.upper().replace("-", "_")] = value
        proc = subprocess.run([REAL_GIT, "http-backend"], input=body, env=env, capture_output=True)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            key, _, value = line.partition(": ")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _handle


@pytest.fixture(scope="session")
def git_http_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("git-http")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GitHandler)
    server.info = GitHttpServer(root, f"http://127.0.0.1:{server.server_address[1]}")  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.info  # type: ignore[attr-defined]
    server.shutdown()


# --- Forgejo API stand-in ----------------------------------------------------------------------------
@dataclass
class ForgejoState:
    repos_root: Path  # bare repositories: <root>/<owner>/<repo>.git (head/base branches are checked there)
    url: str = ""
    pulls: dict = field(default_factory=dict)  # (owner, repo) -> {number: pull}
    comments: list = field(default_factory=list)
    reviews: list = field(default_factory=list)
    requests: list = field(default_factory=list)  # (method, path, authorized)
    next_id: int = 100
    reject_reviews: bool = False


class _ForgejoHandler(BaseHTTPRequestHandler):
    server_version = "Forgejo-stand-in"

    def log_message(self, *args):
        pass

    def _json(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status, message):
        self._json(status, {"message": message, "url": f"{self.server.state.url}/api/swagger"})  # type: ignore[attr-defined]

    def _branch_exists(self, owner, repo, branch):
        bare = self.server.state.repos_root / owner / f"{repo}.git"  # type: ignore[attr-defined]
        return subprocess.run(["git", "--git-dir", str(bare), "rev-parse", "--verify", "--quiet",
                               f"refs/heads/{branch}"], capture_output=True).returncode == 0

    def _pull_json(self, owner, repo, pull):
        base = self.server.state.url  # type: ignore[attr-defined]
        return {
            "id": pull["id"], "number": pull["number"], "title": pull["title"], "body": pull["body"],
            "state": "open", "draft": pull["title"].upper().startswith(("WIP:", "[WIP]")),
            "html_url": f"{base}/{owner}/{repo}/pulls/{pull['number']}",
            "url": f"{base}/{owner}/{repo}/pulls/{pull['number']}",
            "head": {"ref": pull["head"], "label": pull["head"]}, "base": {"ref": pull["base"], "label": pull["base"]},
            "user": {"login": "demo"},
        }

    def _route(self):
        state: ForgejoState = self.server.state  # type: ignore[attr-defined]
        authorized = self.headers.get("Authorization") == f"token {FORGEJO_TOKEN}"
        state.requests.append((self.command, self.path, authorized))
        if not authorized:
            return self._error(401, "token is required")
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"null") if length else None
        except ValueError:
            return self._error(400, "invalid JSON")
        match = re.fullmatch(r"/api/v1/repos/([^/]+)/([^/]+)/(pulls|issues)(?:/(\d+))?(?:/(reviews|comments))?", self.path)
        if not match:
            return self._error(404, "The target couldn't be found.")
        owner, repo, kind, number, sub = match.groups()
        if not (state.repos_root / owner / f"{repo}.git").exists():
            return self._error(404, "The target couldn't be found.")
        pulls = state.pulls.setdefault((owner, repo), {})
        pull = pulls.get(int(number)) if number else None
        if number and pull is None:
            return self._error(404, "The target couldn't be found.")
        if self.command == "POST" and kind == "pulls" and not number:
            if not isinstance(body, dict) or not body.get("title") or not body.get("head") or not body.get("base"):
                return self._error(422, "[Title]: Required")
            for ref in (body["head"], body["base"]):
                if not self._branch_exists(owner, repo, ref):
                    return self._error(404, f"branch {ref} does not exist")
            for existing in pulls.values():
                if existing["head"] == body["head"] and existing["base"] == body["base"]:
                    return self._error(409, f"pull request already exists for these targets [id: {existing['id']}]")
            state.next_id += 1
            new = {"id": state.next_id, "number": len(pulls) + 1, "title": body["title"], "body": body.get("body", ""),
                   "head": body["head"], "base": body["base"]}
            pulls[new["number"]] = new
            return self._json(201, self._pull_json(owner, repo, new))
        if self.command == "GET" and kind == "pulls" and number and not sub:
            return self._json(200, self._pull_json(owner, repo, pull))
        if self.command == "PATCH" and kind == "pulls" and number and not sub:
            if "title" in (body or {}):
                if not body["title"].strip():
                    return self._error(422, "[Title]: Required")
                pull["title"] = body["title"]
            return self._json(201, self._pull_json(owner, repo, pull))
        if self.command == "POST" and kind == "pulls" and sub == "reviews":
            if state.reject_reviews:
                return self._error(422, "line is not in the diff")
            if body.get("event") not in ("APPROVED", "PENDING", "COMMENT", "REQUEST_CHANGES"):
                return self._error(422, "review event not supported")
            for comment in body.get("comments") or []:
                if not comment.get("path") or not isinstance(comment.get("new_position"), int):
                    return self._error(422, "comment needs path and new_position")
            state.next_id += 1
            review = {"id": state.next_id, "pull": int(number), "body": body.get("body", ""), "state": body["event"],
                      "commit_id": body.get("commit_id"), "comments": body.get("comments") or [],
                      "comments_count": len(body.get("comments") or [])}
            state.reviews.append(review)
            return self._json(200, {k: v for k, v in review.items() if k != "comments"})
        if self.command == "POST" and kind == "issues" and sub == "comments":
            if not isinstance(body, dict) or not body.get("body"):
                return self._error(422, "[Body]: Required")
            state.next_id += 1
            comment = {"id": state.next_id, "issue": int(number), "body": body["body"]}
            state.comments.append(comment)
            return self._json(201, {**comment, "html_url": f"{state.url}/{owner}/{repo}/pulls/{number}#issuecomment-{comment['id']}"})
        return self._error(405, "method not allowed")

    do_GET = do_POST = do_PATCH = _route


@pytest.fixture
def forgejo_server(tmp_path):
    state = ForgejoState(repos_root=tmp_path / "forgejo-repos")
    state.repos_root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ForgejoHandler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    server.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


# --- the agent side ----------------------------------------------------------------------------------
@dataclass
class CodingEnv:
    root: Path
    home: Path
    agent_log: Path
    gh_state: Path
    token_file: Path
    forgejo_token_file: Path

    def script(self, actions: list[dict]) -> Path:
        path = self.root / "agent-script.json"
        path.write_text(json.dumps(actions))
        pos = Path(str(path) + ".pos")
        if pos.exists():
            pos.unlink()
        os.environ["FAKE_AGENT_SCRIPT"] = str(path)
        return path

    def agent_calls(self) -> list[dict]:
        if not self.agent_log.exists():
            return []
        return [json.loads(line) for line in self.agent_log.read_text().splitlines()]

    def gh_calls(self) -> list[dict]:
        calls = self.gh_state / "calls.jsonl"
        return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []

    def gh_prs(self) -> dict:
        path = self.gh_state / "prs.json"
        return json.loads(path.read_text())["prs"] if path.exists() else {}

    def write_config(self, **coding) -> Path:
        data = {
            "agentName": "demo",
            "github": {"username": "demo-bot", "tokenFile": str(self.token_file)},
            "coding": coding,
        }
        path = self.root / "config.json"
        path.write_text(json.dumps(data))
        return path

    def write_forgejo_config(self, url: str, **coding) -> Path:
        data = {
            "agentName": "demo",
            "forgejo": {"url": url, "username": "demo", "tokenFile": str(self.forgejo_token_file)},
            "coding": coding,
        }
        path = self.root / "config.json"
        path.write_text(json.dumps(data))
        return path


@pytest.fixture
def coding_env(tmp_path, monkeypatch) -> CodingEnv:
    root = tmp_path
    home = root / "home"
    home.mkdir()
    (home / "notes").mkdir()  # the agent space: providers run there, clones go to its .repos/
    env = CodingEnv(root, home, root / "agent-calls.jsonl", root / "gh-state", root / "github-token",
                    root / "forgejo-token")
    env.gh_state.mkdir()
    env.token_file.write_text(TOKEN + "\n")
    env.forgejo_token_file.write_text(FORGEJO_TOKEN + "\n")
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_AGENT_LOG", str(env.agent_log))
    monkeypatch.setenv("FAKE_GH_STATE", str(env.gh_state))
    monkeypatch.setenv("FAKE_GH_TOKEN_FILE", str(env.token_file))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CLAUDECODE", "1")  # must not reach a nested claude
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_LEAKED_from_the_environment")  # must not reach a provider
    monkeypatch.delenv("FAKE_AGENT_SCRIPT", raising=False)
    monkeypatch.delenv("KEYSTONE_AGENT_CONFIG", raising=False)
    monkeypatch.delenv("FAKE_GH_REJECT_INLINE", raising=False)
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    return env
