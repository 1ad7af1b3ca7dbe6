"""Pooled connections while tenant schemas are at different versions (a roll-out window),
and connection recycling.

asyncpg caches prepared statements per connection; PostgreSQL re-plans one when the
search_path changes, and refuses when the new plan returns other column types
("cached plan must not change result type", asyncpg issue 103). Here one tenant's
`contacts.phone` becomes varchar(80) while the other's stays text, which changes the
result type of every ORM query that reads contacts.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from tortoise.connection import get_connection

from kith.platform.config import get_settings, reset_settings
from kith.platform.db import (
    KithConnection,
    NestedTenantScope,
    _raw,
    connect_kwargs,
    connect_raw,
    platform_tx,
    tenant_schema,
    tenant_scope,
)
from kith.platform.migrations import runner
from kith.platform.tenancy.provisioning import provision_tenant
from kith.tenants.contacts.models import Contact

from .conftest import Services, unique_slug

BASE = runner.latest_version(runner.tenant_migrations())
PHONE_VARCHAR = "ALTER TABLE contacts ALTER COLUMN phone TYPE varchar(80);"


@dataclass
class Tenants:
    ids: list[int]

    async def add(self, prefix: str) -> int:
        tenant = await provision_tenant(slug=unique_slug(prefix), name=f"{prefix.title()} Co")
        self.ids.append(int(tenant.id))
        return int(tenant.id)


@pytest.fixture
async def tenants(db: Services) -> AsyncIterator[Tenants]:
    """Tenants for one test. Afterwards they are deleted and their schemas dropped, so the
    extra versions given to them here never meet another test's runner."""
    made = Tenants([])
    yield made
    conn = await connect_raw()
    try:
        await conn.execute(
            "UPDATE public.tenants SET status = 'deleted' WHERE id = ANY($1::bigint[])", made.ids
        )
        for tid in made.ids:
            await conn.execute(f"DROP SCHEMA IF EXISTS {tenant_schema(tid)} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
def phone_varchar(tmp_path: Path) -> list[runner.Migration]:
    (tmp_path / f"{BASE + 1:04d}_phone_varchar.sql").write_text(PHONE_VARCHAR)
    return runner.tenant_migrations([tmp_path])


async def migrate_tenant(tenant_id: int, migrations: list[runner.Migration]) -> None:
    conn = await connect_raw()
    try:
        assert await runner.migrate_one_tenant(conn, tenant_id, migrations) == (BASE, BASE + 1)
    finally:
        await conn.close()


async def exercise_contacts(tenant_id: int, tag: str) -> tuple[int, int]:
    """The ORM's usual reads and writes of contacts in one scope. Returns (backend pid, id of
    the pooled connection) so a test can see which connection served it."""
    async with tenant_scope(tenant_id) as tx:
        created = await Contact.create(name=f"{tag} {tenant_id}", phone="+1 555 0100")
        await Contact.filter(id=created.id).update(notes="seen")
        fetched = await Contact.get(id=created.id)
        assert fetched.phone == "+1 555 0100" and fetched.notes == "seen"
        phones = [
            str(p) for p in await Contact.filter(phone__startswith="+1").values_list("phone", flat=True)
        ]
        assert phones and all(p == "+1 555 0100" for p in phones)
        assert await Contact.filter(name__startswith=tag).count() >= 1
        pid = await tx.execute_query_dict("SELECT pg_backend_pid() AS pid")
        return int(pid[0]["pid"]), id(_raw(tx._connection))


async def test_without_the_protection_a_cached_plan_breaks(
    db: Services, tenants: Tenants, phone_varchar: list[runner.Migration]
) -> None:
    """The failure the scope guards against, shown on a plain asyncpg connection with its
    statement cache on, entering tenants the way tenant_scope does minus the cache drop."""
    old, new = await tenants.add("old"), await tenants.add("new")
    await migrate_tenant(new, phone_varchar)
    orm_sql = Contact.filter(phone__startswith="+").sql()
    conn = await asyncpg.connect(
        **connect_kwargs(db.database_url), statement_cache_size=100, server_settings={"search_path": "public"}
    )
    try:
        async with conn.transaction():
            assert await conn.fetchval("SELECT public.kith_enter_tenant($1)", old) == BASE
            await conn.fetch(orm_sql, "+%")
        with pytest.raises(asyncpg.InvalidCachedStatementError):
            async with conn.transaction():
                assert await conn.fetchval("SELECT public.kith_enter_tenant($1)", new) == BASE + 1
                await conn.fetch(orm_sql, "+%")
    finally:
        await conn.close()


async def test_tenant_scope_alternates_tenants_at_different_versions(
    tenants: Tenants, phone_varchar: list[runner.Migration]
) -> None:
    old, new = await tenants.add("old"), await tenants.add("new")
    await migrate_tenant(new, phone_varchar)

    # one after another: the pool hands the same connection back each time
    served: dict[int, set[int]] = {}
    for round_ in range(10):
        for tid in (old, new):
            pid, _ = await exercise_contacts(tid, f"seq{round_}")
            served.setdefault(pid, set()).add(tid)
    assert any(len(seen) == 2 for seen in served.values()), served

    # and all at once, over every pooled connection
    await asyncio.gather(*(exercise_contacts(tid, f"par{n}") for n in range(40) for tid in (old, new)))


async def test_a_live_rollout_under_traffic(tenants: Tenants, phone_varchar: list[runner.Migration]) -> None:
    """Both tenants stay busy while one of them is migrated: requests that were running
    finish first, later ones see the new shape, and none fails on a stale cached plan."""
    old, new = await tenants.add("old"), await tenants.add("new")
    stop = asyncio.Event()
    errors: list[BaseException] = []
    counts = {old: 0, new: 0}

    async def traffic(tid: int, worker: int) -> None:
        while not stop.is_set():
            try:
                await exercise_contacts(tid, f"live{worker}")
                counts[tid] += 1
            except Exception as exc:  # collected and reported below
                errors.append(exc)
                return

    workers = [asyncio.create_task(traffic(tid, w)) for w in range(4) for tid in (old, new)]
    try:
        await asyncio.sleep(0.3)
        before = dict(counts)
        await migrate_tenant(new, phone_varchar)
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*workers)
    assert errors == []
    assert counts[new] > before[new] and counts[old] > before[old]  # traffic went on after the change


@pytest.fixture
def recycle_after_three() -> Iterator[int]:
    """KITH_DB_MAX_SCHEMAS_PER_CONN=3 for one test; the settings are read again afterwards."""
    name = "KITH_DB_MAX_SCHEMAS_PER_CONN"
    previous = os.environ.get(name)
    os.environ[name] = "3"
    reset_settings()
    try:
        yield get_settings().db_max_schemas_per_conn
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous
        reset_settings()


async def test_a_connection_that_touched_too_many_schemas_is_replaced(
    db: Services, tenants: Tenants, recycle_after_three: int
) -> None:
    limit = recycle_after_three
    ids = [await tenants.add("many") for _ in range(8)]
    observer = await asyncpg.connect(**connect_kwargs(db.database_url))
    closed_pids: set[int] = set()
    closed_conns: list[KithConnection] = []
    pids_seen: list[int] = []
    try:
        for _ in range(2):
            for tid in ids:
                async with tenant_scope(tid) as tx:
                    conn: KithConnection = _raw(tx._connection)
                    # a recycled connection is never handed out again
                    assert not conn.is_closed() and all(conn is not gone for gone in closed_conns)
                    touched = len(conn.kith_schemas)
                    pid = int((await tx.execute_query_dict("SELECT pg_backend_pid() AS pid"))[0]["pid"])
                    assert await Contact.all().count() == 0
                pids_seen.append(pid)
                assert conn.is_closed() == (touched > limit)
                if touched > limit:
                    closed_pids.add(pid)
                    closed_conns.append(conn)
        assert closed_pids, "no connection was recycled"
        assert len(set(pids_seen)) > 1
        # the server side is gone too: the backends exited and their catalog caches with them
        deadline = time.monotonic() + 5
        while await observer.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", list(closed_pids)
        ):
            assert time.monotonic() < deadline, "recycled backends are still running"
            await asyncio.sleep(0.05)
    finally:
        await observer.close()


async def test_a_failed_commit_on_a_recycled_connection_still_releases_it(
    db: Services, tenants: Tenants, recycle_after_three: int
) -> None:
    """The recycling path commits by itself; when that commit fails the error must reach
    the caller and the pooled connection must still go back to the pool."""
    strict = await tenants.add("strict")
    conn = await connect_raw()
    try:
        # checked at COMMIT, so the failure happens exactly where the scope commits
        await conn.execute(
            f"ALTER TABLE {tenant_schema(strict)}.contacts ADD CONSTRAINT contacts_email_once"
            " UNIQUE (email) DEFERRABLE INITIALLY DEFERRED"
        )
    finally:
        await conn.close()
    fillers = [await tenants.add("filler") for _ in range(recycle_after_three)]
    pool = get_connection("default")._pool

    async def over_the_limit_then_fail() -> None:
        # fill the connection up to the limit, so that entering `strict` crosses it
        touched = 0
        for tid in itertools.islice(itertools.cycle(fillers), 50):
            async with tenant_scope(tid) as tx:
                touched = len(_raw(tx._connection).kith_schemas)
            if touched == recycle_after_three:
                break
        assert touched == recycle_after_three
        async with tenant_scope(strict) as tx:
            assert len(_raw(tx._connection).kith_schemas) > recycle_after_three
            await Contact.create(name="One", email="same@example.com")
            await Contact.create(name="Two", email="same@example.com")

    for _ in range(3):
        with pytest.raises(asyncpg.UniqueViolationError):
            await over_the_limit_then_fail()
        assert pool.get_idle_size() == pool.get_size()  # nothing left checked out
        # and this task is out of the failed transaction: a new scope works as usual
        async with tenant_scope(strict):
            assert await Contact.all().count() == 0


async def test_a_tenant_scope_cannot_be_nested(tenants: Tenants) -> None:
    """Nested, the inner scope would be a savepoint whose search_path outlives it: the rest
    of the outer transaction would read the inner tenant's rows. It is refused instead."""
    outer, inner = await tenants.add("outer"), await tenants.add("inner")
    async with tenant_scope(inner):
        await Contact.create(name="inner's contact")

    async with tenant_scope(outer):
        with pytest.raises(NestedTenantScope, match="cannot be nested"):
            async with tenant_scope(inner):
                pass
        assert await Contact.all().count() == 0  # still the outer tenant, still usable
    async with platform_tx():
        with pytest.raises(NestedTenantScope):
            async with tenant_scope(inner):
                pass
    async with tenant_scope(inner):
        assert [c.name for c in await Contact.all()] == ["inner's contact"]
