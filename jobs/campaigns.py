"""The arq jobs of email campaigns: sending, and the minute cron that starts scheduled campaigns
and takes up campaigns nobody is sending.

The database decides (see kith.tenants.campaigns.sending): a sending job sends for at most
SEND_SECONDS, then queues its continuation; `public.campaign_queue` says which campaigns need a
worker and when, and carries the heartbeat of the jobs sending each one. The cron queues jobs for
a campaign that is due and has no fresh heartbeat (a scheduled one whose time came, one whose
back-off ended, one whose workers died), so a crashed campaign is taken up again within a minute
or two of its last heartbeat, well within twice its job timeout. Its job ids are per campaign and
minute: a cron firing twice queues nothing more.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from arq import func

from kith.jobs.queue import enqueue_tenant_job
from kith.jobs.tenant_job import JobContext, tenant_job
from kith.platform.db import platform_tx, tenant_scope
from kith.platform.observability import get_logger
from kith.platform.tenancy.models import Tenant

log = get_logger("kith.jobs.campaigns")
SEND_TIMEOUT_SECONDS = 600
SEND_SECONDS = 240  # a job's sending budget, well inside its timeout
STALE_SECONDS = 60  # no heartbeat for this long: no job is sending the campaign


@tenant_job
async def send_campaign(ctx: JobContext, tenant: Tenant, campaign_id: int) -> str:
    from kith.tenants.campaigns.sending import send_campaign as send

    report = await send(tenant.id, int(campaign_id), seconds=SEND_SECONDS)
    if not report.finished and not report.stopped:
        # the budget ran out with recipients left: the next job takes over (a new id each time)
        await enqueue_tenant_job("send_campaign", tenant.id, int(campaign_id),
                                 job_id=f"campaign:{tenant.id}:{int(campaign_id)}:{secrets.token_hex(4)}")
    return (f"{report.sent} sent, {report.bounced} bounced, {report.suppressed} suppressed"
            + (", finished" if report.finished else f", {report.stopped}" if report.stopped else ", continues"))


@tenant_job
async def campaign_due(ctx: JobContext, tenant: Tenant, campaign_id: int) -> str:
    """Start a scheduled campaign whose time came, or queue senders for a sending one."""
    from kith.tenants.campaigns.campaigns import begin_sending, dequeue, enqueue_senders, load_campaign
    from kith.tenants.imports.runner import member_actor
    from kith.tenants.records.refusals import RecordsRefusal

    async with tenant_scope(tenant.id) as tx:
        rows = await tx.execute_query_dict("SELECT status, scheduled_at, started_by_id FROM campaigns WHERE id = $1",
                                           [int(campaign_id)])
    if not rows or rows[0]["status"] not in ("scheduled", "sending"):
        await dequeue(tenant.id, int(campaign_id))
        return "nothing to do"
    row = rows[0]
    minute = datetime.now(UTC).strftime("%Y%m%d%H%M")
    if row["status"] == "scheduled":
        if row["scheduled_at"] is None or row["scheduled_at"] > datetime.now(UTC):
            return "not yet"
        try:
            actor = await member_actor(tenant.id, row["started_by_id"], f"scheduled campaign #{campaign_id}")
        except PermissionError as exc:
            await _pause(tenant.id, int(campaign_id), str(exc))
            return "paused"
        from kith.platform.access.session import acting_as

        try:
            async with acting_as(actor) as session:
                current = await load_campaign(session, int(campaign_id), lock=True)
                if current["status"] != "scheduled":
                    return "already started"
                await begin_sending(session, current)
        except RecordsRefusal as exc:
            await _pause(tenant.id, int(campaign_id), f"It could not start at its scheduled time: {exc.message}")
            return "paused"
    await enqueue_senders(tenant.id, int(campaign_id), tag=minute)
    return "senders queued"


async def _pause(tenant_id: int, campaign_id: int, reason: str) -> None:
    from kith.tenants.campaigns.campaigns import dequeue

    async with tenant_scope(tenant_id) as tx:
        await tx.execute_query(
            "UPDATE campaigns SET status = 'paused', paused_reason = $2, updated_at = now()"
            " WHERE id = $1 AND status IN ('scheduled', 'sending')", [campaign_id, reason[:1000]])
    await dequeue(tenant_id, campaign_id)


async def enqueue_due_campaigns(ctx: dict[str, Any]) -> int:
    """Every minute: queue a job for each campaign that is due and that no job is sending."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT q.tenant_id, q.campaign_id FROM public.campaign_queue q JOIN public.tenants t ON t.id = q.tenant_id"
            " WHERE t.status = 'active' AND q.next_run_at <= now()"
            " AND (q.heartbeat_at IS NULL OR q.heartbeat_at < now() - make_interval(secs => $1))"
            " ORDER BY q.next_run_at LIMIT 1000", [STALE_SECONDS])
    minute = datetime.now(UTC).strftime("%Y%m%d%H%M")
    for row in rows:
        await enqueue_tenant_job("campaign_due", row["tenant_id"], row["campaign_id"],
                                 job_id=f"campaign-due:{row['tenant_id']}:{row['campaign_id']}:{minute}")
    if rows:
        log.info("campaigns_due", count=len(rows))
    return len(rows)


CAMPAIGN_FUNCTIONS: list[Any] = [
    func(send_campaign, name="send_campaign", timeout=SEND_TIMEOUT_SECONDS, max_tries=3),
    func(campaign_due, name="campaign_due", timeout=120, max_tries=3),
]
