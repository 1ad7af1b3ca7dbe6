"""Campaigns end to end in-process: a segment (consent, suppression and scope decide who is in
it), a campaign checked before it starts, recipients frozen at the start, sending through the
provider once per recipient (the dev outbox here; SMTP and SIGKILL in test_campaign_exactly_once),
pause, resume, cancel, scheduling, the quota, bounces and permissions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kith.platform.access.actor import Actor
from kith.platform.access.rules import PermissionDenied
from kith.platform.db import platform_tx, tenant_scope
from kith.tenants.campaigns import campaigns as service
from kith.tenants.campaigns.segments import SegmentDefinition, SegmentIn, count_segment, create_segment
from kith.tenants.campaigns.sending import send_campaign
from kith.tenants.records.refusals import RecordsRefusal

from .conftest import Workspace
from .factories import add_member


def owner(ws: Workspace) -> Actor:
    return Actor(kind="user", tenant_id=ws.tenant_id, role="owner", identity_id=ws.identity_id, label=ws.email)


async def _contacts(ws: Workspace, rows: list[tuple[str, str, str, str]]) -> None:
    """(name, email, consent, lifecycle stage) contacts owned by the workspace's owner."""
    async with tenant_scope(ws.tenant_id) as tx:
        for name, email, consent, stage in rows:
            await tx.execute_query(
                "INSERT INTO contacts (name, email, marketing_consent, lifecycle_stage, owner_id)"
                " VALUES ($1, $2, $3, $4, $5)", [name, email, consent, stage, ws.identity_id])


async def _campaign(ws: Workspace, **overrides: Any) -> dict[str, Any]:
    actor = owner(ws)
    definition = SegmentDefinition(filters=["lifecycle_stage:eq:customer"])
    segment = await create_segment(actor, SegmentIn(name=f"Customers {datetime.now(UTC).timestamp()}",
                                                    definition=definition))
    values: dict[str, Any] = {
        "name": "双十一 promotion", "segment_id": segment["id"],
        "subject": "{{ first_name | default('朋友') }}，双十一快乐",
        "html_body": "<p>你好 {{ name }}，<a href=\"https://example.com/sale\">看看</a></p>",
        "text_body": "你好 {{ name }}", "from_name": "星辰科技", "from_email": "news@example.com"}
    values.update(overrides)
    return await service.create_campaign(actor, service.CampaignIn(**values))


async def _recipients(ws: Workspace, campaign_id: int) -> list[dict[str, Any]]:
    async with tenant_scope(ws.tenant_id) as tx:
        return await tx.execute_query_dict(
            "SELECT email, status, message_id FROM campaign_recipients WHERE campaign_id = $1 ORDER BY email",
            [campaign_id])


async def _outbox(ws: Workspace) -> list[dict[str, Any]]:
    async with platform_tx() as tx:
        return await tx.execute_query_dict(
            "SELECT to_address, subject, body_text FROM public.outbox_emails WHERE tenant_id = $1 AND kind = 'campaign'"
            " ORDER BY to_address", [ws.tenant_id])


async def test_a_campaign_reaches_consenting_customers_once(workspace: Workspace) -> None:
    await _contacts(workspace, [
        ("张伟", "zhang.wei@example.cn", "granted", "customer"),
        ("Ada Lovelace", "ada@example.com", "granted", "customer"),
        ("Ada Again", "ADA@example.com", "granted", "customer"),   # the same address: one email
        ("李娜", "li.na@example.cn", "unknown", "customer"),         # no consent: never sent to
        ("王芳", "wang@example.cn", "withdrawn", "customer"),        # unsubscribed
        ("Grace", "grace@example.com", "granted", "lead"),           # not in the segment
        ("No Mail", "", "granted", "customer"),                      # no address
    ])
    async with tenant_scope(workspace.tenant_id) as tx:
        await tx.execute_query(
            "INSERT INTO email_suppressions (email, reason) VALUES ('bounced@example.com', 'bounced')")
    await _contacts(workspace, [("Bounced", "bounced@example.com", "granted", "customer")])
    counts = await count_segment(owner(workspace), SegmentDefinition(filters=["lifecycle_stage:eq:customer"]))
    assert counts["contacts"] == 7 and counts["reachable"] == 2
    assert counts["without_email"] == 1 and counts["without_consent"] == 2

    campaign = await _campaign(workspace)
    started = await service.start_campaign(owner(workspace), campaign["id"])
    assert started["status"] == "sending" and started["recipients_total"] == 2
    report = await send_campaign(workspace.tenant_id, campaign["id"], seconds=30, senders=3)
    assert (report.sent, report.finished) == (2, True)
    assert (await service.get_campaign(owner(workspace), campaign["id"]))["status"] == "sent"
    outbox = await _outbox(workspace)
    assert [o["to_address"] for o in outbox] == ["ada@example.com", "zhang.wei@example.cn"]
    assert outbox[1]["subject"] == "张伟，双十一快乐"
    assert "unsubscribe" in outbox[1]["body_text"].lower() or "/e/u/" in outbox[1]["body_text"]
    # a second job for the same campaign sends nothing more
    again = await send_campaign(workspace.tenant_id, campaign["id"], seconds=5, senders=2)
    assert again.sent == 0 and len(await _outbox(workspace)) == 2
    async with tenant_scope(workspace.tenant_id) as tx:
        timeline = await tx.execute_query_dict(
            "SELECT count(*) AS n FROM activities WHERE event->>'name' = 'campaign.sent'")
    assert timeline[0]["n"] == 2


async def test_what_would_stop_a_campaign_is_said_before_it_starts(workspace: Workspace) -> None:
    actor = owner(workspace)
    await _contacts(workspace, [("李娜", "li.na@example.cn", "unknown", "customer")])
    # bad input: an invalid from-address, a template that does not parse, a segment that reaches nobody
    campaign = await _campaign(workspace, from_email="not an address", html_body="<p>{{ name </p>")
    with pytest.raises(RecordsRefusal) as refused:
        await service.start_campaign(actor, campaign["id"])
    message = refused.value.message
    assert refused.value.status == 422
    assert "not an address" in message and "reaches nobody" in message and "consented" in message
    assert set(refused.value.fields) >= {"from_email", "template", "segment_id"}
    assert (await service.get_campaign(actor, campaign["id"]))["status"] == "draft"
    # bad input: a schedule in the past
    with pytest.raises(RecordsRefusal, match="future"):
        await service.schedule_campaign(actor, campaign["id"], datetime.now(UTC) - timedelta(minutes=1))


async def test_the_monthly_quota_is_checked_before_starting(workspace: Workspace) -> None:
    from kith.platform.billing.actions import change_plan_locally

    actor = owner(workspace)
    await change_plan_locally(actor, "free", "monthly")  # 200 campaign emails a month
    await _contacts(workspace, [(f"客户{i}", f"c{i}@example.cn", "granted", "customer") for i in range(201)])
    campaign = await _campaign(workspace)
    with pytest.raises(RecordsRefusal) as refused:
        await service.start_campaign(actor, campaign["id"])
    assert refused.value.code == "quota" and "200 campaign emails this month" in refused.value.message


async def test_pause_resume_cancel_and_schedule(workspace: Workspace) -> None:
    actor = owner(workspace)
    await _contacts(workspace, [(f"客户{i}", f"c{i}@example.cn", "granted", "customer") for i in range(5)])
    campaign = await _campaign(workspace)
    await service.start_campaign(actor, campaign["id"])
    paused = await service.pause_campaign(actor, campaign["id"])
    assert paused["status"] == "paused"
    report = await send_campaign(workspace.tenant_id, campaign["id"], seconds=5, senders=2)
    assert report.sent == 0  # a paused campaign sends nothing
    with pytest.raises(RecordsRefusal) as refused:  # bad input: pausing twice
        await service.pause_campaign(actor, campaign["id"])
    assert refused.value.status == 409
    await service.resume_campaign(actor, campaign["id"])
    assert (await send_campaign(workspace.tenant_id, campaign["id"], seconds=30, senders=2)).sent == 5

    later = await _campaign(workspace, name="Later")
    at = datetime.now(UTC) + timedelta(days=1)
    scheduled = await service.schedule_campaign(actor, later["id"], at)
    assert scheduled["status"] == "scheduled"
    async with platform_tx() as tx:
        queued = await tx.execute_query_dict(
            "SELECT next_run_at FROM public.campaign_queue WHERE tenant_id = $1 AND campaign_id = $2",
            [workspace.tenant_id, later["id"]])
    assert queued and abs((queued[0]["next_run_at"] - at).total_seconds()) < 1
    cancelled = await service.cancel_campaign(actor, later["id"])
    assert cancelled["status"] == "cancelled"
    async with platform_tx() as tx:
        assert not await tx.execute_query_dict(
            "SELECT 1 FROM public.campaign_queue WHERE tenant_id = $1 AND campaign_id = $2",
            [workspace.tenant_id, later["id"]])


async def test_a_scheduled_campaign_starts_when_due_through_the_cron_job(workspace: Workspace) -> None:
    from kith.jobs.campaigns import campaign_due

    actor = owner(workspace)
    await _contacts(workspace, [("张伟", "zw@example.cn", "granted", "customer")])
    campaign = await _campaign(workspace)
    await service.schedule_campaign(actor, campaign["id"], datetime.now(UTC) + timedelta(seconds=1))
    async with tenant_scope(workspace.tenant_id) as tx:  # its time has come
        await tx.execute_query("UPDATE campaigns SET scheduled_at = now() - interval '1 second' WHERE id = $1",
                               [campaign["id"]])
    assert await campaign_due({"job_id": "test"}, workspace.tenant_id, campaign["id"]) == "senders queued"
    started = await service.get_campaign(actor, campaign["id"])
    assert started["status"] == "sending" and started["recipients_total"] == 1


async def test_permissions_and_isolation(workspace: Workspace, other_workspace: Workspace) -> None:
    await _contacts(workspace, [("张伟", "zw@example.cn", "granted", "customer")])
    campaign = await _campaign(workspace)
    sales = await add_member(workspace, "sales")
    seller = Actor(kind="user", tenant_id=workspace.tenant_id, role="sales", identity_id=sales.identity_id,
                   label=sales.email)
    assert (await service.get_campaign(seller, campaign["id"]))["name"] == campaign["name"]  # may look
    with pytest.raises(PermissionDenied) as denied:  # but not send
        await service.start_campaign(seller, campaign["id"])
    assert "campaigns: edit" in str(denied.value) or "manage_campaigns" in str(denied.value).replace(" ", "_")
    stranger = owner(other_workspace)
    with pytest.raises(RecordsRefusal) as hidden:
        await service.get_campaign(stranger, campaign["id"])
    assert hidden.value.status == 404


async def test_erasing_a_contact_scrubs_its_campaign_recipient_rows(workspace: Workspace) -> None:
    from kith.tenants.contacts.privacy import erase_contact

    await _contacts(workspace, [("张伟", "zw@example.cn", "granted", "customer")])
    campaign = await _campaign(workspace)
    await service.start_campaign(owner(workspace), campaign["id"])
    await send_campaign(workspace.tenant_id, campaign["id"], seconds=30, senders=1)
    async with tenant_scope(workspace.tenant_id) as tx:
        contact_id = (await tx.execute_query_dict("SELECT id FROM contacts"))[0]["id"]
    await erase_contact(owner(workspace), contact_id)
    async with tenant_scope(workspace.tenant_id) as tx:
        row = (await tx.execute_query_dict("SELECT email, merge::text AS merge FROM campaign_recipients"))[0]
    assert row == {"email": "", "merge": "{}"}


async def test_a_refusing_mail_server_backs_the_campaign_off_once_per_attempt(workspace: Workspace) -> None:
    import os
    import socket

    from kith.platform.config import reset_settings, restored_environment

    with socket.socket() as probe:  # bad input: a mail server port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await _contacts(workspace, [(f"客户{i}", f"c{i}@example.cn", "granted", "customer") for i in range(6)])
    campaign = await _campaign(workspace)
    await service.start_campaign(owner(workspace), campaign["id"])
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_STARTTLS": "false"}
    with restored_environment(*env):
        os.environ.update(env)
        reset_settings()
        try:
            report = await send_campaign(workspace.tenant_id, campaign["id"], seconds=10, senders=4)
        finally:
            reset_settings()
    reset_settings()
    assert report.sent == 0 and f"127.0.0.1:{port}" in report.stopped
    async with tenant_scope(workspace.tenant_id) as tx:
        row = (await tx.execute_query_dict(
            "SELECT status, failures, retry_at FROM campaigns WHERE id = $1", [campaign["id"]]))[0]
    # four senders met the refusal together: one attempt, one back-off, still sending
    assert (row["status"], row["failures"]) == ("sending", 1) and row["retry_at"] is not None
    assert {r["status"] for r in await _recipients(workspace, campaign["id"])} == {"pending"}


async def test_only_campaigns_that_sent_nothing_can_be_deleted(workspace: Workspace) -> None:
    await _contacts(workspace, [("张伟", "zw@example.cn", "granted", "customer")])
    draft = await _campaign(workspace)
    sending = await _campaign(workspace, name="已发送")
    await service.start_campaign(owner(workspace), sending["id"])
    # bad input: deleting a campaign that is sending, then one that has sent its email
    with pytest.raises(RecordsRefusal) as busy:
        await service.delete_campaign(owner(workspace), sending["id"])
    assert (busy.value.status, busy.value.code) == (409, "wrong_state") and "cancel it" in busy.value.message
    await send_campaign(workspace.tenant_id, sending["id"], seconds=30, senders=1)
    with pytest.raises(RecordsRefusal) as sent:
        await service.delete_campaign(owner(workspace), sending["id"])
    assert (sent.value.status, sent.value.code) == (409, "has_sent") and "sent 1 email" in sent.value.message
    # a sales member may look at campaigns but not delete them
    sales = await add_member(workspace, "sales")
    seller = Actor(kind="user", tenant_id=workspace.tenant_id, role="sales", identity_id=sales.identity_id,
                   label=sales.email)
    with pytest.raises(PermissionDenied):
        await service.delete_campaign(seller, draft["id"])
    await service.delete_campaign(owner(workspace), draft["id"])
    async with tenant_scope(workspace.tenant_id) as tx:
        left = [r["id"] for r in await tx.execute_query_dict("SELECT id FROM campaigns ORDER BY id")]
        audit = await tx.execute_query_dict(
            "SELECT action FROM audit_log WHERE action = 'campaign.delete' AND object_id = $1", [str(draft["id"])])
    assert left == [sending["id"]] and len(audit) == 1
