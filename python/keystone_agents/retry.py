"""One retry policy for every network call the runtime makes: HTTP (http.py: the Forgejo source, the Forgejo
coding adapter, the OpenAI-compatible provider), `gh api`, and IMAP/SMTP connects.

Transient faults — timeouts, refused or reset connections, HTTP 429 and 5xx, `gh`'s documented transient
failures — are retried with exponential backoff and full jitter (a random pause between 0 and
`base × 2^(attempt-1)`, at most `cap`), honouring a server's `Retry-After`, and never past the caller's time
budget (`deadline`, a `time.monotonic()` value: a source's timeout, a task's timeout). Anything else (a 4xx
other than 429, bad credentials, malformed data) is not retried.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Policy:
    attempts: int = 4  # tries in all (1 = no retry)
    base: float = 0.5  # seconds: the first backoff's ceiling
    cap: float = 10.0  # seconds: no single pause is longer
    max_retry_after: float = 60.0  # a longer Retry-After is not waited for (the next run tries again)


DEFAULT = Policy()


def backoff(attempt: int, policy: Policy = DEFAULT, rng: random.Random | None = None) -> float:
    """The pause after failed attempt number `attempt` (1-based): full jitter."""
    ceiling = min(policy.cap, policy.base * (2 ** (attempt - 1)))
    return (rng or random).uniform(0, ceiling)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP-date; None if absent or unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def remaining(deadline: float | None) -> float:
    return float("inf") if deadline is None else deadline - time.monotonic()


def pause(attempt: int, policy: Policy, deadline: float | None, hint: float | None = None) -> float | None:
    """How long to sleep before the next attempt, or None when there is no next attempt (attempts used up,
    the budget would be exceeded, or the server asks for longer than we wait)."""
    if attempt >= policy.attempts:
        return None
    if hint is not None and hint > policy.max_retry_after:
        return None
    delay = hint if hint is not None else backoff(attempt, policy)
    if delay >= remaining(deadline) - 0.5:  # leave time for the attempt itself
        return None
    return delay


def call(fn: Callable[[], T], transient: Callable[[BaseException], bool], policy: Policy = DEFAULT,
         deadline: float | None = None, on_retry: Callable[[int, BaseException, float], None] | None = None,
         sleep: Callable[[float], None] = time.sleep) -> T:
    """`fn()`, retried while it raises an exception `transient` accepts (and the policy and budget allow)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - `transient` decides; anything else is re-raised at once
            if not transient(exc):
                raise
            delay = pause(attempt, policy, deadline)
            if delay is None:
                raise
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            sleep(delay)
