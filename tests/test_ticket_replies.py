"""Ticket replies emailed to the customer: through the workspace's provider (the dev outbox here) by a
real `kith worker` process, exactly once however often the job runs, picked up by the sweep when the
job was lost; what is and is not emailed (notes, no address, unticked), named when refused."""

from __future__ import annotations

from typing import Any

from kith.jobs.ticket_replies import sweep_ticket_replies
from kith.platform.db import platform_tx, tenant_scope
from kith.tenants.tickets.mail import email_reply

from .conftest import Workspace
from .factories import owner_token
from .test_jobs import WorkerProcess, eventually, worker  # noqa: F401 - the worker fixture
from .web_helpers import assert_error, client

API = "/api/v1/tickets"


async def _outbox(ws: Workspace) -> list[dict[str, Any]]:
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT dedupe_key, to_address, subject, body_text FROM public.outbox_emails WHERE tenant_id = $1"
            " ORDER BY id", [ws.tenant_id])
    return [dict(r) for r in rows]


async def _message(ws: Workspace, message_id: int) -> dict[str, Any]:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "SELECT email_to, email_status, email_error, emailed_at FROM ticket_messages WHERE id = $1", [message_id])
    return dict(rows[0])


async def test_a_reply_reaches_the_customer_once(worker: WorkerProcess, workspace: Workspace) -> None:  # noqa: F811
    async with client(headers=await owner_token(workspace)) as c:
        contact = (await c.post("/api/v1/contacts", json={"name": "王芳", "email": "wang.fang@example.cn"})).json()
        ticket = (await c.post(API, json={"subject": "发票抬头错误", "contact_id": contact["id"]})).json()
        resp = await c.post(f"{API}/{ticket['id']}/messages", json={"body": "您好，发票已重新开具。\n请查收。"})
        assert resp.status_code == 201, resp.text
        sent = resp.json()["messages"][-1]
        assert (sent["email_to"], sent["email_status"]) == ("wang.fang@example.cn", "pending")

        async def delivered() -> dict[str, Any] | None:
            row = await _message(workspace, sent["id"])
            return row if row["email_status"] == "sent" else None

        row = await eventually(worker, delivered)
        assert row["emailed_at"] is not None and row["email_error"] == ""
        [email] = await _outbox(workspace)
        assert email["to_address"] == "wang.fang@example.cn"
        assert email["subject"] == f"Re: [#{ticket['id']}] 发票抬头错误"
        assert "发票已重新开具。\n请查收。" in email["body_text"]
        assert email["dedupe_key"] == f"<t{workspace.tenant_id}.ticket{ticket['id']}.m{sent['id']}@kith>"
        # the job delivered twice (arq runs a job at least once): the claim lets nothing out again
        assert await email_reply(workspace.tenant_id, sent["id"]) == "already sent"
        assert len(await _outbox(workspace)) == 1
        shown = (await c.get(f"{API}/{ticket['id']}")).json()["messages"][-1]
        assert shown["email_status"] == "sent"

        # a reply whose job was lost (Redis down at the commit): the sweep queues it again
        async with tenant_scope(workspace.tenant_id) as tx:
            lost = await tx.execute_query_dict(
                "INSERT INTO ticket_messages (ticket_id, kind, body, author_id, email_to, email_status, created_at)"
                " VALUES ($1, 'reply', 'Following up', $2, 'wang.fang@example.cn', 'pending',"
                " now() - interval '11 minutes') RETURNING id", [ticket["id"], workspace.identity_id])
        assert await sweep_ticket_replies({}) >= 1
        lost_id = int(lost[0]["id"])

        async def swept() -> dict[str, Any] | None:
            row = await _message(workspace, lost_id)
            return row if row["email_status"] == "sent" else None

        await eventually(worker, swept)
        assert len(await _outbox(workspace)) == 2


async def test_what_is_not_emailed_and_why(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        silent = (await c.post("/api/v1/contacts", json={"name": "李雷"})).json()  # no email address
        loud = (await c.post("/api/v1/contacts", json={"name": "韩梅梅", "email": "han@example.cn"})).json()
        quiet_ticket = (await c.post(API, json={"subject": "No address", "contact_id": silent["id"]})).json()
        ticket = (await c.post(API, json={"subject": "Has address", "contact_id": loud["id"]})).json()
        # a note asked to be emailed, a reply demanded by email where there is no address: both named
        resp = await c.post(f"{API}/{ticket['id']}/messages", json={"kind": "note", "body": "x", "email": True})
        assert "email" in assert_error(resp, 422)["fields"]
        resp = await c.post(f"{API}/{quiet_ticket['id']}/messages", json={"body": "x", "email": True})
        assert "email" in assert_error(resp, 422)["fields"]
        # by default a reply without an address is recorded only; one with email false too
        recorded = (await c.post(f"{API}/{quiet_ticket['id']}/messages", json={"body": "Called back"})).json()
        assert recorded["messages"][-1]["email_status"] == "" and recorded["messages"][-1]["email_to"] == ""
        kept = (await c.post(f"{API}/{ticket['id']}/messages", json={"body": "By phone", "email": False})).json()
        assert kept["messages"][-1]["email_status"] == ""
        note = (await c.post(f"{API}/{ticket['id']}/messages", json={"kind": "note", "body": "internal"})).json()
        assert note["messages"][-1]["email_status"] == ""
    assert await _outbox(workspace) == []
    async with tenant_scope(workspace.tenant_id) as tx:  # nothing half-written by the refusals
        assert (await tx.execute_query_dict("SELECT count(*) AS n FROM ticket_messages"))[0]["n"] == 3
