"""A git credential helper that answers with the token from a file, so the token never appears in a URL,
an argv or a log.

git runs it as `<python> -m keystone_agents.coding.credential get` (set per command with
`-c credential.helper=...`), writes `protocol=...`/`host=...` lines on its stdin and reads
`username=`/`password=` lines back. Notes sync uses the same helper for a notes remote over HTTPS. The token file path and the one host the token is meant for come from
the environment (KEYSTONE_CODING_TOKEN_FILE, KEYSTONE_CODING_TOKEN_HOST): a redirect to another host gets
nothing.
"""

from __future__ import annotations

import os
import shlex
import sys

TOKEN_FILE_ENV = "KEYSTONE_CODING_TOKEN_FILE"
TOKEN_HOST_ENV = "KEYSTONE_CODING_TOKEN_HOST"
TOKEN_USER_ENV = "KEYSTONE_CODING_TOKEN_USER"
# notes sync with a token inside `notes.repo`: the configuration file to read it from (not copied anywhere)
TOKEN_CONFIG_ENV = "KEYSTONE_NOTES_TOKEN_CONFIG"  # the user name to answer with (notes sync: the URL's user)
USERNAME = "x-access-token"


def helper_config_value() -> str:
    """The `credential.helper` value that runs this module with the current interpreter."""
    return f"!{shlex.quote(sys.executable)} -m keystone_agents.coding.credential"


def read_token(path: str | os.PathLike) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()


def token_in_config(path: str | os.PathLike) -> str:
    """The password of the `notes.repo` URL in the configuration JSON."""
    import json
    from urllib.parse import unquote, urlsplit

    with open(path, encoding="utf-8") as handle:
        repo = ((json.load(handle).get("notes") or {}).get("repo")) or ""
    password = urlsplit(repo).password
    return unquote(password) if password else ""


def answer(operation: str, request: dict[str, str], env: dict[str, str]) -> str:
    """What the helper prints for `operation` given git's request; empty means 'I have nothing'."""
    if operation != "get":
        return ""  # store/erase: the token file is the only store
    token_file, config_file = env.get(TOKEN_FILE_ENV), env.get(TOKEN_CONFIG_ENV)
    if not token_file and not config_file:
        return ""
    wanted_host = env.get(TOKEN_HOST_ENV)
    if wanted_host and request.get("host") != wanted_host:
        return ""
    try:
        token = read_token(token_file) if token_file else token_in_config(config_file)
    except (OSError, ValueError):
        return ""
    if not token:
        return ""
    return f"username={env.get(TOKEN_USER_ENV) or USERNAME}\npassword={token}\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    operation = argv[0] if argv else ""
    request = {}
    for line in sys.stdin.read().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            request[key] = value
    sys.stdout.write(answer(operation, request, dict(os.environ)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
