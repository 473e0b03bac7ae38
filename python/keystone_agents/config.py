"""The agent's configuration: one typed object loaded from the JSON file the NixOS module writes.

Where the file is: `--config`, else `$KEYSTONE_AGENT_CONFIG`, else `<home>/.config/keystone-agent/config.json`
when it exists, else built-in defaults. The JSON Schema `schemas/config.schema.json` is the contract (the Nix
module's output is checked against it); the dataclasses below mirror it, and a test keeps their defaults equal
to the schema's.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keystone_agents.problems import Problem, ValidationFailed

CONFIG_ENV = "KEYSTONE_AGENT_CONFIG"
HOME_CONFIG = Path(".config/keystone-agent/config.json")


@dataclass(frozen=True)
class StageSettings:
    """Provider/profile/model settings of one loop stage (ingest, prioritize, execute)."""

    profile: str | None = None
    provider: str | None = None
    model: str | None = None
    fallback_model: str | None = None
    effort: str | None = None


@dataclass(frozen=True)
class ProviderProfile:
    """What a semantic profile (fast, medium, max, ...) means for one provider."""

    model: str | None = None
    fallback_model: str | None = None
    effort: str | None = None


@dataclass(frozen=True)
class Source:
    """A pre-fetch source: a command printing JSON items."""

    name: str
    command: str | list[str]
    timeout: float | None = None
    project: str | None = None


@dataclass(frozen=True)
class NotesSettings:
    """Notes repo sync."""

    repo: str | None = None
    commit_prefix: str = "vault sync"
    keep_records: int = 10
    signing_key: str | None = None
    token_file: str | None = None


@dataclass(frozen=True)
class GitSettings:
    """The agent's one git identity (name and email come from fullName/email) and commit signing."""

    signing_key: str | None = None
    allowed_signers_file: str = "~/.config/git/allowed_signers"


@dataclass(frozen=True)
class Endpoint:
    """A mail server endpoint."""

    host: str
    port: int | None = None
    security: str | None = None


@dataclass(frozen=True)
class MailSettings:
    """Email: IMAP in, SMTP out."""

    address: str
    user: str | None = None
    password_file: str | None = None
    imap: Endpoint | None = None
    smtp: Endpoint | None = None
    folders: list[str] = field(default_factory=lambda: ["INBOX"])
    ca_file: str | None = None
    fetch: bool = True
    max_per_run: int = 50


@dataclass(frozen=True)
class CalendarSettings:
    """The CalDAV calendar (or command) the scheduler reads."""

    url: str | None = None
    user: str | None = None
    password_file: str | None = None
    window_hours: float = 24
    command: list[str] | None = None


@dataclass(frozen=True)
class GithubSettings:
    """The GitHub account."""

    username: str
    token_file: str | None = None
    fetch: bool = True
    hostname: str | None = None


@dataclass(frozen=True)
class ForgejoSettings:
    """The Forgejo/Gitea account."""

    url: str
    username: str | None = None
    token_file: str | None = None
    ssh_user: str = "forgejo"
    ssh_port: int | None = None
    fetch: bool = True


@dataclass(frozen=True)
class CodingSettings:
    """The coding subagent."""

    forge: str | None = None
    clone_url: str | None = None
    provider: str | None = None
    model: str | None = None
    review_provider: str | None = None
    review_profile: str = "medium"
    review_model: str | None = None
    timeout_seconds: float = 600
    max_review_cycles: int = 2
    workflows: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Budgets:
    """Spend ceilings checked before each provider invocation (None: no ceiling)."""

    task_tokens: int | None = None
    task_cost_usd: float | None = None
    daily_tokens: int | None = None
    daily_cost_usd: float | None = None
    monthly_tokens: int | None = None
    monthly_cost_usd: float | None = None


@dataclass(frozen=True)
class SchedulerSettings:
    """Scheduler settings."""

    horizon_days: float = 7
    expected_interval_seconds: float | None = None
    wake_command: list[str] | None = None
    max_catch_up: int = 100


@dataclass(frozen=True)
class Rule:
    """A prioritize rule's conditions: keywords in name/description, source, project (all given must match)."""

    keywords: list[str] = field(default_factory=list)
    source: str | None = None
    project: str | None = None
    project_keywords: list[str] = field(default_factory=list)  # any of them in the task's project's description
    project_has_repos: bool | None = None  # the task's project lists code repositories (PROJECTS.yaml repos)


@dataclass(frozen=True)
class WorkflowRule(Rule):
    """A rule that assigns a workflow."""

    workflow: str | None = None  # required by the schema


@dataclass(frozen=True)
class RuntimeRule(Rule, StageSettings):
    """Conditions, and the profile/provider/model/fallback_model/effort a matching task gets."""


@dataclass(frozen=True)
class CommandProviderSettings:
    """The `command` provider."""

    argv: list[str]


@dataclass(frozen=True)
class CodexProviderSettings:
    """The `codex` provider's options: a local model server instead of OpenAI's hosted models."""

    local_provider: str | None = None


@dataclass(frozen=True)
class OpenAIProviderSettings:
    """The `openai` provider (an OpenAI-compatible endpoint)."""

    base_url: str
    api_key_file: str | None = None


MODES = ("timer", "reactive", "autonomous", "proactive", "tick")


@dataclass(frozen=True)
class ExecSettings:
    """`exec`: the execution mode and its limits (docs/exec-modes.md)."""

    mode: str = "timer"
    max_iterations: int | None = None
    max_auto_turns: int = 1
    max_context_tokens: int | None = None
    think_interval: int | None = None
    max_quiet_seconds: int | None = None
    timeout: int | None = None
    instructions: str | None = None
    watch_prefixes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PostgresBusSettings:
    host: str | None = None
    port: int | None = None
    database: str = "keystone"


@dataclass(frozen=True)
class LocalBusSettings:
    socket: str = "/run/keystone-bus/bus.sock"
    wake_dir: str = "/run/keystone-bus/wake"


@dataclass(frozen=True)
class CoordinationSettings:
    backend: str = "none"
    postgresql: PostgresBusSettings = field(default_factory=PostgresBusSettings)
    local: LocalBusSettings = field(default_factory=LocalBusSettings)
    wake_file: str | None = None
    max_deliveries: int = 5
    lease_seconds: float = 300
    wake_grace_seconds: float = 60


@dataclass(frozen=True)
class Config:
    """The agent's configuration (one typed object, loaded from the module's JSON)."""

    agent_name: str
    full_name: str | None = None
    email: str | None = None
    host: str | None = None
    archetype: str = "engineer"
    notes_dir: str = "~/notes"
    max_tasks: int = 5
    max_attempts: int = 3
    task_timeout_seconds: float = 1800
    stall_timeout_seconds: float = 600
    max_turns: int | None = None  # deprecated alias of exec.max_iterations
    exec: ExecSettings = field(default_factory=ExecSettings)
    budgets: Budgets = field(default_factory=Budgets)
    expected_interval_seconds: float | None = None
    archive_after_days: float = 30
    keep_run_logs: int = 20
    keep_task_log_days: float = 14
    keep_event_days: float = 30
    defaults: StageSettings = field(default_factory=StageSettings)
    ingest: StageSettings = field(default_factory=StageSettings)
    prioritize: StageSettings = field(default_factory=StageSettings)
    execute: StageSettings = field(default_factory=StageSettings)
    profiles: dict[str, dict[str, ProviderProfile]] = field(default_factory=dict)
    sources: list[Source] = field(default_factory=list)
    textfile_dir: str | None = None
    notes: NotesSettings = field(default_factory=NotesSettings)
    git: GitSettings = field(default_factory=GitSettings)
    mail: MailSettings | None = None
    calendar: CalendarSettings | None = None
    github: GithubSettings | None = None
    forgejo: ForgejoSettings | None = None
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    coding: CodingSettings = field(default_factory=CodingSettings)
    source_timeout_seconds: float = 60
    kill_grace_seconds: float = 10
    task_token_budget: int | None = None
    llm_triage: bool = False
    workflow_rules: list[WorkflowRule] = field(default_factory=list)
    default_workflow_rules: bool = True
    runtime_rules: list[RuntimeRule] = field(default_factory=list)
    command_provider: CommandProviderSettings | None = None
    openai_provider: OpenAIProviderSettings | None = None
    codex_provider: CodexProviderSettings | None = None
    environment: dict[str, str] = field(default_factory=dict)
    mcp_servers: dict[str, Any] = field(default_factory=dict)  # {name: {command, args, env}}, passed through
    coordination: CoordinationSettings = field(default_factory=CoordinationSettings)
    role: str | None = None  # the policy's role (policy/model.py BUILTIN_ROLES or policy.roles)
    policy: dict[str, Any] = field(default_factory=dict)  # {default, rules, roles}: policy/model.py reads it
    policy_file: str | None = None  # the rendered root-owned policy.json the provider hooks read
    source_path: Path | None = field(default=None, compare=False)

    @property
    def max_iterations(self) -> int | None:
        """Tool calls per execution: exec.maxIterations, else the deprecated maxTurns, else None (no limit)."""
        return self.exec.max_iterations if self.exec.max_iterations is not None else self.max_turns

    @property
    def execution_token_budget(self) -> int | None:
        """Tokens one execution may use: the smaller of taskTokenBudget and exec.maxContextTokens."""
        limits = [v for v in (self.task_token_budget, self.exec.max_context_tokens) if v]
        return min(limits) if limits else None

    def stage(self, name: str) -> StageSettings:
        if name not in ("defaults", "ingest", "prioritize", "execute"):
            raise KeyError(f"unknown stage {name!r}")
        return getattr(self, name)


def json_key(name: str) -> str:
    """snake_case field → the camelCase key used in the JSON file."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _build(cls: type, data: Any) -> Any:
    """Plain JSON (already schema-valid) → the dataclass tree of `cls`."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = json_key(f.name)
        if key not in data or f.name == "source_path":
            continue
        kwargs[f.name] = _convert(hints[f.name], data[key])
    return cls(**kwargs)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if dataclasses.is_dataclass(arg):
                return _build(arg, value)
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value)
    if origin is list and args and dataclasses.is_dataclass(args[0]):
        return [_build(args[0], item) for item in value]
    if origin is dict and args and typing.get_origin(args[1]) is dict:
        inner = typing.get_args(args[1])[1]
        return {k: {kk: _build(inner, vv) for kk, vv in v.items()} for k, v in value.items()}
    return value


def default_agent_name() -> str:
    user = os.environ.get("USER") or getpass.getuser()
    name = user.removeprefix("agent-").lower()
    cleaned = "".join(c if c.isalnum() or c == "-" else "-" for c in name).strip("-")
    return cleaned if cleaned and cleaned[0].isalpha() else "agent"


def find_config_path(explicit: str | os.PathLike | None, home: Path) -> Path | None:
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    candidate = home / HOME_CONFIG
    return candidate if candidate.exists() else None


def parse_config(data: Any, file: str = "<config>", text: str | None = None) -> Config:
    """Validate plain JSON data against the config schema and build the typed object."""
    from keystone_agents.queuefile import _line_of, schema_problems  # lazy: ruamel and jsonschema load slowly

    if isinstance(data, dict) and "agentName" not in data:
        data = {"agentName": default_agent_name(), **data}

    def locate(path: list) -> int | None:
        if text is None:
            return None
        try:  # JSON is YAML: ruamel's round-trip loader knows where every key is
            from ruamel.yaml import YAML

            return _line_of(YAML(typ="rt").load(text), path)
        except Exception:  # noqa: BLE001 - position is a nicety
            return None

    problems = schema_problems("config", None, data, file, [], locate)
    if problems:
        raise ValidationFailed(problems)
    return _build(Config, data)


def load_config(explicit: str | os.PathLike | None = None, home: Path | None = None) -> Config:
    """Load the configuration; raises ValidationFailed naming the file, line and key."""
    home = home or Path(os.environ.get("HOME") or Path.home())
    path = find_config_path(explicit, home)
    if path is None:
        return Config(agent_name=default_agent_name())
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationFailed([Problem(str(path), None, "", "configuration file does not exist")]) from None
    except OSError as exc:
        raise ValidationFailed([Problem(str(path), None, "", f"cannot read configuration: {exc.strerror}")]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationFailed(
            [Problem(str(path), exc.lineno, "", f"not valid JSON: {exc.msg} (column {exc.colno})")]
        ) from None
    if not isinstance(data, dict):
        raise ValidationFailed([Problem(str(path), 1, "", "expected a JSON object")])
    config = parse_config(data, str(path), text)
    return dataclasses.replace(config, source_path=path)
