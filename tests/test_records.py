"""Custom fields admin, saved views and bulk changes over the API, against the real app."""

from __future__ import annotations

import json
from typing import Any

import httpx

from kith.platform.db import tenant_scope

from .conftest import Workspace
from .factories import add_member, owner_token
from .web_helpers import assert_error, client


async def _create(c: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = await c.post(f"/api/v1/{path}", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def _custom_of(ws: Workspace, table: str, record_id: int) -> dict[str, Any]:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(f"SELECT custom FROM {table} WHERE id = $1", [record_id])  # noqa: S608
    custom = rows[0]["custom"]
    return dict(json.loads(custom) if isinstance(custom, str) else custom)


async def _audit_actions(ws: Workspace, object_type: str) -> list[str]:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "SELECT action FROM audit_log WHERE object_type = $1 ORDER BY seq", [object_type])
    return [r["action"] for r in rows]


# --- custom fields -------------------------------------------------------------------------


async def test_custom_fields_every_kind_keys_and_options(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        made = {}
        for kind in ("text", "long_text", "number", "currency", "date", "boolean", "url"):
            made[kind] = await _create(c, "custom-fields", {"object_type": "contacts", "label": f"My {kind} field",
                                                            "kind": kind})
        assert made["long_text"]["key"] == "my_long_text_field" and made["url"]["position"] == 6
        select = await _create(c, "custom-fields", {"object_type": "contacts", "label": "Tier", "kind": "select",
                                                    "options": ["Gold", " Silver "]})
        assert select["key"] == "tier" and select["options"] == ["Gold", "Silver"]
        # Chinese labels get field_<n>; an explicit key is kept
        first = await _create(c, "custom-fields", {"object_type": "contacts", "label": "预算", "kind": "currency"})
        second = await _create(c, "custom-fields", {"object_type": "contacts", "label": "行业等级",
                                                    "kind": "multi_select", "options": ["甲", "乙"]})
        assert (first["key"], second["key"]) == ("field_1", "field_2")
        keyed = await _create(c, "custom-fields", {"object_type": "deals", "label": "Region", "kind": "text",
                                                   "key": "sales_region"})
        assert keyed["key"] == "sales_region"
        # the same label on another object type is fine; twice on one is not
        await _create(c, "custom-fields", {"object_type": "leads", "label": "Tier", "kind": "text"})
        error = assert_error(await c.post("/api/v1/custom-fields", json={
            "object_type": "contacts", "label": "tier", "kind": "text"}), 409)
        assert "label" in error["fields"]

        bad = [({"kind": "select"}, "options"), ({"kind": "text", "options": ["a"]}, "options"),
               ({"kind": "select", "options": ["a", "a"]}, "options"), ({"kind": "select", "options": ["a", " "]},
                                                                        "options"),
               ({"kind": "select", "options": [str(i) for i in range(101)]}, "options"),
               ({"kind": "colour"}, "kind"), ({"kind": "text", "object_type": "orders"}, "object_type"),
               ({"kind": "text", "key": "Bad Key"}, "key"), ({"kind": "text", "label": ""}, "label")]
        for change, field in bad:
            body = {"object_type": "contacts", "label": "Another", **change}
            error = assert_error(await c.post("/api/v1/custom-fields", json=body), 422)
            assert field in error["fields"], (change, error)

        listed = (await c.get("/api/v1/custom-fields", params={"object_type": "contacts"})).json()["items"]
        assert [f["key"] for f in listed][:2] == ["my_text_field", "my_long_text_field"]
        assert len((await c.get("/api/v1/custom-fields")).json()["items"]) == len(listed) + 2
    assert (await _audit_actions(workspace, "custom_fields")).count("custom_field.create") == len(listed) + 2


async def test_custom_field_changes_option_in_use_and_kind(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        tier = await _create(c, "custom-fields", {"object_type": "contacts", "label": "Tier", "kind": "select",
                                                  "options": ["Gold", "Silver", "Bronze"]})
        tags = await _create(c, "custom-fields", {"object_type": "contacts", "label": "Topics",
                                                  "kind": "multi_select", "options": ["CRM", "ERP"]})
        for name in ("甲", "乙"):
            contact = await _create(c, "contacts", {"name": name})
            resp = await c.patch(f"/api/v1/contacts/{contact['id']}",
                                 json={"custom": {"tier": "Gold", "topics": ["ERP"]}})
            assert resp.status_code == 200, resp.text
        error = assert_error(await c.patch(f"/api/v1/custom-fields/{tier['id']}",
                                           json={"options": ["Silver", "Bronze"]}), 409, "option_in_use")
        assert "'Gold'" in error["message"] and "2 records use it" in error["message"]
        assert_error(await c.patch(f"/api/v1/custom-fields/{tags['id']}", json={"options": ["CRM"]}), 409)
        # an unused option goes; a rename and a reorder are fine
        resp = await c.patch(f"/api/v1/custom-fields/{tier['id']}",
                             json={"options": ["Gold", "Silver", "Platinum"], "label": "客户等级", "position": 9})
        assert resp.status_code == 200, resp.text
        assert resp.json()["options"] == ["Gold", "Silver", "Platinum"] and resp.json()["label"] == "客户等级"
        assert resp.json()["key"] == "tier"  # the key never changes
        error = assert_error(await c.patch(f"/api/v1/custom-fields/{tier['id']}", json={"kind": "text"}), 422)
        assert "delete and re-create" in error["message"]
        assert (await c.patch(f"/api/v1/custom-fields/{tier['id']}", json={"kind": "select"})).status_code == 200
        error = assert_error(await c.patch(f"/api/v1/custom-fields/{tier['id']}", json={"options": []}), 422)
        assert "options" in error["fields"]
        assert_error(await c.patch("/api/v1/custom-fields/999999", json={"label": "x"}), 404)


async def test_deleting_a_custom_field_removes_its_values(workspace: Workspace, other_workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        budget = await _create(c, "custom-fields", {"object_type": "contacts", "label": "Budget",
                                                    "kind": "currency"})
        await _create(c, "custom-fields", {"object_type": "contacts", "label": "Region", "kind": "text"})
        contact = await _create(c, "contacts", {"name": "王芳"})
        resp = await c.patch(f"/api/v1/contacts/{contact['id']}",
                             json={"custom": {"budget": "1200.5", "region": "华东"}})
        assert resp.status_code == 200, resp.text
        assert await _custom_of(workspace, "contacts", contact["id"]) == {"budget": "1200.50", "region": "华东"}
        assert (await c.delete(f"/api/v1/custom-fields/{budget['id']}")).status_code == 204
        assert await _custom_of(workspace, "contacts", contact["id"]) == {"region": "华东"}
        assert_error(await c.delete(f"/api/v1/custom-fields/{budget['id']}"), 404)
    assert "custom_field.delete" in await _audit_actions(workspace, "custom_fields")
    # another workspace never reaches this workspace's fields
    async with client(headers=await owner_token(other_workspace)) as c:
        assert (await c.get("/api/v1/custom-fields")).json()["items"] == []
        assert_error(await c.patch(f"/api/v1/custom-fields/{budget['id']}", json={"label": "x"}), 404)


async def test_custom_fields_need_manage_settings(workspace: Workspace) -> None:
    sales = await add_member(workspace, "sales")
    async with client(headers=await owner_token(workspace)) as c:
        field = await _create(c, "custom-fields", {"object_type": "companies", "label": "Segment", "kind": "text"})
    async with client(headers=sales.headers) as c:
        assert [f["key"] for f in (await c.get("/api/v1/custom-fields")).json()["items"]] == ["segment"]
        for method, path, body in (("POST", "/api/v1/custom-fields",
                                    {"object_type": "companies", "label": "X", "kind": "text"}),
                                   ("PATCH", f"/api/v1/custom-fields/{field['id']}", {"label": "Y"}),
                                   ("DELETE", f"/api/v1/custom-fields/{field['id']}", None)):
            error = assert_error(await c.request(method, path, json=body), 403, "permission_denied")
            assert error["permission"] == "workspace: manage_settings"


# --- saved views ---------------------------------------------------------------------------


async def test_saved_views_private_shared_and_who_may_change(workspace: Workspace) -> None:
    anna, ben = await add_member(workspace, "sales"), await add_member(workspace, "sales")
    owner = await owner_token(workspace)
    definition = {"filters": [["name", "contains", "张"], ["lifecycle_stage", "eq", "customer"]], "sort": "-name",
                  "q": "", "columns": ["name", "email"]}
    async with client(headers=anna.headers) as c:
        private = await _create(c, "views", {"object_type": "contacts", "name": "我的客户", "definition": definition})
        shared = await _create(c, "views", {"object_type": "contacts", "name": "Team view", "shared": True})
        assert private["mine"] and private["definition"]["filters"][0] == ["name", "contains", "张"]
        assert_error(await c.post("/api/v1/views", json={"object_type": "contacts", "name": "我的客户"}), 409)
        error = assert_error(await c.post("/api/v1/views", json={
            "object_type": "contacts", "name": "Bad", "definition": {"filters": [["shoe_size", "eq", "9"]]}}), 422)
        assert "shoe_size" in error["message"]
        error = assert_error(await c.post("/api/v1/views", json={
            "object_type": "contacts", "name": "Bad", "definition": {"filters": [["name", "gt", "x"]]}}), 422)
        assert "name" in error["message"]
        assert_error(await c.post("/api/v1/views", json={"object_type": "contacts", "name": "Bad",
                                                         "definition": {"sort": "custom.nothing"}}), 422)
        assert_error(await c.post("/api/v1/views", json={"object_type": "tasks", "name": "Bad"}), 422)
    async with client(headers=ben.headers) as c:
        names = [v["name"] for v in (await c.get("/api/v1/views", params={"object_type": "contacts"})).json()["items"]]
        assert names == ["Team view"]  # the private view stays Anna's
        assert_error(await c.patch(f"/api/v1/views/{private['id']}", json={"name": "Mine now"}), 404)
        assert_error(await c.delete(f"/api/v1/views/{private['id']}"), 404)
        error = assert_error(await c.patch(f"/api/v1/views/{shared['id']}", json={"name": "Taken"}), 403)
        assert error["permission"] == "workspace: manage_settings"
        assert_error(await c.delete(f"/api/v1/views/{shared['id']}"), 403)
    async with client(headers=anna.headers) as c:
        resp = await c.patch(f"/api/v1/views/{private['id']}", json={"shared": True, "definition": {"sort": "name"}})
        assert resp.status_code == 200 and resp.json()["shared"] and resp.json()["definition"]["sort"] == "name"
    async with client(headers=owner) as c:  # manage_settings changes and deletes someone's shared view
        resp = await c.patch(f"/api/v1/views/{shared['id']}", json={"name": "Renamed by the owner"})
        assert resp.status_code == 200 and not resp.json()["mine"]
        assert (await c.delete(f"/api/v1/views/{shared['id']}")).status_code == 204
    assert await _audit_actions(workspace, "saved_views") == [
        "saved_view.create", "saved_view.create", "saved_view.update", "saved_view.update", "saved_view.delete"]


async def test_saved_view_with_a_custom_field_filter(workspace: Workspace, other_workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        await _create(c, "custom-fields", {"object_type": "contacts", "label": "Tier", "kind": "select",
                                           "options": ["Gold", "Silver"]})
        view = await _create(c, "views", {"object_type": "contacts", "name": "Gold", "definition": {
            "filters": [["custom.tier", "eq", "Gold"]], "sort": "custom.tier", "columns": ["name", "custom.tier"]}})
    async with client(headers=await owner_token(other_workspace)) as c:
        assert_error(await c.patch(f"/api/v1/views/{view['id']}", json={"name": "x"}), 404)
        assert (await c.get("/api/v1/views", params={"object_type": "contacts"})).json()["items"] == []


# --- bulk changes --------------------------------------------------------------------------


async def test_bulk_update_and_assign_all_or_nothing(workspace: Workspace, other_workspace: Workspace) -> None:
    owner = await owner_token(workspace)
    sales = await add_member(workspace, "sales")
    async with client(headers=owner) as c:
        ids = [(await _create(c, "contacts", {"name": n}))["id"] for n in ("李娜", "Tom", "Ana")]
        resp = await c.post("/api/v1/contacts/bulk-update",
                            json={"ids": ids, "changes": {"lifecycle_stage": "customer", "source": "展会"}})
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"object_type": "contacts", "count": 3, "ids": ids}
        got = (await c.get(f"/api/v1/contacts/{ids[0]}")).json()
        assert got["lifecycle_stage"] == "customer" and got["source"] == "展会"
        assert (await _audit_actions(workspace, "contacts")).count("contact.update") == 3
        # bad changes name the field; nothing changes
        error = assert_error(await c.post("/api/v1/contacts/bulk-update",
                                          json={"ids": ids, "changes": {"lifecycle_stage": "alien"}}), 422)
        assert "changes.lifecycle_stage" in error["fields"]
        error = assert_error(await c.post("/api/v1/contacts/bulk-update", json={"ids": ids, "changes": {}}), 422)
        assert "changes" in error["fields"]
        # another workspace's record, or a missing one: 404 naming it, nothing changed
        async with client(headers=await owner_token(other_workspace)) as other:
            # ids are per workspace: the other's 5th contact has an id this workspace does not have
            foreign = [(await _create(other, "contacts", {"name": f"外部 {n}"}))["id"] for n in range(5)][-1]
        assert foreign not in ids
        error = assert_error(await c.post("/api/v1/contacts/bulk-update",
                                          json={"ids": [*ids, foreign], "changes": {"source": "x"}}), 404)
        assert str(foreign) in error["message"]
        assert (await c.get(f"/api/v1/contacts/{ids[0]}")).json()["source"] == "展会"
        # assign to a member; the new owner must be an active member
        resp = await c.post("/api/v1/contacts/bulk-assign", json={"ids": ids[:2], "owner_id": sales.identity_id})
        assert resp.status_code == 200 and resp.json()["count"] == 2
        error = assert_error(await c.post("/api/v1/contacts/bulk-assign", json={"ids": ids, "owner_id": 999999}), 422)
        assert "owner_id" in error["fields"]
        error = assert_error(await c.post("/api/v1/contacts/bulk-assign",
                                          json={"ids": list(range(1, 502)), "owner_id": sales.identity_id}), 422)
        assert "ids" in error["fields"]
    # a sales member reaches only their own records: the third one is named, nothing changes
    async with client(headers=sales.headers) as c:
        items = (await c.get("/api/v1/contacts")).json()["items"]
        assert sorted(i["id"] for i in items) == sorted(ids[:2])
        error = assert_error(await c.post("/api/v1/contacts/bulk-update",
                                          json={"ids": ids, "changes": {"title": "经理"}}), 404)
        assert str(ids[2]) in error["message"] and str(ids[0]) not in error["message"]
        assert (await c.get(f"/api/v1/contacts/{ids[0]}")).json()["title"] == ""
        resp = await c.post("/api/v1/contacts/bulk-update", json={"ids": ids[:2], "changes": {"title": "经理"}})
        assert resp.status_code == 200
    read_only = await add_member(workspace, "read_only")
    async with client(headers=read_only.headers) as c:
        error = assert_error(await c.post("/api/v1/contacts/bulk-update",
                                          json={"ids": ids, "changes": {"title": "x"}}), 403)
        assert error["permission"] == "contacts: edit"


async def test_bulk_update_refused_record_changes_nothing(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        await _create(c, "custom-fields", {"object_type": "contacts", "label": "Tier", "kind": "select",
                                           "options": ["Gold"]})
        ids = [(await _create(c, "contacts", {"name": n}))["id"] for n in ("One", "Two")]
        # a custom value that does not fit: refused for the first record, nothing written
        error = assert_error(await c.post("/api/v1/contacts/bulk-update",
                                          json={"ids": ids, "changes": {"custom": {"tier": "Lead"}}}), 422)
        assert str(ids[0]) in error["message"]
        assert await _custom_of(workspace, "contacts", ids[1]) == {}


async def test_bulk_delete_confirmation_and_all_or_nothing(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        free = [(await _create(c, "companies", {"name": n}))["id"] for n in ("甲公司", "乙公司")]
        busy = (await _create(c, "companies", {"name": "丙公司"}))["id"]
        await _create(c, "contacts", {"name": "Staff", "company_id": busy})
        error = assert_error(await c.post("/api/v1/companies/bulk-delete", json={"ids": free, "confirm": 3}), 422)
        assert error["fields"]["confirm"].startswith("confirm must be 2")
        # the company with a contact is refused: the others stay too, and the error names it
        resp = await c.post("/api/v1/companies/bulk-delete", json={"ids": [*free, busy], "confirm": 3})
        assert resp.status_code == 409, resp.text
        assert str(busy) in resp.json()["error"]["message"]
        for company_id in (*free, busy):
            assert (await c.get(f"/api/v1/companies/{company_id}")).status_code == 200
        resp = await c.post("/api/v1/companies/bulk-delete", json={"ids": free, "confirm": 2})
        assert resp.status_code == 200 and resp.json()["count"] == 2
        for company_id in free:
            assert (await c.get(f"/api/v1/companies/{company_id}")).status_code == 404
    support = await add_member(workspace, "support")
    async with client(headers=support.headers) as c:
        error = assert_error(await c.post("/api/v1/companies/bulk-delete", json={"ids": [busy], "confirm": 1}), 403)
        assert error["permission"] == "companies: delete"
