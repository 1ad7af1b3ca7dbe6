"""The company and contact pages in-process: forms with their field errors, the 360 pages, the
delete page's question about contacts, scoping and isolation."""

from __future__ import annotations

import re
from typing import Any

from kith.platform.db import tenant_scope

from .conftest import Workspace
from .factories import PASSWORD, add_member, owner_token
from .web_helpers import client, csrf_from, form_post, login

STAR = "北京星辰科技有限公司"


async def _sql(ws: Workspace, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with tenant_scope(ws.tenant_id) as tx:
        return [dict(r) for r in await tx.execute_query_dict(sql, list(params))]


async def test_company_and_contact_pages(workspace: Workspace) -> None:
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        base = f"/t/{workspace.slug}"
        # bad input: an empty name, a domain with a space, a three-letter country
        bad = await form_post(c, f"{base}/companies/new", {"name": "", "domain": "a b", "country": "CHN"})
        assert bad.status_code == 422
        for field in ("name", "domain", "country"):
            assert f'data-field="{field}"' in bad.text, field
        made = await form_post(c, f"{base}/companies/new", {
            "name": STAR, "domain": "https://xingchen.example.cn/", "country": "cn", "city": "北京",
            "size": "51-200", "tags": "vip, 大客户, VIP", "owner_id": str(workspace.identity_id)})
        assert made.status_code == 303, made.text
        company_id = int(re.search(r"/companies/(\d+)", made.headers["location"]).group(1))
        company = (await _sql(workspace, "SELECT * FROM companies WHERE id = $1", company_id))[0]
        assert (company["domain"], company["country"], company["tags"]) == ("xingchen.example.cn", "CN",
                                                                           ["vip", "大客户"])
        # a contact linked through the form's select of companies
        form = await c.get(f"{base}/contacts/new?company_id={company_id}")
        assert f'<option value="{company_id}" selected>{STAR}</option>' in form.text
        contact = await form_post(c, f"{base}/contacts/new", {
            "name": "张伟", "email": "zhang@example.cn", "company_id": str(company_id), "company_name": "",
            "title": "总经理", "lifecycle_stage": "customer", "source": "展会", "tags": "重点",
            "owner_id": str(workspace.identity_id)})
        assert contact.status_code == 303, contact.text
        contact_id = (await _sql(workspace, "SELECT id FROM contacts WHERE name = '张伟'"))[0]["id"]
        page = await c.get(f"{base}/companies/{company_id}")
        assert page.status_code == 200
        for text in (STAR, "张伟", "xingchen.example.cn", "data-timeline=\"companies:", "Purchase history"):
            assert text in page.text, text
        # in a Chinese workspace the page speaks Chinese
        async with tenant_scope(workspace.tenant_id) as tx:
            await tx.execute_query("UPDATE public.tenants SET locale = 'zh-CN' WHERE id = $1", [workspace.tenant_id])
        zh = await c.get(f"{base}/companies/{company_id}")
        assert "购买记录" in zh.text and "联系人" in zh.text
        async with tenant_scope(workspace.tenant_id) as tx:
            await tx.execute_query("UPDATE public.tenants SET locale = 'en' WHERE id = $1", [workspace.tenant_id])
        person = await c.get(f"{base}/contacts/{contact_id}")
        assert person.status_code == 200
        assert f'href="/t/{workspace.slug}/companies/{company_id}" data-company-link' in person.text
        assert "总经理" in person.text and f"/contacts/{contact_id}/edit" in person.text
        # edit: a bad country first, then a good change
        edit = await form_post(c, f"{base}/companies/{company_id}/edit", {"name": STAR, "country": "ZZ"})
        assert edit.status_code == 422 and 'data-field="country"' in edit.text
        edit = await form_post(c, f"{base}/companies/{company_id}/edit", {"name": STAR, "industry": "软件",
                                                                          "country": "CN"})
        assert edit.status_code == 303
        # delete: the page asks about the contact; no answer is refused, unlink keeps the contact
        ask = await c.get(f"{base}/companies/{company_id}/delete")
        assert 'type="radio" name="contacts" value="unlink"' in ask.text
        refused = await c.post(f"{base}/companies/{company_id}/delete", data={"csrf_token": csrf_from(ask.text)})
        assert refused.status_code == 409 and "1 contact" in refused.text
        done = await c.post(f"{base}/companies/{company_id}/delete",
                            data={"csrf_token": csrf_from(ask.text), "contacts": "unlink"})
        assert done.status_code == 303
        assert (await _sql(workspace, "SELECT company_id FROM contacts"))[0]["company_id"] is None
        assert (await c.get(f"{base}/companies/{company_id}")).status_code == 404
        assert (await c.get(f"{base}/companies/abc")).status_code == 404


async def test_company_pages_follow_the_role(workspace: Workspace, other_workspace: Workspace) -> None:
    sales = await add_member(workspace, "sales")
    reader = await add_member(workspace, "read_only")
    theirs = (await _sql(workspace, "INSERT INTO companies (name, owner_id) VALUES ('Owner''s', $1) RETURNING id",
                         workspace.identity_id))[0]["id"]
    foreign = (await _sql(other_workspace, "INSERT INTO companies (id, name) VALUES (525252, 'Foreign')"
                                           " RETURNING id"))[0]["id"]
    async with client() as c:
        await login(c, sales.email, PASSWORD)
        base = f"/t/{workspace.slug}"
        assert (await c.get(f"{base}/companies/{theirs}")).status_code == 404  # not theirs
        assert (await c.get(f"{base}/companies/{foreign}")).status_code == 404  # another workspace's
        assert (await c.get(f"{base}/companies/{theirs}/edit")).status_code == 404
    async with client() as c:
        await login(c, reader.email, PASSWORD)
        page = await c.get(f"/t/{workspace.slug}/companies/{theirs}")
        assert page.status_code == 200 and f"/companies/{theirs}/edit" not in page.text
        assert (await c.get(f"/t/{workspace.slug}/companies/new")).status_code in (200, 403)
        denied = await form_post(c, f"/t/{workspace.slug}/companies/{theirs}/edit", {"name": "Renamed"})
        assert denied.status_code == 403
    assert (await _sql(workspace, "SELECT name FROM companies WHERE id = $1", theirs))[0]["name"] == "Owner's"


async def test_360_pages_show_custom_fields_by_label_in_order(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as api:
        for body in ({"object_type": "companies", "label": "Sales region", "kind": "text", "key": "region"},
                     {"object_type": "companies", "label": "Key account", "kind": "boolean", "key": "key_account"},
                     {"object_type": "companies", "label": "Channels", "kind": "multi_select", "key": "channels",
                      "options": ["Web", "Partner", "Direct"]},
                     {"object_type": "contacts", "label": "Preferred language", "kind": "text", "key": "lang"}):
            made = await api.post("/api/v1/custom-fields", json=body)
            assert made.status_code == 201, made.text
        company = await api.post("/api/v1/companies", json={
            "name": STAR, "custom": {"channels": ["Direct", "Web"], "region": "华北", "key_account": True}})
        assert company.status_code == 201, company.text
        contact = await api.post("/api/v1/contacts", json={"name": "李娜", "custom": {"lang": "中文"}})
        assert contact.status_code == 201, contact.text
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        page = (await c.get(f"/t/{workspace.slug}/companies/{company.json()['id']}")).text
        assert '<dt>Sales region</dt><dd data-custom="region">华北</dd>' in page
        assert '<dt>Key account</dt><dd data-custom="key_account">Yes</dd>' in page
        assert '<dt>Channels</dt><dd data-custom="channels">Web, Direct</dd>' in page
        assert "<dt>region</dt>" not in page and "<dt>key_account</dt>" not in page
        assert page.index("Sales region") < page.index("Key account") < page.index("Channels")
        person = (await c.get(f"/t/{workspace.slug}/contacts/{contact.json()['id']}")).text
        assert '<dt>Preferred language</dt><dd data-custom="lang">中文</dd>' in person and "<dt>lang</dt>" not in person
