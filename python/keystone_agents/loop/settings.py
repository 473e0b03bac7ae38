"""The configuration and PROJECTS.yaml as the loop needs them, validated once per content.

Validating with jsonschema (and ruamel for PROJECTS.yaml positions) costs more than a whole no-change tick,
so the result is cached under state/ keyed by the sha256 of the file: an unchanged file is not re-validated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from keystone_agents.config import Config, Source, _build, default_agent_name, find_config_path
from keystone_agents.loop.state import read_json, read_text, write_json, write_text
from keystone_agents.problems import Problem, ValidationFailed


def load_config_cached(explicit: Path | None, home: Path, cache_file: Path) -> Config:
    """load_config(), skipping schema validation when this exact content validated before."""
    path = find_config_path(explicit, home)
    if path is None:
        return Config(agent_name=default_agent_name())
    try:
        raw = path.read_bytes()
    except OSError:
        from keystone_agents.config import load_config

        return load_config(explicit, home)  # raises the clear error
    digest = hashlib.sha256(raw).hexdigest()
    if read_text(cache_file) == digest:
        data = json.loads(raw)
        data = {"agentName": default_agent_name(), **data}
        return dataclasses.replace(_build(Config, data), source_path=path)
    from keystone_agents.config import load_config

    config = load_config(explicit, home)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_text(cache_file, digest)
    except OSError:
        pass
    return config


@dataclass
class ProjectsIndex:
    """Project ranks and pre-fetch sources from PROJECTS.yaml (valid entries only) and its problems."""

    ranks: dict[str, int] = field(default_factory=dict)  # slug → rank (0 is first)
    sources: list[Source] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sha: str = "absent"
    # slug → {"description": str, "repos": int}: what the workflow decision tree asks about a task's project
    facts: dict[str, dict] = field(default_factory=dict)


def load_projects(path: Path, cache_file: Path) -> ProjectsIndex:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ProjectsIndex()
    digest = hashlib.sha256(raw).hexdigest()
    cached = read_json(cache_file)
    if isinstance(cached, dict) and cached.get("sha") == digest and "facts" in cached:
        return ProjectsIndex(
            ranks=cached["ranks"],
            sources=[Source(**s) for s in cached["sources"]],
            problems=cached["problems"],
            sha=digest,
            facts=cached.get("facts") or {},
        )
    index = _index(path)
    index.sha = digest
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_json(cache_file, {
            "sha": digest, "ranks": index.ranks, "problems": index.problems, "facts": index.facts,
            "sources": [dataclasses.asdict(s) for s in index.sources],
        })
    except OSError:
        pass
    return index


def _index(path: Path) -> ProjectsIndex:
    from keystone_agents import queuefile
    from keystone_agents.queuefile import to_plain

    try:
        doc = queuefile.load(path, queuefile.PROJECTS)
    except ValidationFailed as exc:
        return ProjectsIndex(problems=[str(p) for p in exc.problems])
    index = ProjectsIndex(problems=[str(p) for p in doc.problems])
    projects = [to_plain(p) for p in doc.valid_entries("projects")]
    ordered = sorted(enumerate(projects), key=lambda item: (item[1].get("priority", 0), item[0]))
    index.ranks = {p["slug"]: rank for rank, (_, p) in enumerate(ordered)}
    index.facts = {p["slug"]: {"description": str(p.get("description") or ""), "repos": len(p.get("repos") or [])}
                   for p in projects}
    if "sources" in doc.data:
        for src in doc.valid_entries("sources"):
            src = to_plain(src)
            index.sources.append(Source(src["name"], src["command"], src.get("timeout"), None))
    for project in projects:
        for src in project.get("sources") or []:
            index.sources.append(Source(src["name"], src["command"], src.get("timeout"), project["slug"]))
    return index


def problem_text(problem: Problem | str) -> str:
    return str(problem)


def env_for_children(config: Config) -> dict[str, str]:
    env = dict(os.environ)
    env.update(config.environment)
    return env
