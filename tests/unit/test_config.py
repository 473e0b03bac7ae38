"""The typed configuration: schema defaults equal dataclass defaults, clear errors, profile resolution."""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest

from keystone_agents import config as config_mod
from keystone_agents import profiles
from keystone_agents.config import Config, load_config, parse_config
from keystone_agents.problems import ValidationFailed
from keystone_agents.schemas import load_schema


def _dataclass_for(hint):
    for arg in (hint, *typing.get_args(hint)):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def _check_defaults(cls, schema, root, path=""):
    hints = typing.get_type_hints(cls)
    props = schema.get("properties", {})
    fields = {config_mod.json_key(f.name): f for f in dataclasses.fields(cls) if f.name != "source_path"}
    assert set(fields) == set(props), f"{path or 'config'}: dataclass and schema keys differ"
    for key, prop in props.items():
        f = fields[key]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if "default" in prop:
            value = default
            if dataclasses.is_dataclass(value):
                value = {}  # nested objects default to {} in the schema and to all-defaults here
                assert prop["default"] == {}, f"{path}{key}"
            assert value == prop["default"], f"{path}{key}: schema default {prop['default']!r} != {value!r}"
        sub = _dataclass_for(hints[f.name])
        if sub is not None:
            target = prop
            if "$ref" in target:
                target = root["$defs"][target["$ref"].split("/")[-1]]
            for option in target.get("anyOf", []):
                if "$ref" in option:
                    target = root["$defs"][option["$ref"].split("/")[-1]]
            if target.get("type") == "array":
                target = root["$defs"][target["items"]["$ref"].split("/")[-1]]
            _check_defaults(sub, target, root, f"{path}{key}.")


def test_dataclasses_mirror_the_schema_with_equal_defaults():
    root = load_schema("config")
    _check_defaults(Config, root, root)


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.delenv("KEYSTONE_AGENT_CONFIG", raising=False)
    monkeypatch.setenv("USER", "agent-drago")
    config = load_config(None, tmp_path)
    assert config.agent_name == "drago" and config.max_tasks == 5 and config.source_path is None


def test_env_var_and_home_file(tmp_path, monkeypatch):
    home_file = tmp_path / ".config/keystone-agent/config.json"
    home_file.parent.mkdir(parents=True)
    home_file.write_text(json.dumps({"agentName": "homeagent"}))
    monkeypatch.delenv("KEYSTONE_AGENT_CONFIG", raising=False)
    assert load_config(None, tmp_path).agent_name == "homeagent"
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"agentName": "envagent", "maxTasks": 2}))
    monkeypatch.setenv("KEYSTONE_AGENT_CONFIG", str(other))
    assert load_config(None, tmp_path).agent_name == "envagent"
    explicit = tmp_path / "explicit.json"
    explicit.write_text(json.dumps({"agentName": "explicit"}))
    assert load_config(explicit, tmp_path).agent_name == "explicit"


def test_typed_nested_values(tmp_path):
    data = {
        "agentName": "drago",
        "maxTasks": 2,
        "defaults": {"provider": "claude", "profile": "medium"},
        "execute": {"profile": "max", "fallbackModel": "opus"},
        "profiles": {"max": {"claude": {"model": "opus", "effort": "max"}, "gemini": {"model": "auto-gemini-3"}}},
        "sources": [{"name": "gh", "command": ["gh", "api", "notifications"], "timeout": 30}],
        "mail": {"address": "d@example.com", "imap": {"host": "mail", "port": 993, "security": "tls"}},
    }
    config = parse_config(data)
    assert config.execute.fallback_model == "opus"
    assert config.profiles["max"]["claude"].effort == "max"
    assert config.sources[0].command == ["gh", "api", "notifications"] and config.sources[0].timeout == 30
    assert config.mail.imap.port == 993 and config.mail.folders == ["INBOX"]


@pytest.mark.parametrize(
    "text,line,message",
    [
        ('{\n  "agentName": "d",\n  "maxTask": 5\n}\n', 3, "maxTask: unknown field 'maxTask'"),
        ('{\n  "agentName": "d",\n  "maxTasks": "five"\n}\n', 3, "maxTasks: expected integer, got string 'five'"),
        ('{\n  "agentName": "d",\n  "execute": {"provider": "gpt"}\n}\n', 3, "execute.provider: 'gpt' is not valid"),
        ('{\n  "agentName": "D R",\n  "maxTasks": 1\n}\n', 2, "agentName: 'D R' does not have the expected format"),
        ('{\n  "agentName": "d",\n  "maxTasks": -1\n}\n', 3, "maxTasks: -1 is out of range"),
        ('{\n  "agentName": "d",\n  "profiles": {"fast": {"claude": {"modle": "x"}}}\n}\n', 3,
         "profiles.fast.claude.modle: unknown field 'modle'"),
        ('{\n  "agentName": "d",\n  "maxTasks": 5,\n}\n', 4, "not valid JSON"),
    ],
)
def test_config_errors_name_file_line_and_key(tmp_path, text, line, message):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ValidationFailed) as caught:
        load_config(path, tmp_path)
    texts = [str(p) for p in caught.value.problems]
    assert any(t.startswith(f"{path}:{line}: ") and message in t for t in texts), texts


def test_missing_explicit_config_is_an_error(tmp_path):
    with pytest.raises(ValidationFailed, match="configuration file does not exist"):
        load_config(tmp_path / "nope.json", tmp_path)


def test_resolution_follows_the_seed_example():
    """The seed's researcher example: ingest on gemini/fast, prioritize claude/fast, execute claude/max."""
    config = parse_config({
        "agentName": "researcher",
        "defaults": {"provider": "claude", "profile": "medium"},
        "ingest": {"provider": "gemini", "profile": "fast"},
        "execute": {"profile": "max", "fallbackModel": "opus"},
        "profiles": {"max": {"claude": {"model": "opus", "effort": "max"}, "gemini": {"model": "auto-gemini-3"}}},
    })
    ingest = profiles.resolve(config, "ingest")
    assert (ingest.provider, ingest.profile, ingest.model) == ("gemini", "fast", "gemini-3-flash-preview")
    prioritize = profiles.resolve(config, "prioritize")
    # defaults.profile (medium) wins over the built-in stage profile
    assert (prioritize.provider, prioritize.profile, prioritize.model) == ("claude", "medium", "sonnet")
    execute = profiles.resolve(config, "execute")
    assert execute.as_dict() == {"provider": "claude", "profile": "max", "model": "opus",
                                 "fallback_model": "opus", "effort": "max"}
    task = {"profile": "medium", "provider": "claude", "model": "sonnet", "fallback_model": "opus", "effort": "high"}
    assert profiles.resolve(config, "execute", task).as_dict() == {
        "provider": "claude", "profile": "medium", "model": "sonnet", "fallback_model": "opus", "effort": "high"}


def test_builtin_stage_profiles_without_config():
    config = Config(agent_name="x")
    assert profiles.resolve(config, "ingest").as_dict() == {
        "provider": "claude", "profile": "fast", "model": "haiku", "fallback_model": "sonnet", "effort": "low"}
    assert profiles.resolve(config, "execute").model == "sonnet"
    assert profiles.resolve(config, "execute", {"provider": "gemini"}).as_dict() == {
        "provider": "gemini", "profile": "medium", "model": "auto-gemini-3", "fallback_model": None, "effort": None}


def test_profiles_merge_key_by_key():
    config = parse_config({"agentName": "x", "profiles": {"fast": {"claude": {"model": "sonnet"}},
                                                          "custom": {"codex": {"model": "o4"}}}})
    catalog = profiles.profile_catalog(config)
    assert catalog["fast"]["claude"].model == "sonnet" and catalog["fast"]["claude"].effort == "low"
    assert catalog["custom"]["codex"].model == "o4"
