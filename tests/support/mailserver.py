"""A real mail system on loopback for tests: dovecot (IMAP with TLS and STARTTLS, LMTP delivery, SASL auth)
and postfix (SMTP submission with implicit TLS and STARTTLS, delivering every mail for example.test into
dovecot over LMTP), with a self-signed certificate. One instance per test session (per xdist worker), on free
high ports, in a temporary directory; stopped at the end.

postfix's master must start as root; dovecot runs as root with its own unprivileged users (`dovecot`,
`dovenull`) or, started by another user, entirely as that user. Where either cannot run the fixture skips
with the reason.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import grp
import shutil
import smtplib
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

DOMAIN = "example.test"
USERS = {"agent": "agent-secret", "tester": "tester-secret", "human": "human-secret"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


@dataclass
class MailServer:
    root: Path
    cert: Path
    imaps_port: int
    imap_port: int
    lmtp_port: int
    auth_port: int
    smtps_port: int
    submission_port: int
    passwords: dict[str, str] = field(default_factory=dict)

    def address(self, user: str) -> str:
        return f"{user}@{DOMAIN}"

    def password_file(self, user: str, directory: Path) -> Path:
        path = directory / f"{user}.password"
        path.write_text(self.passwords[self.address(user)] + "\n")
        path.chmod(0o600)
        return path

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def mail_config(self, user: str, directory: Path, imap_security="tls", smtp_security="tls", **extra) -> dict:
        """The `mail` section of an agent's configuration for `user`."""
        return {
            "address": self.address(user),
            "passwordFile": str(self.password_file(user, directory)),
            "imap": {"host": "127.0.0.1", "port": self.imaps_port if imap_security == "tls" else self.imap_port,
                     "security": imap_security},
            "smtp": {"host": "127.0.0.1",
                     "port": self.smtps_port if smtp_security == "tls" else self.submission_port,
                     "security": smtp_security},
            "caFile": str(self.cert),
            **extra,
        }

    def send(self, sender: str, to: str, subject: str, body: str = "hello", headers: dict | None = None,
             html: str | None = None, from_header: str | None = None) -> str:
        """Submit a message as `sender` (a user name) over SMTPS; returns its Message-ID."""
        import email.utils

        msg = EmailMessage()
        msg["From"] = from_header or self.address(sender)
        msg["To"] = to
        msg["Subject"] = subject
        msg["Message-ID"] = email.utils.make_msgid(domain=DOMAIN)
        msg["Date"] = email.utils.formatdate(localtime=True)
        for key, value in (headers or {}).items():
            msg[key] = value
        msg.set_content(body)
        if html is not None:
            msg.add_alternative(html, subtype="html")
        with smtplib.SMTP_SSL("127.0.0.1", self.smtps_port, context=self.context(), timeout=30) as smtp:
            smtp.login(self.address(sender), self.passwords[self.address(sender)])
            smtp.send_message(msg)
        return msg["Message-ID"]

    def imap(self, user: str) -> imaplib.IMAP4_SSL:
        client = imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=self.context(), timeout=30)
        client.login(self.address(user), self.passwords[self.address(user)])
        return client

    def messages(self, user: str, folder: str = "INBOX") -> list[bytes]:
        client = self.imap(user)
        try:
            client.select(folder, readonly=True)
            _, data = client.uid("SEARCH", None, "ALL")
            out = []
            for uid in (data[0] or b"").split():
                _, parts = client.uid("FETCH", uid, "(BODY.PEEK[])")
                out.append(next(p[1] for p in parts if isinstance(p, tuple)))
            return out
        finally:
            client.logout()

    def wait_for(self, user: str, predicate, timeout: float = 20, folder: str = "INBOX"):
        """The first message (parsed) in `user`'s folder that satisfies `predicate`, waiting for delivery."""
        import email
        import email.policy

        deadline = time.monotonic() + timeout
        while True:
            for raw in self.messages(user, folder):
                msg = email.message_from_bytes(raw, policy=email.policy.default)
                if predicate(msg):
                    return msg
            if time.monotonic() > deadline:
                return None
            time.sleep(0.2)

    def wait_count(self, user: str, count: int, timeout: float = 20, folder: str = "INBOX") -> int:
        deadline = time.monotonic() + timeout
        while True:
            n = len(self.messages(user, folder))
            if n >= count or time.monotonic() > deadline:
                return n
            time.sleep(0.2)

    def set_seen(self, user: str, folder: str = "INBOX") -> None:
        """What a human reading the mailbox does: mark every message \\Seen."""
        client = self.imap(user)
        try:
            client.select(folder)
            client.store("1:*", "+FLAGS", "(\\Seen)")
        finally:
            client.logout()

    def recreate_folder(self, user: str) -> None:
        """Give INBOX a new UIDVALIDITY keeping its messages (what a rebuilt server does): dovecot renumbers a
        Maildir whose uidlist and indexes are gone."""
        maildir = self.root / "mail" / self.address(user) / "Maildir"
        for path in maildir.glob("dovecot*"):
            path.unlink()

    def clear(self, user: str, folder: str = "INBOX") -> None:
        client = self.imap(user)
        try:
            _, count = client.select(folder)
            if int(count[0] or 0):
                client.store("1:*", "+FLAGS", "(\\Deleted)")
                client.expunge()
        finally:
            client.logout()


def _dovecot_conf(ms: MailServer, run_user: str, run_group: str, mail_uid: str, mail_gid: str) -> str:
    r = ms.root
    return f"""
base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = yes
ssl_cert = <{ms.cert}
ssl_key = <{r}/key.pem
default_internal_user = {run_user}
default_internal_group = {run_group}
default_login_user = {"dovenull" if run_user == "dovecot" else run_user}
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 0
mail_location = maildir:~/Maildir
lmtp_save_to_detail_mailbox = no
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/users
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={r}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {ms.imap_port}
  }}
  inet_listener imaps {{
    port = {ms.imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {ms.lmtp_port}
  }}
}}
service auth {{
  inet_listener auth-sasl {{
    address = 127.0.0.1
    port = {ms.auth_port}
  }}
}}
"""


POSTFIX_MASTER = """\
127.0.0.1:{smtps} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes -o smtpd_tls_security_level=encrypt -o smtpd_sasl_auth_enable=yes
127.0.0.1:{submission} inet n - n - - smtpd -o smtpd_tls_security_level=encrypt -o smtpd_sasl_auth_enable=yes
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _postfix_main(ms: MailServer) -> str:
    r = ms.root
    return f"""\
compatibility_level = 3.6
queue_directory = {r}/postfix/queue
data_directory = {r}/postfix/data
mail_owner = postfix
setgid_group = postdrop
myhostname = localhost
mydomain = localhost
myorigin = localhost
mydestination =
mynetworks = 127.0.0.0/8
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
maillog_file = /dev/stdout
alias_maps =
alias_database =
local_recipient_maps =
smtputf8_enable = no
biff = no
virtual_mailbox_domains = {DOMAIN}
virtual_transport = lmtp:inet:127.0.0.1:{ms.lmtp_port}
smtpd_tls_cert_file = {ms.cert}
smtpd_tls_key_file = {r}/key.pem
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:{ms.auth_port}
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
"""


class Unavailable(Exception):
    pass


def start(root: Path) -> tuple[MailServer, callable]:
    """Start dovecot and postfix under `root`; returns the server and a stop function. Raises Unavailable."""
    for tool in ("dovecot", "doveadm", "postfix", "openssl"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise Unavailable(f"{tool} is not installed (scripts/install-system-deps installs it)")
    if os.geteuid() != 0:
        raise Unavailable("postfix's master must start as root")
    for account in ("postfix", "dovecot", "dovenull"):
        try:
            pwd.getpwnam(account)
        except KeyError:
            raise Unavailable(f"system user {account!r} is missing (installed with the Debian packages)") from None
    root.mkdir(parents=True, exist_ok=True)
    ms = MailServer(root=root, cert=root / "cert.pem", imaps_port=free_port(), imap_port=free_port(),
                    lmtp_port=free_port(), auth_port=free_port(), smtps_port=free_port(),
                    submission_port=free_port())
    ms.passwords = {ms.address(u): p for u, p in USERS.items()}
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(root / "key.pem"), "-out", str(ms.cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    (root / "key.pem").chmod(0o600)
    (root / "users").write_text("".join(f"{a}:{{PLAIN}}{p}\n" for a, p in ms.passwords.items()))
    for sub in ("run", "state", "mail", "postfix/conf", "postfix/queue", "postfix/data"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    # every path component must be traversable by the unprivileged mail user
    for parent in [root, *root.parents]:
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o011)
    dovecot_uid = pwd.getpwnam("dovecot").pw_uid
    dovecot_gid = grp.getgrnam("dovecot").gr_gid
    os.chown(root / "mail", dovecot_uid, dovecot_gid)
    os.chown(root / "postfix/data", pwd.getpwnam("postfix").pw_uid, -1)
    (root / "dovecot.conf").write_text(_dovecot_conf(ms, "dovecot", "dovecot", "dovecot", "dovecot"))
    (root / "postfix/conf/main.cf").write_text(_postfix_main(ms))
    (root / "postfix/conf/master.cf").write_text(POSTFIX_MASTER.format(smtps=ms.smtps_port,
                                                                      submission=ms.submission_port))
    dovecot_log = open(root / "dovecot.out", "wb")
    dovecot = subprocess.Popen(["dovecot", "-F", "-c", str(root / "dovecot.conf")], stdout=dovecot_log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    postfix_log = open(root / "postfix.out", "wb")
    postfix = subprocess.Popen(["postfix", "-c", str(root / "postfix/conf"), "start-fg"], stdout=postfix_log,
                               stderr=subprocess.STDOUT, start_new_session=True)

    def stop() -> None:
        subprocess.run(["postfix", "-c", str(root / "postfix/conf"), "stop"], capture_output=True)
        try:
            postfix.wait(timeout=15)
        except subprocess.TimeoutExpired:
            postfix.kill()
        dovecot.terminate()
        try:
            dovecot.wait(timeout=15)
        except subprocess.TimeoutExpired:
            dovecot.kill()
        postfix_log.close()
        dovecot_log.close()

    ports = (ms.imaps_port, ms.imap_port, ms.lmtp_port, ms.auth_port, ms.smtps_port, ms.submission_port)
    if not all([wait_port(p) for p in ports]):
        stop()
        log = " ".join((root / name).read_text(errors="replace")[-300:]
                       for name in ("postfix.out", "dovecot.out", "dovecot.log") if (root / name).exists())
        raise Unavailable(f"mail servers did not listen: {log}")
    return ms, stop
