"""sanitize.py: the one normalisation of untrusted text, name/model shapes shared with the schemas, paths that
stay inside, and command lines that a shell reads back as the intended argv."""

from __future__ import annotations

import json
import os
import shlex

import pytest
import yaml

from keystone_agents import sanitize
from keystone_agents.schemas import load_schema, validator
from keystone_agents.taskfile import TaskFile, Unrepresentable, scalar
from keystone_agents.problems import ValidationFailed

HOSTILE = ["$(touch /tmp/x)", "`id`", "; rm -rf ~", "| cat /etc/passwd", "a\nb", "--output=/tmp/x", "-rf", "--help",
           "../../etc/passwd", "/etc/passwd", "nul\x00byte", "del\x7f", "c1\x85\x9b", "esc\x1b[31mred", "\ufeffbom",
           "x" * 200_000]


@pytest.mark.parametrize("value", HOSTILE)
def test_clean_text_leaves_nothing_yaml_or_a_terminal_chokes_on(value):
    for multiline in (False, True):
        text = sanitize.clean_text(value, field="f", multiline=multiline)
        assert not any(ord(c) < 32 and c not in ("\n\t" if multiline else "") for c in text)
        assert not any(0x7f <= ord(c) <= 0x9f for c in text) and "\ufeff" not in text
        assert len(text.encode()) <= (sanitize.DESCRIPTION_MAX if multiline else sanitize.LINE_MAX)
        assert yaml.safe_load(scalar(text)) == text


def test_line_breaks_and_limits():
    assert sanitize.clean_text("a\r\nb\rc\u2028d", field="f", multiline=True) == "a\nb\nc\nd"
    assert sanitize.clean_text("a\r\nb\tc", field="f") == "a b c"
    assert sanitize.clean_text(b"bad \xff utf8", field="f") == "bad \ufffd utf8"
    capped = sanitize.clean_text("é" * 2000, field="f")  # 2 bytes each: cut at a character boundary
    assert len(capped.encode()) <= sanitize.LINE_MAX and set(capped) == {"é"}


def test_lone_surrogates_are_refused_naming_the_field():
    with pytest.raises(sanitize.UnsafeText) as caught:
        sanitize.clean_text("x\ud800y", field="subject")
    assert caught.value.field == "subject" and "U+D800" in str(caught.value)
    # text decoded with surrogateescape (undecodable bytes) is invalid UTF-8, not a surrogate: replaced
    assert sanitize.from_escaped(b"a\xffb".decode("utf-8", "surrogateescape")) == "a\ufffdb"


def test_long_descriptions_spill_to_a_file_in_the_agent_space(tmp_path):
    text = "line of text\n" * 4000  # 52 KB
    short = sanitize.clean_description(text, spill_dir=tmp_path / "texts")
    assert len(short.encode()) <= sanitize.DESCRIPTION_MAX
    [spilled] = list((tmp_path / "texts").iterdir())
    assert str(spilled) in short and spilled.read_text() == text.strip() + "\n"
    cut = sanitize.clean_description(text)
    assert len(cut.encode()) <= sanitize.DESCRIPTION_MAX and "more bytes were not kept" in cut


def test_clean_task_refuses_a_name_that_is_not_one():
    entry = sanitize.clean_task({"name": "ok-name", "description": "a\x00b", "status": "pending",
                                 "needs": ["x\x7f"], "blocked_reason": None})
    assert entry == {"name": "ok-name", "description": "ab", "status": "pending", "needs": ["x"],
                     "blocked_reason": None}
    for bad in ("../x", "-rf", "x" * 65, "Caps"):
        with pytest.raises(sanitize.UnsafeText):
            sanitize.clean_task({"name": bad, "description": "d", "status": "pending"})


def test_names_are_bounded():
    assert len(sanitize.slug("word " * 40)) <= sanitize.NAME_MAX
    name = sanitize.bounded_name("a" * 70, "-2026-01-05")
    assert len(name) == sanitize.NAME_MAX and name.endswith("-2026-01-05")


def test_the_schemas_carry_sanitize_patterns():
    """One definition: the shapes in the schemas are sanitize's (model, name, workflow)."""
    config = load_schema("config")["$defs"]
    assert config["modelName"]["pattern"] == sanitize.MODEL_PATTERN
    assert config["profileName"]["pattern"] == sanitize.NAME_PATTERN
    assert config["workflowName"]["pattern"] == sanitize.WORKFLOW_PATTERN
    task = load_schema("tasks")["$defs"]["task"]["properties"]
    assert task["model"]["pattern"] == task["fallback_model"]["pattern"] == sanitize.MODEL_PATTERN
    assert task["name"]["pattern"] == task["project"]["pattern"] == task["profile"]["pattern"] == sanitize.NAME_PATTERN
    assert task["workflow"]["pattern"] == sanitize.WORKFLOW_PATTERN
    assert task["name"]["maxLength"] == sanitize.NAME_MAX


@pytest.mark.parametrize("model", ["-rf", "--output=/tmp/x", "--help", "a b", "$(id)", "x;y"])
def test_no_option_can_be_a_model(model):
    assert not validator("tasks", "task").is_valid({"name": "a", "description": "d", "status": "pending",
                                                    "model": model})
    from keystone_agents.config import parse_config

    with pytest.raises(ValidationFailed) as caught:
        parse_config({"agentName": "demo", "execute": {"model": model}}, "config.json")
    assert "execute.model" in str(caught.value.problems[0])


@pytest.mark.parametrize("model", ["sonnet", "claude-sonnet-4-5", "gpt-5-codex", "qwen3:4b", "ollama/llama3:8b",
                                   "sonnet[1m]", "models/gemini-2.5-pro"])
def test_real_model_names_stay_valid(model):
    assert validator("tasks", "task").is_valid({"name": "a", "description": "d", "status": "pending", "model": model})


def test_inside_refuses_traversal_absolute_and_symlink_escapes(tmp_path):
    base = tmp_path / "repos"
    base.mkdir()
    assert sanitize.inside(base, "owner", "repo", field="repo") == base / "owner" / "repo"
    for bad in ("..", "../x", "/etc", "a/../../b", "", "a\x00b"):
        with pytest.raises(sanitize.PathEscape) as caught:
            sanitize.inside(base, bad, field="repo")
        assert caught.value.field == "repo"
    (base / "link").symlink_to(tmp_path.parent)
    with pytest.raises(sanitize.PathEscape, match="leads outside"):
        sanitize.inside(base, "link", "x", field="repo")


@pytest.mark.parametrize("value", HOSTILE[:-1])
def test_command_lines_round_trip_through_shlex(value):
    value = sanitize.clean_text(value, field="f")
    argv = ["keystone-agent", "mail", "reply", "--task", value]
    assert shlex.split(sanitize.command_line(argv)) == argv


def test_the_fast_writer_escapes_what_yaml_cannot_print_and_refuses_surrogates(tmp_path):
    for value in ("a\x7fb", "c\x85d\x9f", "\ufffe\uffff\ufeff", "x\u2028y", "\x01\x1b[31m", "é 😀"):
        assert yaml.safe_load(scalar(value)) == value
    with pytest.raises(Unrepresentable):
        scalar("x\udc80")
    tf = TaskFile.load(tmp_path / "TASKS.yaml")
    tf.append({"name": "ok", "description": "keep\x7f", "status": "pending"})
    with pytest.raises(ValidationFailed) as caught:
        tf.append({"name": "bad", "description": "x\ud800", "status": "pending"})
    assert caught.value.problems[0].field == "tasks[1].description"
    tf.save()
    assert yaml.safe_load((tmp_path / "TASKS.yaml").read_text())["tasks"] == [
        {"name": "ok", "description": "keep\x7f", "status": "pending"}]
    assert json.dumps(TaskFile.load(tmp_path / "TASKS.yaml").problems) == "[]"
    assert os.path.getsize(tmp_path / "TASKS.yaml") > 0
