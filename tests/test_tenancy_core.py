"""The tenant scope: isolation, fail-closed outside a scope, unknown tenants."""

from __future__ import annotations

import asyncio

import pytest
from tortoise.exceptions import OperationalError

from kith.platform.db import TenantUnavailable, tenant_scope
from kith.tenants.contacts.models import Contact

from .conftest import Workspace, make_workspace


async def test_outside_a_scope_tenant_tables_are_unreachable(workspace: Workspace) -> None:
    with pytest.raises(OperationalError, match='relation "contacts" does not exist'):
        await Contact.all().count()


async def test_unknown_tenant_scope_is_refused(db: object) -> None:
    with pytest.raises(TenantUnavailable):
        async with tenant_scope(987654321):
            pass


async def test_each_tenant_sees_only_its_rows_under_concurrency(db: object) -> None:
    spaces = await asyncio.gather(*(make_workspace("iso") for _ in range(20)))

    async def write_then_read(ws: Workspace, n: int) -> list[str]:
        async with tenant_scope(ws.tenant_id):
            await Contact.create(name=f"{ws.slug}-{n}")
        await asyncio.sleep(0)
        async with tenant_scope(ws.tenant_id):
            return [c.name for c in await Contact.all()]

    results = await asyncio.gather(*(write_then_read(ws, n) for n in range(10) for ws in spaces))
    for names in results:
        owners = {name.rsplit("-", 1)[0] for name in names}
        assert len(owners) == 1, owners
    for ws in spaces:
        async with tenant_scope(ws.tenant_id):
            assert await Contact.all().count() == 10


async def test_tenant_tables_add_no_foreign_keys_to_public_tables(workspace: Workspace) -> None:
    """Deleting one public row must not lock every tenant's tables: foreign keys from each tenant
    schema to public.identities made one identity's deletion run out of shared memory (locks) at
    a few hundred tenants. People are referenced by id and the actions check membership; only the
    three keys of tenant migrations 0001 and 0002 remain (dropping them would lock
    public.identities exclusively in every provisioning)."""
    async with tenant_scope(workspace.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "SELECT conname FROM pg_constraint"
            " WHERE contype = 'f' AND connamespace = current_schema()::regnamespace"
            " AND confrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)")
    assert sorted(r["conname"] for r in rows) == [
        "contacts_created_by_id_fkey", "contacts_owner_id_fkey", "team_members_identity_id_fkey"]
