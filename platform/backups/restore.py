"""Restoring a backup into a new schema, checking it, and switching a tenant over to it.

All in one transaction on a direct connection, so a corrupted or truncated archive, a mismatch
with the manifest, or a crash leaves nothing behind (no half-restored schema, nothing switched):

1. create the schema `t_<id>_r<time>` and run the tenant migrations up to the manifest's version
   in it (the tables, and the rows migrations seed, which are truncated again);
2. with user triggers disabled (the audit log's append-only guard, the deal totals, which are
   restored as they were) and foreign keys dropped (re-added, so re-checked, afterwards), COPY
   each table in, binary, straight from the decrypting, decompressing reader;
3. set every sequence to where the backup found it (and at least max(column) of its owner);
4. read every table back out with the same COPY and compare row count and SHA-256 with the
   manifest;
5. with `switch`: migrate the restored schema forward to the current version, take the tenant's
   exclusive advisory lock (waits for the tenant's in-flight transactions, holds new ones back),
   rename `t_<id>` to `t_<id>_old_<time>` (kept until an operator drops it) and the restored
   schema to `t_<id>`, and record the version.

`verify_latest` does 1-4 for the newest backup in a scratch schema and rolls it all back.
"""

from __future__ import annotations

import asyncio
import hashlib
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
    BackupCorrupted,
    BackupError,
    corrupted_message,
)
from kith.platform.backups.snapshot import SCHEMA_RELATIONS, Progress, live_tenant, quiet, tenant_tables
from kith.platform.backups.storage import BackupNotFound, Storage, backup_storage, check_backup_id, threaded
from kith.platform.db import TENANT_LOCK_CLASS, connect_raw, tenant_schema
from kith.platform.migrations.runner import grant_app, latest_version, tenant_migrations, tenant_sql_since


class BackupMismatch(BackupError):
    """The restored data does not match the backup's manifest."""


@dataclass
class RestoreResult:
    backup_id: str
    tenant_id: int
    schema: str  # where the restored data lives now ("" after a verify: rolled back)
    manifest: dict[str, Any]
    switched: bool = False
    old_schema: str | None = None
    version: int = 0
    seconds: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _stamp() -> str:
    return f"{datetime.now(UTC):%Y%m%d%H%M%S}"


async def _bytes_of(reader: ArchiveReader, digest: Any) -> AsyncIterator[bytes]:
    for chunk in reader.table_data():
        digest.update(chunk)
        yield chunk


async def _load(conn: asyncpg.Connection, reader: ArchiveReader, tenant_id: int, schema: str,
                progress: Progress) -> dict[str, Any]:
    """Steps 1-4 inside the caller's transaction; returns the manifest."""
    head = reader.expect_json(KIND_HEADER)
    if int(head.get("tenant_id", -1)) != tenant_id:
        raise BackupError(f"backup {reader.backup_id} belongs to another workspace")
    migrations = tenant_migrations()
    version = int(head["schema_version"])
    if version > latest_version(migrations):
        raise BackupError(f"backup {reader.backup_id} was made at schema version {version}, newer than this "
                          f"Kith's {latest_version(migrations)}: upgrade Kith first")
    progress(f"restoring backup {reader.backup_id} into {schema} (schema version {version})")
    await conn.execute(f"CREATE SCHEMA {schema}")
    await conn.execute(f"SET LOCAL search_path TO {schema}, pg_temp")
    await conn.execute(tenant_sql_since([m for m in migrations if m.version <= version], 0))
    tables = await tenant_tables(conn, schema)
    if sorted(tables) != sorted(head["tables"]):
        raise BackupError(f"backup {reader.backup_id} lists tables that schema version {version} does not have")
    fks = await conn.fetch(
        "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) AS def FROM pg_constraint k"
        f" JOIN ({SCHEMA_RELATIONS}) c ON c.oid = k.conrelid WHERE k.contype = 'f' ORDER BY k.oid",
        schema, "r",
    )
    for fk in fks:
        await conn.execute(f"ALTER TABLE {_q(fk['relname'])} DROP CONSTRAINT {_q(fk['conname'])}")
    # Indexes that back no constraint are dropped and built again after the COPY: one build sorts
    # the rows once, where COPY into indexed tables updates every index row by row (the trigram
    # and character-pair GIN indexes of contacts most of all: a verified restore of a million
    # contacts took 220 s that way). Primary keys and unique constraints stay and check the rows.
    indexes = await conn.fetch(
        "SELECT ic.relname, pg_get_indexdef(i.indexrelid) AS def FROM pg_index i"
        " JOIN pg_class ic ON ic.oid = i.indexrelid"
        f" JOIN ({SCHEMA_RELATIONS}) c ON c.oid = i.indrelid"
        " WHERE NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)"
        " ORDER BY ic.relname",
        schema, "r",
    )
    for index in indexes:
        await conn.execute(f"DROP INDEX {_q(index['relname'])}")
    for table in tables:
        await conn.execute(f"ALTER TABLE {_q(table)} DISABLE TRIGGER USER")
    await conn.execute("TRUNCATE " + ", ".join(_q(t) for t in tables))
    loaded: dict[str, dict[str, Any]] = {}
    for _ in head["tables"]:
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
    if indexes:
        progress(f"building {len(indexes)} indexes")
        await conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
        for index in indexes:
            await conn.execute(index["def"])
    for fk in fks:
        await conn.execute(f"ALTER TABLE {_q(fk['relname'])} ADD CONSTRAINT {_q(fk['conname'])} {fk['def']}")
    for table in tables:
        await conn.execute(f"ALTER TABLE {_q(table)} ENABLE TRIGGER USER")
    await _reset_sequences(conn, schema, manifest.get("sequences", {}))
    await _check(conn, schema, manifest, progress)
    return manifest


async def _reset_sequences(conn: asyncpg.Connection, schema: str, saved: dict[str, int | None]) -> None:
    """Each sequence where the backup found it, and never below max(column) of the column it feeds."""
    owned = {
        r["seq"]: (r["tbl"], r["col"])
        for r in await conn.fetch(
            f"SELECT s.relname AS seq, t.relname AS tbl, a.attname AS col FROM ({SCHEMA_RELATIONS}) s"
            " JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')"
            " JOIN pg_class t ON t.oid = d.refobjid"
            " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid",
            schema, "S",
        )
    }
    names = [r["relname"] for r in await conn.fetch(SCHEMA_RELATIONS, schema, "S")]
    for seq in names:
        value = saved.get(seq)
        highest = None
        if seq in owned:
            tbl, col = owned[seq]
            highest = await conn.fetchval(f"SELECT max({_q(col)}) FROM {_q(tbl)}")
        candidates = [int(v) for v in (value, highest) if v is not None]
        if candidates:
            await conn.execute("SELECT setval($1::regclass, $2::bigint, true)", f"{schema}.{seq}", max(candidates))
        else:
            await conn.execute(f"ALTER SEQUENCE {_q(seq)} RESTART")


async def _check(conn: asyncpg.Connection, schema: str, manifest: dict[str, Any], progress: Progress) -> None:
    """Read every table back with the backup's COPY; its rows and bytes must match the manifest."""
    for table, expected in manifest["tables"].items():
        digest = hashlib.sha256()

        async def sink(chunk: bytes, digest: Any = digest) -> None:
            digest.update(chunk)

        status = await conn.copy_from_table(table, schema_name=schema, output=sink, format="binary")
        rows = int(status.split()[-1])
        if rows != int(expected["rows"]) or digest.hexdigest() != expected["sha256"]:
            raise BackupMismatch(f"restored table {table} does not match the manifest of backup "
                                 f"{manifest['backup_id']} ({rows:,} rows, expected {int(expected['rows']):,})")
    total = sum(int(t["rows"]) for t in manifest["tables"].values())
    progress(f"verified {len(manifest['tables'])} tables, {total:,} rows against the manifest")


async def _repoint_functions(conn: asyncpg.Connection, schema: str, old_name: str) -> None:
    """Functions created with `SET search_path FROM CURRENT` name their schema as text: after a
    rename, point them at the schema's new name (not at whatever now has the old one)."""
    rows = await conn.fetch(
        "SELECT p.oid::regprocedure::text AS sig, p.proconfig FROM pg_proc p JOIN pg_namespace n"
        " ON n.oid = p.pronamespace WHERE n.nspname = $1 AND p.proconfig IS NOT NULL",
        schema,
    )
    for row in rows:
        for setting in row["proconfig"]:
            name, _, value = setting.partition("=")
            if name != "search_path":
                continue
            parts = [p.strip().strip('"') for p in value.split(",")]
            if old_name in parts:
                fixed = ", ".join(_q(schema if p == old_name else p) for p in parts if p)
                await conn.execute(f"ALTER FUNCTION {row['sig']} SET search_path = {fixed}")


async def _switch(conn: asyncpg.Connection, tenant_id: int, restored: str, from_version: int,
                  progress: Progress) -> tuple[str, int]:
    """Migrate the restored schema forward and swap it in; returns (old schema's new name, version)."""
    migrations = tenant_migrations()
    latest = latest_version(migrations)
    if from_version < latest:
        await conn.execute(f"SET LOCAL search_path TO {restored}, pg_temp")
        await conn.execute(tenant_sql_since(migrations, from_version))
        progress(f"migrated {restored} from version {from_version} to {latest}")
    await conn.execute("SET LOCAL search_path TO public")
    await conn.execute("SET LOCAL lock_timeout = '30s'")
    await conn.execute("SELECT pg_advisory_xact_lock($1::int, $2::int)", TENANT_LOCK_CLASS, tenant_id)
    live = tenant_schema(tenant_id)
    old = f"{live}_old_{_stamp()}"
    await conn.execute(f"ALTER SCHEMA {live} RENAME TO {old}")
    await conn.execute(f"ALTER SCHEMA {restored} RENAME TO {live}")
    await _repoint_functions(conn, old, live)
    await _repoint_functions(conn, live, restored)
    await grant_app(conn, live)  # the restored tables are new objects: the application role's rights
    await conn.execute("UPDATE public.tenants SET schema_version = $2, updated_at = now() WHERE id = $1",
                       tenant_id, latest)
    progress(f"switched: {live} now holds the restored data; the previous data is kept in {old}")
    return old, latest


async def restore_tenant(
    tenant_id: int, backup_id: str, *, switch: bool = False, progress: Progress = quiet,
    storage: Storage | None = None, url: str | None = None,
) -> RestoreResult:
    """Restore a backup into a new schema `t_<id>_r<time>`, verified against its manifest; with
    `switch`, make it the tenant's schema (the old one is kept as `t_<id>_old_<time>`)."""
    return await _restore(tenant_id, backup_id, switch=switch, keep=True, progress=progress, storage=storage,
                          url=url)


async def verify_latest(tenant_id: int, *, progress: Progress = quiet, storage: Storage | None = None,
                        url: str | None = None) -> RestoreResult:
    """Restore the newest backup into a scratch schema, check it against its manifest, roll back."""
    store = storage or backup_storage()
    found = await asyncio.to_thread(store.manifests, tenant_id)
    if not found:
        raise BackupNotFound(f"workspace {tenant_id} has no backups yet; make one with `kith backups create`")
    return await _restore(tenant_id, str(found[0]["backup_id"]), switch=False, keep=False, progress=progress,
                          storage=store, url=url)


async def _restore(tenant_id: int, backup_id: str, *, switch: bool, keep: bool, progress: Progress,
                   storage: Storage | None, url: str | None) -> RestoreResult:
    started = time.monotonic()
    store = storage or backup_storage()
    check_backup_id(backup_id)
    tenant_id = int(tenant_id)
    schema = f"{tenant_schema(tenant_id)}_{'r' if keep else 'v'}{_stamp()}"
    conn = await connect_raw(url)
    try:
        await live_tenant(conn, tenant_id)
        async with threaded(store.reader(tenant_id, backup_id)) as src:
            tx = conn.transaction()
            await tx.start()
            try:
                reader = ArchiveReader(src, backup_id=backup_id)
                if reader.tenant_id != tenant_id:
                    raise BackupError(f"backup {backup_id} belongs to another workspace")
                manifest = await _load(conn, reader, tenant_id, schema, progress)
                result = RestoreResult(backup_id, tenant_id, schema, manifest,
                                       version=int(manifest["schema_version"]),
                                       rows={t: int(v["rows"]) for t, v in manifest["tables"].items()})
                if switch:
                    result.old_schema, result.version = await _switch(
                        conn, tenant_id, schema, int(manifest["schema_version"]), progress)
                    result.schema, result.switched = tenant_schema(tenant_id), True
            except BaseException:
                await tx.rollback()
                raise
            if keep:
                await tx.commit()
            else:
                await tx.rollback()
                result.schema = ""
                progress(f"backup {backup_id} verified; scratch schema {schema} dropped")
    finally:
        await conn.close()
    result.seconds = time.monotonic() - started
    return result
