"""Usage against the plan's limits, and the checks called where the work happens.

Each check takes an optional `tx`: code already inside the tenant's transaction (contact
creation inside `acting_as`, accepting an invite) passes its own, since tenant scopes do not
nest; the count then sees that transaction's own uncommitted rows too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from kith.platform.billing.plans import Plan, check_limit, plan_for
from kith.platform.billing.subscriptions import load_subscription_in
from kith.platform.db import platform_tx, tenant_schema, tenant_scope


@dataclass(frozen=True)
class Usage:
    """What a workspace uses now, in the units of the plan's limits."""

    seats: int
    contacts: int
    emails_this_month: int
    storage_mb: float


def month_start(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def _plan_in(tx: BaseDBAsyncClient, tenant_id: int) -> Plan:
    return plan_for((await load_subscription_in(tx, tenant_id)).effective_plan)


async def _count(tx: BaseDBAsyncClient, sql: str, args: list[object]) -> int:
    rows = await tx.execute_query_dict(sql, args)
    return int(next(iter(rows[0].values())) or 0) if rows else 0


async def active_seats_in(tx: BaseDBAsyncClient, tenant_id: int) -> int:
    """Active memberships of the workspace: the seats it pays for."""
    return await _count(tx, "SELECT count(*) FROM public.memberships WHERE tenant_id = $1 AND is_active",
                        [int(tenant_id)])


async def emails_this_month_in(tx: BaseDBAsyncClient, tenant_id: int) -> int:
    """Campaign emails sent by the workspace since the first of this month (UTC). `tx` is the
    tenant's own scope: campaign recipients live in the tenant schema."""
    return await _count(tx, "SELECT count(*) FROM campaign_recipients WHERE sent_at >= $1", [month_start()])


async def _emails_committed_in(tx: BaseDBAsyncClient) -> int:
    """Sent this month, plus those still waiting in started campaigns (so that two campaigns started
    together cannot pass the quota between them)."""
    return await _count(
        tx, "SELECT (SELECT count(*) FROM campaign_recipients WHERE sent_at >= $1)"
            " + (SELECT count(*) FROM campaign_recipients r JOIN campaigns c ON c.id = r.campaign_id"
            " WHERE r.status = 'pending' AND c.status IN ('sending', 'paused')) AS n", [month_start()])


async def storage_mb_in(tx: BaseDBAsyncClient, tenant_id: int) -> float:
    """Disk used by the workspace's schema (tables, indexes, TOAST), in MB."""
    rows = await tx.execute_query_dict(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) AS bytes FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')",
        [tenant_schema(tenant_id)],
    )
    return round(int(rows[0]["bytes"]) / 1_048_576, 1)


async def usage_of(tenant_id: int) -> Usage:
    """Seats, contacts, campaign emails this month and storage of the workspace."""
    async with tenant_scope(tenant_id) as tx:
        contacts = await _count(tx, "SELECT count(*) FROM contacts", [])
        return Usage(
            seats=await active_seats_in(tx, tenant_id),
            contacts=contacts,
            emails_this_month=await emails_this_month_in(tx, tenant_id),
            storage_mb=await storage_mb_in(tx, tenant_id),
        )


async def check_seat_available(tenant_id: int, tx: BaseDBAsyncClient | None = None) -> None:
    """Raise LimitExceeded if one more active user would exceed the plan's seats."""
    async with platform_tx(tx) as conn:  # type: ignore[arg-type]
        check_limit(await _plan_in(conn, tenant_id), "seats",
                    used=await active_seats_in(conn, tenant_id), adding=1)


async def check_contact_capacity(tenant_id: int, adding: int, tx: BaseDBAsyncClient | None = None) -> None:
    """Raise LimitExceeded if `adding` contacts (one, or an import's rows) would exceed the plan.

    `tx` must be the tenant's own scope when given (the contacts table is counted in it).
    """
    if tx is not None:
        await _check_contacts(tx, tenant_id, adding)
        return
    async with tenant_scope(tenant_id) as scoped:
        await _check_contacts(scoped, tenant_id, adding)


async def _check_contacts(tx: BaseDBAsyncClient, tenant_id: int, adding: int) -> None:
    plan = await _plan_in(tx, tenant_id)
    if plan.contacts is None:
        return  # unlimited: skip the count
    check_limit(plan, "contacts", used=await _count(tx, "SELECT count(*) FROM contacts", []), adding=adding)


async def check_email_quota(tenant_id: int, adding: int, tx: BaseDBAsyncClient | None = None) -> None:
    """Raise LimitExceeded if sending `adding` campaign emails would exceed this month's quota
    (emails sent this month and those waiting in started campaigns count as used). `tx` must be
    the tenant's own scope when given."""
    if tx is not None:
        check_limit(await _plan_in(tx, tenant_id), "emails_per_month", used=await _emails_committed_in(tx),
                    adding=adding)
        return
    async with tenant_scope(tenant_id) as scoped:
        check_limit(await _plan_in(scoped, tenant_id), "emails_per_month", used=await _emails_committed_in(scoped),
                    adding=adding)
