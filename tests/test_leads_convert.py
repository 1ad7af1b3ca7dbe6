"""Converting a lead: contact + company (+ deal) in one transaction, the lead's history carried over,
twice refused, and nothing half-written when a part fails."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from kith.platform.access.actor import Actor
from kith.platform.db import platform_tx, tenant_scope
from kith.tenants.leads.convert import convert_lead
from kith.tenants.leads.schemas import ConvertIn

from .conftest import Workspace
from .factories import add_member, owner_token
from .web_helpers import assert_error, client, form_post, login


async def _counts(ws: Workspace) -> dict[str, int]:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "SELECT (SELECT count(*) FROM contacts) AS contacts, (SELECT count(*) FROM companies) AS companies,"
            " (SELECT count(*) FROM deals) AS deals, (SELECT count(*) FROM audit_log) AS audit,"
            " (SELECT count(*) FROM activities WHERE kind = 'event') AS events")
    return {k: int(v) for k, v in rows[0].items()}


async def _lead_with_history(ws: Workspace, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    async with client(headers=headers) as c:
        resp = await c.post("/api/v1/leads", json={
            "name": "王芳", "company_name": "上海某某贸易有限公司", "email": "wang.fang@example.cn",
            "phone": "+86 138 0013 8000", "title": "采购经理", "source": "展会", "tags": ["华东"], **fields})
        assert resp.status_code == 201, resp.text
    lead = resp.json()
    async with tenant_scope(ws.tenant_id) as tx:
        await tx.execute_query(
            "INSERT INTO activities (kind, subject, lead_id, created_by_id, occurred_at) VALUES"
            " ('call', '第一次电话', $1, $2, now() - interval '2 days'), ('note', '需要报价', $1, $2, now())",
            [lead["id"], lead["owner_id"]])
        await tx.execute_query(
            "INSERT INTO tasks (title, lead_id, assignee_id, created_by_id) VALUES ('发送报价', $1, $2, $2)",
            [lead["id"], lead["owner_id"]])
    return lead


async def test_convert_makes_contact_company_deal_and_keeps_history(workspace: Workspace) -> None:
    headers = await owner_token(workspace)
    lead = await _lead_with_history(workspace, headers)
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.tenants SET default_currency = 'CNY' WHERE id = $1",
                               [workspace.tenant_id])
    async with client(headers=headers) as c:
        resp = await c.post(f"/api/v1/leads/{lead['id']}/convert",
                            json={"create_deal": True, "deal_amount": "12500.50", "deal_name": "年度采购"})
        assert resp.status_code == 201, resp.text
        made = resp.json()
        assert made["company_created"] and made["activities_moved"] == 2 and made["tasks_moved"] == 1
        assert made["lead"]["status"] == "converted" and made["lead"]["converted_contact_id"] == made["contact_id"]
        assert made["lead"]["converted_company_id"] == made["company_id"]
        assert made["lead"]["converted_deal_id"] == made["deal_id"]
        # twice: refused, and nothing more is made
        before = await _counts(workspace)
        again = await c.post(f"/api/v1/leads/{lead['id']}/convert", json={})
        assert "already converted" in assert_error(again, 409, "already_converted")["message"]
        assert (await _counts(workspace))["contacts"] == before["contacts"]
        # the status stays converted
        resp = await c.patch(f"/api/v1/leads/{lead['id']}", json={"status": "new"})
        assert "converted" in assert_error(resp, 422)["fields"]["status"]
    async with tenant_scope(workspace.tenant_id) as tx:
        contact = (await tx.execute_query_dict("SELECT * FROM contacts WHERE id = $1", [made["contact_id"]]))[0]
        company = (await tx.execute_query_dict("SELECT * FROM companies WHERE id = $1", [made["company_id"]]))[0]
        deal = (await tx.execute_query_dict(
            "SELECT d.*, s.name AS stage, s.kind, s.position, p.is_default FROM deals d JOIN stages s ON s.id ="
            " d.stage_id JOIN pipelines p ON p.id = d.pipeline_id WHERE d.id = $1", [made["deal_id"]]))[0]
        first_open = (await tx.execute_query_dict(
            "SELECT s.id FROM stages s JOIN pipelines p ON p.id = s.pipeline_id WHERE p.is_default AND s.kind ="
            " 'open' ORDER BY s.position LIMIT 1"))[0]["id"]
        history = await tx.execute_query_dict(
            "SELECT kind, contact_id, company_id, deal_id, event FROM activities WHERE lead_id = $1 ORDER BY id",
            [lead["id"]])
        task = (await tx.execute_query_dict("SELECT * FROM tasks WHERE lead_id = $1", [lead["id"]]))[0]
        changes = await tx.execute_query_dict("SELECT * FROM deal_stage_changes WHERE deal_id = $1", [deal["id"]])
        audit = [r["action"] for r in await tx.execute_query_dict("SELECT action FROM audit_log ORDER BY seq")]
    assert (contact["name"], contact["email"], contact["phone"], contact["title"], contact["source"]) == \
        ("王芳", "wang.fang@example.cn", "+86 138 0013 8000", "采购经理", "展会")
    assert contact["company_id"] == company["id"] and contact["company_name"] == "上海某某贸易有限公司"
    assert contact["owner_id"] == workspace.identity_id and list(contact["tags"]) == ["华东"]
    assert company["name"] == "上海某某贸易有限公司" and company["owner_id"] == workspace.identity_id
    assert deal["amount"] == Decimal("12500.50") and deal["currency"] == "CNY" and deal["name"] == "年度采购"
    assert deal["is_default"] and deal["stage_id"] == first_open and deal["kind"] == "open"
    assert deal["contact_id"] == contact["id"] and deal["company_id"] == company["id"]
    assert len(changes) == 1 and changes[0]["to_stage_id"] == first_open
    # every activity and the task of the lead now show on the contact's and the company's timelines too
    logged = [h for h in history if h["kind"] != "event"]
    assert len(logged) == 2 and all(h["contact_id"] == contact["id"] and h["company_id"] == company["id"]
                                    for h in logged)
    assert task["contact_id"] == contact["id"] and task["company_id"] == company["id"]
    event = next(h for h in history if h["kind"] == "event")
    facts = json.loads(event["event"]) if isinstance(event["event"], str) else event["event"]
    assert facts["name"] == "lead.converted" and facts["deal_id"] == deal["id"]
    assert (event["contact_id"], event["company_id"], event["deal_id"]) == (contact["id"], company["id"], deal["id"])
    for action in ("lead.convert", "contact.create", "company.create", "deal.create"):
        assert action in audit, action
    # the contact's timeline (through the activities domain) carries the lead's history
    async with client(headers=headers) as c:
        for link, record_id in (("contact_id", contact["id"]), ("company_id", company["id"])):
            resp = await c.get("/api/v1/timeline", params={link: record_id})
            assert resp.status_code == 200, resp.text
            subjects = [e.get("subject") for e in resp.json()["items"]]
            assert "第一次电话" in subjects and "需要报价" in subjects


async def test_nothing_half_written_when_the_deal_fails(workspace: Workspace, other_workspace: Workspace) -> None:
    headers = await owner_token(workspace)
    lead = await _lead_with_history(workspace, headers)
    before = await _counts(workspace)
    async with client(headers=headers) as c:
        # a negative amount, a float-like junk amount and a company of another workspace: 422 per field
        resp = await c.post(f"/api/v1/leads/{lead['id']}/convert", json={"create_deal": True, "deal_amount": "-5"})
        assert "deal_amount" in assert_error(resp, 422)["fields"]
        resp = await c.post(f"/api/v1/leads/{lead['id']}/convert", json={"create_deal": True, "deal_amount": "abc"})
        assert "deal_amount" in assert_error(resp, 422)["fields"]
        async with tenant_scope(other_workspace.tenant_id) as tx:
            foreign = (await tx.execute_query_dict(
                "INSERT INTO companies (name) VALUES ('别人的公司') RETURNING id"))[0]["id"]
        resp = await c.post(f"/api/v1/leads/{lead['id']}/convert", json={"company_id": foreign})
        assert "company_id" in assert_error(resp, 422)["fields"]
    # the database refuses the deal after the contact and the company were written: all rolled back
    actor = Actor(kind="user", tenant_id=workspace.tenant_id, role="owner", identity_id=workspace.identity_id,
                  label=workspace.email)
    bad = ConvertIn.model_construct(company_id=None, create_company=True, create_deal=True, deal_name="",
                                    deal_amount=Decimal("-5"), deal_expected_close=None)
    with pytest.raises(Exception, match="amount|check"):
        await convert_lead(actor, lead["id"], bad)
    assert await _counts(workspace) == before
    async with client(headers=headers) as c:
        still = (await c.get(f"/api/v1/leads/{lead['id']}")).json()
        assert still["status"] == "new" and still["converted_at"] is None
        # then a good conversion linking an existing company makes no new company
        async with tenant_scope(workspace.tenant_id) as tx:
            existing = (await tx.execute_query_dict(
                "INSERT INTO companies (name, owner_id) VALUES ('上海某某贸易有限公司', $1) RETURNING id",
                [workspace.identity_id]))[0]["id"]
        resp = await c.post(f"/api/v1/leads/{lead['id']}/convert", json={"company_id": existing})
        assert resp.status_code == 201 and resp.json()["company_id"] == existing
        assert not resp.json()["company_created"] and resp.json()["deal_id"] is None
    after = await _counts(workspace)
    assert (after["contacts"], after["companies"], after["deals"]) == \
        (before["contacts"] + 1, before["companies"] + 1, before["deals"])


async def test_conversion_respects_plan_and_permissions(workspace: Workspace) -> None:
    from kith.platform.billing.plans import PLANS

    support, sales = await add_member(workspace, "support"), await add_member(workspace, "sales")
    lead = await _lead_with_history(workspace, sales.headers)
    async with client(headers=support.headers) as c:  # may edit leads but not create contacts
        resp = await c.post(f"/api/v1/leads/{lead['id']}/convert", json={})
        assert assert_error(resp, 403, "permission_denied")["permission"] == "contacts: create"
    async with client(headers=sales.headers) as c:
        assert (await c.get("/api/v1/billing")).status_code in (200, 403)
        async with platform_tx() as tx:
            await tx.execute_query("UPDATE public.billing_subscriptions SET plan = 'free', status = 'active',"
                                   " trial_ends_at = NULL WHERE tenant_id = $1", [workspace.tenant_id])
        async with tenant_scope(workspace.tenant_id) as tx:
            await tx.execute_query("INSERT INTO contacts (name) SELECT 'c' || g FROM generate_series(1, $1) g",
                                   [PLANS["free"].contacts])
        before = await _counts(workspace)
        resp = await c.post(f"/api/v1/leads/{lead['id']}/convert", json={"create_deal": True})
        assert_error(resp, 402, "plan_limit")
        assert await _counts(workspace) == before  # not even the company


async def test_convert_in_the_browser_form(workspace: Workspace) -> None:
    headers = await owner_token(workspace)
    lead = await _lead_with_history(workspace, headers)
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        page = f"/t/{workspace.slug}/leads/{lead['id']}"
        bad = await form_post(c, page, {"company_mode": "new", "create_deal": "1", "deal_amount": "-1"},
                              f"{page}/convert")
        assert bad.status_code == 422 and 'data-field="deal_amount"' in bad.text
        done = await form_post(c, page, {"company_mode": "new", "create_deal": "1", "deal_amount": "800"},
                               f"{page}/convert")
        assert done.status_code == 303
        shown = await c.get(done.headers["location"])
        assert 'data-made="contact"' in shown.text and 'data-made="deal"' in shown.text
        assert 'data-section="convert"' not in shown.text
