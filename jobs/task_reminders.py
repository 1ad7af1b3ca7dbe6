"""Due-task reminders: every five minutes, one job per active workspace emails the assignees of
open tasks due within the next 15 minutes (or overdue) that were not reminded yet.

The reminder rows and the tasks' reminded_at stamps commit together
(kith.tenants.activities.reminders), so a job that runs twice sends nothing new; delivery
happens after the commit, and each run also delivers reminders a previous run left undelivered.
The per-tenant job id names the five-minute slot, so a slot queues one job per tenant.
"""

from __future__ import annotations

from datetime import UTC, datetime

from arq.worker import Retry

from kith.jobs.queue import enqueue_tenant_job
from kith.jobs.tenant_job import JobContext, tenant_job
from kith.jobs.welcome import RETRY_BACKOFF_S
from kith.platform.config import get_settings
from kith.platform.db import platform_tx
from kith.platform.email.delivery import EmailDeliveryError, deliver
from kith.platform.tenancy.models import Tenant, TenantStatus
from kith.tenants.activities.reminders import Workspace, queue_due_reminders, undelivered_reminders

# batches per run: a backlog larger than this waits for the next slot (five minutes)
MAX_BATCHES = 20


@tenant_job
async def send_task_reminders(ctx: JobContext, tenant: Tenant) -> str:
    """Queue and deliver the workspace's due task reminders."""
    ws = Workspace(tenant_id=tenant.id, slug=tenant.slug, name=tenant.name, time_zone=tenant.time_zone,
                   locale=tenant.locale, base_url=get_settings().base_url)
    queued = 0
    for _ in range(MAX_BATCHES):
        ids, more = await queue_due_reminders(ws)
        queued += len(ids)
        if not more:
            break
    delivered = 0
    try:
        for email_id in await undelivered_reminders(ws):
            if await deliver(email_id) in ("sent", "outbox"):
                delivered += 1
    except EmailDeliveryError as exc:
        job_try = int(ctx.get("job_try", 1))
        raise Retry(defer=RETRY_BACKOFF_S[min(job_try, len(RETRY_BACKOFF_S)) - 1]) from exc
    return f"{queued} reminders queued, {delivered} delivered"


async def enqueue_task_reminders(ctx: JobContext) -> int:
    """The five-minute cron: one send_task_reminders job per active tenant. Returns how many were queued."""
    async with platform_tx() as tx:  # every query in a transaction: PgBouncer-safe
        ids = await Tenant.filter(status=TenantStatus.ACTIVE).using_db(tx).values_list("id", flat=True)
    now = datetime.now(UTC)
    slot = now.replace(minute=now.minute - now.minute % 5).strftime("%Y%m%d%H%M")
    queued = 0
    for tenant_id in ids:
        job = await enqueue_tenant_job("send_task_reminders", int(tenant_id),
                                       job_id=f"task-reminders:{tenant_id}:{slot}")
        queued += job is not None
    return queued
