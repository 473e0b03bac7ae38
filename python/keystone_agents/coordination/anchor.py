"""Audit anchors: the chain's head (seq, hash) recorded outside the database, so that whoever owns the
database cannot rewrite the log unnoticed. `keystone-agent audit anchor` (hourly, keystone-audit-anchor.timer)
writes the head as a logfmt journal event `audit_anchor seq=… hash=…` (shipped to Loki), as the gauge
keystone_audit_head_seq, and as an `audit.anchor` entry; `audit verify --anchors FILE` reads anchors back from
journal output or NDJSON and checks each is a prefix of the current chain."""

from __future__ import annotations

import json
import re
from pathlib import Path

LINE = re.compile(r"\baudit_anchor\b.*?\bseq=(\d+)\b.*?\bhash=([0-9a-f]{64})\b")


def parse_anchors(path: Path) -> list[dict]:
    """Anchors from `journalctl -u keystone-audit-anchor` output (logfmt lines) or NDJSON {seq, hash}."""
    anchors = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                data = json.loads(line)
                anchors.append({"seq": int(data["seq"]), "hash": str(data["hash"])})
                continue
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path}:{number}: not an anchor ({{\"seq\": N, \"hash\": HEX}} expected)") from None
        match = LINE.search(line)
        if match:
            anchors.append({"seq": int(match.group(1)), "hash": match.group(2)})
    return anchors


def all_rows(bus, page: int = 5000) -> list[dict]:
    rows, after = [], 0
    while True:
        chunk = bus.audit_rows(after_seq=after, limit=page)
        rows += chunk
        if len(chunk) < page:
            return rows
        after = chunk[-1]["seq"]
