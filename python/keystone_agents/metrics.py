"""Prometheus textfile metrics for node_exporter's textfile collector, written atomically.

Each writer (task loop, scheduler, notes sync) owns one file `keystone-agent-<component>-<agent>.prom`, and
every sample carries the labels {host, agent, unit}. prometheus-client renders the exposition format and
writes through a temp file and a rename, so node_exporter never reads half a file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

TEXTFILE_ENV = "PROMETHEUS_TEXTFILE_DIR"
LABELS = ("host", "agent", "unit")


def textfile_dir(configured: str | None, fallback: Path) -> Path:
    """Where .prom files go: the config's textfileDir, else $PROMETHEUS_TEXTFILE_DIR, else `fallback`."""
    chosen = configured or os.environ.get(TEXTFILE_ENV)
    return Path(chosen) if chosen else fallback


def metrics_path(directory: Path, component: str, agent: str) -> Path:
    return directory / f"keystone-agent-{component}-{agent}.prom"


def write_metrics(path: Path, labels: Mapping[str, str], samples: Mapping[str, tuple[str, float]]) -> None:
    """Write `samples` ({metric name: (help, value)}) with `labels` to `path`, replacing it atomically."""
    registry = CollectorRegistry()
    for name, (help_text, value) in samples.items():
        gauge = Gauge(name, help_text, list(labels), registry=registry)
        gauge.labels(**labels).set(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
