"""The generic list page (filters, custom fields, sort, keyset pagination, columns, saved views, bulk
actions) and the custom fields settings page, through the real app as a signed-in person."""

from __future__ import annotations

import re
from typing import Any

import httpx

from kith.platform.db import platform_tx, tenant_scope

from .conftest import Workspace
from .factories import Member, add_member, owner_token
from .web_helpers import client, csrf_from, login

LIST = "companies"  # the generic list page serves companies, contacts, leads and deals alike


async def _signed_in(ws: Workspace, member: Member | None = None) -> httpx.AsyncClient:
    c = client()
    await c.__aenter__()
    email, password = (member.email, member.password) if member else (ws.email, ws.password)
    resp = await login(c, email, password)
    assert resp.status_code == 303, resp.text[:300]
    return c


async def _api_create(ws: Workspace, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
                      ) -> dict[str, Any]:
    async with client(headers=headers or await owner_token(ws)) as c:
        resp = await c.post(f"/api/v1/{path}", json=body)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())


def _row_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-record-id="(\d+)"', html)]


async def test_list_filters_custom_fields_sort_and_columns(workspace: Workspace, other_workspace: Workspace) -> None:
    await _api_create(workspace, "custom-fields", {"object_type": LIST, "label": "等级", "kind": "select",
                                                   "options": ["金牌", "银牌"]})
    rows = [("上海云图科技", "软件", "金牌"), ("北京华信咨询", "咨询", "银牌"), ("Northwind", "软件", "银牌")]
    ids = {}
    for name, industry, tier in rows:
        ids[name] = (await _api_create(workspace, LIST, {"name": name, "industry": industry,
                                                         "custom": {"field_1": tier}}))["id"]
    await _api_create(other_workspace, LIST, {"name": "上海别家公司", "industry": "软件"})
    c = await _signed_in(workspace)
    try:
        base = f"/t/{workspace.slug}/{LIST}"
        page = await c.get(base)
        assert page.status_code == 200 and "上海别家公司" not in page.text
        assert sorted(_row_ids(page.text)) == sorted(ids.values())
        # a filter on a field, then on the custom field (the builder's rows, as the plain form sends them)
        page = await c.get(base, params={"f": "industry:eq:软件"})
        assert sorted(_row_ids(page.text)) == sorted([ids["上海云图科技"], ids["Northwind"]])
        page = await c.get(base, params=[("ff", "industry"), ("fo", "eq"), ("fv", "软件"),
                                         ("ff", "custom.field_1"), ("fo", "eq"), ("fv", "银牌"),
                                         ("ff", ""), ("fo", ""), ("fv", "")])
        assert _row_ids(page.text) == [ids["Northwind"]]
        assert 'value="custom.field_1" data-kind="choice" selected' in page.text  # the row shows as chosen
        # sort by name both ways; the header links toggle
        page = await c.get(base, params={"sort": "name"})
        assert _row_ids(page.text) == [ids["Northwind"], ids["上海云图科技"], ids["北京华信咨询"]]
        assert "sort=-name" in page.text
        page = await c.get(base, params={"sort": "-name"})
        assert _row_ids(page.text) == [ids["北京华信咨询"], ids["上海云图科技"], ids["Northwind"]]
        # search, any script
        page = await c.get(base, params={"q": "云图"})
        assert _row_ids(page.text) == [ids["上海云图科技"]]
        # column choice, including the custom field; its values show
        page = await c.get(base, params=[("col", "name"), ("col", "custom.field_1")])
        assert "金牌" in page.text and 'data-label="等级"' in page.text and 'data-label="Industry"' not in page.text
        # a bad filter is named, the list still shows
        page = await c.get(base, params={"f": "shoe_size:eq:9"})
        assert page.status_code == 422 and "shoe_size" in page.text
        page = await c.get(base, params={"f": "name:gt:x"})
        assert page.status_code == 422 and "operators" in page.text
    finally:
        await c.__aexit__(None, None, None)


async def test_list_pagination_boundaries(workspace: Workspace) -> None:
    made = [(await _api_create(workspace, LIST, {"name": f"公司 {n}"}))["id"] for n in range(3)]
    c = await _signed_in(workspace)
    try:
        base = f"/t/{workspace.slug}/{LIST}"
        page = await c.get(base, params={"limit": "3"})
        assert sorted(_row_ids(page.text)) == sorted(made) and 'rel="next"' not in page.text  # exactly limit rows
        made.append((await _api_create(workspace, LIST, {"name": "公司 3"}))["id"])
        page = await c.get(base, params={"limit": "3", "sort": "name"})
        assert _row_ids(page.text) == made[:3]
        link = re.search(r'<a rel="next" href="([^"]+)"', page.text)
        assert link, "limit + 1 rows: a next page"
        following = await c.get(link.group(1).replace("&amp;", "&"))
        assert _row_ids(following.text) == [made[3]] and 'rel="next"' not in following.text
    finally:
        await c.__aexit__(None, None, None)


async def test_saved_view_from_the_page(workspace: Workspace) -> None:
    kept = (await _api_create(workspace, LIST, {"name": "华东贸易", "industry": "贸易"}))["id"]
    await _api_create(workspace, LIST, {"name": "Other", "industry": "IT"})
    c = await _signed_in(workspace)
    try:
        base = f"/t/{workspace.slug}/{LIST}"
        page = await c.get(base, params={"f": "industry:eq:贸易", "sort": "-name"})
        resp = await c.post(f"{base}/views", data={"csrf_token": csrf_from(page.text), "name": "贸易客户",
                                                   "shared": "on", "back": "f=industry%3Aeq%3A%E8%B4%B8%E6%98%93"
                                                   "&sort=-name"})
        assert resp.status_code == 303 and "view=" in resp.headers["location"]
        page = await c.get(resp.headers["location"])
        assert _row_ids(page.text) == [kept] and "View saved." in page.text
        assert re.search(r'<option value="\d+" selected>贸易客户 \(shared\)</option>', page.text)
        view_id = re.search(r"view=(\d+)", resp.headers["location"]).group(1)  # type: ignore[union-attr]
        # shared with the workspace: another member opens it, but may not delete it
        sales = await add_member(workspace, "sales")
        other = await _signed_in(workspace, sales)
        try:
            seen = await other.get(base, params={"view": view_id})
            assert seen.status_code == 200 and "贸易客户" in seen.text
            refused = await other.post(f"{base}/views/{view_id}/delete", data={"csrf_token": csrf_from(seen.text)})
            assert refused.status_code == 403 and "manage_settings" in refused.text
        finally:
            await other.__aexit__(None, None, None)
        resp = await c.post(f"{base}/views/{view_id}/delete", data={"csrf_token": csrf_from(page.text)})
        assert resp.status_code == 303
        page = await c.get(base, params={"view": view_id})
        assert page.status_code == 422 and "no such saved view" in page.text
    finally:
        await c.__aexit__(None, None, None)


async def test_bulk_actions_from_the_page(workspace: Workspace) -> None:
    sales = await add_member(workspace, "sales")
    ids = [(await _api_create(workspace, LIST, {"name": f"批量 {n}"}))["id"] for n in range(3)]
    c = await _signed_in(workspace)
    try:
        base = f"/t/{workspace.slug}/{LIST}"
        page = await c.get(base)
        token = csrf_from(page.text)
        assert sales.email in page.text  # offered in the assign select
        resp = await c.post(f"{base}/bulk", data={"csrf_token": token, "ids": [str(i) for i in ids[:2]],
                                                  "action": "assign", "owner_id": str(sales.identity_id),
                                                  "back": "sort=name"})
        assert resp.status_code == 303 and resp.headers["location"] == f"{base}?sort=name&done=assigned&count=2"
        page = await c.get(resp.headers["location"])
        assert "2 records assigned." in page.text and page.text.count(sales.email) >= 3  # 2 owner cells + select
        resp = await c.post(f"{base}/bulk", data={"csrf_token": token, "ids": [str(i) for i in ids],
                                                  "action": "edit", "field": "industry", "value": "制造业"})
        assert resp.status_code == 303
        async with tenant_scope(workspace.tenant_id) as tx:
            rows = await tx.execute_query_dict(f"SELECT DISTINCT industry FROM {LIST}")  # noqa: S608
        assert [r["industry"] for r in rows] == ["制造业"]
        # a bad value is named on the page
        resp = await c.post(f"{base}/bulk", data={"csrf_token": token, "ids": [str(ids[0])], "action": "edit",
                                                  "field": "size", "value": "huge"})
        assert resp.status_code == 422 and "size" in resp.text
        # delete asks first, stating the count; the confirmation posts it back
        resp = await c.post(f"{base}/bulk", data={"csrf_token": token, "ids": [str(i) for i in ids[:2]],
                                                  "action": "delete"})
        assert resp.status_code == 200 and "Delete 2 companies?" in resp.text
        assert 'name="confirm" value="2"' in resp.text
        resp = await c.post(f"{base}/bulk", data={"csrf_token": token, "ids": [str(i) for i in ids[:2]],
                                                  "action": "delete-confirmed", "confirm": "1"})
        assert resp.status_code == 422 and "confirm must be 2" in resp.text
        resp = await c.post(f"{base}/bulk", data={"csrf_token": token, "ids": [str(i) for i in ids[:2]],
                                                  "action": "delete-confirmed", "confirm": "2"})
        assert resp.status_code == 303
        page = await c.get(resp.headers["location"])
        assert "2 records deleted." in page.text and _row_ids(page.text) == [ids[2]]
        resp = await c.post(f"{base}/bulk", data={"ids": [str(ids[2])], "action": "delete"})
        assert resp.status_code == 403  # no CSRF token
    finally:
        await c.__aexit__(None, None, None)


async def test_list_page_scope_and_chinese_workspace(workspace: Workspace) -> None:
    sales = await add_member(workspace, "sales")
    mine = (await _api_create(workspace, LIST, {"name": "我的公司"}, headers=sales.headers))["id"]
    await _api_create(workspace, LIST, {"name": "别人的公司"})
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.tenants SET locale = 'zh-CN' WHERE id = $1", [workspace.tenant_id])
    c = await _signed_in(workspace, sales)
    try:
        page = await c.get(f"/t/{workspace.slug}/{LIST}")
        assert _row_ids(page.text) == [mine] and "别人的公司" not in page.text
        assert "应用筛选" in page.text and "保存视图" in page.text and "分配给" in page.text
    finally:
        await c.__aexit__(None, None, None)


async def test_custom_fields_settings_page(workspace: Workspace) -> None:
    c = await _signed_in(workspace)
    try:
        url = f"/t/{workspace.slug}/settings/custom-fields"
        page = await c.get(url)
        assert page.status_code == 200 and "No custom fields yet." in page.text
        token = csrf_from(page.text)
        resp = await c.post(url, data={"csrf_token": token, "object_type": "deals", "label": "渠道", "kind": "select",
                                       "options": "线上\n线下\n"})
        assert resp.status_code == 303, resp.text[-500:]
        page = await c.get(resp.headers["location"])
        assert "Field added." in page.text and "custom.field_1" in page.text and "线下" in page.text
        resp = await c.post(url, data={"csrf_token": token, "object_type": "deals", "label": "Bad", "kind": "select"})
        assert resp.status_code == 422 and 'data-field="options"' in resp.text
        field_id = re.search(r'/settings/custom-fields/(\d+)/delete', page.text).group(1)  # type: ignore[union-attr]
        resp = await c.post(f"{url}/{field_id}", data={"csrf_token": token, "label": "销售渠道",
                                                        "options": "线上\n线下\n代理", "position": "2"})
        assert resp.status_code == 303
        confirm = await c.get(f"{url}/{field_id}/delete")
        assert "销售渠道" in confirm.text
        resp = await c.post(f"{url}/{field_id}/delete", data={"csrf_token": token})
        assert resp.status_code == 303 and "done=deleted" in resp.headers["location"]
    finally:
        await c.__aexit__(None, None, None)
    sales = await add_member(workspace, "sales")
    c = await _signed_in(workspace, sales)
    try:
        page = await c.get(url)
        assert page.status_code == 200 and "Add a field" not in page.text
        resp = await c.post(url, data={"csrf_token": csrf_from(page.text), "object_type": "deals", "label": "X",
                                       "kind": "text"})
        assert resp.status_code == 403 and "workspace: manage_settings" in resp.text
    finally:
        await c.__aexit__(None, None, None)


async def test_hidden_fields_are_never_offered(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        role = await c.post("/api/v1/roles", json={
            "name": "No industry", "grants": {LIST: ["view", "edit"]}, "record_scope": {LIST: "all"},
            "hidden_fields": {LIST: ["industry"]}})
        assert role.status_code == 201, role.text
    await _api_create(workspace, LIST, {"name": "保密行业公司", "industry": "军工"})
    member = await add_member(workspace, role.json()["key"])
    c = await _signed_in(workspace, member)
    try:
        page = await c.get(f"/t/{workspace.slug}/{LIST}")
        assert page.status_code == 200 and "保密行业公司" in page.text
        assert 'value="industry"' not in page.text and "军工" not in page.text
        assert "Delete selected" not in page.text  # no delete permission, no delete button
        refused = await c.get(f"/t/{workspace.slug}/{LIST}", params={"f": "industry:eq:军工"})
        assert refused.status_code == 403 and "industry" in refused.text
    finally:
        await c.__aexit__(None, None, None)
