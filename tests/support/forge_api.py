"""A local HTTP server that answers as a forge's REST API does (GitHub, Forgejo/Gitea): the test registers
responses per path; lists are paginated with the `Link` header (rel="next"/"last") from a `page` query
parameter; errors come with the documented bodies and headers (401 Bad credentials, 403 with
X-RateLimit-Remaining: 0, malformed bodies). Every request (path with query, Authorization) is recorded."""

from __future__ import annotations

import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    pages: list | None = None  # a paginated list: one list per page
    body: object = None  # a single JSON document
    status: int = 200
    headers: dict = field(default_factory=dict)
    raw: bytes | None = None  # a malformed body, sent as is


@dataclass
class ForgeAPI:
    url: str
    routes: dict = field(default_factory=dict)  # path (no query) → [(query subset to match, Reply)]
    requests: list = field(default_factory=list)  # (path with query, Authorization header)
    transient: dict = field(default_factory=dict)  # path → [Reply] served (and used up) before its route

    def fail_first(self, path: str, *statuses: int, headers: dict | None = None) -> None:
        """Answer the next requests of `path` with these statuses (a 503 twice, say) before its route answers."""
        self.transient.setdefault(path, []).extend(
            Reply(status=s, body={"message": f"HTTP {s}"}, headers=dict(headers or {})) for s in statuses)

    def route(self, path: str, match: dict | None = None, **reply) -> None:
        """Answer GET `path` (when its query holds every `match` item) with `reply`; later routes win."""
        self.routes.setdefault(path, []).insert(0, (match or {}, Reply(**reply)))

    def rate_limited(self, path: str) -> None:
        self.route(path, status=403, body={"message": "API rate limit exceeded for user ID 1.",
                                           "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"},
                   headers={"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1700000000"})

    def unauthorized(self, path: str) -> None:
        self.route(path, status=401, body={"message": "Bad credentials",
                                           "documentation_url": "https://docs.github.com/rest"})

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]


def _handler(api: ForgeAPI):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            parts = urllib.parse.urlsplit(self.path)
            api.requests.append((self.path, self.headers.get("Authorization")))
            query = dict(urllib.parse.parse_qsl(parts.query))
            if api.transient.get(parts.path):
                first = api.transient[parts.path].pop(0)
                return self._send(first.status, json.dumps(first.body).encode(), dict(first.headers))
            reply = next((r for m, r in api.routes.get(parts.path, []) if all(query.get(k) == v for k, v in m.items())),
                         None)
            if reply is None:
                return self._send(404, json.dumps({"message": "Not Found"}).encode(), {})
            headers = dict(reply.headers)
            if reply.raw is not None:
                return self._send(reply.status, reply.raw, headers)
            if reply.pages is not None:
                query = dict(urllib.parse.parse_qsl(parts.query))
                page = int(query.get("page", "1"))
                body = reply.pages[page - 1] if page <= len(reply.pages) else []
                links = []
                if page < len(reply.pages):
                    links.append(f'<{self._url(parts, query, page + 1)}>; rel="next"')
                    links.append(f'<{self._url(parts, query, len(reply.pages))}>; rel="last"')
                if links:
                    headers["Link"] = ", ".join(links)
                headers["X-Total-Count"] = str(sum(len(p) for p in reply.pages))
                return self._send(reply.status, json.dumps(body).encode(), headers)
            return self._send(reply.status, json.dumps(reply.body).encode(), headers)

        def _url(self, parts, query, page):
            return api.url + parts.path + "?" + urllib.parse.urlencode({**query, "page": page})

        def _send(self, status, body, headers):
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def serve():
    """Start a server on a free loopback port; returns (ForgeAPI, stop)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), None)
    api = ForgeAPI(url=f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()

    return api, stop
