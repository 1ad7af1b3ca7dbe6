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
