"""Creating tenants: a row in public.tenants and a schema at the current version, in one
transaction, so a failed provisioning leaves nothing behind."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tortoise.backends.base.client import TransactionalDBClient
from tortoise.exceptions import IntegrityError

from kith.platform.db import platform_tx, tenant_schema
from kith.platform.migrations.runner import latest_version, tenant_migrations, tenant_sql_since
from kith.platform.tenancy.models import Tenant
from kith.platform.tenancy.slugs import SlugError, validate_slug


class TenantNameError(ValueError):
    pass


def validate_company_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise TenantNameError("Company name is required.")
    if len(name) > 120:
        raise TenantNameError("Company name must be at most 120 characters long.")
    return name


async def provision_tenant_in(
    tx: TransactionalDBClient,
    *,
    slug: str,
    name: str,
    canary: bool = False,
    extra_migration_dirs: Sequence[Path] = (),
) -> Tenant:
    """Create a tenant inside the caller's transaction (its rollback removes everything)."""
    validate_slug(slug)
    name = validate_company_name(name)
    taken = await tx.execute_query_dict("SELECT 1 FROM public.tenants WHERE slug = $1", [slug])
    if taken:
        raise SlugError(f"Workspace address '{slug}' is already taken; please choose another.")
    migrations = tenant_migrations(extra_migration_dirs)
    try:
        rows = await tx.execute_query_dict(
            "INSERT INTO public.tenants (slug, name, schema_name, status, canary)"
            " VALUES ($1, $2, '', 'provisioning', $3) RETURNING id",
            [slug, name, canary],
        )
    except IntegrityError:
        raise SlugError(f"Workspace address '{slug}' is already taken; please choose another.") from None
    tenant_id = int(rows[0]["id"])
    schema = tenant_schema(tenant_id)
    await tx.execute_script(
        f"CREATE SCHEMA {schema};\nSET LOCAL search_path TO {schema};\n"
        f"{tenant_sql_since(migrations, 0)}\n;\nSET LOCAL search_path TO public;"
    )
    await tx.execute_query(
        "UPDATE public.tenants SET schema_name = $2, status = 'active', schema_version = $3,"
        " updated_at = now() WHERE id = $1",
        [tenant_id, schema, latest_version(migrations)],
    )
    return await Tenant.get(id=tenant_id).using_db(tx)


async def provision_tenant(*, slug: str, name: str, canary: bool = False,
                           extra_migration_dirs: Sequence[Path] = ()) -> Tenant:
    """Create a tenant with its schema at the current version, all or nothing."""
    async with platform_tx() as tx:
        return await provision_tenant_in(
            tx, slug=slug, name=name, canary=canary, extra_migration_dirs=extra_migration_dirs
        )
