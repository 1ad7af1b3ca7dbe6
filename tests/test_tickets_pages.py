"""The service pages over HTTP: open a ticket by the customer's email (bad input named field by
field), reply, note, change status and assignee, edit, delete; the service home's counts; the service
levels settings; what read-only members and other workspaces get."""

from __future__ import annotations

import re

import httpx

from kith.platform.db import tenant_scope

from .conftest import Services, Workspace
from .factories import add_member, owner_token
from .web_helpers import client, form_post, login


async def _act(c: httpx.AsyncClient, page: str, action: str, data: dict[str, str]) -> httpx.Response:
    """POST one of a ticket page's forms (reply or note, quick update) with the page's CSRF token."""
    return await form_post(c, page, data, action=f"{page}/{action}")


async def test_open_reply_and_resolve_a_ticket_in_the_pages(db: Services, workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as api:
        contact = (await api.post("/api/v1/contacts", json={"name": "王芳", "email": "wang@example.cn"})).json()
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        base = f"/t/{workspace.slug}"
        # no subject and an email no contact has: both named, nothing opened
        bad = await form_post(c, f"{base}/tickets/new", {"subject": "", "priority": "normal", "channel": "web",
                                                         "contact_email": "nobody@example.cn"})
        assert bad.status_code == 422
        assert 'data-field="subject"' in bad.text and 'data-field="contact_email"' in bad.text
        assert "nobody@example.cn" in bad.text  # what was typed is kept
        made = await form_post(c, f"{base}/tickets/new", {
            "subject": "发票抬头错误", "description": "订单 #1024", "priority": "high", "channel": "email",
            "contact_email": "WANG@example.cn", "tags": "发票, VIP", "owner_id": str(workspace.identity_id)})
        assert made.status_code == 303, made.text[:500]
        page = made.headers["location"]
        ticket_id = int(re.search(r"/tickets/(\d+)", page).group(1))  # type: ignore[union-attr]
        shown = (await c.get(page)).text
        assert "发票抬头错误" in shown and "王芳" in shown and 'data-status="new"' in shown
        # an empty message is refused on the page, naming the field
        empty = await _act(c, f"{base}/tickets/{ticket_id}", "messages", {"kind": "reply", "body": " "})
        assert empty.status_code == 422 and 'data-field="body"' in empty.text
        noted = await _act(c, f"{base}/tickets/{ticket_id}", "messages", {"kind": "note", "body": "内部备注"})
        assert noted.status_code == 303 and "noted=1" in noted.headers["location"]
        replied = await _act(c, f"{base}/tickets/{ticket_id}", "messages",
                             {"kind": "reply", "body": "已重新开具", "status": "pending"})
        assert replied.status_code == 303
        shown = (await c.get(f"{base}/tickets/{ticket_id}")).text
        assert 'data-status="pending"' in shown and shown.index("内部备注") < shown.index("已重新开具")
        assert 'data-message="note"' in shown and 'data-message="reply"' in shown
        assert 'data-email-status="pending"' in shown  # the reply goes to wang@example.cn by email
        # unticking the box records a reply without emailing it
        phoned = await _act(c, f"{base}/tickets/{ticket_id}", "messages",
                            {"kind": "reply", "body": "电话已告知", "email_offered": "1"})
        assert phoned.status_code == 303
        assert (await c.get(f"{base}/tickets/{ticket_id}")).text.count("data-email-status=") == 1
        resolved = await _act(c, f"{base}/tickets/{ticket_id}", "update",
                              {"status": "resolved", "priority": "high", "owner_id": ""})
        assert resolved.status_code == 303
        shown = (await c.get(f"{base}/tickets/{ticket_id}")).text
        assert 'data-status="resolved"' in shown and "Unassigned" in shown
        took = await _act(c, f"{base}/tickets/{ticket_id}", "update", {"take": "1"})
        assert took.status_code == 303
        edited = await form_post(c, f"{base}/tickets/{ticket_id}/edit", {
            "subject": "发票抬头错误（已处理）", "priority": "low", "channel": "email", "status": "closed",
            "contact_id": str(contact["id"]), "owner_id": str(workspace.identity_id)})
        assert edited.status_code == 303, edited.text[:500]
        shown = (await c.get(f"{base}/tickets/{ticket_id}")).text
        assert "（已处理）" in shown and 'data-status="closed"' in shown
        # the contact's page lists the ticket and its timeline tells of it
        contact_page = (await c.get(f"{base}/contacts/{contact['id']}")).text
        assert f'data-ticket-id="{ticket_id}"' in contact_page and 'data-event="ticket.opened"' in contact_page
        assert f"/tickets/new?contact_id={contact['id']}" in contact_page
        assert f"Ticket #{ticket_id} opened: 发票抬头错误" in contact_page
        home = await c.get(f"{base}/service")
        assert home.status_code == 200 and 'data-count="overdue"' in home.text
        listed = await c.get(f"{base}/tickets")
        assert listed.status_code == 200 and "发票抬头错误（已处理）" in listed.text
        gone = await form_post(c, f"{base}/tickets/{ticket_id}/delete", {})
        assert gone.status_code == 303
        assert (await c.get(f"{base}/tickets/{ticket_id}")).status_code == 404
        assert (await c.post(f"{base}/tickets/new", data={"subject": "x"})).status_code == 403  # no CSRF token
    async with tenant_scope(workspace.tenant_id) as tx:
        assert (await tx.execute_query_dict("SELECT count(*) AS n FROM ticket_messages"))[0]["n"] == 0


async def test_service_levels_page_read_only_and_other_workspaces(db: Services, workspace: Workspace,
                                                                  other_workspace: Workspace) -> None:
    read_only = await add_member(workspace, "read_only")
    async with client(headers=await owner_token(workspace)) as api:
        ticket = (await api.post("/api/v1/tickets", json={"subject": "Printer on fire"})).json()
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        url = f"/t/{workspace.slug}/settings/service"
        assert (await c.get(url)).status_code == 200
        fields = {f"{p}.{part}": "8" for p in ("urgent", "high", "normal", "low")
                  for part in ("first_response_hours", "resolution_hours")}
        # a word where hours go, and a resolution shorter than the first reply: each named, nothing saved
        bad = await form_post(c, url, {**fields, "urgent.first_response_hours": "soon",
                                       "high.first_response_hours": "10", "high.resolution_hours": "2"})
        assert bad.status_code == 422 and 'data-field="urgent.first_response_hours"' in bad.text
        assert "soon" in bad.text
        fixed = await form_post(c, url, {**fields, "low.resolution_hours": "200"})
        assert fixed.status_code == 303
        assert 'value="200"' in (await c.get(url)).text
    async with client() as c:
        await login(c, read_only.email, read_only.password)
        base = f"/t/{workspace.slug}"
        shown = await c.get(f"{base}/tickets/{ticket['id']}")
        assert shown.status_code == 200 and 'data-action="send"' not in shown.text
        assert (await c.get(f"{base}/tickets/{ticket['id']}/edit")).status_code == 403
        assert (await c.get(f"{base}/settings/service")).status_code == 403
        refused = await form_post(c, f"{base}/tickets/{ticket['id']}", {"kind": "note", "body": "x"},
                                  action=f"{base}/tickets/{ticket['id']}/messages")
        assert refused.status_code == 403
    async with client() as c:
        await login(c, other_workspace.email, other_workspace.password)
        resp = await c.get(f"/t/{other_workspace.slug}/tickets/{ticket['id']}")
        assert resp.status_code == 404 and "Printer on fire" not in resp.text


async def test_a_chinese_workspace_reads_ticket_words_in_their_own_sense(db: Services, workspace: Workspace) -> None:
    from kith.platform.db import platform_tx

    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.tenants SET locale = 'zh-CN' WHERE id = $1", [workspace.tenant_id])
    async with client(headers=await owner_token(workspace)) as api:
        ticket = (await api.post("/api/v1/tickets", json={"subject": "无法登录"})).json()
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        shown = (await c.get(f"/t/{workspace.slug}/tickets/{ticket['id']}")).text
        # "New" as a ticket's status, not as a new lead (线索)
        assert '<span class="badge ticket-status status-new" data-status="new">新建</span>' in shown
        assert "新线索" not in shown and "回复客户" in shown and "首次回复截止" in shown
        # messages made in Python are translated too: "new" again for a ticket someone works on
        page = f"/t/{workspace.slug}/tickets/{ticket['id']}"
        assert (await _act(c, page, "update", {"status": "open"})).status_code == 303
        bad = await _act(c, page, "update", {"status": "new"})
        assert bad.status_code == 422 and "工单只有在无人处理前" in bad.text
        wrong = await form_post(c, f"/t/{workspace.slug}/tickets/new", {
            "subject": "x", "priority": "normal", "channel": "web", "contact_email": "nobody@example.cn"})
        assert wrong.status_code == 422 and "你可见的联系人中没有使用此邮箱的" in wrong.text
