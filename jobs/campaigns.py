"""The arq jobs of email campaigns: sending, and the cron that starts scheduled campaigns and
takes up campaigns nobody is sending.

The database decides what is sent (see kith.tenants.campaigns.sending); these jobs only decide
who sends. A campaign has SENDING_JOBS slots (kith.tenants.campaigns.campaigns), each sent by one
job at a time: the job holds its slot's Redis key (SET NX, refreshed every HEARTBEAT_SECONDS,
gone SLOT_SECONDS after its worker died), sends for at most SEND_SECONDS, then queues its
continuation. A job whose worker already sends the same campaign hands itself on (deferred a
second, a few times at most) so that the slots spread over the workers instead of sharing one
process's core. `public.campaign_queue` says which campaigns need a worker and when, and carries
the heartbeat of whoever sends each one. Every 5 seconds the cron queues `campaign_due` for a
campaign that is due and has no fresh heartbeat (a scheduled one whose time came, one whose
back-off ended, one whose workers all died) and a sending job for each empty slot of a campaign
that is being sent; a dead worker's share is therefore taken up within about SLOT_SECONDS plus
5 seconds, far within twice the job timeout. Job ids are per campaign, slot and 5-second tick: a
cron firing twice queues nothing more, and a second job for a held slot ends at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from arq import func

from kith.jobs.queue import enqueue_tenant_job, get_queue
from kith.jobs.tenant_job import JobContext, tenant_job
from kith.platform.config import get_settings
from kith.platform.db import platform_tx, tenant_scope
from kith.platform.observability import get_logger
from kith.platform.tenancy.models import Tenant

log = get_logger("kith.jobs.campaigns")
SEND_TIMEOUT_SECONDS = 600
SEND_SECONDS = 240  # a job's sending budget, well inside its timeout
STALE_SECONDS = 10  # no heartbeat for this long: no job is sending the campaign (5 missed beats)
SLOT_SECONDS = 10  # a sending job's slot key outlives its last refresh by this long
HOP_SECONDS = 1.0  # how long a job handed on waits, so another worker's poll takes it first
MAX_HOPS = 4
TICK_SECONDS = 5  # the cron's period
_sending_here: Counter[tuple[int, int]] = Counter()  # (tenant, campaign) -> jobs this process runs
# deletes the slot key only while it is still this job's
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def slot_key(tenant_id: int, campaign_id: int, slot: int) -> str:
    return f"{get_settings().queue_name}:campaign-slot:{int(tenant_id)}:{int(campaign_id)}:{int(slot)}"


async def _keep_slot(key: str, holder: str) -> None:
    from kith.tenants.campaigns.sending import HEARTBEAT_SECONDS

    redis = await get_queue()
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        with contextlib.suppress(Exception):
            await redis.set(key, holder, ex=SLOT_SECONDS, xx=True)


@tenant_job
async def send_campaign(ctx: JobContext, tenant: Tenant, campaign_id: int, slot: int = 0, hops: int = 0) -> str:
    from kith.tenants.campaigns.sending import send_campaign as send

    campaign = (tenant.id, int(campaign_id))
    # checked and counted before any await: arq starts the jobs it fetched together side by side
    here = _sending_here[campaign]
    _sending_here[campaign] += 1
    try:
        if here and hops < MAX_HOPS:
            await enqueue_tenant_job("send_campaign", tenant.id, int(campaign_id), int(slot), int(hops) + 1,
                                     job_id=f"campaign:{tenant.id}:{int(campaign_id)}:{secrets.token_hex(4)}:{slot}",
                                     _defer_by=HOP_SECONDS)
            return "handed on: this worker already sends the campaign"
        redis = await get_queue()
        key = slot_key(tenant.id, int(campaign_id), int(slot))
        holder = str(ctx.get("job_id") or secrets.token_hex(8))
        if not await redis.set(key, holder, ex=SLOT_SECONDS, nx=True):
            return f"slot {slot} is being sent by another job"
        keeper = asyncio.get_running_loop().create_task(_keep_slot(key, holder))
        try:
            report = await send(tenant.id, int(campaign_id), seconds=SEND_SECONDS)
        finally:
            keeper.cancel()
            with contextlib.suppress(BaseException):
                await redis.eval(_RELEASE, 1, key, holder)
    finally:
        _sending_here[campaign] -= 1
        if not _sending_here[campaign]:
            del _sending_here[campaign]
    if not report.finished and not report.stopped:
        # the budget ran out with recipients left: the next job takes over (a new id each time)
        await enqueue_tenant_job("send_campaign", tenant.id, int(campaign_id), int(slot),
                                 job_id=f"campaign:{tenant.id}:{int(campaign_id)}:{secrets.token_hex(4)}:{slot}")
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
    await enqueue_senders(tenant.id, int(campaign_id), tag=_tick())
    return "senders queued"


async def _pause(tenant_id: int, campaign_id: int, reason: str) -> None:
    from kith.tenants.campaigns.campaigns import dequeue

    async with tenant_scope(tenant_id) as tx:
        await tx.execute_query(
            "UPDATE campaigns SET status = 'paused', paused_reason = $2, updated_at = now()"
            " WHERE id = $1 AND status IN ('scheduled', 'sending')", [campaign_id, reason[:1000]])
    await dequeue(tenant_id, campaign_id)


def _tick() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y%m%d%H%M") + f"{now.second - now.second % TICK_SECONDS:02d}"


async def enqueue_due_campaigns(ctx: dict[str, Any]) -> int:
    """Every 5 seconds: queue `campaign_due` for each campaign that is due and that no job is
    sending, and a sending job for each empty slot of a campaign that is being sent."""
    from kith.tenants.campaigns.campaigns import SENDING_JOBS

    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT q.tenant_id, q.campaign_id, (q.heartbeat_at IS NOT NULL"
            " AND q.heartbeat_at >= now() - make_interval(secs => $1)) AS beating"
            " FROM public.campaign_queue q JOIN public.tenants t ON t.id = q.tenant_id"
            " WHERE t.status = 'active' AND q.next_run_at <= now()"
            " ORDER BY q.next_run_at LIMIT 1000", [STALE_SECONDS])
    tick = _tick()
    due = [r for r in rows if not r["beating"]]
    for row in due:
        await enqueue_tenant_job("campaign_due", row["tenant_id"], row["campaign_id"],
                                 job_id=f"campaign-due:{row['tenant_id']}:{row['campaign_id']}:{tick}")
    sending = [r for r in rows if r["beating"]]
    refilled = 0
    if sending:
        redis = await get_queue()
        keys = [slot_key(r["tenant_id"], r["campaign_id"], k) for r in sending for k in range(SENDING_JOBS)]
        held = await redis.mget(keys)
        for i, holder in enumerate(held):
            if holder is None:
                row, k = sending[i // SENDING_JOBS], i % SENDING_JOBS
                await enqueue_tenant_job("send_campaign", row["tenant_id"], row["campaign_id"], k,
                                         job_id=f"campaign:{row['tenant_id']}:{row['campaign_id']}:{tick}:{k}")
                refilled += 1
    if due or refilled:
        log.info("campaigns_due", due=len(due), slots_refilled=refilled)
    return len(due) + refilled


CAMPAIGN_FUNCTIONS: list[Any] = [
    func(send_campaign, name="send_campaign", timeout=SEND_TIMEOUT_SECONDS, max_tries=3),
    func(campaign_due, name="campaign_due", timeout=120, max_tries=3),
]
