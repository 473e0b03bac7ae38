"""Optional LLM triage of free-text items (off by default: config `llmTriage`).

The ingest stage's provider is asked, per item, for one JSON object
{"actionable": bool, "name": str, "description": str, "project": str|null}. The answer is checked against
ANSWER_SCHEMA; an invalid answer (or a failed call) falls back to deterministic ingest with an event. The
model never writes TASKS.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path

from keystone_agents.loop.ingest import Item, slug
from keystone_agents.profiles import resolve
from keystone_agents.providers import ProviderError, get
from keystone_agents.providers.claude import last_json_object
from keystone_agents.providers.process import RunOptions

ANSWER_SCHEMA = {
    "type": "object",
    "required": ["actionable", "name", "description"],
    "properties": {
        "actionable": {"type": "boolean"},
        "name": {"type": "string", "minLength": 1},
        "description": {"type": "string", "minLength": 1},
        "project": {"type": ["string", "null"]},
    },
}

PROMPT = """You triage incoming items for an autonomous agent's task queue.
Answer with ONE JSON object and nothing else:
{{"actionable": true|false, "name": "kebab-case-task-name", "description": "what to do", "project": "<slug or null>"}}
Known project slugs: {projects}
Source: {source}
Item:
{text}
"""


def answer_problems(answer) -> list[str]:
    from jsonschema import Draft202012Validator

    return [e.message for e in Draft202012Validator(ANSWER_SCHEMA).iter_errors(answer)]


class Triage:
    def __init__(self, config, projects: list[str], log, log_path: Path, env: dict, cwd: Path):
        self.config, self.projects, self.log = config, projects, log
        self.log_path, self.env, self.cwd = log_path, env, cwd
        self.runtime = resolve(config, "ingest")

    def __call__(self, item: Item):
        prompt = PROMPT.format(projects=", ".join(self.projects) or "(none)", source=item.source,
                               text=item.description[:8000])
        try:
            if not Path(self.cwd).is_dir():  # providers run in the agent space (notesDir)
                raise ProviderError(f"agent space {self.cwd} does not exist")
            provider = get(self.runtime.provider, self.config)
            result = provider.run(prompt, self.runtime, RunOptions(
                log_path=self.log_path, timeout=min(self.config.task_timeout_seconds, 300),
                kill_grace=self.config.kill_grace_seconds, env=self.env, cwd=self.cwd))
        except ProviderError as exc:
            self._fallback(item, str(exc))
            return None
        answer = None
        if result.succeeded:
            answer = last_json_object(result.answer or result.output)
        problems = answer_problems(answer) if answer is not None else ["no JSON object in the answer"]
        if not result.succeeded:
            problems = [f"provider failed: {result.message or result.exit_code}"]
        if problems:
            self._fallback(item, "; ".join(problems))
            return None
        if not answer["actionable"]:
            self.log.info("log", msg=f"triage: item {item.source_ref} is not actionable", step="ingest",
                          source_ref=item.source_ref)
            return False
        project = answer.get("project")
        return {
            "name": slug(answer["name"]) or item.title,
            "description": answer["description"],
            "project": project if project in self.projects else None,
        }

    def _fallback(self, item: Item, why: str) -> None:
        self.log.warning("log", msg="triage answer invalid; ingesting deterministically", step="ingest",
                         status="degraded", source_ref=item.source_ref, reason=why[:300])


def dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False)
