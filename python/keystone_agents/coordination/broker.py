"""`keystone-agent bus serve`: the local backend's broker.

It is the only process that opens the bus database (one SQLite file of the broker's own user). Every caller
is identified by the kernel (SO_PEERCRED on the accepted unix socket: the uid in effect when it connected),
mapped to an agent or admin of the host configuration; a caller the configuration does not know is refused.

Two ways to run:
- `bus serve --stdio`: serve the one connection on stdin/stdout (what a systemd socket with Accept=yes
  starts: keystone-bus.socket → keystone-bus@.service);
- `bus serve`: listen on the socket itself (a thread per connection), for hosts without socket activation.
After a send commits, the broker rewrites the receiver's wake file (<wakeDir>/<name>, world-readable), which
the receiver's comms path unit watches; after a shared-state write, the wake file of every other agent whose
exec.watchPrefixes (the host configuration's watchPrefixes) match the key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sqlite3
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from keystone_agents.agentctl import hostconfig
from keystone_agents.coordination import protocol, registry, store
from keystone_agents.coordination.base import BusError, InvalidRequest, Message, NotAllowed
from keystone_agents.problems import ValidationFailed


@dataclass(frozen=True)
class BrokerSettings:
    host_config: Path
    database: Path
    socket: Path
    wake_dir: Path

    @classmethod
    def load(cls, host_config: str | None = None, database: str | None = None, sock: str | None = None,
             wake_dir: str | None = None) -> "BrokerSettings":
        path = hostconfig.find_path(host_config)
        db = Path(database) if database else None
        local = (load_host_config(path, db.parent if db else None).coordination or {}).get("local") or {}
        return cls(path, db or Path(local.get("database") or "/var/lib/keystone-bus/bus.sqlite3"),
                   Path(sock or local.get("socket") or "/run/keystone-bus/bus.sock"),
                   Path(wake_dir or local.get("wakeDir") or "/run/keystone-bus/wake"))


VALIDATED = "host-config-validated.sha256"


def load_host_config(path: Path, state_dir: Path | None) -> hostconfig.HostConfig:
    """The host configuration, validated against its schema when it changed since the last validation (its
    hash is kept in the broker's state dir): a broker starts once per connection and must start fast."""
    import hashlib

    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return hostconfig.load(path)  # the loader's own clear error
    digest = hashlib.sha256(text.encode()).hexdigest()
    stamp = state_dir / VALIDATED if state_dir else None
    try:
        if stamp is not None and stamp.read_text(encoding="utf-8").strip() == digest:
            return dataclasses.replace(hostconfig.build(json.loads(text)), source_path=path)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    config = hostconfig.load(path)
    if stamp is not None:
        try:
            stamp.write_text(digest + "\n", encoding="utf-8")
        except OSError:
            pass
    return config


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def identify(uid: int, reg: registry.Registry) -> registry.Principal:
    user = registry.user_of_uid(uid)
    principal = reg.by_role(user) if user else None
    if principal is None:
        raise NotAllowed(f"uid {uid} ({user or 'no such user'}) is neither an agent nor an admin in the host "
                         f"configuration: the bus refuses it")
    return principal


def touch_wake(wake_dir: Path, name: str) -> None:
    """Rewrite <wake_dir>/<name> (closed after writing: systemd's PathChanged and inotify's IN_CLOSE_WRITE fire)."""
    try:
        wake_dir.mkdir(parents=True, exist_ok=True)
        path = wake_dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, f"{time.time():.6f}\n".encode())
        finally:
            os.close(fd)
    except OSError as exc:
        print(f"keystone-bus: cannot touch wake file for {name}: {exc.strerror}", file=sys.stderr)


def call(st: store.Store, op: str, args: dict):
    if op not in protocol.OPS:
        raise InvalidRequest(f"unknown op {op!r}")
    if not isinstance(args, dict):
        raise InvalidRequest("args must be an object")
    method = getattr(st, op)
    try:
        return method(**args)
    except TypeError as exc:
        raise InvalidRequest(f"bad arguments for {op}: {exc}") from None


def serve_stream(reader: BinaryIO, writer: BinaryIO, uid: int, settings: BrokerSettings) -> None:
    """Serve one connection: requests until EOF."""
    def answer(value: dict) -> None:
        writer.write(protocol.encode(value))
        writer.flush()

    try:
        reg = registry.from_host_config(load_host_config(settings.host_config, settings.database.parent))
        me = identify(uid, reg)
        conn = store.connect(settings.database)
    except BusError as exc:
        answer({"ok": False, **exc.to_json()})
        return
    except ValidationFailed as exc:
        answer({"ok": False, "error": "Unavailable", "message": f"broker: {exc.problems[0]}"})
        return
    except (sqlite3.Error, OSError) as exc:
        print(f"keystone-bus: cannot open {settings.database}: {exc}", file=sys.stderr)
        answer({"ok": False, "error": "Unavailable", "message": "the broker cannot open its database (see its log)"})
        return
    st = store.Store(conn, reg, me, wake=lambda name: touch_wake(settings.wake_dir, name))
    try:
        while True:
            line = reader.readline(protocol.LINE_MAX + 1)
            if not line:
                return
            if len(line) > protocol.LINE_MAX:
                answer({"ok": False, "error": "InvalidRequest", "message": "request too long"})
                return
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise InvalidRequest("a request is a JSON object")
                result = call(st, request.get("op"), request.get("args") or {})
                answer({"ok": True, "result": protocol.result_to_json(result)})
            except BusError as exc:
                answer({"ok": False, **exc.to_json()})
            except ValueError as exc:
                answer({"ok": False, "error": "InvalidRequest", "message": f"not a JSON request: {exc}"})
            except sqlite3.Error as exc:
                print(f"keystone-bus: database error: {exc}", file=sys.stderr)
                answer({"ok": False, "error": "Unavailable", "message": "the broker's database failed (see its log)"})
    except (BrokenPipeError, ConnectionResetError):
        return
    finally:
        conn.close()


def serve_stdio(settings: BrokerSettings) -> int:
    """One connection on fd 0/1 (systemd Accept=yes)."""
    try:
        sock = socket.socket(fileno=os.dup(0))
        if sock.family != socket.AF_UNIX:
            raise OSError("not a unix socket")
        uid = peer_uid(sock)
    except OSError as exc:
        print(f"bus serve --stdio: stdin must be the accepted unix socket ({exc}); systemd's Accept=yes socket "
              "passes it, a terminal or a pipe cannot identify the caller", file=sys.stderr)
        return 2
    with sock.makefile("rb") as reader, sock.makefile("wb") as writer:
        serve_stream(reader, writer, uid, settings)
    sock.close()
    return 0


def listen(settings: BrokerSettings, ready=None, stop: threading.Event | None = None) -> int:
    """Listen on the socket (mode 0666: authorization is by peer uid, not by file mode)."""
    path = settings.socket
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    os.chmod(path, 0o666)
    server.listen(64)
    server.settimeout(0.5)
    if ready:
        ready()
    try:
        while stop is None or not stop.is_set():
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            conn.settimeout(None)
            threading.Thread(target=_serve_accepted, args=(conn, settings), daemon=True).start()
    finally:
        server.close()
    return 0


def _serve_accepted(conn: socket.socket, settings: BrokerSettings) -> None:
    try:
        uid = peer_uid(conn)
        with conn.makefile("rb") as reader, conn.makefile("wb") as writer:
            serve_stream(reader, writer, uid, settings)
    except OSError:
        pass
    finally:
        conn.close()


__all__ = ["BrokerSettings", "listen", "serve_stdio", "serve_stream", "touch_wake", "Message"]
