"""Service tickets through the API: validation (one message per field), the lifecycle (first reply,
pending, resolved, closed, reopened) with its stamps and timeline events, service levels and their
breaches, the queue's counts, permissions (own scope, support opens tickets, read-only changes
nothing) and tenant isolation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from kith.platform.db import tenant_scope

from .conftest import Workspace
from .factories import add_member, owner_token
from .web_helpers import assert_error, client

API = "/api/v1/tickets"


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def _audit(ws: Workspace, action: str, object_id: int) -> list[dict]:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "SELECT action, diff FROM audit_log WHERE action = $1 AND object_id = $2 ORDER BY seq",
            [action, str(object_id)])
    return [{**r, "diff": json.loads(r["diff"]) if isinstance(r["diff"], str) else r["diff"]} for r in rows]


async def _events(ws: Workspace, contact_id: int) -> list[str]:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "SELECT event->>'name' AS name FROM activities WHERE contact_id = $1 AND kind = 'event' ORDER BY id",
            [contact_id])
    return [r["name"] for r in rows]


async def test_bad_input_is_named_field_by_field_and_a_contact_brings_its_company(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        # no subject, a priority and a channel that do not exist, an unknown field, all in one body
        resp = await c.post(API, json={"priority": "asap", "channel": "fax", "colour": "red"})
        error = assert_error(resp, 422, "invalid_input")
        assert set(error["fields"]) == {"subject", "priority", "channel", "colour"}, error
        # a contact and a company that are not there are named, with the same words as "not yours"
        resp = await c.post(API, json={"subject": "x", "contact_id": 999_999_999, "company_id": 999_999_998})
        assert assert_error(resp, 422)["fields"] == {"contact_id": "There is no such contact.",
                                                     "company_id": "There is no such company."}
        resp = await c.post(API, json={"subject": "x", "owner_id": 999_999_999})
        assert "member" in assert_error(resp, 422)["fields"]["owner_id"]
        resp = await c.post(API, json={"subject": "x", "custom": {"nope": 1}})
        assert "custom.nope" in assert_error(resp, 422)["fields"]
        async with tenant_scope(workspace.tenant_id) as tx:
            assert (await tx.execute_query_dict("SELECT count(*) AS n FROM tickets"))[0]["n"] == 0  # nothing half-made
        company = (await c.post("/api/v1/companies", json={"name": "上海某某贸易有限公司"})).json()
        contact = (await c.post("/api/v1/contacts", json={"name": "王芳", "email": "wang@example.cn",
                                                          "company_id": company["id"]})).json()
        resp = await c.post(API, json={"subject": "发票抬头错误，请重新开具", "description": "订单 #1024 的发票",
                                       "priority": "urgent", "channel": "phone", "contact_id": contact["id"],
                                       "tags": ["发票", "发票"]})
        assert resp.status_code == 201, resp.text
        ticket = resp.json()
    assert ticket["company_id"] == company["id"]  # the contact's company came along
    assert (ticket["status"], ticket["priority"], ticket["channel"]) == ("new", "urgent", "phone")
    assert ticket["owner_id"] == workspace.identity_id and ticket["tags"] == ["发票"]
    opened = _at(ticket["created_at"])
    # the default service levels: urgent is 1 hour to the first reply, 4 to resolution
    assert _at(ticket["first_response_due_at"]) - opened == timedelta(hours=1)
    assert _at(ticket["resolution_due_at"]) - opened == timedelta(hours=4)
    assert not ticket["first_response_breached"] and not ticket["resolution_breached"]
    created = (await _audit(workspace, "ticket.create", ticket["id"]))[0]
    assert str(created["diff"]["subject"][1]).startswith("ks1:")  # encrypted with the contact's key
    assert await _events(workspace, contact["id"]) == ["ticket.opened"]
    # the customer's 360 views list the ticket, through the same scope as the tickets list
    async with client(headers=await owner_token(workspace)) as c:
        for path in (f"/api/v1/contacts/{contact['id']}/overview", f"/api/v1/companies/{company['id']}/overview"):
            section = (await c.get(path)).json()["tickets"]
            assert section["total"] == 1 and section["items"][0]["subject"] == "发票抬头错误，请重新开具", path
    sales = await add_member(workspace, "sales")
    async with client(headers=await owner_token(workspace)) as c:  # the rep may see the contact, not the ticket
        await c.patch(f"/api/v1/contacts/{contact['id']}", json={"owner_id": sales.identity_id})
    async with client(headers=sales.headers) as c:
        assert (await c.get(f"/api/v1/contacts/{contact['id']}/overview")).json()["tickets"]["total"] == 0


async def test_lifecycle_stamps_each_step_and_tells_the_timeline(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        contact = (await c.post("/api/v1/contacts", json={"name": "Li Lei"})).json()
        ticket = (await c.post(API, json={"subject": "Cannot log in", "contact_id": contact["id"]})).json()
        tid = ticket["id"]
        # an internal note is not a response to the customer
        note = {"kind": "note", "body": "Checked: account locked"}
        thread = (await c.post(f"{API}/{tid}/messages", json=note)).json()
        assert thread["ticket"]["status"] == "new" and thread["ticket"]["first_responded_at"] is None
        # the first reply stamps the response time and opens the ticket
        resp = await c.post(f"{API}/{tid}/messages", json={"body": "We unlocked it; please try again."})
        assert resp.status_code == 201, resp.text
        thread = resp.json()
        assert thread["ticket"]["status"] == "open" and thread["ticket"]["first_responded_at"]
        assert [m["kind"] for m in thread["messages"]] == ["note", "reply"]
        first_reply = thread["ticket"]["first_responded_at"]
        # a reply that waits for the customer; a later reply keeps the first response time
        thread = (await c.post(f"{API}/{tid}/messages", json={"body": "Did it work?", "status": "pending"})).json()
        assert thread["ticket"]["status"] == "pending" and thread["ticket"]["first_responded_at"] == first_reply
        # new is only a ticket's first status; an empty message is refused, naming body
        assert "status" in assert_error(await c.patch(f"{API}/{tid}", json={"status": "new"}), 422)["fields"]
        assert "body" in assert_error(await c.post(f"{API}/{tid}/messages", json={"body": "  "}), 422)["fields"]
        resolved = (await c.patch(f"{API}/{tid}", json={"status": "resolved"})).json()
        assert resolved["resolved_at"] and resolved["closed_at"] is None
        closed = (await c.patch(f"{API}/{tid}", json={"status": "closed"})).json()
        assert closed["closed_at"] and closed["resolved_at"] == resolved["resolved_at"]
        # a closed ticket takes notes but no replies until it is reopened
        refused = await c.post(f"{API}/{tid}/messages", json={"body": "One more thing"})
        assert_error(refused, 409, "ticket_closed")
        assert (await c.post(f"{API}/{tid}/messages", json={"kind": "note", "body": "FYI"})).status_code == 201
        reopened = (await c.post(f"{API}/{tid}/messages", json={"body": "Reopening", "status": "open"})).json()
        assert reopened["ticket"]["status"] == "open"
        assert reopened["ticket"]["resolved_at"] is None and reopened["ticket"]["closed_at"] is None
        # a new priority recomputes the due times from the moment the ticket was opened
        urgent = (await c.patch(f"{API}/{tid}", json={"priority": "urgent"})).json()
        assert _at(urgent["resolution_due_at"]) - _at(urgent["created_at"]) == timedelta(hours=4)
        shown = (await c.get(f"{API}/{tid}")).json()
        assert [m["body"] for m in shown["messages"]][-1] == "Reopening" and len(shown["messages"]) == 5
    assert await _events(workspace, contact["id"]) == [
        "ticket.opened", "ticket.resolved", "ticket.closed", "ticket.reopened"]
    changes = await _audit(workspace, "ticket.update", tid)
    assert any(set(e["diff"]) >= {"status", "resolved_at"} for e in changes)
    assert len(await _audit(workspace, "ticket.reply", tid)) == 3


async def test_service_levels_breaches_and_the_queue(workspace: Workspace) -> None:
    agent = await add_member(workspace, "support")
    read_only = await add_member(workspace, "read_only")
    async with client(headers=await owner_token(workspace)) as c:
        # a resolution time shorter than the first reply's, and hours out of range, are refused
        levels = (await c.get(f"{API}/sla")).json()
        assert levels["normal"] == {"first_response_hours": 8, "resolution_hours": 72}
        bad = {**levels, "high": {"first_response_hours": 10, "resolution_hours": 2},
               "low": {"first_response_hours": 0, "resolution_hours": 99999}}
        error = assert_error(await c.put(f"{API}/sla", json=bad), 422)
        assert any(k.startswith("high") for k in error["fields"]) and any(k.startswith("low") for k in error["fields"])
        changed = {**levels, "low": {"first_response_hours": 2, "resolution_hours": 10}}
        assert (await c.put(f"{API}/sla", json=changed)).json()["low"]["resolution_hours"] == 10
        low = (await c.post(API, json={"subject": "Slow page", "priority": "low"})).json()
        assert _at(low["resolution_due_at"]) - _at(low["created_at"]) == timedelta(hours=10)
        late = (await c.post(API, json={"subject": "Refund", "owner_id": None})).json()
        assert late["owner_id"] is None
    async with tenant_scope(workspace.tenant_id) as tx:  # the refund ticket was opened 3 days ago
        await tx.execute_query(
            "UPDATE tickets SET created_at = created_at - interval '3 days', first_response_due_at ="
            " first_response_due_at - interval '3 days', resolution_due_at = resolution_due_at - interval '3 days'"
            " WHERE id = $1", [late["id"]])
    async with client(headers=agent.headers) as c:
        assert_error(await c.put(f"{API}/sla", json=levels), 403, "permission_denied")
        late_now = (await c.get(f"{API}/{late['id']}")).json()["ticket"]
        assert late_now["first_response_breached"] and late_now["resolution_breached"]
        assert (await c.get(f"{API}/queue")).json() == {
            "new": 2, "open": 0, "pending": 0, "unassigned": 1, "overdue": 1, "mine": 0}
        now = datetime.now(UTC).isoformat()
        overdue = await c.get(API, params={"f": ["status:in:new|open|pending", f"resolution_due_at:lt:{now}"],
                                          "sort": "resolution_due_at"})
        assert [t["id"] for t in overdue.json()["items"]] == [late["id"]]
        # the support agent takes the unassigned ticket and answers it: the reply came late, so the
        # first response stays breached
        taken = await c.patch(f"{API}/{late['id']}", json={"owner_id": agent.identity_id})
        assert taken.status_code == 200 and taken.json()["owner_id"] == agent.identity_id
        answered = (await c.post(f"{API}/{late['id']}/messages", json={"body": "退款已处理"})).json()["ticket"]
        assert answered["first_response_breached"] and answered["status"] == "open"
        assert (await c.get(f"{API}/queue")).json()["mine"] == 1
    async with client(headers=read_only.headers) as c:
        assert (await c.get(f"{API}/sla")).status_code == 200
        assert_error(await c.post(f"{API}/{late['id']}/messages", json={"body": "x"}), 403, "permission_denied")


async def test_scope_roles_and_tenant_isolation(workspace: Workspace, other_workspace: Workspace) -> None:
    sales, other_sales, support, read_only = [
        await add_member(workspace, r) for r in ("sales", "sales", "support", "read_only")]
    async with client(headers=sales.headers) as c:
        mine = (await c.post(API, json={"subject": "我的工单"})).json()
        # a sales rep may not leave a ticket unassigned (it would leave their scope)
        resp = await c.post(API, json={"subject": "x", "owner_id": None})
        assert "owner_id" in assert_error(resp, 422)["fields"]
    async with client(headers=await owner_token(workspace)) as c:
        queue = (await c.post(API, json={"subject": "Unassigned", "owner_id": None})).json()
    async with client(headers=other_sales.headers) as c:
        assert (await c.get(API)).json()["items"] == []  # neither the colleague's nor the unassigned one
        assert_error(await c.get(f"{API}/{mine['id']}"), 404)
        assert_error(await c.patch(f"{API}/{mine['id']}", json={"status": "open"}), 404)
        assert_error(await c.post(f"{API}/{mine['id']}/messages", json={"body": "x"}), 404)
        assert_error(await c.delete(f"{API}/{mine['id']}"), 404)
    async with client(headers=support.headers) as c:
        # support sees every ticket, opens tickets (its one create) and deletes none
        seen = {t["id"] for t in (await c.get(API)).json()["items"]}
        assert {mine["id"], queue["id"]} <= seen
        assert (await c.post(API, json={"subject": "Phoned in", "channel": "phone"})).status_code == 201
        assert_error(await c.delete(f"{API}/{mine['id']}"), 403, "permission_denied")
        assert_error(await c.post("/api/v1/leads", json={"name": "x"}), 403, "permission_denied")
    async with client(headers=read_only.headers) as c:
        assert (await c.get(f"{API}/{mine['id']}")).status_code == 200
        assert_error(await c.post(API, json={"subject": "x"}), 403, "permission_denied")
        assert_error(await c.patch(f"{API}/{mine['id']}", json={"status": "open"}), 403, "permission_denied")
    async with client(headers=await owner_token(other_workspace)) as c:
        assert_error(await c.get(f"{API}/{mine['id']}"), 404)
        assert (await c.get(API)).json()["items"] == []
        assert (await c.get(f"{API}/queue")).json()["new"] == 0
        assert_error(await c.post(f"{API}/{mine['id']}/messages", json={"body": "x"}), 404)
        # another workspace's contact cannot be linked either
        assert "contact_id" in assert_error(await c.post(API, json={"subject": "x", "contact_id": 1}), 422)["fields"]
    async with client(headers=sales.headers) as c:
        found = await c.get(API, params={"q": "工单"})
        assert [t["id"] for t in found.json()["items"]] == [mine["id"]]
        assert (await c.delete(f"{API}/{mine['id']}")).status_code == 204
        assert_error(await c.get(f"{API}/{mine['id']}"), 404)
    assert await _audit(workspace, "ticket.delete", mine["id"])


async def test_a_contacts_export_holds_their_tickets_and_erasure_scrubs_them(workspace: Workspace) -> None:
    from kith.platform.audit.entries import entries_about

    async with client(headers=await owner_token(workspace)) as c:
        contact = (await c.post("/api/v1/contacts", json={"name": "张伟", "email": "zhang@example.cn"})).json()
        other = (await c.post("/api/v1/contacts", json={"name": "李娜"})).json()
        mine = (await c.post(API, json={"subject": "张伟的发票", "description": "税号 9131...",
                                        "contact_id": contact["id"]})).json()
        theirs = (await c.post(API, json={"subject": "李娜的订单", "contact_id": other["id"]})).json()
        await c.post(f"{API}/{mine['id']}/messages", json={"body": "已收到，张先生"})
        export = (await c.get(f"/api/v1/contacts/{contact['id']}/export")).json()
        assert [t["subject"] for t in export["tickets"]] == ["张伟的发票"]
        assert [m["body"] for m in export["tickets"][0]["messages"]] == ["已收到，张先生"]
        # the ticket's audit entries are encrypted with the contact's key, and read back in clear
        async with tenant_scope(workspace.tenant_id) as tx:
            raw = await tx.execute_query_dict(
                "SELECT diff FROM audit_log WHERE action = 'ticket.create' AND object_id = $1", [str(mine["id"])])
            assert "张伟的发票" not in str(raw[0]["diff"])
            entries = await entries_about(tx, "tickets", mine["id"])
        assert entries[0].diff["subject"] == [None, "张伟的发票"]
        erased = await c.post(f"/api/v1/contacts/{contact['id']}/erase")
        assert erased.status_code == 200, erased.text
        thread = (await c.get(f"{API}/{mine['id']}")).json()
        assert thread["ticket"]["subject"] == "[erased]" and thread["ticket"]["description"] == ""
        assert [(m["body"], m["email_to"]) for m in thread["messages"]] == [("[erased]", "")]
        assert thread["messages"][0]["email_status"] == ""  # its email had not gone out: now it never will
        # another customer's ticket is untouched
        assert (await c.get(f"{API}/{theirs['id']}")).json()["ticket"]["subject"] == "李娜的订单"
    async with tenant_scope(workspace.tenant_id) as tx:
        entries = await entries_about(tx, "tickets", mine["id"])
    assert entries[0].diff["subject"] == [None, "[erased]"] and entries[1].diff["body"] == [None, "[erased]"]
    erase = (await _audit(workspace, "contact.erase", contact["id"]))[0]["diff"]
    assert (erase["tickets_scrubbed"], erase["ticket_messages_scrubbed"]) == (1, 1)
