"""The email source: new messages from the configured IMAP folders, as task items.

What the agent has seen is tracked by UIDVALIDITY + UID per folder in the state dir (`email-imap.json`), never
by the \\Seen flag: folders are opened read-only (EXAMINE) and bodies fetched with BODY.PEEK, so a human reading
the mailbox hides nothing from the agent and the agent marks nothing read. The state advances only when the
loop has saved the tasks (`FetchResult.commit`), so a crash between fetch and ingest loses nothing; a
UIDVALIDITY change (the folder was recreated) rereads the folder, and ingest's dedup by `source_ref`
(email-<Message-ID>-<sender>) keeps every message a single task.

Automatic mail (Auto-Submitted, List-Id, Precedence bulk|list|junk, no-reply senders) is skipped; each skip is
an event and a line in `email-skipped.jsonl` with the reason.
"""

from __future__ import annotations

import imaplib
import json
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keystone_agents.sources.base import FetchResult, SourceFailed

STATE_FILE = "email-imap.json"
MESSAGES_FILE = "email-messages.json"  # Message-ID → References, for replies (mail send)
SKIPPED_FILE = "email-skipped.jsonl"
MESSAGES_KEPT = 2000
DEFAULT_PORTS = {"tls": 993, "starttls": 143, "none": 143}
TIMEOUT = 60


def transient_connect_error(exc: BaseException) -> bool:
    """A connect worth repeating: refused, reset, unreachable or timed out — not a TLS certificate problem."""
    if isinstance(exc, (ssl.SSLCertVerificationError, ssl.CertificateError)):
        return False
    return isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)) or (
        isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError) and exc.errno is not None)


def read_secret(path: str) -> str:
    with open(Path(path).expanduser(), encoding="utf-8") as handle:
        return handle.read().rstrip("\r\n")


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(Path(ca_file).expanduser()) if ca_file else None)


def mail_id(message_id: str, uidvalidity: int, uid: int) -> str:
    """The <id> of email-<id>-<sender>: the Message-ID without brackets (stable when a folder is rebuilt),
    else UIDVALIDITY.UID."""
    bare = message_id.strip().strip("<>")
    return bare if bare else f"{uidvalidity}.{uid}"


def _quote_folder(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _untagged(imap: imaplib.IMAP4, name: str) -> int | None:
    _, values = imap.response(name)
    for value in values or []:
        if value:
            try:
                return int(value)
            except ValueError:
                pass
    return None


@dataclass
class ImapSource:
    settings: Any  # config.MailSettings
    state_dir: Path
    name: str = "email"
    project: str | None = None
    log: Any = None
    max_per_run: int = 50
    timeout: float = TIMEOUT
    skipped: list[dict] = field(default_factory=list)

    # -------------------------------------------------------------- connection

    def _endpoint(self) -> tuple[str, int, str]:
        imap = self.settings.imap
        if imap is None:
            raise SourceFailed("mail.imap is not configured")
        security = imap.security or "tls"
        return imap.host, imap.port or DEFAULT_PORTS[security], security

    def connect(self) -> imaplib.IMAP4:
        host, port, security = self._endpoint()
        context = tls_context(self.settings.ca_file)
        from keystone_agents import retry

        def open_connection() -> imaplib.IMAP4:
            if security == "tls":
                return imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=self.timeout)
            connection = imaplib.IMAP4(host, port, timeout=self.timeout)
            if security == "starttls":
                connection.starttls(ssl_context=context)
            return connection

        try:  # refused, reset or timed-out connects are retried (retry.py); certificate and login errors are not
            imap = retry.call(open_connection, transient_connect_error, deadline=time.monotonic() + 2 * self.timeout,
                              on_retry=lambda n, exc, delay: self._event(
                                  f"IMAP {host}:{port}: {exc}; retrying in {delay:.1f}s (attempt {n + 1})"))
        except (OSError, imaplib.IMAP4.error, ssl.SSLError) as exc:
            raise SourceFailed(f"cannot connect to IMAP {host}:{port} ({security}): {exc}") from None
        user = self.settings.user or self.settings.address
        if not self.settings.password_file:
            imap.shutdown()
            raise SourceFailed("mail.passwordFile is not configured")
        try:
            password = read_secret(self.settings.password_file)
        except OSError as exc:
            imap.shutdown()
            raise SourceFailed(f"cannot read mail.passwordFile {self.settings.password_file}: {exc.strerror}") from None
        try:
            imap.login(user, password)
        except imaplib.IMAP4.error as exc:
            imap.shutdown()
            detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            raise SourceFailed(f"IMAP login failed for {user}: {detail}") from None
        return imap

    # -------------------------------------------------------------- state

    @property
    def account(self) -> str:
        host, port, _ = self._endpoint()
        return f"{self.settings.user or self.settings.address}@{host}:{port}"

    def load_state(self) -> dict:
        try:
            data = json.loads((self.state_dir / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("account") != self.account:
            return {}  # another account: start over (dedup by source_ref still holds)
        return data.get("folders") or {}

    # -------------------------------------------------------------- fetch

    def fetch(self) -> FetchResult:
        from keystone_agents.mail.parse import parse_message, task_item

        started = time.monotonic()
        state = self.load_state()
        new_state: dict[str, dict] = {}
        items: list[dict] = []
        index: dict[str, dict] = {}
        self.skipped = []
        budget = self.max_per_run
        imap = self.connect()
        try:
            for folder in self.settings.folders or ["INBOX"]:
                try:
                    status, data = imap.select(_quote_folder(folder), readonly=True)
                except (imaplib.IMAP4.error, OSError) as exc:
                    raise SourceFailed(f"cannot open IMAP folder {folder!r}: {exc}") from None
                if status != "OK":
                    self._event(f"IMAP folder {folder!r} skipped: {data[0].decode(errors='replace') if data else status}",
                                folder=folder)
                    continue
                uidvalidity = _untagged(imap, "UIDVALIDITY") or 0
                seen = state.get(folder) or {}
                last_uid = int(seen.get("last_uid") or 0)
                if seen and int(seen.get("uidvalidity") or 0) != uidvalidity:
                    self._event(f"IMAP folder {folder!r}: UIDVALIDITY changed "
                                f"({seen.get('uidvalidity')} → {uidvalidity}); rereading it", folder=folder)
                    last_uid = 0
                status, data = imap.uid("SEARCH", None, f"UID {last_uid + 1}:*")
                uids = sorted(int(u) for u in (data[0] or b"").split() if int(u) > last_uid) if status == "OK" else []
                taken = uids[:budget] if budget > 0 else []
                budget -= len(taken)
                for uid in taken:
                    raw = self._fetch_one(imap, uid)
                    last_uid = uid
                    if raw is None:
                        self._skip(folder, uid, {}, "message vanished before it was read")
                        continue
                    try:
                        mail = parse_message(raw)
                    except Exception as exc:  # noqa: BLE001 - one unreadable message stays one
                        self._skip(folder, uid, {}, f"cannot parse: {type(exc).__name__}")
                        continue
                    if mail.message_id:
                        index[mail.message_id] = {"references": mail.references, "subject": mail.subject,
                                                  "from": mail.from_addr}
                    if mail.auto_reason:
                        self._skip(folder, uid, {"message_id": mail.message_id, "from": mail.from_addr,
                                                 "subject": mail.subject}, mail.auto_reason)
                        continue
                    if not mail.from_addr:
                        self._skip(folder, uid, {"message_id": mail.message_id, "subject": mail.subject},
                                   "no sender address")
                        continue
                    items.append(task_item(mail, mail_id(mail.message_id, uidvalidity, uid),
                                           {"folder": folder, "uid": uid, "uidvalidity": uidvalidity}))
                new_state[folder] = {"uidvalidity": uidvalidity, "last_uid": last_uid,
                                     "pending": len(uids) - len(taken)}
        except (imaplib.IMAP4.error, OSError, socket.timeout) as exc:
            raise SourceFailed(f"IMAP error: {exc}") from None
        finally:
            try:
                imap.logout()
            except (imaplib.IMAP4.error, OSError):
                pass
        for folder, values in state.items():
            new_state.setdefault(folder, values)
        skipped = list(self.skipped)

        def commit() -> None:
            self._commit(new_state, index, skipped)

        return FetchResult(self.name, self.project, items, time.monotonic() - started, commit=commit)

    def _fetch_one(self, imap: imaplib.IMAP4, uid: int) -> bytes | None:
        status, data = imap.uid("FETCH", str(uid), "(BODY.PEEK[])")
        if status != "OK":
            return None
        for part in data or []:
            if isinstance(part, tuple) and len(part) >= 2 and re.search(rb"BODY\[\]", part[0] or b""):
                return part[1]
        return None

    def _skip(self, folder: str, uid: int, fields: dict, reason: str) -> None:
        record = {"folder": folder, "uid": uid, **fields, "reason": reason}
        self.skipped.append(record)
        self._event(f"email skipped: {reason}", folder=folder, uid=uid, reason=reason,
                    message_id=fields.get("message_id", ""), sender=fields.get("from", ""))

    def _event(self, msg: str, **fields) -> None:
        if self.log is not None:
            self.log.info("log", msg=msg, step="prefetch", source=self.name, **fields)

    def _commit(self, folders: dict, index: dict, skipped: list[dict]) -> None:
        from keystone_agents.atomic import write_atomic
        from keystone_agents.timeutil import iso_z

        self.state_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.state_dir / STATE_FILE,
                     json.dumps({"account": self.account, "folders": folders}, indent=2, sort_keys=True) + "\n")
        if index:
            path = self.state_dir / MESSAGES_FILE
            try:
                known = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                known = {}
            known = {**(known if isinstance(known, dict) else {}), **index}
            if len(known) > MESSAGES_KEPT:
                known = dict(list(known.items())[-MESSAGES_KEPT:])
            write_atomic(path, json.dumps(known, ensure_ascii=False) + "\n")
        if skipped:
            now = iso_z()
            with open(self.state_dir / SKIPPED_FILE, "a", encoding="utf-8") as handle:
                for record in skipped:
                    handle.write(json.dumps({"at": now, **record}, ensure_ascii=False) + "\n")
