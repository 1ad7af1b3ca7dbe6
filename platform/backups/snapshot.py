"""Taking a backup: one consistent snapshot of a tenant schema, COPYed out table by table.

The snapshot is one REPEATABLE READ, READ ONLY transaction on a direct connection, taken while
holding the tenant's shared advisory lock (the one `kith_enter_tenant` takes per transaction, and
the migration runner takes exclusively): it is a session lock, taken before the transaction
begins, so the snapshot is never older than a migration that was waiting for it. Each table
goes out in binary COPY straight into the archive writer; nothing holds more than a chunk and a
frame in memory. No catalog-wide work (unlike pg_dump -n), so the time does not grow with the
number of tenant schemas.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from kith.platform.backups.archive import (
    KIND_DATA,
    KIND_END,
    KIND_HEADER,
    KIND_MANIFEST,
    KIND_TABLE,
    ArchiveWriter,
    BackupError,
)
from kith.platform.backups.storage import Storage, backup_storage, threaded
from kith.platform.db import TENANT_LOCK_CLASS, connect_raw, tenant_schema

Progress = Callable[[str], None]


def quiet(_: str) -> None:
    return None


class TenantNotFound(BackupError):
    """No live tenant with that id."""


@dataclass
class BackupResult:
    backup_id: str
    tenant_id: int
    slug: str
    manifest: dict[str, Any]
    size_bytes: int
    seconds: float
    location: str

    @property
    def rows(self) -> int:
        return sum(int(t["rows"]) for t in self.manifest["tables"].values())


def new_backup_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


# A schema's own relations, found through pg_depend's index on what depends on the schema: a
# filter on pg_class by namespace reads the whole catalog, which grows with every tenant schema
# (measured: 150 ms per backup at 1,000 tenants, against 2-9 ms this way).
SCHEMA_RELATIONS = (
    "SELECT c.oid, c.relname FROM pg_depend d JOIN pg_class c ON c.oid = d.objid"
    " WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = $1::text::regnamespace"
    " AND d.classid = 'pg_class'::regclass AND c.relkind::text = $2 ORDER BY c.relname"
)


async def tenant_tables(conn: asyncpg.Connection, schema: str) -> list[str]:
    """The ordinary tables of a schema, by name."""
    return [r["relname"] for r in await conn.fetch(SCHEMA_RELATIONS, schema, "r")]


async def schema_sequences(conn: asyncpg.Connection, schema: str) -> dict[str, int | None]:
    """The sequences of a schema and their last values (None for one never used)."""
    rows = await conn.fetch(
        "SELECT s.relname, pg_sequence_last_value(s.oid) AS last_value FROM (" + SCHEMA_RELATIONS + ") s",
        schema, "S")
    return {r["relname"]: r["last_value"] for r in rows}


async def live_tenant(conn: asyncpg.Connection, tenant_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT id, slug, schema_version, status FROM public.tenants WHERE id = $1 AND status <> 'deleted'",
        int(tenant_id),
    )
    if row is None:
        raise TenantNotFound(f"no workspace with id {int(tenant_id)} (or it was deleted)")
    return row


async def backup_tenant(
    tenant_id: int, *, progress: Progress = quiet, storage: Storage | None = None, url: str | None = None
) -> BackupResult:
    """Back up one tenant schema into `storage` (default: `backup_storage()`, S3 or the local folder)."""
    store = storage or backup_storage()
    started = time.monotonic()
    schema = tenant_schema(tenant_id)
    conn = await connect_raw(url)
    try:
        await live_tenant(conn, tenant_id)
        await conn.execute("SELECT pg_advisory_lock_shared($1::int, $2::int)", TENANT_LOCK_CLASS, int(tenant_id))
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                result = await _snapshot(conn, int(tenant_id), schema, store, progress)
        finally:
            await conn.execute("SELECT pg_advisory_unlock_shared($1::int, $2::int)", TENANT_LOCK_CLASS,
                               int(tenant_id))
    finally:
        await conn.close()
    result.seconds = time.monotonic() - started
    describe = getattr(store, "describe", None)
    result.location = describe() if callable(describe) else type(store).__name__
    return result


async def _snapshot(conn: asyncpg.Connection, tenant_id: int, schema: str, store: Storage,
                    progress: Progress) -> BackupResult:
    tenant = await live_tenant(conn, tenant_id)  # as of the snapshot
    tables = await tenant_tables(conn, schema)
    if not tables:
        raise BackupError(f"workspace '{tenant['slug']}' has no tables in schema {schema}")
    sequences = await schema_sequences(conn, schema)
    now = datetime.now(UTC)
    backup_id = new_backup_id(now)
    created_at = now.isoformat(timespec="seconds")
    manifest: dict[str, Any] = {
        "format": 1, "backup_id": backup_id, "tenant_id": tenant_id, "slug": tenant["slug"],
        "schema_version": int(tenant["schema_version"]), "created_at": created_at,
        "tables": {}, "sequences": sequences,
    }
    progress(f"backing up '{tenant['slug']}' ({schema}, version {tenant['schema_version']}): "
             f"{len(tables)} tables, backup {backup_id}")
    async with threaded(store.writer(tenant_id, backup_id)) as out:
        writer = ArchiveWriter(out, tenant_id=tenant_id, backup_id=backup_id, created_at=created_at)
        writer.json_record(KIND_HEADER, {key: manifest[key] for key in
                                         ("backup_id", "tenant_id", "slug", "schema_version", "created_at")}
                           | {"tables": tables})
        await copy_tables_out(conn, writer, schema, tables, manifest, progress)
        writer.json_record(KIND_MANIFEST, manifest)
        writer.close()
        size_bytes = writer.size
    await asyncio.to_thread(store.save_manifest, tenant_id, backup_id, manifest)
    total = sum(t["rows"] for t in manifest["tables"].values())
    progress(f"backup {backup_id}: {total:,} rows, {size_bytes:,} bytes (compressed, encrypted)")
    return BackupResult(backup_id, tenant_id, str(tenant["slug"]), manifest, size_bytes, 0.0, "")


async def copy_tables_out(conn: asyncpg.Connection, writer: Any, schema: str, tables: list[str],
                          manifest: dict[str, Any], progress: Progress) -> None:
    """Each table of `schema` into the archive by binary COPY, as it streams (never a whole table in
    memory), with its row count, size and SHA-256 recorded after it and in `manifest`. Shared by the
    workspace and the platform backups."""
    for table in tables:
        digest = hashlib.sha256()
        size = 0

        async def sink(chunk: bytes, digest: Any = digest) -> None:
            nonlocal size
            digest.update(chunk)
            size += len(chunk)
            writer.record(KIND_DATA, bytes(chunk))

        writer.record(KIND_TABLE, table.encode())
        status = await conn.copy_from_table(table, schema_name=schema, output=sink, format="binary")
        rows = int(status.split()[-1])
        entry = {"rows": rows, "sha256": digest.hexdigest(), "bytes": size}
        writer.json_record(KIND_END, entry)
        manifest["tables"][table] = entry
        progress(f"  {table}: {rows:,} rows")
