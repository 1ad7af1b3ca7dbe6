"""The pool's reclaim job: each night, every workspace's companies and leads nobody followed up
within its rule (crm_settings.pool_reclaim_days) go back to the public pool
(kith.tenants.pool.reclaim), audited by the job's actor and written on each record's timeline.

arq may run a job twice and its cron may fire twice: returning is idempotent (a returned record is
no longer owned), and the per-tenant job id carries the date, so a day queues one job per tenant.
"""

from __future__ import annotations

from datetime import UTC, datetime

from kith.jobs.queue import enqueue_tenant_job
from kith.jobs.tenant_job import JobContext, tenant_job
from kith.platform.billing.subscriptions import WorkspaceReadOnly
from kith.platform.db import platform_tx
from kith.platform.tenancy.models import Tenant, TenantStatus
from kith.tenants.pool.reclaim import reclaim_stale


@tenant_job
async def pool_reclaim(ctx: JobContext, tenant: Tenant) -> str:
    """Return the tenant's records nobody followed up within its rule to the pool."""
    try:
        result = await reclaim_stale(tenant.id)
    except WorkspaceReadOnly:
        return "skipped: the workspace is read-only"  # no change may be recorded; the next night retries
    if result.reclaim_days is None:
        return "no reclaim rule"
    parts = ", ".join(f"{n} {kind}" for kind, n in result.returned.items())
    return f"returned to the pool after {result.reclaim_days} days: {parts}"


async def enqueue_pool_reclaim(ctx: JobContext) -> int:
    """The daily cron: one pool_reclaim job per active tenant. Returns how many were queued."""
    async with platform_tx() as tx:  # every query in a transaction: PgBouncer-safe
        ids = await Tenant.filter(status=TenantStatus.ACTIVE).using_db(tx).values_list("id", flat=True)
    day = datetime.now(UTC).strftime("%Y%m%d")
    queued = 0
    for tenant_id in ids:
        job = await enqueue_tenant_job("pool_reclaim", int(tenant_id), job_id=f"pool-reclaim:{tenant_id}:{day}")
        queued += job is not None
    return queued
