"""A workspace's locale, default phone region and time zone at work: national phone numbers
read in the region (pages and API), times shown in the zone, validation messages in Chinese."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx

from kith.platform.db import tenant_scope

from .conftest import Workspace
from .factories import owner_token
from .web_helpers import assert_error, client, form_post, login


async def _settings(ws: Workspace, **values: str) -> None:
    async with client(headers=await owner_token(ws)) as api:
        assert (await api.patch("/api/v1/workspace", json=values)).status_code == 200


async def _api(ws: Workspace) -> httpx.AsyncClient:
    return client(headers=await owner_token(ws))


async def test_cn_region_reads_national_numbers(workspace: Workspace) -> None:
    await _settings(workspace, default_phone_region="CN")
    async with await _api(workspace) as api:
        made = await api.post("/api/v1/contacts", json={"name": "张伟", "phone": "138 0013 8000"})
        assert made.status_code == 201 and made.json()["phone"] == "+86 138 0013 8000"
        changed = await api.patch(f"/api/v1/contacts/{made.json()['id']}", json={"phone": "139-1234-5678"})
        assert changed.json()["phone"] == "+86 139 1234 5678"
        # a +number keeps its own country, whatever the region
        other = await api.post("/api/v1/contacts", json={"name": "Emily", "phone": "+1 415 555 2671"})
        assert other.json()["phone"] == "+1 415-555-2671"
        err = assert_error(await api.post("/api/v1/contacts", json={"name": "Bad", "phone": "123"}), 422,
                           "invalid_input")
        assert "CN" in err["fields"]["phone"] and err["fields"]["phone"].startswith("Not a possible phone number")


async def test_us_region_and_no_region(workspace: Workspace) -> None:
    async with await _api(workspace) as api:
        # no region: a national number is kept as typed, as before
        kept = await api.post("/api/v1/contacts", json={"name": "Kept", "phone": "(415) 555-2671"})
        assert kept.json()["phone"] == "(415) 555-2671"
    await _settings(workspace, default_phone_region="US")
    async with await _api(workspace) as api:
        made = await api.post("/api/v1/contacts", json={"name": "Read", "phone": "(415) 555-2671"})
        assert made.json()["phone"] == "+1 415-555-2671"
        err = assert_error(await api.post("/api/v1/contacts", json={"name": "Bad", "phone": "12345"}), 422)
        assert "US" in err["fields"]["phone"]


async def test_zh_cn_form_reads_region_and_explains_in_chinese(workspace: Workspace) -> None:
    await _settings(workspace, default_phone_region="CN", locale="zh-CN")
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        page = f"/t/{workspace.slug}/contacts/new"
        bad = await form_post(c, page, {"name": "李娜", "phone": "123", "email": "nope"})
        assert bad.status_code == 422
        assert "不是 CN 地区可能的电话号码" in bad.text and "邮箱地址无效" in bad.text and "请更正" in bad.text
        empty = await form_post(c, page, {"name": ""})
        assert "此字段不能为空。" in empty.text
        ok = await form_post(c, page, {"name": "李娜", "phone": "138 0013 8000"})
        assert ok.status_code == 303
        listing = (await c.get(f"/t/{workspace.slug}/contacts")).text
        assert "+86 138 0013 8000" in listing and "新建联系人" in listing and "搜索" in listing
        assert "联系人已添加。" not in listing  # the notice shows only after the redirect with ?created
        assert "联系人已添加。" in (await c.get(f"/t/{workspace.slug}/contacts?created=1")).text


async def test_audit_page_shows_the_workspace_time_zone(workspace: Workspace) -> None:
    async with await _api(workspace) as api:
        assert (await api.post("/api/v1/contacts", json={"name": "Timed"})).status_code == 201
    async with tenant_scope(workspace.tenant_id) as tx:
        rows = await tx.execute_query_dict("SELECT at FROM audit_log WHERE action = 'contact.create'")
    utc = rows[0]["at"]
    await _settings(workspace, time_zone="Asia/Shanghai")
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        text = (await c.get(f"/t/{workspace.slug}/settings/audit?action=contact.create")).text
    shown = re.search(r'<time datetime="[^"]+">([^<]+)</time>', text)
    assert shown is not None
    assert shown.group(1) == (utc + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S") + " CST"
    async with await _api(workspace) as api:  # the API stays in UTC
        created = (await api.get("/api/v1/contacts")).json()["items"][0]["created_at"]
        assert created.endswith(("Z", "+00:00"))
