"""Leads through the API: validation (one message per field), Chinese names, audited reads of the
sensitive fields, permissions (own scope, read-only), tenant isolation, and the pages."""

from __future__ import annotations

import json

from kith.platform.db import platform_tx, tenant_scope

from .conftest import Services, Workspace
from .factories import add_member, owner_token
from .web_helpers import assert_error, client, form_post, login


async def _audit(ws: Workspace, action: str, object_id: int | None = None) -> list[dict]:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "SELECT action, object_id, diff FROM audit_log WHERE action = $1"
            + (" AND object_id = $2" if object_id is not None else "") + " ORDER BY seq",
            [action, str(object_id)] if object_id is not None else [action])
    return [{**r, "diff": json.loads(r["diff"]) if isinstance(r["diff"], str) else r["diff"]} for r in rows]


async def test_lead_validation_names_each_bad_field(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        # a bad email, a phone with letters, an unknown status and a missing name, in one body
        resp = await c.post("/api/v1/leads", json={"email": "wang@", "phone": "call me", "status": "hot"})
        error = assert_error(resp, 422, "invalid_input")
        assert set(error["fields"]) == {"name", "email", "phone", "status"}, error
        assert "email" in error["fields"]["email"].lower()
        assert "digits" in error["fields"]["phone"]
        # a national number that cannot be a number of the workspace's region
        async with platform_tx() as tx:
            await tx.execute_query("UPDATE public.tenants SET default_phone_region = 'CN' WHERE id = $1",
                                   [workspace.tenant_id])
        resp = await c.post("/api/v1/leads", json={"name": "王芳", "phone": "1234"})
        assert "CN" in assert_error(resp, 422)["fields"]["phone"]
        # "converted" is set only by converting, on create and on update
        resp = await c.post("/api/v1/leads", json={"name": "王芳", "status": "converted"})
        assert "converting" in assert_error(resp, 422)["fields"]["status"]
        resp = await c.post("/api/v1/leads", json={
            "name": "王芳", "company_name": "上海某某贸易有限公司", "email": " Wang.Fang@Example.CN ",
            "phone": "138 0013 8000", "title": "采购经理", "source": "展会", "tags": ["华东", "华东", " VIP "]})
        assert resp.status_code == 201, resp.text
        lead = resp.json()
        assert lead["name"] == "王芳" and lead["company_name"] == "上海某某贸易有限公司"
        assert lead["email"] == "Wang.Fang@example.cn"  # the domain normalized, as for contacts
        assert lead["phone"] == "+86 138 0013 8000"  # read in the workspace's region
        assert lead["tags"] == ["华东", "VIP"] and lead["status"] == "new"
        assert lead["owner_id"] == workspace.identity_id and lead["pooled_at"] is None
        resp = await c.patch(f"/api/v1/leads/{lead['id']}", json={"status": "converted"})
        assert "converting" in assert_error(resp, 422)["fields"]["status"]
        resp = await c.patch(f"/api/v1/leads/{lead['id']}", json={"name": "", "owner_id": 999_999_999})
        assert set(assert_error(resp, 422)["fields"]) == {"name"}
        resp = await c.patch(f"/api/v1/leads/{lead['id']}", json={"owner_id": 999_999_999})
        assert "member" in assert_error(resp, 422)["fields"]["owner_id"]
        resp = await c.patch(f"/api/v1/leads/{lead['id']}", json={"custom": {"nope": "x"}})
        assert "custom.nope" in assert_error(resp, 422)["fields"]
        resp = await c.patch(f"/api/v1/leads/{lead['id']}", json={"status": "qualified", "notes": "回访"})
        assert resp.status_code == 200 and resp.json()["status"] == "qualified"
        # search finds the Chinese company name; the filter on status works
        found = await c.get("/api/v1/leads", params={"q": "某某贸易", "f": "status:eq:qualified"})
        assert [x["id"] for x in found.json()["items"]] == [lead["id"]]
        bad = await c.get("/api/v1/leads", params={"f": "status:eq:hot"})
        assert_error(bad, 422)
    # audited: the change with the lead as subject (values encrypted), and the read of email and phone
    update = (await _audit(workspace, "lead.update", lead["id"]))[-1]
    assert set(update["diff"]) == {"status", "notes"}
    assert str(update["diff"]["status"][1]).startswith("ks1:")
    create = (await _audit(workspace, "lead.create", lead["id"]))[0]
    assert set(create["diff"]) >= {"name", "email", "phone", "company_name"}
    reads = await _audit(workspace, "leads.read_sensitive")
    assert any(r["diff"].get("ids") == [lead["id"]] for r in reads)  # the list page


async def test_sales_sees_own_leads_and_read_only_changes_nothing(workspace: Workspace,
                                                                  other_workspace: Workspace) -> None:
    sales, other_sales, read_only = [await add_member(workspace, r) for r in ("sales", "sales", "read_only")]
    async with client(headers=sales.headers) as c:
        mine = (await c.post("/api/v1/leads", json={"name": "Li Lei"})).json()
    async with client(headers=other_sales.headers) as c:
        theirs = (await c.post("/api/v1/leads", json={"name": "Han Meimei"})).json()
        assert [x["id"] for x in (await c.get("/api/v1/leads")).json()["items"]] == [theirs["id"]]
        assert_error(await c.get(f"/api/v1/leads/{mine['id']}"), 404)
        assert_error(await c.patch(f"/api/v1/leads/{mine['id']}", json={"notes": "x"}), 404)
        assert_error(await c.delete(f"/api/v1/leads/{mine['id']}"), 404)
        assert_error(await c.post(f"/api/v1/leads/{mine['id']}/convert", json={}), 404)
        # a sales rep may not give a lead to someone outside their scope, nor drop it in the pool by PATCH
        resp = await c.patch(f"/api/v1/leads/{theirs['id']}", json={"owner_id": sales.identity_id})
        assert "owner_id" in assert_error(resp, 422)["fields"]
    async with client(headers=read_only.headers) as c:
        assert (await c.get(f"/api/v1/leads/{mine['id']}")).status_code == 200
        assert_error(await c.patch(f"/api/v1/leads/{mine['id']}", json={"notes": "x"}), 403, "permission_denied")
        assert_error(await c.post("/api/v1/leads", json={"name": "x"}), 403, "permission_denied")
        assert_error(await c.delete(f"/api/v1/leads/{mine['id']}"), 403, "permission_denied")
    # another workspace's owner never reaches these leads, by API or by page
    async with client(headers=await owner_token(other_workspace)) as c:
        assert_error(await c.get(f"/api/v1/leads/{mine['id']}"), 404)
        assert (await c.get("/api/v1/leads")).json()["items"] == []
        assert_error(await c.delete(f"/api/v1/leads/{mine['id']}"), 404)
    async with client() as c:
        await login(c, other_workspace.email, other_workspace.password)
        resp = await c.get(f"/t/{other_workspace.slug}/leads/{mine['id']}")
        assert resp.status_code == 404 and "Li Lei" not in resp.text
    async with client(headers=sales.headers) as c:
        assert (await c.delete(f"/api/v1/leads/{mine['id']}")).status_code == 204
        assert_error(await c.get(f"/api/v1/leads/{mine['id']}"), 404)
    assert (await _audit(workspace, "lead.delete", mine["id"]))


async def test_lead_pages_create_edit_delete(db: Services, workspace: Workspace) -> None:
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        base = f"/t/{workspace.slug}/leads"
        bad = await form_post(c, f"{base}/new", {"name": "王芳", "email": "not-an-email", "status": "new"})
        assert bad.status_code == 422 and 'data-field="email"' in bad.text
        made = await form_post(c, f"{base}/new", {"name": "王芳", "company_name": "上海某某贸易有限公司",
                                                  "email": "wang@example.cn", "status": "new", "tags": "华东, VIP"})
        assert made.status_code == 303, made.text[:500]
        page = made.headers["location"]
        shown = await c.get(page)
        assert shown.status_code == 200 and "上海某某贸易有限公司" in shown.text and "VIP" in shown.text
        lead_id = int(page.rsplit("/", 1)[1].split("?")[0])
        edited = await form_post(c, f"{base}/{lead_id}/edit", {"name": "王芳", "email": "wang@example.cn",
                                                               "status": "contacted", "title": "采购经理"})
        assert edited.status_code == 303
        assert "采购经理" in (await c.get(f"{base}/{lead_id}")).text
        gone = await form_post(c, f"{base}/{lead_id}/delete", {})
        assert gone.status_code == 303
        assert (await c.get(f"{base}/{lead_id}")).status_code == 404
        # a form without its CSRF token is refused
        assert (await c.post(f"{base}/new", data={"name": "x"})).status_code == 403
