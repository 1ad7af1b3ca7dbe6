"""The application's database role (DATABASE_URL) owns nothing and cannot change audit rows.

The whole suite runs the application as that role (conftest's APP_ROLE); these tests check the
role itself: what it is refused (UPDATE, DELETE, TRUNCATE of audit rows, lifting the trigger,
rewriting the DDL the owner's functions run, the owner functions on tenants in the wrong state)
and that `kith migrate` grants it its rights on tables a later migration adds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from kith.platform.access.actor import Actor
from kith.platform.audit.log import append_entry
from kith.platform.db import connect_raw, fetchrow_alone, tenant_schema, tenant_scope, with_user
from kith.platform.migrations import runner
from tests.conftest import APP_ROLE, Services, Workspace, make_workspace


@pytest.fixture
async def app(db: Services) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the application's role: what SQL injected into a request would have."""
    conn = await connect_raw(db.app_url)
    yield conn
    await conn.close()


@pytest.fixture
async def audited(db: Services) -> Workspace:
    ws = await make_workspace("approle")
    actor = Actor(kind="user", tenant_id=ws.tenant_id, role="owner", identity_id=ws.identity_id, label=ws.email)
    async with tenant_scope(ws.tenant_id) as tx:
        await append_entry(tx, actor, action="contact.update", object_type="contact", object_id="1",
                           diff={"email": ["old@example.com", "new@example.com"]})
    return ws


async def test_the_pool_connects_as_the_application_role(db: Services) -> None:
    row = await fetchrow_alone("SELECT current_user AS who, r.rolsuper, r.rolcreatedb, r.rolcreaterole,"
                               " (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid) AS schemas,"
                               " (SELECT count(*) FROM pg_class WHERE relowner = r.oid) AS relations"
                               " FROM pg_roles r WHERE r.rolname = current_user")
    assert row is not None
    assert (row["who"], row["rolsuper"], row["rolcreatedb"], row["rolcreaterole"]) == (APP_ROLE, False, False, False)
    assert (row["schemas"], row["relations"]) == (0, 0)  # it owns nothing, so it can alter nothing


@pytest.mark.parametrize("statement", [
    "UPDATE {s}.audit_log SET action = 'nothing'",
    "DELETE FROM {s}.audit_log",
    "TRUNCATE {s}.audit_log",
    "UPDATE {s}.audit_archive SET action = 'nothing'",
    "DELETE FROM {s}.audit_checkpoint",
    "TRUNCATE {s}.audit_checkpoint",
    "UPDATE public.platform_audit SET action = 'nothing'",
    "DELETE FROM public.platform_audit",
])
async def test_audit_rows_cannot_be_changed_by_the_application_role(
        app: asyncpg.Connection, audited: Workspace, statement: str) -> None:
    # bad input: a plain UPDATE / DELETE / TRUNCATE of audit rows, as the application's role
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for table"):
        await app.execute(statement.format(s=tenant_schema(audited.tenant_id)))


async def test_the_trigger_cannot_be_lifted_and_the_archive_path_stays_shut(
        app: asyncpg.Connection, audited: Workspace) -> None:
    s = tenant_schema(audited.tenant_id)
    # bad input: what a superuser's tamper does first (see test_audit_tamper), and dropping it
    for statement in (f"ALTER TABLE {s}.audit_log DISABLE TRIGGER USER",
                      f"DROP TRIGGER audit_log_append_only ON {s}.audit_log",
                      f"DROP TABLE {s}.audit_log"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="must be owner"):
            await app.execute(statement)
    # the retention function's transaction flag does not open DELETE to the role either
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        async with app.transaction():
            await app.execute("SET LOCAL kith.audit_archiving = 'on'")
            await app.execute(f"DELETE FROM {s}.audit_log")
    assert await app.fetchval(f"SELECT count(*) FROM {s}.audit_log") >= 1
    # appending is what it may do: through the chain's own function, in a tenant scope
    async with tenant_scope(audited.tenant_id) as tx:
        actor = Actor(kind="user", tenant_id=audited.tenant_id, role="owner", identity_id=audited.identity_id,
                      label=audited.email)
        await append_entry(tx, actor, action="contact.update", object_type="contact", object_id="2", diff={})


async def test_what_the_owner_runs_cannot_be_rewritten(app: asyncpg.Connection, audited: Workspace) -> None:
    # bad input: a DDL of one's own for the SECURITY DEFINER function to run as the owner
    for statement in ("UPDATE public.kith_schema_setup SET tenant_ddl = 'DROP TABLE audit_log'",
                      "DELETE FROM public.schema_migrations",
                      "SELECT public.kith_grant_app('public')",
                      "CREATE TABLE public.intruder (id int)",
                      "CREATE SCHEMA intruder"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app.execute(statement)
    # the owner's functions check the tenant first (bad input: a live tenant's id, twice)
    with pytest.raises(asyncpg.RaiseError, match="is not deleted; its schema stays"):
        await app.execute("SELECT public.kith_drop_tenant_schema($1)", audited.tenant_id)
    with pytest.raises(asyncpg.RaiseError, match="is not waiting for its schema"):
        await app.execute("SELECT public.kith_create_tenant_schema($1)", audited.tenant_id)
    assert await app.fetchval("SELECT to_regnamespace($1) IS NOT NULL", tenant_schema(audited.tenant_id))


async def test_migrate_grants_the_role_what_later_migrations_add(fresh_url: str, tmp_path: Path) -> None:
    await runner.migrate(url=fresh_url, app_role=APP_ROLE)
    owner = await connect_raw(fresh_url)
    app = await connect_raw(with_user(fresh_url, APP_ROLE))
    try:
        tid = await app.fetchval("INSERT INTO public.tenants (slug, name, schema_name, status)"
                                 " VALUES ('role-test', 'Role Test', '', 'provisioning') RETURNING id")
        version = await app.fetchval("SELECT public.kith_create_tenant_schema($1)", tid)
        assert version == runner.latest_version(runner.tenant_migrations())
        await app.execute("UPDATE public.tenants SET schema_name = $2, status = 'active', schema_version = $3"
                          " WHERE id = $1", tid, tenant_schema(tid), version)
        s = tenant_schema(tid)
        assert await owner.fetchval("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1", s) \
            == await owner.fetchval("SELECT current_user")
        (tmp_path / f"{version + 1:04d}_later.sql").write_text(
            "CREATE TABLE later_things (id bigserial PRIMARY KEY, name text NOT NULL);")
        report = await runner.migrate(url=fresh_url, app_role=APP_ROLE, extra_tenant_dirs=[tmp_path])
        assert report.ok and [r.tenant_id for r in report.tenants_migrated] == [tid]
        await app.execute(f"INSERT INTO {s}.later_things (name) VALUES ('张三')")
        assert await app.fetchval(f"SELECT name FROM {s}.later_things") == "张三"
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app.execute(f"DELETE FROM {s}.audit_log")
        # a tenant deleted by the retention job: its schema goes through the owner's function
        await app.execute("UPDATE public.tenants SET status = 'deleted' WHERE id = $1", tid)
        await app.execute("SELECT public.kith_drop_tenant_schema($1)", tid)
        assert not await owner.fetchval("SELECT to_regnamespace($1) IS NOT NULL", s)
    finally:
        await app.close()
        await owner.close()
