"""Emails with a link: the invitation (a tenant job), the password reset and the email
verification (no tenant: a person may belong to no workspace, or to several)."""

from __future__ import annotations

import hashlib
import time

from arq.worker import Retry

from kith.jobs.queue import enqueue_tenant_job, get_queue, queued_job_id
from kith.jobs.tenant_job import JobContext, tenant_job
from kith.jobs.welcome import RETRY_BACKOFF_S
from kith.platform.email.delivery import EmailDeliveryError, deliver
from kith.platform.identity.reset import issue_password_reset
from kith.platform.identity.verification import verification_is_pending
from kith.platform.observability import get_logger
from kith.platform.tenancy.invites import invitation_is_pending
from kith.platform.tenancy.models import Tenant

log = get_logger("kith.jobs")


async def _deliver(ctx: JobContext, email_id: int) -> str:
    try:
        status = await deliver(email_id)
    except EmailDeliveryError as exc:
        job_try = int(ctx.get("job_try", 1))
        raise Retry(defer=RETRY_BACKOFF_S[min(job_try, len(RETRY_BACKOFF_S)) - 1]) from exc
    return f"email {email_id}: {status}"


@tenant_job
async def invitation_email(ctx: JobContext, tenant: Tenant, invitation_id: int, email_id: int) -> str:
    """Deliver an invitation's email (written to the outbox with the invitation), unless the
    invitation was withdrawn or expired meanwhile."""
    if not await invitation_is_pending(tenant.id, invitation_id):
        return f"skipped: invitation {invitation_id} is no longer pending"
    return await _deliver(ctx, email_id)


async def enqueue_invitation_email(tenant_id: int, invitation_id: int, email_id: int) -> None:
    """Queue the delivery of an invitation email (one job per invitation)."""
    await enqueue_tenant_job("invitation_email", tenant_id, int(invitation_id), int(email_id),
                             job_id=f"invitation:{int(tenant_id)}:{int(invitation_id)}")


async def password_reset_email(ctx: JobContext, email: str) -> str:
    """Issue a reset link for `email` and deliver it; does nothing for an unknown address or one
    over its hourly limit (the requester is told the same either way)."""
    email_id = await issue_password_reset(email)
    if email_id is None:
        log.info("job", job="password_reset_email", outcome="skipped")
        return "skipped: no account, or over the hourly limit"
    return await _deliver(ctx, email_id)


async def enqueue_password_reset(email: str) -> None:
    """Queue a reset for `email`. Repeats for one address within a minute collapse into one job
    (the job id names a digest of the address, never the address itself)."""
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    minute = int(time.time() // 60)
    queue = await get_queue()
    await queue.enqueue_job("password_reset_email", email.strip()[:320],
                            _job_id=queued_job_id(f"reset:{digest}:{minute}"))


async def verification_email(ctx: JobContext, verification_id: int, email_id: int) -> str:
    """Deliver an email verification link (written to the outbox with the link), unless the
    address was verified, or the link used up or expired, meanwhile."""
    if not await verification_is_pending(verification_id):
        return f"skipped: verification {verification_id} is no longer pending"
    return await _deliver(ctx, email_id)


async def enqueue_verification_email(verification_id: int, email_id: int) -> None:
    """Queue the delivery of a verification email (one job per link)."""
    queue = await get_queue()
    await queue.enqueue_job("verification_email", int(verification_id), int(email_id),
                            _job_id=queued_job_id(f"verification:{int(verification_id)}"))
