"""Interactive coding-agent sessions as the agent: `agentctl <agent> claude|codex|gemini …`.

Two halves. On the host, agentctl turns the admin's request (and preferences) into
`keystone-agent session TOOL --home H … -- ARGS` run as the agent. In the agent's account, that command
composes the system prompt from the agent's own files and replaces itself with the tool:

    prompt = notes/AGENTS.md + "# Project Context" (from PROJECTS.yaml, with --project)
             + composition of notes/manifests/modes.yaml for --role / --roles
    claude  --dangerously-skip-permissions [--model=M] --append-system-prompt PROMPT ARGS…
    codex   --full-auto [--model=M] -c model_instructions_file="FILE" ARGS…
    gemini  --yolo [--model=M] ARGS…    (Gemini CLI has no flag to append to its system prompt: none is passed)

The execution-mode flag is added only when the caller passed none of the tool's own.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from keystone_agents import compose, queuefile
from keystone_agents.atomic import write_atomic
from keystone_agents.space import AgentSpace

TOOLS = ("claude", "codex", "gemini")
MODE_FLAGS = {
    "claude": ({"--dangerously-skip-permissions", "--permission-mode"}, ["--dangerously-skip-permissions"]),
    "codex": (
        {"--full-auto", "--sandbox", "-s", "--ask-for-approval", "-a", "--dangerously-bypass-approvals-and-sandbox"},
        ["--full-auto"],
    ),
    "gemini": ({"--yolo", "-y", "--approval-mode"}, ["--yolo"]),
}


class SessionError(Exception):
    pass


# ------------------------------------------------------------------ host side


def host_args(tool: str, role: str | None, roles: str | None, project: str | None, model: str | None,
              tool_args: list[str], devshell: bool = True) -> list[str]:
    """The `keystone-agent session` arguments agentctl passes (after --home/--config)."""
    args = [tool] + ([] if devshell else ["--no-devshell"])
    for flag, value in (("--role", role), ("--roles", roles), ("--project", project), ("--model", model)):
        if value:
            args += [flag, value]
    return args + ["--", *tool_args]


def preferred_model(tool: str, prefs) -> str | None:
    """The preferred model applies when no provider is preferred or the preferred one is this tool."""
    if prefs.model and prefs.provider in (None, tool):
        return prefs.model
    return None


# ------------------------------------------------------------------ agent side


def project_context(space: AgentSpace, slug: str) -> str:
    doc = queuefile.load(space.projects_file, queuefile.PROJECTS)
    projects = [queuefile.to_plain(entry) for entry in doc.valid_entries()]
    match = next((p for p in projects if p.get("slug") == slug), None)
    if match is None:
        known = ", ".join(p.get("slug", "?") for p in projects) or "none"
        raise SessionError(f"project {slug!r} not found in {space.projects_file} (projects: {known})")
    lines = ["# Project Context", "", f"Project: {match.get('name', slug)} ({slug})"]
    if match.get("description"):
        lines.append(f"Description: {match['description']}")
    if match.get("status"):
        lines.append(f"Status: {match['status']}")
    repos = match.get("repos") or []
    if repos:
        lines += ["Repositories:"] + [f"- {repo}" for repo in repos]
    return "\n".join(lines)


def system_prompt(space: AgentSpace, role: str | None = None, roles: list[str] = (), project: str | None = None) -> str | None:
    parts = []
    agents_md = space.notes_dir / "AGENTS.md"
    if agents_md.is_file():
        parts.append(agents_md.read_text(encoding="utf-8").strip())
    if project:
        parts.append(project_context(space, project))
    if role or roles:
        manifest = space.notes_dir / "manifests" / "modes.yaml"
        parts.append(compose.compose(manifest, role, roles).text.strip())
    parts = [p for p in parts if p]
    return "\n\n".join(parts) + "\n" if parts else None


def prompt_file(space: AgentSpace, prompt: str) -> Path:
    """A file holding `prompt` (codex reads instructions from a file); named by content, so it is reused."""
    directory = space.state_root / "sessions"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"prompt-{hashlib.sha256(prompt.encode()).hexdigest()[:16]}.md"
    if not path.exists():
        write_atomic(path, prompt, mode=0o600)
    return path


def _has_flag(args: list[str], flags: set[str]) -> bool:
    return any(arg.split("=", 1)[0] in flags for arg in args)


@dataclass(frozen=True)
class Session:
    argv: list[str]
    cwd: Path
    prompt: str | None

    def as_dict(self) -> dict:
        return {"argv": self.argv, "cwd": str(self.cwd), "prompt": self.prompt}


def prepare(space: AgentSpace, tool: str, role: str | None = None, roles: list[str] = (), project: str | None = None,
            model: str | None = None, tool_args: list[str] = (), devshell: bool = True) -> Session:
    if tool not in TOOLS:
        raise SessionError(f"unknown tool {tool!r} (tools: {', '.join(TOOLS)})")
    tool_args = list(tool_args)
    prompt = system_prompt(space, role, list(roles), project)
    flags, default = MODE_FLAGS[tool]
    argv = [tool] + ([] if _has_flag(tool_args, flags) else default)
    if model:
        from keystone_agents.sanitize import MODEL_RE

        if not MODEL_RE.match(model):
            raise SessionError(f"--model {model!r} is not a model name (it must start with a letter or digit)")
        argv.append(f"--model={model}")  # attached: every tool's parser reads it as the value
    if prompt and tool == "claude":
        argv += ["--append-system-prompt", prompt]
    elif prompt and tool == "codex":
        argv += ["-c", f"model_instructions_file={json.dumps(str(prompt_file(space, prompt)))}"]
    argv += tool_args
    cwd = space.notes_dir if space.notes_dir.is_dir() else space.home
    if devshell and (cwd / "flake.nix").is_file() and shutil.which("nix"):
        # the agent space's dev shell provides the tools (the seed's convention)
        argv = ["nix", "develop", str(cwd), "--no-update-lock-file", "--accept-flake-config", "--command", *argv]
    return Session(argv, cwd, prompt)


def exec_session(session: Session) -> None:
    os.chdir(session.cwd)
    os.execvp(session.argv[0], session.argv)
