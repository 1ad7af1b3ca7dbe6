"""Database access: Tortoise-ORM on asyncpg, and the tenant scope.

Every tenant-scoped access runs in one transaction that starts with
`public.kith_enter_tenant(id)`, which takes a shared per-tenant advisory lock, checks the
tenant, sets `search_path` with SET LOCAL semantics and returns the tenant's schema
version. Outside a scope the search path is `public` only, so tenant tables are
unreachable (`relation "contacts" does not exist`), and a pooled connection never carries
one tenant's path into another transaction (safe behind PgBouncer's transaction pooling).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse

import asyncpg
from tortoise import Tortoise
from tortoise.backends.base.client import TransactionalDBClient
from tortoise.connection import get_connection
from tortoise.transactions import in_transaction

from kith.platform.config import Settings, get_settings

log = logging.getLogger("kith.db")

PLATFORM_MODEL_MODULES = [
    "kith.platform.tenancy.models",
    "kith.platform.identity.models",
    "kith.platform.email.models",
]

# Advisory lock class ids ('kith' and 'kmig' in ASCII), so our locks never collide with others.
TENANT_LOCK_CLASS = 0x6B697468
MIGRATION_LOCK_KEY = 0x6B6D6967


class TenantUnavailable(LookupError):
    """The tenant does not exist, or was deleted: nothing may run in its scope."""


class NestedTenantScope(RuntimeError):
    """tenant_scope was entered inside another transaction."""


class KithConnection(asyncpg.Connection):  # type: ignore[misc]
    """An asyncpg connection that remembers which tenant schemas it has touched.

    - kith_version: the schema version its cached prepared statements were planned
      against. When a scope enters a tenant at another version (during a roll-out),
      the local statement cache is dropped, so a statement planned against one
      table shape is never executed against another (asyncpg issue 103).
    - kith_schemas: tenant ids touched, so a connection is closed (and replaced by
      the pool) before its per-schema catalog cache grows past the configured limit.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kith_version: int | None = None
        self.kith_schemas: set[int] = set()
        # what the door into the tenant handed over for the current transaction (entry_facts)
        self.kith_entry: asyncpg.Record | None = None

    def get_reset_query(self) -> str:
        """Nothing to send when the pool takes the connection back (asyncpg's default is
        `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;`, one more round
        trip per transaction, which the pool's release awaits).

        No session state outlives a transaction on a pooled connection, so there is nothing to
        reset (tests/test_request_cost.py checks it):
        - the tenant's search_path, synchronous_commit, plan_cache_mode and lock settings are
          all SET LOCAL / set_config(..., true), which end with the transaction;
        - every advisory lock taken on a pooled connection is transaction-level
          (pg_advisory_xact_lock*: the tenant door, the audit chain, order numbers, pool claims,
          retention); the migration runner's session-level lock is on its own raw connection
          (connect_raw), as are the benchmarks' session SETs;
        - nothing LISTENs, and cursors (audit verify) are portals of their transaction;
        - an open transaction is still rolled back on release: asyncpg does that whatever this
          returns.
        Behind PgBouncer in transaction mode the query would not even reach the same server
        connection, so it never protected anything there. Whoever adds session state to pooled
        connections (a plain SET, LISTEN, a session advisory lock) must reset it themselves.
        """
        return ""


def connect_kwargs(url: str) -> dict[str, Any]:
    """Split a postgresql:// URL (unix socket via ?host=/dir allowed) into asyncpg arguments."""
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"DATABASE_URL must start with postgresql://, got {parsed.scheme!r}")
    query = parse_qs(parsed.query)
    host = query.get("host", [parsed.hostname or "127.0.0.1"])[0]
    return {
        "host": unquote(host),
        "port": parsed.port or int(query.get("port", ["5432"])[0]),
        "user": unquote(parsed.username or "postgres"),
        "password": unquote(parsed.password) if parsed.password else None,
        "database": unquote(parsed.path.lstrip("/")) or "postgres",
    }


def tortoise_config(settings: Settings, model_modules: list[str]) -> dict[str, Any]:
    creds = connect_kwargs(settings.database_url)
    creds.update(
        minsize=1,
        maxsize=settings.db_pool_max,
        connection_class=KithConnection,
        statement_cache_size=settings.db_statement_cache,
        server_settings={"search_path": "public", "application_name": "kith"},
    )
    return {
        "connections": {"default": {"engine": "tortoise.backends.asyncpg", "credentials": creds}},
        "apps": {"kith": {"models": PLATFORM_MODEL_MODULES + model_modules, "default_connection": "default"}},
        "use_tz": True,
        "timezone": "UTC",
    }


async def init_db(model_modules: list[str], settings: Settings | None = None) -> None:
    """Initialise Tortoise for this process (idempotent)."""
    if Tortoise.is_inited():
        return
    settings = settings or get_settings()
    await Tortoise.init(config=tortoise_config(settings, model_modules), _enable_global_fallback=True)


async def close_db() -> None:
    if Tortoise.is_inited():
        await Tortoise.close_connections()


def tenant_schema(tenant_id: int) -> str:
    """The schema of a tenant: always built from its numeric id, never from user text."""
    return f"t_{int(tenant_id)}"


def _raw(conn: Any) -> KithConnection:
    # the pool hands out a proxy; the state lives on the real connection
    return getattr(conn, "_con", None) or conn


@asynccontextmanager
async def tenant_scope(tenant_id: int) -> AsyncIterator[TransactionalDBClient]:
    """One transaction inside a tenant's schema. The only way to reach tenant tables.

    Never nested: inside another transaction it would only open a savepoint, and the
    search_path it sets would outlive it, so the rest of the outer transaction (another
    tenant's scope, or platform code) would run in this tenant's schema.
    """
    if isinstance(get_connection("default"), TransactionalDBClient):
        raise NestedTenantScope(
            f"tenant_scope({int(tenant_id)}) entered inside another transaction; "
            "finish that transaction first (tenant scopes cannot be nested)"
        )
    ctx = in_transaction("default")
    tx = await ctx.__aenter__()
    raw: KithConnection | None = None
    try:
        try:
            entry = await tx._connection.fetchrow(  # type: ignore[attr-defined]
                "SELECT * FROM public.kith_enter_tenant_v2($1)", int(tenant_id)
            )
        except asyncpg.RaiseError as exc:
            raise TenantUnavailable(str(exc)) from None
        version = entry["e_version"]
        raw = _raw(tx._connection)  # type: ignore[attr-defined]
        if raw.kith_version != version:
            raw._drop_local_statement_cache()
            raw.kith_version = version
        raw.kith_schemas.add(int(tenant_id))
        raw.kith_entry = entry
        try:
            yield tx
        finally:
            raw.kith_entry = None
    except BaseException as exc:
        await ctx.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    if raw is None or len(raw.kith_schemas) <= get_settings().db_max_schemas_per_conn:
        await ctx.__aexit__(None, None, None)
        return
    # Commit, then close before the pool can hand the connection to anyone else; the
    # context's exit then only releases it, and the pool reconnects at the next acquire.
    # Every path out goes through ctx.__aexit__, or the pool slot would leak.
    try:
        if not tx._finalized:  # the caller may have committed itself (the campaign sender does)
            await tx.commit()
    except BaseException as exc:
        # A failed COMMIT already ended the transaction, so the exit's rollback fails too
        # ("transaction is in error state") after releasing the connection: keep the
        # commit's error, which is the one that says what went wrong.
        with suppress(Exception):
            await ctx.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    try:
        log.info("recycling connection after %d tenant schemas", len(raw.kith_schemas))
        await raw.close()
    finally:
        await ctx.__aexit__(None, None, None)


def entry_facts(tx: Any) -> asyncpg.Record | None:
    """What `public.kith_enter_tenant_v2` handed over when this tenant transaction began (its
    billing facts among them), or None outside a tenant scope or once forgotten."""
    conn = getattr(tx, "_connection", None)
    return None if conn is None else getattr(_raw(conn), "kith_entry", None)


def forget_entry_facts(tx: Any) -> None:
    """Say the entry facts no longer hold for this transaction (it changed what they describe)."""
    conn = getattr(tx, "_connection", None)
    if conn is not None and hasattr(_raw(conn), "kith_entry"):
        _raw(conn).kith_entry = None


@asynccontextmanager
async def platform_tx(within: TransactionalDBClient | None = None) -> AsyncIterator[TransactionalDBClient]:
    """One transaction on the platform's own (public) tables; given `within`, the caller's
    transaction is used instead, so several lookups share one BEGIN/COMMIT."""
    if within is not None:
        yield within
        return
    async with in_transaction("default") as tx:
        yield tx


async def fetchrow_alone(sql: str, *args: Any) -> asyncpg.Record | None:
    """The first row of one statement run on its own: outside a transaction it is autocommit
    (its own implicit transaction, also behind PgBouncer's transaction pooling), so a lookup
    costs one round trip instead of BEGIN, SELECT, COMMIT. Inside a transaction (tenant scope
    included) it runs in that transaction; name tables with their schema (public.x)."""
    async with get_connection("default").acquire_connection() as conn:
        return await conn.fetchrow(sql, *args)


async def connect_raw(url: str | None = None) -> asyncpg.Connection:
    """A plain asyncpg connection (migrations, benchmarks), bypassing the pool."""
    settings = get_settings()
    kwargs = connect_kwargs(url or settings.database_direct_url)
    return await asyncpg.connect(
        **kwargs, statement_cache_size=0, server_settings={"search_path": "public", "application_name": "kith"}
    )


def with_database(url: str, database: str) -> str:
    """The same server URL, naming another database."""
    parsed = urlparse(url)
    return parsed._replace(path=f"/{database}").geturl()


def with_user(url: str, user: str) -> str:
    """The same server and database, connecting as another role (no password: trust or peer
    authentication, as the embedded server and the test servers use)."""
    parsed = urlparse(url)
    host = parsed.netloc.rpartition("@")[2]
    return parsed._replace(netloc=f"{quote(user, safe='')}@{host}").geturl()
