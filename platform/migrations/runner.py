"""Kith's migration runner: two scopes (public, tenant), versioned SQL files.

- public migrations are applied once, recorded in public.schema_migrations;
- tenant migrations are rolled over every tenant schema, each tenant in one
  transaction that applies everything it lacks and bumps public.tenants.schema_version,
  so "which tenants are behind?" is one indexed query, and a runner killed half-way
  leaves every tenant either fully migrated or untouched: running it again converges;
- canary tenants go first, one by one; a failing canary stops the roll-out;
- a session advisory lock keeps two runners from ever working at the same time.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import asyncpg

from kith.platform.config import get_settings
from kith.platform.db import MIGRATION_LOCK_KEY, TENANT_LOCK_CLASS, connect_raw, tenant_schema

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

PUBLIC_PACKAGE = "kith.platform.migrations"
TENANT_PACKAGE = "kith.tenants.migrations"


class MigrationError(RuntimeError):
    pass


class MigrationLocked(MigrationError):
    """Another runner holds the migration lock."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def _load_dir(files: Sequence[tuple[str, str]]) -> list[Migration]:
    found: list[Migration] = []
    for filename, text in files:
        m = _NAME.match(filename)
        if not m:
            continue
        found.append(Migration(int(m.group(1)), m.group(2), text))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions: {versions}")
    return found


def _package_files(package: str, sub: str = "") -> list[tuple[str, str]]:
    root = resources.files(package)
    if sub:
        root = root / sub
    return [(p.name, p.read_text(encoding="utf-8")) for p in root.iterdir() if p.name.endswith(".sql")]


def public_migrations() -> list[Migration]:
    return _load_dir(_package_files(PUBLIC_PACKAGE, "public"))


def tenant_migrations(extra_dirs: Sequence[Path] = ()) -> list[Migration]:
    """The tenant migrations shipped with Kith, plus any from extra folders (benchmarks, tests)."""
    files = _package_files(TENANT_PACKAGE)
    for folder in extra_dirs:
        files += [(p.name, p.read_text(encoding="utf-8")) for p in Path(folder).glob("*.sql")]
    return _load_dir(files)


def latest_version(migrations: Sequence[Migration]) -> int:
    return migrations[-1].version if migrations else 0


def tenant_sql_since(migrations: Sequence[Migration], version: int) -> str:
    return "\n;\n".join(m.sql for m in migrations if m.version > version)


@dataclass
class TenantResult:
    tenant_id: int
    slug: str
    from_version: int
    to_version: int
    error: str = ""


@dataclass
class RolloutReport:
    public_applied: list[str] = field(default_factory=list)
    tenants_migrated: list[TenantResult] = field(default_factory=list)
    tenants_failed: list[TenantResult] = field(default_factory=list)
    canaries_failed: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.tenants_failed


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


async def _public_state(conn: asyncpg.Connection) -> dict[int, str]:
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS public.schema_migrations (
               version integer PRIMARY KEY,
               name text NOT NULL,
               checksum text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    rows = await conn.fetch("SELECT version, checksum FROM public.schema_migrations")
    return {r["version"]: r["checksum"] for r in rows}


async def apply_public(conn: asyncpg.Connection, progress: Progress = _quiet) -> list[str]:
    applied: list[str] = []
    done = await _public_state(conn)
    for mig in public_migrations():
        if mig.version in done:
            if done[mig.version] != mig.checksum:
                progress(f"warning: public migration {mig.version:04d}_{mig.name} changed after it was applied")
            continue
        async with conn.transaction():
            await conn.execute(mig.sql)
            await conn.execute(
                "INSERT INTO public.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                mig.version, mig.name, mig.checksum,
            )
        applied.append(f"{mig.version:04d}_{mig.name}")
        progress(f"public: applied {mig.version:04d}_{mig.name}")
    return applied


async def pending_tenants(conn: asyncpg.Connection, latest: int) -> list[asyncpg.Record]:
    """Tenants whose schema is behind `latest`: one indexed query."""
    return await conn.fetch(
        "SELECT id, slug, schema_version, canary FROM public.tenants"
        " WHERE schema_version < $1 AND status <> 'deleted' ORDER BY id",
        latest,
    )


async def migrate_one_tenant(
    conn: asyncpg.Connection, tenant_id: int, migrations: Sequence[Migration], lock_timeout: str = "30s"
) -> tuple[int, int]:
    """Bring one tenant schema to the latest version in one transaction. Returns (from, to)."""
    latest = latest_version(migrations)
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{lock_timeout}'")
        current = await conn.fetchval(
            "SELECT schema_version FROM public.tenants WHERE id = $1 AND status <> 'deleted' FOR UPDATE",
            tenant_id,
        )
        if current is None:
            raise MigrationError(f"tenant {tenant_id} does not exist")
        if current >= latest:
            return current, current
        # waits for the tenant's in-flight transactions, holds new ones back until commit
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", TENANT_LOCK_CLASS, tenant_id)
        await conn.execute(f"SET LOCAL search_path TO {tenant_schema(tenant_id)}, pg_temp")
        await conn.execute(tenant_sql_since(migrations, current))
        await grant_app(conn, tenant_schema(tenant_id))  # tables the migration added
        await conn.execute(
            "UPDATE public.tenants SET schema_version = $2, updated_at = now() WHERE id = $1",
            tenant_id, latest,
        )
    return current, latest


async def grant_app(conn: asyncpg.Connection, schema: str) -> None:
    """Give the application role its rights on `schema` (nothing when it is the owner role),
    through public migration 0015's function: callers run after the public migrations."""
    await conn.execute("SELECT public.kith_grant_app($1)", schema)


async def app_role_of(url: str) -> str:
    """The role the application connects as (DATABASE_URL), as the server names it."""
    conn = await connect_raw(url)
    try:
        return str(await conn.fetchval("SELECT current_user"))
    finally:
        await conn.close()


async def store_setup(conn: asyncpg.Connection, app_role: str | None, progress: Progress = _quiet) -> None:
    """Keep what the owner's functions need: the shipped tenant DDL at its latest version and
    the application role; grant that role its rights everywhere when it changed."""
    shipped = tenant_migrations()
    owner = await conn.fetchval("SELECT current_user")
    role = "" if app_role is None or app_role == owner else app_role
    async with conn.transaction():
        before = await conn.fetchval("SELECT app_role FROM public.kith_schema_setup FOR UPDATE")
        await conn.execute(
            "UPDATE public.kith_schema_setup SET tenant_version = $1, tenant_ddl = $2, app_role = $3,"
            " updated_at = now()", latest_version(shipped), tenant_sql_since(shipped, 0), role)
        await grant_app(conn, "public")
        if role and role != before:
            schemas = await conn.fetch(
                "SELECT schema_name FROM public.tenants WHERE status <> 'deleted' AND schema_name <> ''"
                " AND to_regnamespace(schema_name) IS NOT NULL ORDER BY id")
            for row in schemas:
                await grant_app(conn, row["schema_name"])
            progress(f"application role {role}: granted its rights on public and {len(schemas)} tenant schemas")


async def roll_tenants(
    migrations: Sequence[Migration],
    *,
    concurrency: int,
    canary_slugs: Sequence[str] = (),
    progress: Progress = _quiet,
    url: str | None = None,
) -> RolloutReport:
    """Apply tenant migrations to every tenant that is behind: canaries first, then the rest."""
    report = RolloutReport()
    latest = latest_version(migrations)
    lead = await connect_raw(url)
    try:
        behind = await pending_tenants(lead, latest)
    finally:
        await lead.close()
    if not behind:
        progress(f"tenants: all at version {latest}")
        return report
    canaries = [r for r in behind if r["canary"] or r["slug"] in canary_slugs]
    rest = [r for r in behind if r not in canaries]
    total = len(behind)
    done = 0
    step = max(1, total // 20)

    async def run(conn: asyncpg.Connection, row: asyncpg.Record) -> bool:
        nonlocal done
        try:
            old, new = await migrate_one_tenant(conn, row["id"], migrations)
            report.tenants_migrated.append(TenantResult(row["id"], row["slug"], old, new))
            ok = True
        except (asyncpg.PostgresError, MigrationError) as exc:
            report.tenants_failed.append(TenantResult(row["id"], row["slug"], row["schema_version"], latest, str(exc)))
            progress(f"tenant {row['slug']}: FAILED: {exc}")
            ok = False
        done += 1
        if done % step == 0 or done == total:
            progress(f"tenants: {done}/{total} migrated to version {latest}")
        return ok

    conns = [await connect_raw(url) for _ in range(max(1, min(concurrency, len(behind))))]
    try:
        for row in canaries:
            progress(f"canary {row['slug']}: version {row['schema_version']} -> {latest}")
            if not await run(conns[0], row):
                report.canaries_failed = True
                progress("canary failed: roll-out stopped, other tenants left as they were")
                return report
        queue: asyncio.Queue[asyncpg.Record] = asyncio.Queue()
        for row in rest:
            queue.put_nowait(row)

        async def worker(conn: asyncpg.Connection) -> None:
            while True:
                try:
                    row = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await run(conn, row)

        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for c in conns:
            await c.close()
    return report


async def migrate(
    *,
    concurrency: int = 4,
    canary_slugs: Sequence[str] = (),
    extra_tenant_dirs: Sequence[Path] = (),
    progress: Progress = _quiet,
    url: str | None = None,
    wait_for_lock: bool = False,
    app_role: str | None = None,
) -> RolloutReport:
    """`kith migrate`: public first, then every tenant, under one advisory lock.

    Also stores the tenant DDL for provisioning and grants the application role (DATABASE_URL's,
    or `app_role` for a database given by `url`; none when it is the owner) its rights."""
    started = time.perf_counter()
    conn = await connect_raw(url)
    try:
        if wait_for_lock:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        elif not await conn.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY):
            raise MigrationLocked("another `kith migrate` is running (advisory lock held); try again later")
        try:
            report = RolloutReport(public_applied=await apply_public(conn, progress))
            if url is None or url == get_settings().database_direct_url:
                # the configured database: its application role is DATABASE_URL's
                role = app_role or await app_role_of(get_settings().database_url)
                if get_settings().env == "production" and role == await conn.fetchval("SELECT current_user"):
                    progress(f"warning: DATABASE_URL connects as {role}, the role that owns the schemas: "
                             "audit rows are then protected by the trigger alone (see README, Configuration)")
                await store_setup(conn, role, progress)
            else:
                await store_setup(conn, app_role, progress)
            rolled = await roll_tenants(
                tenant_migrations(extra_tenant_dirs),
                concurrency=concurrency,
                canary_slugs=canary_slugs,
                progress=progress,
                url=url,
            )
            report.tenants_migrated = rolled.tenants_migrated
            report.tenants_failed = rolled.tenants_failed
            report.canaries_failed = rolled.canaries_failed
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await conn.close()
    report.seconds = time.perf_counter() - started
    return report
