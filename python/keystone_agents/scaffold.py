"""`keystone-agent init`: render the agent-space templates into a new agent home."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from keystone_agents.atomic import write_atomic
from keystone_agents.templates import templates_dir

SPACE_TEMPLATE = "agent-space"


@dataclass(frozen=True)
class Planned:
    template: str  # path relative to the templates dir
    target: Path
    kind: str = "render"  # render (.j2, jinja2) | copy (verbatim) | symlink (.symlink: the file holds the target)
    executable: bool = False


def _target_name(part: str) -> str:
    # Template files are stored without leading dots (packaging tools drop hidden files); `.j2` files are
    # rendered with jinja2, `.symlink` files become symlinks, anything else is copied as it is.
    if part.startswith("dot-"):
        part = "." + part[4:]
    return part.removesuffix(".j2").removesuffix(".symlink")


def _kind(path: Path) -> str:
    if path.name.endswith(".j2"):
        return "render"
    if path.name.endswith(".symlink"):
        return "symlink"
    return "copy"


def plan(home: Path) -> list[Planned]:
    root = templates_dir() / SPACE_TEMPLATE
    planned = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            rel = path.relative_to(root)
            target = home.joinpath(*(_target_name(p) for p in rel.parts))
            executable = os.access(path, os.X_OK) or target.suffix == ".sh"
            planned.append(Planned(str(Path(SPACE_TEMPLATE) / rel), target, _kind(path), executable))
    return planned


def context(agent_name: str, full_name: str | None = None, email: str | None = None, **extra) -> dict:
    return {
        "agent_name": agent_name,
        "full_name": full_name or agent_name.capitalize(),
        "email": email or f"agent-{agent_name}@localhost",
        "human_name": extra.pop("human_name", None) or os.environ.get("USER", "operator"),
        "human_email": extra.pop("human_email", None) or "",
        "archetype": extra.pop("archetype", None) or "engineer",
        **extra,
    }


class ScaffoldExists(Exception):
    def __init__(self, existing: list[Path]):
        self.existing = existing
        super().__init__(", ".join(str(p) for p in existing))


def init(home: Path, values: dict, force: bool = False) -> list[Path]:
    """Render every template under `home`. Refuses (writing nothing) if any target exists, unless `force`."""
    planned = plan(home)
    existing = [p.target for p in planned if os.path.lexists(p.target)]
    if existing and not force:
        raise ScaffoldExists(existing)
    env = Environment(
        loader=FileSystemLoader(str(templates_dir())),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    written = []
    for item in planned:
        item.target.parent.mkdir(parents=True, exist_ok=True)
        source = templates_dir() / item.template
        if item.kind == "symlink":
            if os.path.lexists(item.target):
                item.target.unlink()
            item.target.symlink_to(source.read_text(encoding="utf-8").strip())
        else:
            data = env.get_template(item.template).render(**values) if item.kind == "render" else source.read_bytes()
            mode = 0o755 if item.executable else 0o600 if item.target.suffix == ".json" else 0o644
            write_atomic(item.target, data, mode=mode)
            if force:
                os.chmod(item.target, mode)  # write_atomic keeps an existing file's mode
        written.append(item.target)
    return written
