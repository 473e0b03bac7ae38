"""Preflight: can this task's resolved provider run on this machine, now?

An environmental fault (the machine) is not a task fault (the work). Before a task starts, the loop asks
`check(...)`; a task whose provider cannot run is left untouched — no status, no attempt count changes — and
the run reports `provider_unavailable` (the provider itself: CLI not installed, `openai` without a model or
refusing connections) or `environment_error` (around it: a missing agent space, an unreadable secret file, a
provider setting missing from the configuration). `validate` and `loop --dry-run` report the same findings.

Each finding names the cause and the fix. Results are cached per run (`Preflight`): a provider that is not
installed is looked up once, not once per task.
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

PROVIDER_UNAVAILABLE = "provider_unavailable"
ENVIRONMENT_ERROR = "environment_error"
CLI_PROVIDERS = {"claude": "claude", "gemini": "gemini", "codex": "codex"}
CONNECT_TIMEOUT = 3.0  # seconds for the openai endpoint's TCP connect check


@dataclass(frozen=True)
class Finding:
    kind: str  # PROVIDER_UNAVAILABLE | ENVIRONMENT_ERROR
    provider: str
    cause: str
    fix: str

    def __str__(self) -> str:
        return f"{self.cause}; fix: {self.fix}"

    def as_dict(self) -> dict:
        return {"kind": self.kind, "provider": self.provider, "cause": self.cause, "fix": self.fix}


def _path_of(env: Mapping[str, str] | None) -> str | None:
    return (env or os.environ).get("PATH")


def find_program(program: str, env: Mapping[str, str] | None = None) -> str | None:
    """The program as the provider process would find it: an absolute/relative path, else on its PATH."""
    if os.sep in program:
        return program if os.path.isfile(program) and os.access(program, os.X_OK) else None
    return shutil.which(program, path=_path_of(env))


def _readable(path: str) -> str | None:
    """None if the file can be read, else why not."""
    try:
        with open(Path(path).expanduser(), "rb") as handle:
            handle.read(1)
        return None
    except FileNotFoundError:
        return "does not exist"
    except IsADirectoryError:
        return "is a directory"
    except OSError as exc:
        return exc.strerror or str(exc)


def check_agent_space(space) -> Finding | None:
    """The agent space (notesDir), the providers' working directory, must exist: a missing one is the machine's
    fault, not the task's (issue 15's one check: space.agent_space_problem)."""
    if space is None:
        return None
    from keystone_agents.space import agent_space_problem

    problem = agent_space_problem(space)
    if problem is None:
        return None
    return Finding(ENVIRONMENT_ERROR, "", f"the agent space {problem.path} does not exist (providers run in it)",
                   "create it (keystone-agent init), clone the notes repo (keystone-agent sync), or set notesDir")


def check_openai_endpoint(base_url: str, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """None if a TCP connection to the endpoint's host and port opens, else why not."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"baseUrl {base_url!r} is not an http(s) URL"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot connect to {parts.hostname}:{port}: {exc.strerror or exc}"


def check(provider: str, model: str | None, config, env: Mapping[str, str] | None = None,
          connect: bool = True) -> Finding | None:
    """The first reason `provider` (with `model`) cannot run, or None. `env` is the provider process's
    environment (its PATH decides which CLIs exist); `connect` also opens a connection to an HTTP provider."""
    if provider in CLI_PROVIDERS:
        program = CLI_PROVIDERS[provider]
        if find_program(program, env) is None:
            return Finding(PROVIDER_UNAVAILABLE, provider, f"the {provider} CLI ({program!r}) is not on PATH",
                           f"install {program} for the agent (or put it on the PATH given in the configuration's "
                           "environment), or choose another provider")
        return None
    if provider == "command":
        settings = getattr(config, "command_provider", None)
        if settings is None or not settings.argv:
            return Finding(ENVIRONMENT_ERROR, provider, "provider 'command' has no commandProvider.argv",
                           "set commandProvider.argv in the configuration")
        if "{model}" in " ".join(settings.argv) and not model:
            return Finding(PROVIDER_UNAVAILABLE, provider, "commandProvider.argv uses {model} but no model is resolved",
                           "set a model on the task, the execute stage, defaults or the profile")
        if find_program(settings.argv[0], env) is None:
            return Finding(PROVIDER_UNAVAILABLE, provider,
                           f"the command provider's program {settings.argv[0]!r} is not installed or not on PATH",
                           "install it or fix commandProvider.argv")
        return None
    if provider == "openai":
        settings = getattr(config, "openai_provider", None)
        if settings is None:
            return Finding(ENVIRONMENT_ERROR, provider, "provider 'openai' has no openaiProvider.baseUrl",
                           "set openaiProvider.baseUrl in the configuration")
        if not model:
            return Finding(PROVIDER_UNAVAILABLE, provider, "provider 'openai' has no model",
                           "set a model on the task, the execute stage, defaults or the profile")
        if settings.api_key_file:
            why = _readable(settings.api_key_file)
            if why:
                return Finding(ENVIRONMENT_ERROR, provider,
                               f"the secret file {settings.api_key_file} (openaiProvider.apiKeyFile) {why}",
                               "provision the secret for the agent (readable by it) or fix the path")
        if connect:
            why = check_openai_endpoint(settings.base_url)
            if why:
                return Finding(PROVIDER_UNAVAILABLE, provider, f"the OpenAI-compatible endpoint refused: {why}",
                               f"start the model server at {settings.base_url} or fix openaiProvider.baseUrl")
        return None
    from keystone_agents.providers import NAMES

    import difflib

    close = difflib.get_close_matches(provider, NAMES, n=1)
    return Finding(ENVIRONMENT_ERROR, provider, f"unsupported provider {provider!r}",
                   (f"did you mean {close[0]!r}? " if close else "") + f"use one of: {', '.join(NAMES)}")


class Preflight:
    """Per-run cache of provider checks (a missing CLI is looked up once per run, not once per task)."""

    def __init__(self, config, env: Mapping[str, str] | None, space=None, connect: bool = True):
        self.config, self.env, self.space, self.connect = config, env, space, connect
        self._cache: dict[tuple[str, str | None], Finding | None] = {}

    def check(self, provider: str, model: str | None) -> Finding | None:
        missing = check_agent_space(self.space)
        if missing is not None:
            return missing
        key = (provider, model if provider in ("openai", "command") else None)
        if key not in self._cache:
            self._cache[key] = check(provider, model, self.config, self.env, self.connect)
        return self._cache[key]
