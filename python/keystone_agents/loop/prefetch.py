"""Prefetch: run every source, fault-isolated. A source that fails (non-zero exit, non-JSON output, timeout)
is skipped with an event naming it and the first bytes of its output; the others go on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keystone_agents.config import Config
from keystone_agents.sources import CommandSource, FetchResult, Source, SourceFailed


@dataclass
class PrefetchResult:
    fetched: list[FetchResult] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (name, reason, excerpt)

    def sources_json(self) -> list[dict[str, Any]]:
        """The seed's ~/.deepwork/sources.json shape."""
        return [{"source": r.name, "data": r.data} for r in self.fetched]


def build_sources(config: Config, project_sources, cwd: Path, env: dict, stderr_log: Path | None,
                  state_dir: Path | None = None, log=None) -> list[Source]:
    """Built-in sources (email, GitHub, Forgejo; only those configured) first, then the config's command
    sources, then PROJECTS.yaml's (top-level, then per project)."""
    sources: list[Source] = []
    if state_dir is not None and (config.mail or config.github or config.forgejo
                                  or config.coordination.backend != "none"):
        from keystone_agents.sources.builtin import builtin_sources

        sources.extend(builtin_sources(config, state_dir, env, log))
    for spec in list(config.sources) + list(project_sources):
        sources.append(CommandSource(
            name=spec.name,
            command=spec.command,
            timeout=spec.timeout or config.source_timeout_seconds,
            project=spec.project,
            kill_grace=min(config.kill_grace_seconds, 5.0),
            cwd=cwd,
            env=env,
            stderr_log=stderr_log,
        ))
    return sources


def prefetch(sources: list[Source], log) -> PrefetchResult:
    result = PrefetchResult()
    for source in sources:
        try:
            fetched = source.fetch()
        except SourceFailed as exc:
            result.failed.append((source.name, exc.reason, exc.excerpt))
            log.warning("log", msg=f"source {source.name} skipped: {exc.reason}", status="error",
                        source=source.name, reason=exc.reason, output_excerpt=exc.excerpt)
            continue
        if not isinstance(fetched.data, (list, dict)):
            result.failed.append((source.name, "output is JSON but not a list or an object", str(fetched.data)[:200]))
            log.warning("log", msg=f"source {source.name} skipped: not a list or an object", status="error",
                        source=source.name, output_excerpt=str(fetched.data)[:200])
            continue
        result.fetched.append(fetched)
    return result


def commit(result: PrefetchResult, log) -> None:
    """Tell the sources that track what they delivered that their items are saved."""
    for fetched in result.fetched:
        if fetched.commit is None:
            continue
        try:
            fetched.commit()
        except Exception as exc:  # noqa: BLE001 - the items are saved; next run re-reads, dedup holds
            log.warning("log", msg=f"source {fetched.name}: cannot save its state: {exc}", status="error",
                        source=fetched.name)
