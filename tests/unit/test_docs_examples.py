"""Every example in README.md and docs/ works when copied: each fenced block is extracted and checked.

* Every fence names its language: json, yaml, nix, sh or text (text is prose-like output, diagrams, synopses).
* json / yaml: parsed (a JSON fragment `"key": value, …` is parsed inside braces); a block preceded by
  `<!-- example: KIND -->` is validated by the real reader of KIND (KINDS below).
* yaml with a top-level tasks/projects/schedules/issues key is validated against that queue file's schema.
* nix: parsed with `nix-instantiate --parse` (a fragment of option assignments inside braces); a block marked
  `nixos-module` is also evaluated with the module (when NIXPKGS_LIB is set) and must raise no assertion.
* sh: `bash -n`, every `scripts/…` it runs exists, and every keystone-agent / agentctl command line in it
  resolves to a real click command whose options exist.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LANGUAGES = {"json", "yaml", "nix", "sh", "text"}
FENCE = re.compile(r"(?m)^(?P<indent> *)```(?P<lang>[\w-]*)[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.S)
MARKER = re.compile(r"<!--\s*example:\s*([\w-]+)\s*-->")


@dataclass
class Example:
    file: Path
    line: int
    lang: str
    body: str
    kind: str | None

    @property
    def where(self) -> str:
        return f"{self.file.relative_to(REPO)}:{self.line}"

    def __str__(self) -> str:
        return f"{self.where} [{self.lang}{'/' + self.kind if self.kind else ''}]"


def extract(path: Path) -> list[Example]:
    text = path.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[:match.start()].rstrip().splitlines()[-1:] or [""]
        marker = MARKER.search(before[0])
        indent = len(match.group("indent"))
        body = "\n".join(row[indent:] for row in match.group("body").splitlines()) + "\n"
        found.append(Example(path, line, match.group("lang"), body, marker.group(1) if marker else None))
    return found


EXAMPLES = [example for path in DOCS for example in extract(path)]


def by_lang(*langs: str) -> list[Example]:
    return [e for e in EXAMPLES if e.lang in langs]


def test_examples_are_found_and_every_fence_names_its_language():
    assert len(EXAMPLES) > 30
    unnamed = [e.where for e in EXAMPLES if e.lang not in LANGUAGES]
    assert unnamed == [], f"fences without a language ({', '.join(sorted(LANGUAGES))}): {unnamed}"
    kinds = {e.kind for e in EXAMPLES if e.kind}
    assert kinds <= set(KINDS) | {"nixos-module"}, kinds - set(KINDS)


# ---------------------------------------------------------------- JSON and YAML


def load_json(example: Example):
    body = example.body.strip()
    if body.startswith('"'):  # a fragment of an object: "key": value, ...
        body = "{" + body + "}"
    return json.loads(body)


def check_config(data, _tmp):
    from keystone_agents.config import parse_config

    parse_config({"agentName": "demo", **data} if "agentName" not in data else data)


def check_host_config(data, _tmp):
    from keystone_agents.agentctl.hostconfig import parse

    config = parse(data)
    assert config.agents


def check_agentctl_show(data, _tmp):
    from keystone_agents.agentctl import status
    from keystone_agents.agentctl.hostconfig import AgentEntry, HostConfig
    from keystone_agents.agentctl.prefs import Prefs

    agent = AgentEntry(name="drago", user="agent-drago", home="/home/agent-drago")
    real = status._base(HostConfig([agent]), agent, Prefs(), None)
    assert set(data) == set(real), set(data) ^ set(real)
    assert set(data["pause"]) == set(status.EMPTY_PAUSE)


def check_prefs(data, tmp):
    from keystone_agents.agentctl.prefs import PrefsStore

    path = tmp / "prefs.json"
    path.write_text(json.dumps(data))
    for agent in data["agents"]:
        PrefsStore(path).get(agent)


def check_sync_record(data, _tmp):
    from keystone_agents.notes_sync.report import SyncRecord

    assert set(data) == set(SyncRecord(timestamp="x").as_dict())


def check_task_report(data, tmp):
    from keystone_agents.events import event_logger
    from keystone_agents.loop.execute import read_report

    path = tmp / "report.json"
    path.write_text(json.dumps(data))
    import io

    stream = io.StringIO()
    report = read_report(path, event_logger(agent="a", unit="u", run_id="r", stream=stream), "t")
    assert report is not None, stream.getvalue()


def check_queue_entries(schema: str):
    def check(data, tmp):
        from keystone_agents import queuefile

        kind = queuefile.KINDS[schema]
        path = tmp / kind.filename
        path.write_text(yaml.safe_dump({kind.key: data}))
        assert queuefile.check(path, kind) == []

    return check


def check_modes(data, _tmp):
    from keystone_agents.queuefile import schema_problems

    assert schema_problems("modes", None, data, "modes.yaml", [], lambda p: None) == []


KINDS = {
    "config": check_config,
    "host-config": check_host_config,
    "agentctl-show": check_agentctl_show,
    "prefs": check_prefs,
    "sync-record": check_sync_record,
    "task-report": check_task_report,
    "tasks-entries": check_queue_entries("tasks"),
    "modes": check_modes,
    "parse-only": lambda data, tmp: None,
}


@pytest.mark.parametrize("example", by_lang("json"), ids=str)
def test_json_examples(example, tmp_path):
    try:
        data = load_json(example)
    except json.JSONDecodeError as exc:
        pytest.fail(f"{example.where}: not valid JSON: {exc}")
    if example.kind:
        KINDS[example.kind](data, tmp_path)


@pytest.mark.parametrize("example", by_lang("yaml"), ids=str)
def test_yaml_examples(example, tmp_path):
    from keystone_agents import queuefile

    try:
        data = yaml.safe_load(example.body)
    except yaml.YAMLError as exc:
        pytest.fail(f"{example.where}: not valid YAML: {exc}")
    if example.kind:
        KINDS[example.kind](data, tmp_path)
    elif isinstance(data, dict) and len(data) and set(data) <= {"tasks", "projects", "schedules", "issues", "sources"}:
        schema = next(k for k in ("tasks", "projects", "schedules", "issues") if k in data)
        path = tmp_path / queuefile.KINDS[schema].filename
        path.write_text(example.body)
        assert queuefile.check(path, queuefile.KINDS[schema]) == []


# ---------------------------------------------------------------- Nix


def nix_parses(expression: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nix-instantiate", "--parse", "-E", expression], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("example", by_lang("nix"), ids=str)
def test_nix_examples(example, tmp_path):
    if shutil.which("nix-instantiate") is None:
        pytest.skip("nix-instantiate not installed (scripts/install-system-deps installs Debian's nix-bin)")
    parsed = nix_parses(example.body)
    if parsed.returncode != 0:  # a fragment: option assignments of a module
        parsed = nix_parses("{\n" + example.body + "\n}")
    assert parsed.returncode == 0, f"{example.where}: {parsed.stderr}"
    if example.kind == "nixos-module":
        lib = os.environ.get("NIXPKGS_LIB")
        if not lib:
            pytest.skip("NIXPKGS_LIB is unset: the module fragment is only parsed")
        from tests.nix import nixeval

        body = example.body if example.body.lstrip().startswith("{") else "{\n" + example.body + "\n}"
        scenario = tmp_path / "scenario.nix"
        scenario.write_text("{ ... }:\n" + body)
        result = nixeval.evaluate(nixeval.HERE / "eval.nix", nixpkgsLib=lib, scenario=scenario)
        assert result["failedAssertions"] == [], f"{example.where}: {result['failedAssertions']}"


# ---------------------------------------------------------------- shell


COMMAND = re.compile(r"(?<![\w/-])(keystone-agent|agentctl)((?:\s+[^\s|;&)\"'#`<>]+)*)")


def resolve(program: str, words: list[str]) -> list[str]:
    """Walk the click command tree along `words`; → problems (unknown commands, options)."""
    from keystone_agents.cli.agent import cli as agent_cli
    from keystone_agents.cli.ctl import VERBS, _agent_group
    from keystone_agents.cli.ctl import cli as ctl_cli

    command: click.Command = agent_cli if program == "keystone-agent" else ctl_cli
    ctx = click.Context(command, info_name=program, resilient_parsing=True)
    chain = [command]
    problems = []
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            option = next((p for c in reversed(chain) for p in c.params
                           if isinstance(p, click.Option) and (name in p.opts or name in p.secondary_opts)), None)
            if option is None and name not in ("-h", "--help", "--version"):
                if getattr(chain[-1], "context_settings", {}).get("ignore_unknown_options"):
                    break  # a passthrough verb: the rest goes to another program
                problems.append(f"{program} {' '.join(words)}: unknown option {name}")
            elif option is not None and not option.is_flag and "=" not in word and not option.count:
                index += 1
            continue
        current = chain[-1]
        if isinstance(current, click.Group):
            sub = current.get_command(ctx, word)
            if sub is None and current is ctl_cli:
                sub = _agent_group(word)  # agentctl AGENT …: any agent name
            if sub is None:
                problems.append(f"{program} {' '.join(words)}: no command {word!r}")
                break
            chain.append(sub)
            if sub is not ctl_cli and program == "agentctl" and word in VERBS and \
                    sub.context_settings.get("ignore_unknown_options"):
                break  # forwarded verbatim to keystone-agent / systemctl
        # else: a positional argument
    return problems


@pytest.mark.parametrize("example", by_lang("sh"), ids=str)
def test_shell_examples(example, tmp_path):
    syntax = subprocess.run(["bash", "-n"], input=example.body, capture_output=True, text=True)
    assert syntax.returncode == 0, f"{example.where}: {syntax.stderr}"
    problems = []
    for raw in example.body.splitlines():
        line = raw.split(" #", 1)[0] if not raw.lstrip().startswith("#") else ""
        first = line.split()[:1]
        if first and first[0].startswith("scripts/"):
            script = REPO / first[0]
            if not (script.is_file() and os.access(script, os.X_OK)):
                problems.append(f"{first[0]} is not an executable script of the repository")
        for match in COMMAND.finditer(line):
            words = shlex.split(match.group(2), posix=True)
            problems += resolve(match.group(1), words)
    assert problems == [], f"{example.where}: {problems}"


def test_the_command_checker_catches_drift():
    assert resolve("keystone-agent", ["task", "add", "x", "--description", "y"]) == []
    assert resolve("keystone-agent", ["lop"]) != []
    assert resolve("keystone-agent", ["runs", "--kinds", "coding"]) != []
    assert resolve("agentctl", ["drago", "pause", "--anything"]) == []
    assert resolve("agentctl", ["list", "--jsn"]) != []
