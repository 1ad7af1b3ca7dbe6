"""The benchmark's workspace: made by signup like any other, with a sales team and API tokens.

Needs Tortoise initialised (the CLI wraps these in `with_orm`, tests have the `db` fixture).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kith.platform.access.actor import Actor
from kith.platform.access.session import acting_as
from kith.platform.billing.actions import comp_plan_in
from kith.platform.db import platform_tx
from kith.platform.identity.models import Identity
from kith.platform.identity.passwords import hash_password
from kith.platform.identity.tokens import create_api_token
from kith.platform.tenancy.signup import sign_up
from kith.tenants.bench.vocabulary import MEMBER_NAMES

# the plan without a contacts limit: a million contacts would be over any self-serve plan's
BENCH_PLAN = "enterprise"
COMP_DAYS = 365


class BenchWorkspaceError(LookupError):
    """The benchmark workspace is missing, or already exists when a fresh one was asked for."""


@dataclass(frozen=True)
class BenchWorkspace:
    tenant_id: int
    slug: str
    owner_id: int
    owner_email: str
    member_ids: tuple[int, ...]  # the sales team that owns the records


def owner_email_for(slug: str) -> str:
    return f"owner@{slug}.example.com"


async def create_bench_workspace(slug: str, *, members: int = 20, owner_password: str | None = None
                                 ) -> tuple[BenchWorkspace, str]:
    """Sign up workspace `slug` with its owner, add `members` people with the 'sales' role and
    comp it the Enterprise plan (no contacts limit). Returns the workspace and the owner's password.

    BenchWorkspaceError when the slug is taken: a benchmark loads into a fresh workspace only.
    """
    if await _tenant_id(slug) is not None:
        raise BenchWorkspaceError(f"workspace '{slug}' already exists; measure it, or choose another --slug "
                                  "(or drop the benchmark database) to generate again")
    password = owner_password or secrets.token_urlsafe(18)
    email = owner_email_for(slug)
    result = await sign_up(company_name="CRM Bench 星辰贸易", slug=slug, email=email, password=password,
                           display_name="Bench Owner")
    tenant_id = result.tenant.id
    shared_hash = hash_password(secrets.token_urlsafe(18))  # one slow hash serves the whole team
    now = datetime.now(UTC)
    member_ids: list[int] = []
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.identities SET email_verified_at = now() WHERE id = $1",
                               [result.identity.id])
        for n in range(members):
            identity = await Identity.create(
                email=f"sales-{n + 1:02d}@{slug}.example.com", display_name=MEMBER_NAMES[n % len(MEMBER_NAMES)],
                password_hash=shared_hash, email_verified_at=now, using_db=tx,
            )
            await tx.execute_query(
                "INSERT INTO public.memberships (tenant_id, identity_id, role) VALUES ($1, $2, 'sales')",
                [tenant_id, identity.id],
            )
            member_ids.append(identity.id)
    async with acting_as(Actor.system(tenant_id, "crm-bench")) as session:
        changes = await comp_plan_in(session.tx, tenant_id, BENCH_PLAN, now + timedelta(days=COMP_DAYS))
        await session.audit("billing.comp_plan", "billing_subscription", tenant_id, changes)
    workspace = BenchWorkspace(tenant_id, slug, result.identity.id, email, tuple(member_ids))
    return workspace, password


async def _tenant_id(slug: str) -> int | None:
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict("SELECT id FROM public.tenants WHERE slug = $1", [slug])
    return int(rows[0]["id"]) if rows else None


async def find_bench_workspace(slug: str) -> BenchWorkspace:
    """The benchmark workspace `slug` as generated: its owner and its sales team."""
    tenant_id = await _tenant_id(slug)
    if tenant_id is None:
        raise BenchWorkspaceError(f"there is no workspace '{slug}' in this database; run `kith crm-bench generate`")
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT m.identity_id, m.role, i.email FROM public.memberships m"
            " JOIN public.identities i ON i.id = m.identity_id"
            " WHERE m.tenant_id = $1 AND m.is_active ORDER BY m.identity_id", [tenant_id])
    owners = [r for r in rows if r["role"] == "owner"]
    if not owners:
        raise BenchWorkspaceError(f"workspace '{slug}' has no active owner")
    sales = tuple(int(r["identity_id"]) for r in rows if r["role"] == "sales")
    return BenchWorkspace(tenant_id, slug, int(owners[0]["identity_id"]), str(owners[0]["email"]), sales)


async def issue_token(workspace: BenchWorkspace, identity_id: int, name: str = "crm-bench") -> str:
    """A fresh API token for a member of the workspace (audited as token.create); the raw secret."""
    _, raw = await create_api_token(tenant_id=workspace.tenant_id, identity_id=identity_id, name=name)
    return raw
