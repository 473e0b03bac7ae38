"""Prometheus textfile metrics for node_exporter's textfile collector, written atomically.

Each writer (task loop, scheduler, notes sync) owns one file `keystone-agent-<component>-<agent>.prom`, and
every sample carries the labels {host, agent, unit}. The exposition text is rendered here (gauges only:
`# HELP`, `# TYPE`, one sample each) rather than through prometheus-client, whose import alone costs more
than a whole no-change loop tick; the tests parse the output with prometheus-client's own parser. The file
is replaced through a temp file and a rename, so node_exporter never reads half a file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping

from keystone_agents.atomic import write_atomic

TEXTFILE_ENV = "PROMETHEUS_TEXTFILE_DIR"
LABELS = ("host", "agent", "unit")


def textfile_dir(configured: str | None, fallback: Path) -> Path:
    """Where .prom files go: the config's textfileDir, else $PROMETHEUS_TEXTFILE_DIR, else `fallback`."""
    chosen = configured or os.environ.get(TEXTFILE_ENV)
    return Path(chosen) if chosen else fallback


def metrics_path(directory: Path, component: str, agent: str) -> Path:
    return directory / f"keystone-agent-{component}-{agent}.prom"


def _escape_label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _label_text(labels: Mapping[str, str]) -> str:
    return ",".join(f'{key}="{_escape_label(value)}"' for key, value in labels.items())


def render(labels: Mapping[str, str], samples: Mapping[str, tuple]) -> str:
    """`samples`: {name: (help, value[, type])}; `value` is a number, or a list of (extra labels, number) for a
    family with more label dimensions (a stage, a status). The type is `gauge` unless given (`counter`)."""
    lines = []
    for name, (help_text, value, *rest) in samples.items():
        kind = rest[0] if rest else "gauge"
        lines.append(f"# HELP {name} {_escape_help(help_text)}")
        lines.append(f"# TYPE {name} {kind}")
        series = value if isinstance(value, (list, tuple)) else [({}, value)]
        for extra, number in series:
            lines.append(f"{name}{{{_label_text({**labels, **extra})}}} {_number(number)}")
    return "\n".join(lines) + "\n"


def write_metrics(path: Path, labels: Mapping[str, str], samples: Mapping[str, tuple]) -> None:
    """Write `samples` ({metric name: (help, value[, type])}, see `render`) with `labels` to `path`, replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, render(labels, samples))
