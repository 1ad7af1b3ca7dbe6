"""The outbox sweeper: transactional emails whose delivery job was never queued, or was lost.

An email is a row of public.outbox_emails written in the transaction that decided to send it;
the caller queues its delivery job after the commit (kith.platform.email.delivery). Should Redis
be down at that moment, or the job be lost, the row stays 'pending' for good. Every ten minutes
`sweep_outbox` takes the rows still pending PENDING_AFTER after they were written and, by kind,
queues the job that delivers that kind (which checks the email's occasion again when it runs),
or gives the row up ('failed', with the reason) when its occasion has passed or cannot be
checked again:

- invitation: `invitation_email` while the invitation is pending (not withdrawn, accepted or
  expired);
- email_verification: `verification_email` while the link can be used;
- welcome: `welcome_email` while the person is a member of the workspace;
- billing: `billing_notices` while the same notice is the one due;
- task_reminder: `send_task_reminders` for the workspace, which delivers its reminders of the
  last day; an older one is given up (that job no longer sends it);
- password_reset: given up: the job that writes it issues a fresh link each time it runs, so a
  pending one was superseded (or the person asks again);
- any other kind: given up, as no job checks it again.
A workspace's email is given up when the workspace is not active (its jobs do nothing then).

Ids in dedupe keys say which invitation, link or person an email is for (see each writer).
Job ids name the email (task reminders: the workspace) and the ten-minute tick, so a cron firing
twice queues nothing more; deliver() claims a row atomically, so a job running beside the
original one sends nothing twice.

Rows stuck 'sending' (their worker died mid-SMTP) are never sent again, as the server may have
the message: the ops dashboard counts them (delivery.interrupted_count), and the sweep logs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kith.jobs.billing import due_notice as due_billing_notice
from kith.jobs.queue import enqueue_tenant_job, get_queue, queued_job_id
from kith.platform.billing.subscriptions import current_subscription
from kith.platform.db import platform_tx
from kith.platform.email.delivery import give_up_pending, interrupted_count
from kith.platform.identity.verification import verification_is_pending
from kith.platform.observability import get_logger
from kith.platform.tenancy.invites import invitation_is_pending
from kith.platform.tenancy.models import Tenant, TenantStatus

log = get_logger("kith.jobs.outbox_sweeper")

PENDING_AFTER = timedelta(minutes=10)
TICK_MINUTES = 10
# send_task_reminders delivers a workspace's undelivered reminders of the last day only
# (kith.tenants.activities.reminders.undelivered_reminders)
REMINDER_WINDOW = timedelta(days=1)
# rows per sweep; a larger backlog waits for the next tick
BATCH = 500
GIVEN_UP = "never sent; not re-sent because "


@dataclass(frozen=True)
class WaitingEmail:
    id: int
    tenant_id: int | None
    kind: str
    dedupe_key: str
    created_at: datetime


@dataclass(frozen=True)
class Delivery:
    """The job that delivers an email: `function(*args)`, a tenant job when tenant_id is set."""

    function: str
    args: tuple[int, ...]
    job_key: str  # names the email (or workspace) in the job id, with the tick
    tenant_id: int | None = None


@dataclass(frozen=True)
class SweepResult:
    queued: int
    given_up: int
    interrupted: int


def _id_after(key: str, prefix: str) -> int | None:
    rest = key.removeprefix(prefix)
    return int(rest) if rest != key and rest.isdigit() else None


async def _tenant_refusal(tenant_id: int | None) -> str:
    """Why a workspace's email cannot go out now ('' when the workspace is active)."""
    if tenant_id is None:
        return "it names no workspace"
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict("SELECT status::text AS status FROM public.tenants WHERE id = $1",
                                           [tenant_id])
    if not rows:
        return "the workspace no longer exists"
    status = str(rows[0]["status"])
    return "" if status == TenantStatus.ACTIVE else f"the workspace is {status}"


async def _invitation(email: WaitingEmail, now: datetime) -> Delivery | str:
    # dedupe key "invitation:<invitation id>" (kith.platform.tenancy.invites.create_invitation)
    invitation_id = _id_after(email.dedupe_key, "invitation:")
    if invitation_id is None:
        return "its dedupe key names no invitation"
    if reason := await _tenant_refusal(email.tenant_id):
        return reason
    assert email.tenant_id is not None
    if not await invitation_is_pending(email.tenant_id, invitation_id):
        return "the invitation was withdrawn, accepted or has expired"
    return Delivery("invitation_email", (invitation_id, email.id), f"{email.id}", email.tenant_id)


async def _verification(email: WaitingEmail, now: datetime) -> Delivery | str:
    # dedupe key "email_verification:<verification id>" (kith.platform.identity.verification)
    verification_id = _id_after(email.dedupe_key, "email_verification:")
    if verification_id is None:
        return "its dedupe key names no verification link"
    if not await verification_is_pending(verification_id):
        return "the link was used or has expired, or the address was verified or changed since"
    return Delivery("verification_email", (verification_id, email.id), f"{email.id}")


async def _welcome(email: WaitingEmail, now: datetime) -> Delivery | str:
    # dedupe key "welcome:<tenant id>:<identity id>" (kith.jobs.welcome.welcome_email)
    parts = email.dedupe_key.split(":")
    if len(parts) != 3 or not parts[2].isdigit() or parts[1] != str(email.tenant_id):
        return "its dedupe key names no member"
    if reason := await _tenant_refusal(email.tenant_id):
        return reason
    identity_id = int(parts[2])
    async with platform_tx() as tx:
        member = await tx.execute_query_dict(
            "SELECT 1 FROM public.memberships WHERE tenant_id = $1 AND identity_id = $2 AND is_active",
            [email.tenant_id, identity_id])
    if not member:
        return "the person is no longer a member of the workspace"
    return Delivery("welcome_email", (identity_id,), f"{email.id}", email.tenant_id)


async def _billing(email: WaitingEmail, now: datetime) -> Delivery | str:
    # dedupe key "<notice key>:<address>" (kith.jobs.billing.billing_notices): the job sends the
    # notice due when it runs, so the row goes out only while its notice is still the one due
    if reason := await _tenant_refusal(email.tenant_id):
        return reason
    async with platform_tx() as tx:
        tenant = await Tenant.get_or_none(id=email.tenant_id).using_db(tx)
    if tenant is None:
        return "the workspace no longer exists"
    due = due_billing_notice(tenant, await current_subscription(tenant.id), now)
    if due is None or not email.dedupe_key.startswith(f"{due[0]}:"):
        return "the workspace's billing changed since: that notice is no longer due"
    return Delivery("billing_notices", (), f"{email.id}", tenant.id)


async def _task_reminder(email: WaitingEmail, now: datetime) -> Delivery | str:
    if email.created_at <= now - REMINDER_WINDOW:
        return "it is more than a day old, and reminders are not sent later than that"
    if reason := await _tenant_refusal(email.tenant_id):
        return reason
    assert email.tenant_id is not None
    # one job per workspace and tick delivers all of its reminders
    return Delivery("send_task_reminders", (), f"task-reminders:{email.tenant_id}", email.tenant_id)


async def _password_reset(email: WaitingEmail, now: datetime) -> Delivery | str:
    return ("the job that writes a reset link issues a fresh one each time it runs (the person can also "
            "ask for a new one)")


ROUTES = {
    "invitation": _invitation,
    "email_verification": _verification,
    "welcome": _welcome,
    "billing": _billing,
    "task_reminder": _task_reminder,
    "password_reset": _password_reset,
}


async def route(email: WaitingEmail, now: datetime) -> Delivery | str:
    """The job that delivers a waiting email, or why it is not sent."""
    kind_route = ROUTES.get(email.kind)
    if kind_route is None:
        return f"no job checks a {email.kind[:40]!r} email again"
    return await kind_route(email, now)


def tick_of(now: datetime) -> str:
    """The ten-minute tick `now` falls in, e.g. 2030061512 plus 3 for 12:30-12:39 UTC."""
    now = now.astimezone(UTC)
    return f"{now:%Y%m%d%H}{now.minute // TICK_MINUTES}"


async def _enqueue(delivery: Delivery, tick: str) -> bool:
    job_id = f"outbox-sweep:{delivery.job_key}:{tick}"
    if delivery.tenant_id is not None:
        job = await enqueue_tenant_job(delivery.function, delivery.tenant_id, *delivery.args, job_id=job_id)
    else:
        queue = await get_queue()
        job = await queue.enqueue_job(delivery.function, *delivery.args, _job_id=queued_job_id(job_id))
    return job is not None


async def waiting_emails(now: datetime, limit: int = BATCH) -> list[WaitingEmail]:
    """Rows still pending PENDING_AFTER after they were written, oldest first."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT id, tenant_id, kind, dedupe_key, created_at FROM public.outbox_emails"
            " WHERE status = 'pending' AND created_at < $1 ORDER BY created_at, id LIMIT $2",
            [now - PENDING_AFTER, limit])
    return [WaitingEmail(int(r["id"]), None if r["tenant_id"] is None else int(r["tenant_id"]), str(r["kind"]),
                         str(r["dedupe_key"]), r["created_at"]) for r in rows]


async def sweep(now: datetime | None = None) -> SweepResult:
    """Queue the delivery job of every email left pending, or give it up; count the interrupted."""
    now = now or datetime.now(UTC)
    tick = tick_of(now)
    queued = given_up = 0
    for email in await waiting_emails(now):
        outcome = await route(email, now)
        if isinstance(outcome, Delivery):
            if await _enqueue(outcome, tick):
                queued += 1
                log.info("outbox_email_requeued", email_id=email.id, kind=email.kind, job=outcome.function)
        elif await give_up_pending(email.id, GIVEN_UP + outcome):
            given_up += 1
    interrupted = await interrupted_count()
    if interrupted:
        log.warning("outbox_emails_interrupted", count=interrupted)
    return SweepResult(queued, given_up, interrupted)


async def sweep_outbox(ctx: dict[str, Any]) -> str:
    """Every ten minutes: emails left pending go to their job again, or are given up."""
    result = await sweep()
    return f"{result.queued} queued, {result.given_up} given up, {result.interrupted} interrupted"
