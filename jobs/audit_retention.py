"""Audit retention: each night, every workspace's entries older than its retention move to
its archive (kith.platform.audit.retention), keeping the chain verifiable.

arq may run a job twice, and its cron may fire twice: archiving is idempotent (what is moved
is gone from the log), and the per-tenant job id carries the date, so a day enqueues one job
per tenant.
"""

from __future__ import annotations

from datetime import UTC, datetime

from kith.jobs.queue import enqueue_tenant_job
from kith.jobs.tenant_job import JobContext, tenant_job
from kith.platform.audit.retention import archive_expired
from kith.platform.db import platform_tx
from kith.platform.tenancy.models import Tenant, TenantStatus


@tenant_job
async def audit_retention(ctx: JobContext, tenant: Tenant) -> str:
    """Archive the tenant's audit entries that are older than its retention."""
    result = await archive_expired(tenant.id)
    if not result.rows:
        return "nothing to archive"
    return f"archived {result.rows} entries through seq {result.through_seq}"


async def enqueue_audit_retention(ctx: JobContext) -> int:
    """The daily cron: one audit_retention job per active tenant. Returns how many were queued."""
    async with platform_tx() as tx:  # every query in a transaction: PgBouncer-safe
        ids = await Tenant.filter(status=TenantStatus.ACTIVE).using_db(tx).values_list("id", flat=True)
    day = datetime.now(UTC).strftime("%Y%m%d")
    queued = 0
    for tenant_id in ids:
        job = await enqueue_tenant_job("audit_retention", int(tenant_id), job_id=f"audit-retention:{tenant_id}:{day}")
        queued += job is not None
    return queued
