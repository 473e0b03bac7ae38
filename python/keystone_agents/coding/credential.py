"""A git credential helper that answers with the token from a file, so the token never appears in a URL,
an argv or a log.

git runs it as `<python> -m keystone_agents.coding.credential get` (set per command with
`-c credential.helper=...`), writes `protocol=...`/`host=...` lines on its stdin and reads
`username=`/`password=` lines back. The token file path and the one host the token is meant for come from
the environment (KEYSTONE_CODING_TOKEN_FILE, KEYSTONE_CODING_TOKEN_HOST): a redirect to another host gets
nothing.
"""

from __future__ import annotations

import os
import shlex
import sys

TOKEN_FILE_ENV = "KEYSTONE_CODING_TOKEN_FILE"
TOKEN_HOST_ENV = "KEYSTONE_CODING_TOKEN_HOST"
USERNAME = "x-access-token"


def helper_config_value() -> str:
    """The `credential.helper` value that runs this module with the current interpreter."""
    return f"!{shlex.quote(sys.executable)} -m keystone_agents.coding.credential"


def read_token(path: str | os.PathLike) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()


def answer(operation: str, request: dict[str, str], env: dict[str, str]) -> str:
    """What the helper prints for `operation` given git's request; empty means 'I have nothing'."""
    if operation != "get":
        return ""  # store/erase: the token file is the only store
    token_file = env.get(TOKEN_FILE_ENV)
    if not token_file:
        return ""
    wanted_host = env.get(TOKEN_HOST_ENV)
    if wanted_host and request.get("host") != wanted_host:
        return ""
    try:
        token = read_token(token_file)
    except OSError:
        return ""
    if not token:
        return ""
    return f"username={USERNAME}\npassword={token}\n"


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
