"""The environment a provider process gets: an allow-list of the loop's own variables plus the agent's
configured `environment`, nothing else.

A headless CLI must not inherit whatever the loop's unit happened to have (tokens of another tool, a
terminal, a debug switch that makes it wait for input); what it needs to run is PATH, HOME and the locale,
what it needs to reach the network (proxies, CA bundle, ssh agent), and what the agent configured.
"""

from __future__ import annotations

import os
from typing import Mapping

ALLOWED = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TZDIR", "LOCALE_ARCHIVE", "TMPDIR",
    "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME",
    "SSH_AUTH_SOCK", "GIT_SSH_COMMAND",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "NIX_SSL_CERT_FILE", "NIX_PATH", "NIX_PROFILES",
    "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    "KEYSTONE_AGENT_CONFIG", "KEYSTONE_AGENT_HOME",
})
ALLOWED_PREFIXES = ("LC_",)


def allowed(name: str) -> bool:
    return name in ALLOWED or name.startswith(ALLOWED_PREFIXES)


def clean_env(configured: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None,
              **extra: str) -> dict[str, str]:
    """The allow-listed part of `base` (default: this process's environment), then the agent's configured
    variables, then `extra` (the task's own: KEYSTONE_TASK_RESULT, ...)."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if allowed(k)}
    env.update(configured or {})
    env.update(extra)
    return env
