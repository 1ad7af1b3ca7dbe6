"""Start Debian's pgbouncer in transaction pooling mode in front of the test server.

`run_pgbouncer(server_url)` is a context manager that yields a running `PgBouncer` on a
free 127.0.0.1 port and stops it afterwards. Its admin console speaks only the simple
query protocol, which asyncpg never uses, so `PgBouncer.show()` talks to it directly.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kith.platform.db import connect_kwargs

PGBOUNCER = "/usr/sbin/pgbouncer"
ADMIN_USER = "pgbouncer_admin"


class PgBouncerError(RuntimeError):
    pass


@dataclass
class PgBouncer:
    port: int
    server_user: str
    folder: Path
    process: subprocess.Popen[bytes]

    def url(self, database: str) -> str:
        """A client URL through pgbouncer (any password is accepted: auth_type = any)."""
        return f"postgresql://{self.server_user}@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def show(self, what: str) -> list[dict[str, str | None]]:
        """Run `SHOW <what>` on the admin console (POOLS, STATS, SERVERS, ...)."""
        return await _simple_query(self.port, ADMIN_USER, "pgbouncer", f"SHOW {what}")


def available() -> bool:
    return Path(PGBOUNCER).exists()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as(server_url: str) -> str | None:
    """pgbouncer refuses to run as root; pick the account that owns the server."""
    if os.geteuid() != 0:
        return None
    host = str(connect_kwargs(server_url)["host"])
    candidates = ["embedded_postgres", "postgres"] if host.startswith("/") else ["postgres", "nobody"]
    for name in candidates:
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PgBouncerError("running as root and no unprivileged account (postgres, nobody) to run pgbouncer")


def _config(server_url: str, port: int, folder: Path, pool_size: int) -> str:
    server = connect_kwargs(server_url)
    target = f"host={server['host']} port={server['port']} user={server['user']}"
    if server["password"]:
        target += f" password={server['password']}"
    # search_path is a startup parameter pgbouncer does not track: asyncpg sends it, and
    # pgbouncer would refuse the client without this (the server default is public anyway).
    return f"""\
[databases]
* = {target}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
admin_users = {ADMIN_USER}
pool_mode = transaction
default_pool_size = {pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_db_connections = {pool_size}
max_client_conn = 2000
ignore_startup_parameters = search_path,extra_float_digits
server_reset_query =
logfile = {folder / 'pgbouncer.log'}
pidfile = {folder / 'pgbouncer.pid'}
log_connections = 0
log_disconnections = 0
"""


@contextmanager
def run_pgbouncer(server_url: str, *, pool_size: int = 4, start_timeout: float = 10.0) -> Iterator[PgBouncer]:
    """A pgbouncer (transaction pooling, `pool_size` server connections per database)
    in front of the server of `server_url`, stopped and cleaned up on exit."""
    if not available():
        raise PgBouncerError(f"{PGBOUNCER} is not installed (apt-get install -y pgbouncer)")
    user = _run_as(server_url)
    folder = Path(tempfile.mkdtemp(prefix="kith-pgbouncer-"))
    port = _free_port()
    config = folder / "pgbouncer.ini"
    config.write_text(_config(server_url, port, folder, pool_size))
    argv = [PGBOUNCER, str(config)]
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (folder, config):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        argv[1:1] = ["-u", user]
    server_user = str(connect_kwargs(server_url)["user"])
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    bouncer = PgBouncer(port=port, server_user=server_user, folder=folder, process=process)
    try:
        _wait_listening(bouncer, start_timeout)
        yield bouncer
    finally:
        _stop(process)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_listening(bouncer: PgBouncer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bouncer.process.poll() is not None:
            err = bouncer.process.stderr.read().decode(errors="replace") if bouncer.process.stderr else ""
            raise PgBouncerError(f"pgbouncer exited with {bouncer.process.returncode}: {err}{bouncer.log()}")
        try:
            with socket.create_connection(("127.0.0.1", bouncer.port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise PgBouncerError(f"pgbouncer did not listen on {bouncer.port} within {timeout}s: {bouncer.log()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    if process.stderr is not None:
        process.stderr.close()


async def _simple_query(port: int, user: str, database: str, sql: str) -> list[dict[str, str | None]]:
    """One query over PostgreSQL's simple query protocol (protocol 3.0), rows as text."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        params = f"user\0{user}\0database\0{database}\0\0".encode()
        writer.write(struct.pack("!ii", 8 + len(params), 196608) + params)
        await _until_ready(reader)
        body = sql.encode() + b"\0"
        writer.write(b"Q" + struct.pack("!i", 4 + len(body)) + body)
        columns: list[str] = []
        rows: list[dict[str, str | None]] = []
        while True:
            kind, payload = await _message(reader)
            if kind == b"T":
                columns = _row_description(payload)
            elif kind == b"D":
                rows.append(dict(zip(columns, _data_row(payload), strict=True)))
            elif kind == b"E":
                raise PgBouncerError(f"admin console: {_error_text(payload)}")
            elif kind == b"Z":
                return rows
    finally:
        writer.write(b"X" + struct.pack("!i", 4))
        writer.close()
        await writer.wait_closed()


async def _message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readexactly(5)
    (length,) = struct.unpack("!i", head[1:])
    return head[:1], await reader.readexactly(length - 4)


async def _until_ready(reader: asyncio.StreamReader) -> None:
    while True:
        kind, payload = await _message(reader)
        if kind == b"R" and struct.unpack("!i", payload[:4])[0] != 0:
            raise PgBouncerError("admin console asked for a password; expected auth_type = any")
        if kind == b"E":
            raise PgBouncerError(f"admin console: {_error_text(payload)}")
        if kind == b"Z":
            return


def _row_description(payload: bytes) -> list[str]:
    (count,) = struct.unpack("!h", payload[:2])
    names: list[str] = []
    pos = 2
    for _ in range(count):
        end = payload.index(b"\0", pos)
        names.append(payload[pos:end].decode())
        pos = end + 1 + 18  # table oid, column no, type oid, size, modifier, format
    return names


def _data_row(payload: bytes) -> list[str | None]:
    (count,) = struct.unpack("!h", payload[:2])
    values: list[str | None] = []
    pos = 2
    for _ in range(count):
        (length,) = struct.unpack("!i", payload[pos : pos + 4])
        pos += 4
        if length < 0:
            values.append(None)
        else:
            values.append(payload[pos : pos + length].decode())
            pos += length
    return values


def _error_text(payload: bytes) -> str:
    fields = [part[1:].decode(errors="replace") for part in payload.split(b"\0") if part]
    return "; ".join(fields)
