"""The platform's own backup: every table of the public schema in one consistent snapshot.

Tenants' schemas hold their CRM data; the public schema holds everything else (workspaces,
identities, memberships, billing, operators, the platform audit log, the outbox...). Its backup
uses the tenants' archive format (kith.platform.backups.archive) with a data key bound to
"platform", so no tenant archive can be passed off as it or the other way round, and lives
under the `platform/` folder (or key prefix) of the same storage.

Taking it: the table list is read, then one REPEATABLE READ, READ ONLY transaction locks those
tables in ACCESS SHARE mode *before* its snapshot is frozen (LOCK takes no snapshot; the first
SELECT does), so no migration can change a table between the snapshot and its COPY; if the list
changed in between (a migration created or dropped a table), it starts again. Each table goes
out in binary COPY into the archive; the archive's header records each table's columns and
types, so a backup can be read back without the migrations that shaped it (public migrations
name `public.` explicitly and cannot be replayed elsewhere). The manifest has the public
migration version, row counts, SHA-256 of each table's COPY bytes and the sequences.

Verifying: the archive is loaded into a scratch schema `kith_platform_v<time>` (tables made from
the recorded columns), each table's rows and checksum are checked as it is read and again by
COPYing it back out, then the transaction is rolled back, which drops the scratch schema.
`restore_platform` does the same but keeps the schema (`kith_platform_r<time>`), for an
operator to inspect or copy rows from; it never touches the live public schema.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from kith.platform.backups.archive import (
    KIND_HEADER,
    KIND_MANIFEST,
    KIND_TABLE,
    ArchiveReader,
    ArchiveWriter,
    BackupCorrupted,
    BackupError,
    corrupted_message,
)
from kith.platform.backups.restore import BackupMismatch
from kith.platform.backups.snapshot import Progress, copy_tables_out, new_backup_id, quiet, tenant_tables
from kith.platform.backups.storage import (
    PLATFORM,
    BackupNotFound,
    Storage,
    backup_storage,
    check_backup_id,
    threaded,
)
from kith.platform.db import connect_raw

SCHEMA = "public"
LOCK_ATTEMPTS = 5
# what format_type() writes: names, spaces, dots, quotes, (precision, scale) and [] for arrays
_TYPE = re.compile(r'^[A-Za-z0-9_ ."(),\[\]]+$')


@dataclass
class PlatformBackupResult:
    backup_id: str
    manifest: dict[str, Any]
    size_bytes: int
    seconds: float = 0.0
    location: str = ""

    @property
    def rows(self) -> int:
        return sum(int(t["rows"]) for t in self.manifest["tables"].values())


@dataclass
class PlatformRestoreResult:
    backup_id: str
    schema: str  # where the restored tables are ("" after a verify: the scratch schema was dropped)
    manifest: dict[str, Any]
    seconds: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _stamp() -> str:
    return f"{datetime.now(UTC):%Y%m%d%H%M%S}"


async def _columns(conn: asyncpg.Connection, table: str) -> list[list[str]]:
    """The columns binary COPY writes (generated ones are left out), with their exact types."""
    rows = await conn.fetch(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a"
        " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped"
        " AND a.attgenerated = '' ORDER BY a.attnum",
        SCHEMA, table,
    )
    return [[str(r["attname"]), str(r["type"])] for r in rows]


async def _public_version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('public.schema_migrations') IS NOT NULL")
    if not exists:
        raise BackupError("the public schema has not been migrated (no public.schema_migrations): run "
                          "`kith migrate` first")
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM public.schema_migrations"))


async def backup_platform(*, progress: Progress = quiet, storage: Storage | None = None,
                          url: str | None = None) -> PlatformBackupResult:
    """Back up every table of the public schema into `storage` (default: `backup_storage()`)."""
    store = storage or backup_storage()
    started = time.monotonic()
    conn = await connect_raw(url)
    try:
        result = await _locked_snapshot(conn, store, progress)
    finally:
        await conn.close()
    result.seconds = time.monotonic() - started
    result.location = store.describe()
    return result


async def _locked_snapshot(conn: asyncpg.Connection, store: Storage, progress: Progress) -> PlatformBackupResult:
    for _ in range(LOCK_ATTEMPTS):
        listed = await tenant_tables(conn, SCHEMA)
        if not listed:
            raise BackupError("the public schema has no tables: run `kith migrate` first")
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                # LOCK and SET take no snapshot: it is frozen by the first query after them, when
                # no migration can be half-way through any of these tables
                await conn.execute("SET LOCAL lock_timeout = '60s'")
                await conn.execute("SET LOCAL search_path TO pg_catalog")  # format_type() qualifies every type
                await conn.execute("LOCK TABLE " + ", ".join(f"{SCHEMA}.{_q(t)}" for t in listed)
                                   + " IN ACCESS SHARE MODE")
                if await tenant_tables(conn, SCHEMA) == listed:
                    return await _snapshot(conn, listed, store, progress)
        except asyncpg.UndefinedTableError:
            pass  # a table was dropped between the listing and the lock: list again
        except asyncpg.LockNotAvailableError:
            raise BackupError("the public schema is locked by a long migration or maintenance (waited 60 s); "
                              "try again when it is done") from None
        progress("the public schema changed while the backup started; starting again")
    raise BackupError(f"the public schema kept changing while the backup started ({LOCK_ATTEMPTS} tries); "
                      "is a migration running? try again when it is done")


async def _snapshot(conn: asyncpg.Connection, tables: list[str], store: Storage,
                    progress: Progress) -> PlatformBackupResult:
    version = await _public_version(conn)
    columns = {table: await _columns(conn, table) for table in tables}
    sequences = {
        r["sequencename"]: r["last_value"]
        for r in await conn.fetch(
            "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = $1 ORDER BY sequencename", SCHEMA
        )
    }
    now = datetime.now(UTC)
    backup_id = new_backup_id(now)
    created_at = now.isoformat(timespec="seconds")
    manifest: dict[str, Any] = {
        "format": 1, "kind": "platform", "backup_id": backup_id, "schema": SCHEMA, "public_version": version,
        "created_at": created_at, "tables": {}, "sequences": sequences,
    }
    progress(f"backing up the platform (schema {SCHEMA}, migration version {version}): {len(tables)} tables, "
             f"backup {backup_id}")
    async with threaded(store.writer(PLATFORM, backup_id)) as out:
        writer = ArchiveWriter(out, tenant_id=PLATFORM, backup_id=backup_id, created_at=created_at)
        writer.json_record(KIND_HEADER, {"backup_id": backup_id, "kind": "platform", "schema": SCHEMA,
                                         "public_version": version, "created_at": created_at,
                                         "tables": tables, "columns": columns})
        await copy_tables_out(conn, writer, SCHEMA, tables, manifest, progress)
        writer.json_record(KIND_MANIFEST, manifest)
        writer.close()
        size_bytes = writer.size
    await asyncio.to_thread(store.save_manifest, PLATFORM, backup_id, manifest)
    total = sum(t["rows"] for t in manifest["tables"].values())
    progress(f"backup {backup_id}: {total:,} rows, {size_bytes:,} bytes (compressed, encrypted)")
    return PlatformBackupResult(backup_id, manifest, size_bytes)


async def platform_backups(storage: Storage | None = None) -> list[dict[str, Any]]:
    """The manifests of the platform's backups, newest first."""
    store = storage or backup_storage()
    return await asyncio.to_thread(store.manifests, PLATFORM)


async def verify_platform(backup_id: str | None = None, *, progress: Progress = quiet,
                          storage: Storage | None = None, url: str | None = None) -> PlatformRestoreResult:
    """Load a platform backup (default: the newest) into a scratch schema, check every table
    against the manifest, then roll back, which drops the scratch schema."""
    store = storage or backup_storage()
    if backup_id is None:
        found = await platform_backups(store)
        if not found:
            raise BackupNotFound("the platform has no backups yet; make one with `kith backups platform create`")
        backup_id = str(found[0]["backup_id"])
    return await _restore(backup_id, keep=False, progress=progress, store=store, url=url)


async def restore_platform(backup_id: str, *, progress: Progress = quiet, storage: Storage | None = None,
                           url: str | None = None) -> PlatformRestoreResult:
    """Load a platform backup into a new schema `kith_platform_r<time>`, checked against its
    manifest, and keep it there (the live public schema is not touched)."""
    return await _restore(backup_id, keep=True, progress=progress, store=storage or backup_storage(), url=url)


async def _bytes_of(reader: ArchiveReader, digest: Any) -> AsyncIterator[bytes]:
    for chunk in reader.table_data():
        digest.update(chunk)
        yield chunk


async def _restore(backup_id: str, *, keep: bool, progress: Progress, store: Storage,
                   url: str | None) -> PlatformRestoreResult:
    started = time.monotonic()
    check_backup_id(backup_id)
    schema = f"kith_platform_{'r' if keep else 'v'}{_stamp()}"
    conn = await connect_raw(url)
    try:
        async with threaded(store.reader(PLATFORM, backup_id)) as src:
            reader = ArchiveReader(src, backup_id=backup_id)
            if reader.tenant_id != PLATFORM:
                raise BackupError(f"backup {backup_id} is a workspace's backup, not the platform's")
            tx = conn.transaction()
            await tx.start()
            try:
                manifest = await _load(conn, reader, schema, progress)
            except BaseException:
                await tx.rollback()
                raise
            if keep:
                await tx.commit()
            else:
                await tx.rollback()
                progress(f"platform backup {backup_id} verified; scratch schema {schema} dropped")
    finally:
        await conn.close()
    return PlatformRestoreResult(backup_id, schema if keep else "", manifest, time.monotonic() - started,
                                 {t: int(v["rows"]) for t, v in manifest["tables"].items()})


async def _load(conn: asyncpg.Connection, reader: ArchiveReader, schema: str, progress: Progress) -> dict[str, Any]:
    head = reader.expect_json(KIND_HEADER)
    if head.get("kind") != "platform" or not isinstance(head.get("columns"), dict):
        raise BackupCorrupted(corrupted_message(reader.backup_id))
    tables: list[str] = list(head["tables"])
    progress(f"restoring platform backup {reader.backup_id} (migration version {head['public_version']}) into "
             f"{schema}")
    await conn.execute(f"CREATE SCHEMA {schema}")
    for table in tables:
        cols = head["columns"].get(table)
        if not cols or any(not _TYPE.match(str(kind)) for _, kind in cols):
            raise BackupCorrupted(corrupted_message(reader.backup_id))
        await conn.execute(f"CREATE TABLE {schema}.{_q(table)} ("
                           + ", ".join(f"{_q(str(name))} {kind}" for name, kind in cols) + ")")
    loaded: dict[str, dict[str, Any]] = {}
    for _ in tables:
        kind, name_bytes = reader.record()
        table = name_bytes.decode(errors="replace")
        if kind != KIND_TABLE or table not in tables or table in loaded:
            raise BackupCorrupted(corrupted_message(reader.backup_id))
        digest = hashlib.sha256()
        status = await conn.copy_to_table(table, schema_name=schema, source=_bytes_of(reader, digest),
                                          format="binary")
        rows = int(status.split()[-1])
        end = reader.table_end
        if rows != int(end["rows"]) or digest.hexdigest() != end["sha256"]:
            raise BackupCorrupted(corrupted_message(reader.backup_id))
        loaded[table] = {"rows": rows, "sha256": end["sha256"]}
        progress(f"  {table}: {rows:,} rows")
    manifest: dict[str, Any] = reader.expect_json(KIND_MANIFEST)
    if not reader.at_end() or sorted(manifest["tables"]) != sorted(loaded):
        raise BackupCorrupted(corrupted_message(reader.backup_id))
    for table, expected in manifest["tables"].items():
        digest = hashlib.sha256()

        async def sink(chunk: bytes, digest: Any = digest) -> None:
            digest.update(chunk)

        status = await conn.copy_from_table(table, schema_name=schema, output=sink, format="binary")
        rows = int(status.split()[-1])
        if rows != int(expected["rows"]) or digest.hexdigest() != expected["sha256"]:
            raise BackupMismatch(f"restored table {table} does not match the manifest of platform backup "
                                 f"{reader.backup_id} ({rows:,} rows, expected {int(expected['rows']):,})")
    total = sum(int(t["rows"]) for t in manifest["tables"].values())
    progress(f"verified {len(manifest['tables'])} tables, {total:,} rows against the manifest")
    return manifest
