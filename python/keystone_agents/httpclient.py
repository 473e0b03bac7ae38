"""The one HTTP layer (requests): the Forgejo source, the Forgejo coding adapter and the OpenAI-compatible
provider all call through `Client`.

* Timeouts, connection errors, 429 and 5xx are retried (retry.py: exponential backoff with full jitter,
  `Retry-After` honoured, within the caller's time budget); other 4xx are returned at once.
* `get_pages` follows the `Link: <…>; rel="next"` header (requests parses it).
* Tokens go in headers only; errors name the method, the path and the status, never a header value.

`requests` is imported here, and this module only where HTTP is used: a tick without an HTTP source does not
pay for it (docs/performance.md has the numbers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import requests

from keystone_agents import retry

USER_AGENT = "keystone-agent"


class Unreachable(Exception):
    """No answer after the retries (connection refused/reset, timeouts); the message says where and why."""


@dataclass
class Client:
    timeout: float = 60.0  # seconds per attempt
    deadline: float | None = None  # time.monotonic() by which everything must be done (the stage's budget)
    headers: dict[str, str] = field(default_factory=dict)
    policy: retry.Policy = retry.DEFAULT
    on_retry: Callable[[str, int, str, float], None] | None = None  # (url, attempt, why, delay)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, url) of every attempt
    _session: requests.Session | None = None

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = requests.Session()
            self._session.headers.update({"User-Agent": USER_AGENT, **self.headers})
        return self._session

    def request(self, method: str, url: str, *, json: Any = None, headers: dict | None = None) -> requests.Response:
        """One request, retried while transient; the last response (whatever its status) is returned."""
        attempt = 0
        while True:
            attempt += 1
            self.requests.append((method, url))
            budget = retry.remaining(self.deadline)
            if budget <= 0:
                raise Unreachable(f"{method} {_where(url)}: no time left in this stage's budget")
            try:
                response = self.session.request(method, url, json=json, headers=headers,
                                                timeout=min(self.timeout, budget))
            except (requests.ConnectionError, requests.Timeout) as exc:
                why = _reason(exc)
                delay = retry.pause(attempt, self.policy, self.deadline)
                if delay is None:
                    raise Unreachable(f"{method} {_where(url)}: {why} (after {attempt} attempt(s))") from None
                self._retrying(url, attempt, why, delay)
                continue
            except requests.RequestException as exc:
                raise Unreachable(f"{method} {_where(url)}: {_reason(exc)}") from None
            if response.status_code == 429 or response.status_code >= 500:
                hint = retry.retry_after(response.headers.get("Retry-After"))
                delay = retry.pause(attempt, self.policy, self.deadline, hint)
                if delay is not None:
                    self._retrying(url, attempt, f"HTTP {response.status_code}", delay)
                    continue
            return response

    def get_pages(self, url: str, max_pages: int = 20) -> Iterator[requests.Response]:
        """The response of `url` and of each `rel="next"` page after it."""
        for _ in range(max_pages):
            response = self.request("GET", url)
            yield response
            following = response.links.get("next", {}).get("url")
            if response.status_code != 200 or not following:
                return
            url = requests.compat.urljoin(url, following)

    def _retrying(self, url: str, attempt: int, why: str, delay: float) -> None:
        if self.on_retry is not None:
            self.on_retry(url, attempt, why, delay)
        time.sleep(delay)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}{parts.path}"


def _reason(exc: Exception) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    text = str(exc)
    for marker in ("Connection refused", "Connection reset", "Name or service not known",
                   "Temporary failure in name resolution", "No route to host", "Network is unreachable"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__ + (": " + text[:200] if text else "")
