"""The outbox sweeper: emails left 'pending' because their delivery job was never queued (Redis
down) or was lost go to the job of their kind, which checks their occasion again, or are given
up with the reason; young rows are left alone; rows stuck 'sending' are counted, never re-sent.
Real PostgreSQL and Redis, the real invitation, verification, reset, welcome and billing code,
and arq's own Worker in process for the queued jobs.

No user input reaches the sweeper: it reads rows Kith wrote. The nearest thing to bad input is a
row Kith itself could not route (an unknown kind, a dedupe key naming nothing): given up, with why."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from arq.jobs import Job, JobStatus

from kith.jobs.outbox_sweeper import GIVEN_UP, sweep, tick_of
from kith.jobs.queue import close_queue, enqueue_tenant_job, get_queue, queued_job_id
from kith.platform.config import get_settings, reset_settings, restored_environment
from kith.platform.db import platform_tx
from kith.platform.email.delivery import interrupted_count, queue_email
from kith.platform.identity.reset import issue_password_reset
from kith.platform.identity.verification import issue_verification
from kith.platform.tenancy.invites import revoke_invitation
from kith.web.auth_pages import send_verification

from .conftest import Workspace, make_workspace
from .factories import owner_token
from .test_billing import owner
from .test_email_delivery import free_port
from .test_ops import make_operator, ops_login
from .test_ops_figures import run_queued_jobs
from .web_helpers import client


@asynccontextmanager
async def redis_down() -> AsyncIterator[None]:
    """Redis cannot be reached (nothing listens at REDIS_URL) until the block ends."""
    await close_queue()
    with restored_environment("REDIS_URL"):
        os.environ["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
        reset_settings()
        try:
            yield
        finally:
            await close_queue()
    reset_settings()


async def email_row(email_id: int) -> dict[str, Any]:
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT kind, status, error FROM public.outbox_emails WHERE id = $1", [email_id])
    return dict(rows[0])


async def age(email_id: int, minutes: int) -> None:
    """The row was written `minutes` ago."""
    async with platform_tx() as tx:
        await tx.execute_query(
            "UPDATE public.outbox_emails SET created_at = now() - make_interval(mins => $2) WHERE id = $1",
            [email_id, minutes])


async def queued_job(job_id: str) -> Job:
    """arq's handle on a job of this test run's queue."""
    return Job(queued_job_id(job_id), await get_queue(), _queue_name=get_settings().queue_name)


async def sweep_job(email_id: int, now: datetime) -> Job:
    return await queued_job(f"outbox-sweep:{email_id}:{tick_of(now)}")


async def invite_with_redis_down(ws: Workspace, email: str) -> tuple[int, int]:
    """Invite through the API while Redis is down: the invitation is made, its email waits in the
    outbox (the route says so in its log and answers 201). Returns (invitation id, email id)."""
    headers = await owner_token(ws)
    async with redis_down(), client(headers=headers) as c:
        resp = await c.post("/api/v1/invitations", json={"email": email, "role": "sales"})
    assert resp.status_code == 201, resp.text
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT id, status FROM public.outbox_emails WHERE dedupe_key = $1", [f"invitation:{resp.json()['id']}"])
    assert rows[0]["status"] == "pending"
    return int(resp.json()["id"]), int(rows[0]["id"])


async def test_a_lost_invitation_email_is_delivered_and_a_withdrawn_one_given_up(workspace: Workspace) -> None:
    await run_queued_jobs()
    _, lost = await invite_with_redis_down(workspace, f"lost-{workspace.slug}@example.com")
    withdrawn_id, withdrawn = await invite_with_redis_down(workspace, f"gone-{workspace.slug}@example.com")
    await revoke_invitation(owner(workspace), withdrawn_id)
    _, young = await invite_with_redis_down(workspace, f"young-{workspace.slug}@example.com")
    await age(lost, 11)
    await age(withdrawn, 11)
    await age(young, 9)

    now = datetime.now(UTC)
    first = await sweep(now)
    assert first.queued >= 1 and first.given_up >= 1
    assert await (await sweep_job(lost, now)).status() == JobStatus.queued
    again = await sweep(now)  # the cron firing twice in one tick queues nothing more
    assert again.queued == 0

    assert await email_row(withdrawn) == {
        "kind": "invitation", "status": "failed",
        "error": GIVEN_UP + "the invitation was withdrawn, accepted or has expired"}
    assert await (await sweep_job(withdrawn, now)).status() == JobStatus.not_found
    assert await email_row(young) == {"kind": "invitation", "status": "pending", "error": ""}
    assert await (await sweep_job(young, now)).status() == JobStatus.not_found

    await run_queued_jobs()
    assert (await email_row(lost))["status"] == "outbox"  # the dev outbox: no SMTP_HOST in tests
    assert (await email_row(withdrawn))["status"] == "failed"
    assert (await email_row(young))["status"] == "pending"


async def test_a_verification_email_left_by_a_redis_outage_is_sent_unless_the_address_was_verified(
        db: object) -> None:
    await run_queued_jobs()
    waiting = await make_workspace("swv", verified=False)
    verified = await make_workspace("swv", verified=False)
    issued = []
    for ws in (waiting, verified):
        issue = await issue_verification(ws.identity_id)
        async with redis_down():
            await send_verification(issue)  # what the banner's "resend" does; the queueing fails
        await age(issue.email_id, 15)
        issued.append(issue)
    async with platform_tx() as tx:  # the second person followed an earlier link meanwhile
        await tx.execute_query("UPDATE public.identities SET email_verified_at = now() WHERE id = $1",
                               [verified.identity_id])
    await sweep()
    await run_queued_jobs()
    assert (await email_row(issued[0].email_id))["status"] == "outbox"
    assert await email_row(issued[1].email_id) == {
        "kind": "email_verification", "status": "failed",
        "error": GIVEN_UP + "the link was used or has expired, or the address was verified or changed since"}


async def test_a_pending_password_reset_is_given_up(workspace: Workspace) -> None:
    email_id = await issue_password_reset(workspace.email)  # as the job does, before its worker died
    assert email_id is not None
    await age(email_id, 20)
    await sweep()
    row = await email_row(email_id)
    assert row["status"] == "failed" and row["error"].startswith(GIVEN_UP + "the job that writes a reset link")


async def queued_as(ws: Workspace | None, kind: str, key: str) -> int:
    """A row written by `queue_email` whose delivery job never ran."""
    async with platform_tx() as tx:
        email_id = await queue_email(tx, tenant_id=ws.tenant_id if ws else None, kind=kind, dedupe_key=key,
                                     to=ws.email if ws else "nobody@example.com", subject="s", body_text="b\n")
    assert email_id is not None
    return email_id


async def test_a_welcome_email_goes_out_to_a_member_only(workspace: Workspace, other_workspace: Workspace) -> None:
    # the welcome job wrote its row, and its worker died before delivering it
    member = await queued_as(workspace, "welcome", f"welcome:{workspace.tenant_id}:{workspace.identity_id}")
    # and one for someone who is not a member of the workspace (any more)
    stranger = await queued_as(workspace, "welcome", f"welcome:{workspace.tenant_id}:{other_workspace.identity_id}")
    for email_id in (member, stranger):
        await age(email_id, 30)
    await sweep()
    await run_queued_jobs()
    assert (await email_row(member))["status"] == "outbox"
    assert await email_row(stranger) == {
        "kind": "welcome", "status": "failed",
        "error": GIVEN_UP + "the person is no longer a member of the workspace"}


async def test_a_billing_notice_goes_out_while_it_is_due(workspace: Workspace) -> None:
    await run_queued_jobs()
    async with platform_tx() as tx:
        await tx.execute_query(
            "UPDATE public.billing_subscriptions SET status = 'trialing', trial_ends_at = now() + interval '2 days'"
            " WHERE tenant_id = $1", [workspace.tenant_id])
    assert await enqueue_tenant_job("billing_notices", workspace.tenant_id, job_id=f"sw-billing:{workspace.slug}")
    await run_queued_jobs()
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT id FROM public.outbox_emails WHERE tenant_id = $1 AND kind = 'billing'", [workspace.tenant_id])
        assert len(rows) == 1
        notice = int(rows[0]["id"])
        # as if its worker died between writing and delivering it
        await tx.execute_query(
            "UPDATE public.outbox_emails SET status = 'pending', sent_at = NULL,"
            " created_at = now() - interval '30 minutes' WHERE id = $1", [notice])
    await sweep()
    await run_queued_jobs()
    assert (await email_row(notice))["status"] == "outbox"

    # the same again, but the trial was extended meanwhile: the notice is no longer due
    async with platform_tx() as tx:
        await tx.execute_query(
            "UPDATE public.outbox_emails SET status = 'pending', sent_at = NULL WHERE id = $1", [notice])
        await tx.execute_query(
            "UPDATE public.billing_subscriptions SET trial_ends_at = now() + interval '20 days' WHERE tenant_id = $1",
            [workspace.tenant_id])
    await sweep()
    assert await email_row(notice) == {
        "kind": "billing", "status": "failed",
        "error": GIVEN_UP + "the workspace's billing changed since: that notice is no longer due"}


async def test_task_reminders_go_to_the_workspace_job_within_a_day(workspace: Workspace) -> None:
    await run_queued_jobs()
    key = f"task-reminder:{workspace.tenant_id}"
    recent = await queued_as(workspace, "task_reminder", f"{key}:1:{secrets.token_hex(4)}")
    stale = await queued_as(workspace, "task_reminder", f"{key}:2:{secrets.token_hex(4)}")
    await age(recent, 60)
    await age(stale, 25 * 60)
    now = datetime.now(UTC)
    await sweep(now)
    job = await queued_job(f"outbox-sweep:task-reminders:{workspace.tenant_id}:{tick_of(now)}")
    assert await job.status() == JobStatus.queued
    assert await email_row(stale) == {
        "kind": "task_reminder", "status": "failed",
        "error": GIVEN_UP + "it is more than a day old, and reminders are not sent later than that"}
    await run_queued_jobs()
    assert (await email_row(recent))["status"] == "outbox"


async def test_rows_kith_cannot_route_are_given_up_with_why(workspace: Workspace) -> None:
    # not user input: rows of a kind no job checks, and an invitation row whose key names none
    unknown = await queued_as(workspace, "newsletter", f"newsletter:{secrets.token_hex(6)}")
    nameless = await queued_as(workspace, "invitation", f"invitation:x{secrets.token_hex(6)}")
    for email_id in (unknown, nameless):
        await age(email_id, 11)
    await sweep()
    assert (await email_row(unknown))["error"] == GIVEN_UP + "no job checks a 'newsletter' email again"
    assert (await email_row(nameless))["error"] == GIVEN_UP + "its dedupe key names no invitation"


async def test_an_email_stuck_sending_is_counted_on_the_dashboard_and_never_sent_again(
        workspace: Workspace) -> None:
    op = await make_operator()
    stuck = await queued_as(workspace, "invitation", f"invitation:{10**12 + secrets.randbelow(10**6)}")
    before = await interrupted_count()
    async with platform_tx() as tx:  # claimed two hours ago by a worker that died mid-SMTP
        await tx.execute_query(
            "UPDATE public.outbox_emails SET status = 'sending', claimed_at = now() - interval '2 hours',"
            " created_at = now() - interval '2 hours' WHERE id = $1", [stuck])
    result = await sweep()
    assert result.interrupted == before + 1 == await interrupted_count()
    await run_queued_jobs()
    assert await email_row(stuck) == {"kind": "invitation", "status": "sending", "error": ""}
    # one claimed a minute ago is merely being sent
    sending = await queued_as(workspace, "invitation", f"invitation:{10**12 + secrets.randbelow(10**6)}")
    async with platform_tx() as tx:
        await tx.execute_query(
            "UPDATE public.outbox_emails SET status = 'sending', claimed_at = now() - interval '1 minute',"
            " created_at = now() - interval '3 hours' WHERE id = $1", [sending])
    assert await interrupted_count() == before + 1
    async with client() as c:
        await ops_login(c, op)
        page = (await c.get("/ops")).text
    shown = re.search(r'data-stat="interrupted-emails"><strong>(\d+)</strong> interrupted', page)
    assert shown and int(shown.group(1)) == before + 1, page[:3000]
    async with platform_tx() as tx:  # leave no 'sending' rows behind for other tests' counts
        await tx.execute_query("DELETE FROM public.outbox_emails WHERE id = ANY($1::bigint[])", [[stuck, sending]])


def test_ticks_are_ten_minutes() -> None:
    t = datetime(2030, 6, 15, 12, 30, tzinfo=UTC)
    assert tick_of(t) == tick_of(t + timedelta(minutes=9, seconds=59)) == "20300615123"
    assert tick_of(t - timedelta(seconds=1)) == "20300615122"
