"""Billing jobs: dunning and trial-ending emails, and deleting cancelled workspaces after retention.

The daily cron queues one `billing_notices` job per workspace that needs one. Emails are rows
in public.outbox_emails with a dedupe key naming the occasion (the day of the dunning cycle,
the trial's end), so a job that runs twice never sends twice.
"""

from __future__ import annotations

from datetime import UTC, datetime

from arq.worker import Retry

from kith.jobs.queue import enqueue_tenant_job
from kith.jobs.tenant_job import JobContext, tenant_job
from kith.platform.access.actor import Actor
from kith.platform.access.session import acting_as
from kith.platform.billing.retention import delete_cancelled_tenant, deletion_due_at
from kith.platform.billing.subscriptions import Subscription, current_subscription, now_utc, update_in
from kith.platform.config import get_settings
from kith.platform.db import platform_tx
from kith.platform.email.delivery import EmailDeliveryError, deliver, queue_email
from kith.platform.tenancy.models import Tenant

# Days after a failed payment on which a reminder goes out (day 0 is the failure itself).
DUNNING_DAYS = (0, 3, 7, 12)
TRIAL_NOTICE_DAYS = 3
RETRY_BACKOFF_S = (10, 60, 300, 900)


def due_notice(tenant: Tenant, sub: Subscription, now: datetime) -> tuple[str, str, str] | None:
    """(dedupe key, subject, body) of the email this workspace is due now, if any."""
    url = f"{get_settings().base_url}/t/{tenant.slug}/settings/billing"
    state = sub.state(now)
    if state == "past_due" and sub.past_due_since:
        day = max(d for d in DUNNING_DAYS if d <= (now - sub.past_due_since).days) if \
            (now - sub.past_due_since).days >= 0 else 0
        grace = sub.grace_ends_at()
        return (f"dunning:{tenant.id}:{sub.past_due_since:%Y%m%d%H%M%S}:{day}",
                f"Payment failed for {tenant.name}",
                f"We could not charge the card on file for {tenant.name}.\n\nUpdate the payment method at {url}"
                f"{f' before {grace:%Y-%m-%d}' if grace else ''}; after that the workspace becomes read-only.\n")
    if state == "read_only" and sub.past_due_since:
        return (f"read-only:{tenant.id}:{sub.past_due_since:%Y%m%d%H%M%S}", f"{tenant.name} is now read-only",
                f"Payment for {tenant.name} is overdue past the grace period. Your data stays visible and "
                f"exportable; pay the open invoice at {url} to restore full access.\n")
    if state == "trialing" and sub.trial_ends_at and 0 <= (sub.trial_ends_at - now).days < TRIAL_NOTICE_DAYS:
        return (f"trial-ending:{tenant.id}:{sub.trial_ends_at:%Y%m%d}", f"Your {tenant.name} trial ends soon",
                f"The trial of {tenant.name} ends on {sub.trial_ends_at:%Y-%m-%d}. Choose a plan at {url} to keep "
                "every feature; otherwise the workspace moves to the Free plan.\n")
    if state == "cancelled" and sub.cancelled_at:
        due = deletion_due_at(sub.cancelled_at)
        return (f"cancelled:{tenant.id}:{sub.cancelled_at:%Y%m%d%H%M%S}", f"{tenant.name} was cancelled",
                f"The subscription of {tenant.name} was cancelled. Its data is kept until {due:%Y-%m-%d} and then "
                f"deleted. Export it before then from {get_settings().base_url}/t/{tenant.slug}/contacts "
                f"(owners and admins), or subscribe again at {url}.\n")
    return None


@tenant_job
async def billing_notices(ctx: JobContext, tenant: Tenant) -> str:
    """Send the workspace's due billing email, settle a lapsed trial, delete it after retention."""
    now = now_utc()
    if await delete_cancelled_tenant(tenant.id):
        return "deleted after retention"
    sub = await current_subscription(tenant.id)
    if sub.trial_lapsed(now):
        async with acting_as(Actor.system(tenant.id, "job:billing_notices")) as session:
            changes = await update_in(session.tx, tenant.id, {"plan": "free", "status": "active"})
            if changes:
                await session.audit("billing.trial_ended", "billing_subscription", tenant.id, changes)
        return "trial ended: free plan"
    notice = due_notice(tenant, sub, now)
    if notice is None:
        return "nothing due"
    key, subject, body = notice
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT i.email FROM public.memberships m JOIN public.identities i ON i.id = m.identity_id"
            " WHERE m.tenant_id = $1 AND m.is_active AND m.role IN ('owner', 'admin') ORDER BY m.id", [tenant.id])
        ids = [await queue_email(tx, tenant_id=tenant.id, kind="billing", dedupe_key=f"{key}:{r['email']}",
                                 to=str(r["email"]), subject=subject, body_text=body) for r in rows]
    try:
        for email_id in ids:
            if email_id is not None:
                await deliver(email_id)
    except EmailDeliveryError as exc:
        job_try = int(ctx.get("job_try", 1))
        raise Retry(defer=RETRY_BACKOFF_S[min(job_try, len(RETRY_BACKOFF_S)) - 1]) from exc
    return f"{key.split(':', 1)[0]}: {len(ids)} emails"


async def enqueue_billing_notices(ctx: JobContext) -> int:
    """The daily cron: one billing_notices job per workspace in a state that may need one."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT s.tenant_id FROM public.billing_subscriptions s JOIN public.tenants t ON t.id = s.tenant_id"
            " WHERE t.status = 'active' AND s.deleted_at IS NULL"
            " AND s.status IN ('trialing', 'past_due', 'cancelled')")
    day = datetime.now(UTC).strftime("%Y%m%d")
    queued = 0
    for row in rows:
        tid = int(row["tenant_id"])
        queued += await enqueue_tenant_job("billing_notices", tid, job_id=f"billing-notices:{tid}:{day}") is not None
    return queued
