"""The tamper-evident audit log: one append-only, hash-chained log per coordination backend.

Entry n is the JSON text {seq, at, actor, action, detail} (compact, keys sorted on the local broker; jsonb's
text on PostgreSQL). Its hash is sha256(hash(n-1) ‖ entry text UTF-8), from a genesis of 32 zero bytes. The
stored text is what was hashed, so verification never re-derives a canonical form. Agents append only
through the bus (never write or delete rows); admins read. `verify` is the one check for both backends: it
walks the rows in order and names the first sequence number whose row does not fit the chain (an edited
entry, an edited column, a removed or inserted row).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Iterable

GENESIS = bytes(32)


def entry_text(seq: int, at: str, actor: str, action: str, detail: dict) -> str:
    return json.dumps({"seq": seq, "at": at, "actor": actor, "action": action, "detail": detail},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev: bytes, text: str) -> bytes:
    return hashlib.sha256(prev + text.encode("utf-8")).digest()


@dataclass
class Verdict:
    ok: bool
    entries: int  # entries checked (all, when ok)
    first_bad_seq: int | None = None
    reason: str = ""
    head_seq: int = 0
    head_hash: str = GENESIS.hex()

    def to_json(self) -> dict:
        return {"ok": self.ok, "entries": self.entries, "first_bad_seq": self.first_bad_seq,
                "reason": self.reason, "head_seq": self.head_seq, "head_hash": self.head_hash}


def verify(rows: Iterable[dict], anchors: Iterable[dict] = ()) -> Verdict:
    """rows: {seq, at, actor, action, entry (text), prev_hash (hex), hash (hex)} in seq order, from seq 1.
    anchors: {seq, hash} heads recorded earlier: each must be a prefix of this chain."""
    prev, expected_seq, count = GENESIS, 1, 0
    hashes: dict[int, str] = {0: GENESIS.hex()}
    for row in rows:
        seq = int(row["seq"])
        bad = None
        if seq != expected_seq:
            bad = (expected_seq, f"sequence {expected_seq} is missing (next row is {seq})")
        elif row["prev_hash"] != prev.hex():
            bad = (seq, "prev_hash does not match the previous entry's hash")
        else:
            digest = chain_hash(prev, row["entry"])
            if digest.hex() != row["hash"]:
                bad = (seq, "the entry does not hash to its stored hash (entry edited)")
            else:
                try:
                    parsed = json.loads(row["entry"])
                except ValueError:
                    parsed = {}
                fields = {k: parsed.get(k) for k in ("seq", "actor", "action")}
                if fields != {"seq": seq, "actor": row["actor"], "action": row["action"]}:
                    bad = (seq, "the row's columns differ from its hashed entry (column edited)")
        if bad:
            return Verdict(False, count, bad[0], bad[1], expected_seq - 1, prev.hex())
        prev, expected_seq, count = bytes.fromhex(row["hash"]), expected_seq + 1, count + 1
        hashes[seq] = row["hash"]
    head_seq = expected_seq - 1
    for anchor in anchors:
        seq, want = int(anchor["seq"]), str(anchor["hash"])
        if seq > head_seq:
            return Verdict(False, count, head_seq + 1, f"anchor at seq {seq} is beyond the head {head_seq}: "
                           "entries were removed", head_seq, prev.hex())
        if hashes.get(seq) != want:
            return Verdict(False, count, seq, f"anchor at seq {seq} records hash {want[:16]}…, the chain has "
                           f"{(hashes.get(seq) or '')[:16]}…: the log was rewritten", head_seq, prev.hex())
    return Verdict(True, count, None, "", head_seq, prev.hex())
