"""A source that is a command printing JSON. Never through a shell: a string is split like a command line
(shlex), a list is the argv. The command runs in its own process group, killed at its timeout."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from keystone_agents.providers.process import kill_group
from keystone_agents.sources.base import FetchResult, SourceFailed

EXCERPT = 200


def excerpt(data: bytes | str) -> str:
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    text = text.strip()
    return text[:EXCERPT] + ("…" if len(text) > EXCERPT else "")


@dataclass
class CommandSource:
    name: str
    command: str | list[str]
    timeout: float = 60.0
    project: str | None = None
    kill_grace: float = 2.0
    cwd: Path | None = None
    env: dict[str, str] | None = field(default=None, repr=False)
    stderr_log: Path | None = None

    def argv(self) -> list[str]:
        if isinstance(self.command, str):
            return shlex.split(self.command)
        return list(self.command)

    def fetch(self) -> FetchResult:
        try:
            argv = self.argv()
        except ValueError as exc:
            raise SourceFailed(f"cannot parse command: {exc}") from None
        if not argv:
            raise SourceFailed("empty command")
        started = time.monotonic()
        stderr = open(self.stderr_log, "ab") if self.stderr_log else subprocess.DEVNULL
        try:
            try:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                    cwd=self.cwd, env=self.env, start_new_session=True,
                )
            except OSError as exc:
                raise SourceFailed(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None
            try:
                out, _ = proc.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                kill_group(proc.pid, self.kill_grace)
                out, _ = proc.communicate()
                raise SourceFailed(f"timed out after {self.timeout:g}s", excerpt(out or b"")) from None
            finally:
                try:
                    os.killpg(proc.pid, 9)  # nothing the source started outlives it
                except (ProcessLookupError, PermissionError):
                    pass
        finally:
            if stderr is not subprocess.DEVNULL:
                stderr.close()
        if proc.returncode != 0:
            raise SourceFailed(f"exit code {proc.returncode}", excerpt(out))
        text = out.decode("utf-8", errors="replace")
        if not text.strip():
            data = []  # printing nothing means no items
        else:
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise SourceFailed(f"output is not JSON ({exc.msg} at line {exc.lineno})", excerpt(out)) from None
        return FetchResult(self.name, self.project, data, time.monotonic() - started)
