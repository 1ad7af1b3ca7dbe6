"""Creating tenants: a row in public.tenants and a schema at the current version, in one
transaction, so a failed provisioning leaves nothing behind."""

from __future__ import annotations

from tortoise.backends.base.client import TransactionalDBClient
from tortoise.exceptions import IntegrityError

from kith.platform.db import platform_tx, tenant_schema
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
) -> Tenant:
    """Create a tenant inside the caller's transaction (its rollback removes everything)."""
    validate_slug(slug)
    name = validate_company_name(name)
    taken = await tx.execute_query_dict("SELECT 1 FROM public.tenants WHERE slug = $1", [slug])
    if taken:
        raise SlugError(f"Workspace address '{slug}' is already taken; please choose another.")
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
    # the application role owns nothing: the owner's SECURITY DEFINER function builds the schema
    # from the tenant DDL `kith migrate` stored (public migration 0015), in this transaction
    made = await tx.execute_query_dict("SELECT public.kith_create_tenant_schema($1) AS version", [tenant_id])
    await tx.execute_query(
        "UPDATE public.tenants SET schema_name = $2, status = 'active', schema_version = $3,"
        " updated_at = now() WHERE id = $1",
        [tenant_id, schema, int(made[0]["version"])],
    )
    return await Tenant.get(id=tenant_id).using_db(tx)


async def provision_tenant(*, slug: str, name: str, canary: bool = False) -> Tenant:
    """Create a tenant with its schema at the current version, all or nothing."""
    async with platform_tx() as tx:
        return await provision_tenant_in(tx, slug=slug, name=name, canary=canary)
