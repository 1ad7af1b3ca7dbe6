"""Ticket replies emailed to customers (kith.tenants.tickets.mail): one job per reply, queued by the
page or API call that added it after its commit, and a ten-minute sweep that queues again the replies
whose job was never queued or was lost."""

from __future__ import annotations

from datetime import UTC, datetime

from arq.worker import Retry

from kith.jobs.queue import enqueue_tenant_job
from kith.jobs.tenant_job import JobContext, tenant_job
from kith.jobs.welcome import RETRY_BACKOFF_S
from kith.platform.db import platform_tx
from kith.platform.tenancy.models import Tenant, TenantStatus
from kith.tenants.tickets.mail import ReplyNotSent, email_reply, unsent_replies


@tenant_job
async def ticket_reply_email(ctx: JobContext, tenant: Tenant, message_id: int) -> str:
    """Email one reply to its ticket's contact, at most once; retried with backoff while the provider
    cannot take it."""
    try:
        return f"reply {message_id}: " + await email_reply(tenant.id, int(message_id))
    except ReplyNotSent as exc:
        job_try = int(ctx.get("job_try", 1))
        raise Retry(defer=RETRY_BACKOFF_S[min(job_try, len(RETRY_BACKOFF_S)) - 1]) from exc


async def enqueue_reply_email(tenant_id: int, message_id: int, *, slot: str = "") -> bool:
    """Queue the job that emails reply `message_id`; False when arq already holds that job."""
    job_id = f"ticket-reply:{tenant_id}:{message_id}" + (f":{slot}" if slot else "")
    return await enqueue_tenant_job("ticket_reply_email", tenant_id, message_id, job_id=job_id) is not None


async def sweep_ticket_replies(ctx: JobContext) -> int:
    """The ten-minute cron: queue again the replies of every active workspace still waiting for their
    job. Job ids name the ten-minute slot, so a cron firing twice queues nothing more; the claim in
    email_reply keeps a reply from going out twice beside its original job. Returns how many were queued."""
    async with platform_tx() as tx:  # every query in a transaction: PgBouncer-safe
        ids = await Tenant.filter(status=TenantStatus.ACTIVE).using_db(tx).values_list("id", flat=True)
    now = datetime.now(UTC)
    slot = now.replace(minute=now.minute - now.minute % 10).strftime("%Y%m%d%H%M")
    queued = 0
    for tenant_id in ids:
        for message_id in await unsent_replies(int(tenant_id)):
            queued += await enqueue_reply_email(int(tenant_id), message_id, slot=slot)
    return queued
