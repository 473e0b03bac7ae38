"""The real host: real users, real sudo, the package and the module's sudo rules (tests/support/realhost.py),
built once per test session (per xdist worker) and removed afterwards. CI runs as root with sudo installed
by scripts/install-system-deps, so there these tests run; elsewhere they skip with the reason."""

from __future__ import annotations

import os

import pytest

from tests.support import realhost


@pytest.fixture(scope="session")
def host():
    reason = realhost.unavailable()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"the real-host suite must run in CI: {reason}")
        pytest.skip(reason)
    with realhost.RealHost.create(["a", "b"]) as built:
        yield built


@pytest.fixture
def a(host):
    return host.agents["a"]


@pytest.fixture
def b(host):
    return host.agents["b"]
