"""The embedded default for CLI commands: start PostgreSQL / Valkey when their URLs are unset.

The URLs of what was started are exported into os.environ, so settings read afterwards and
every child process (web server, worker) talk to the same servers.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from kith.platform.cli.common import CliError
from kith.platform.config import Settings, get_settings, reset_settings, restored_environment
from kith.platform.embedded import pid_alive

APP_ROLE = "kith_app"  # the application's role on the embedded server
DATABASE_NAME = "kith"


@dataclass
class RunningServices:
    database_url: str
    redis_url: str
    started_postgres: bool
    started_valkey: bool


def _stop_orphaned_valkey(folder: Path) -> None:
    # A `kith dev` that was killed (-9) leaves its Valkey running on the same data folder;
    # two servers appending to one AOF corrupt it, so the orphan is stopped first. Valkey
    # rewrites its process title, so it is recognised by its binary and working folder.
    pid_file = folder / "kith-valkey.pid"
    try:
        pid = int(pid_file.read_text().strip())
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        exe = Path(os.readlink(f"/proc/{pid}/exe"))
    except (OSError, ValueError):
        pid_file.unlink(missing_ok=True)
        return
    if cwd == folder and "valkey" in exe.name:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not pid_alive(pid):
                break
            time.sleep(0.05)
    pid_file.unlink(missing_ok=True)


def _start_valkey_shielded(data_dir: Path) -> Any:
    from kith.platform.embedded import start_valkey

    folder = (data_dir / "valkey").resolve()
    _stop_orphaned_valkey(folder)
    # Ctrl-C in a terminal reaches the whole foreground process group, and Valkey would stop at
    # once while the worker still drains its jobs. A blocked signal is inherited through
    # fork/exec, so Valkey starts with SIGINT blocked; we stop it with SIGTERM, children first.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        server = start_valkey(data_dir)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    if server._process is not None:
        (folder / "kith-valkey.pid").write_text(str(server._process.pid))
    return server


def _stop_valkey(server: Any, data_dir: Path) -> None:
    with suppress(Exception):
        server.stop(timeout=10.0)
    (data_dir / "valkey" / "kith-valkey.pid").resolve().unlink(missing_ok=True)


@contextmanager
def data_dir_lock(settings: Settings, what: str) -> Iterator[IO[str]]:
    """Hold an exclusive lock on KITH_DATA_DIR, so two `kith dev` never share embedded servers."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    handle = (settings.data_dir / "run.lock").open("w")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CliError(
                f"another `kith dev` or `kith serve` is already using KITH_DATA_DIR={settings.data_dir}; "
                f"stop it first, or set KITH_DATA_DIR to another folder for this {what}"
            ) from None
        yield handle
    finally:
        handle.close()


@contextmanager
def embedded_services(
    *, database: bool = True, redis: bool = True, quiet: bool = False
) -> Iterator[RunningServices]:
    """Start the embedded PostgreSQL / Valkey for whatever URL is unset, export it, stop on exit.

    The PostgreSQL cluster is shared: if a `kith dev` already runs on the same data folder,
    this attaches to it, and only the last process to let go stops it.
    """
    settings = get_settings()
    with restored_environment("DATABASE_URL", "DATABASE_DIRECT_URL", "REDIS_URL"):
        pg: Any = None
        valkey: Any = None

        def say(message: str) -> None:
            # stderr: stdout carries what a command prints for scripts (a token, a table)
            if not quiet:
                print(message, file=sys.stderr, flush=True)

        try:
            if database and not settings.database_url:
                from kith.platform.db import with_user
                from kith.platform.embedded import ensure_database, ensure_role, start_postgres

                say(f"Embedded PostgreSQL: {settings.data_dir / 'postgres'}")
                pg = start_postgres(settings.data_dir)
                url = pg.url(DATABASE_NAME)
                asyncio.run(ensure_database(url))
                asyncio.run(ensure_role(url, APP_ROLE))
                # as in production: the application connects as a role that owns nothing;
                # migrations, backups and restores as the owner
                os.environ["DATABASE_URL"] = with_user(url, APP_ROLE)
                os.environ["DATABASE_DIRECT_URL"] = url
            if redis and not settings.redis_url:
                say(f"Embedded Valkey: {settings.data_dir / 'valkey'}")
                valkey = _start_valkey_shielded(settings.data_dir)
                os.environ["REDIS_URL"] = f"{valkey.connection_url}/0"
            reset_settings()
            current = get_settings()
            yield RunningServices(
                database_url=current.database_url,
                redis_url=current.redis_url,
                started_postgres=pg is not None,
                started_valkey=valkey is not None,
            )
        finally:
            if valkey is not None:
                _stop_valkey(valkey, settings.data_dir)
                say("Stopped embedded Valkey")
            if pg is not None and pg.stop():
                say("Stopped embedded PostgreSQL")
