"""No secret at rest in the notes clone: a notes remote URL with credentials (`https://user:token@host/…`)
is used and stored without them; git gets the token from the credential helper the coding subagent uses
(`coding/credential.py`), which reads it from a secret file.

The secret file is `notes.tokenFile` when configured (an agenix path, say); otherwise, for a token written
into `notes.repo`, the helper reads it from the configuration file itself — it is not copied anywhere. The
clone's `.git/config` holds the clean URL; an existing clone whose remote URL still carries credentials is
rewritten on the next sync.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from keystone_agents.coding import credential


def split(url: str) -> tuple[str, str | None, str | None]:
    """(URL without user and password, user, password) of an http(s) URL; other URLs are returned as they are."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return url, None, None
    host = parts.netloc.rsplit("@", 1)[1]
    clean = urlunsplit(SplitResult(parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, unquote(parts.username) if parts.username else None, (
        unquote(parts.password) if parts.password is not None else None)


def clean(url: str) -> str:
    return split(url)[0]


def token_source(config) -> tuple[str, str] | None:
    """Where the helper reads the token: ("file", notes.tokenFile), else ("config", the configuration file)
    when the URL there carries a password — the token is not copied anywhere else."""
    configured = getattr(config.notes, "token_file", None)
    if configured:
        return "file", str(Path(configured).expanduser())
    if config.notes.repo and split(config.notes.repo)[2] and config.source_path:
        return "config", str(config.source_path)
    return None


def apply(env: dict[str, str], space, config) -> dict[str, str]:
    """Add the credential helper to a git environment (GIT_CONFIG_* entries) when the remote needs a token."""
    source = token_source(config)
    if source is None:
        return env
    url = config.notes.repo or ""
    clean_url, user, _ = split(url)
    host = urlsplit(clean_url).netloc
    count = int(env.get("GIT_CONFIG_COUNT") or 0)
    # an empty helper first resets any helper from the user's or system config (no credential store on disk)
    for key, value in (("credential.helper", ""), ("credential.helper", credential.helper_config_value())):
        env[f"GIT_CONFIG_KEY_{count}"] = key
        env[f"GIT_CONFIG_VALUE_{count}"] = value
        count += 1
    env["GIT_CONFIG_COUNT"] = str(count)
    kind, path = source
    env[credential.TOKEN_FILE_ENV if kind == "file" else credential.TOKEN_CONFIG_ENV] = path
    if host:
        env[credential.TOKEN_HOST_ENV] = host
    if user:
        env[credential.TOKEN_USER_ENV] = user
    return env
