"""Global search: Chinese, email fragments, phone digits, short queries and ranking, through the
API and the page, inside each kind's record scope and without hidden fields; never across workspaces."""

from __future__ import annotations

from typing import Any

from kith.platform.db import tenant_scope
from kith.tenants.search.text import clean_query, contains_pattern, phone_digits, phone_suffix_pattern

from .conftest import Services, Workspace
from .factories import add_member, owner_token
from .web_helpers import assert_error, client, login


async def _insert(ws: Workspace, table: str, rows: list[dict[str, Any]]) -> list[int]:
    ids = []
    async with tenant_scope(ws.tenant_id) as tx:
        for row in rows:
            cols = ", ".join(row)
            marks = ", ".join(f"${i}" for i in range(1, len(row) + 1))
            found = await tx.execute_query_dict(
                f"INSERT INTO {table} ({cols}) VALUES ({marks}) RETURNING id", list(row.values()))  # noqa: S608
            ids.append(found[0]["id"])
    return ids


async def _people(ws: Workspace, owner_id: int) -> dict[str, int]:
    names = [
        {"name": "张伟明", "email": "zwm@example.cn", "phone": "+86 139 1111 2222",
         "company_name": "上海云图科技有限公司"},
        {"name": "李娜", "email": "lina@beijing.example.cn", "phone": "+86 138 0013 8000",
         "company_name": "北京星辰贸易有限公司"},
        {"name": "王张伟", "email": "wang@example.cn", "phone": "", "company_name": "深圳远航网络"},
        {"name": "张伟", "email": "zhang.wei@example.cn", "phone": "+86 137 5555 6666", "company_name": "杭州天宇电子"},
        {"name": "Emily Carter", "email": "emily@northwind.example.com", "phone": "+1 415 555 0100",
         "company_name": "Northwind Traders"},
    ]
    ids = await _insert(ws, "contacts", [{**n, "owner_id": owner_id, "created_by_id": owner_id} for n in names])
    return {n["name"]: i for n, i in zip(names, ids, strict=True)}


def _names(body: dict[str, Any], kind: str) -> list[str]:
    group = next((g for g in body["groups"] if g["type"] == kind), None)
    return [item["name"] for item in group["items"]] if group else []


def test_query_text_helpers() -> None:
    assert clean_query("  张伟   北京 ") == "张伟 北京"
    assert contains_pattern("50%_a\\b") == "%50\\%\\_a\\\\b%"
    assert phone_digits("138 0013 8000") == "13800138000"
    assert phone_digits("+86 (138) 0013-8000") == "8613800138000"
    assert phone_digits("zhang") is None and phone_digits("12") is None
    assert phone_suffix_pattern("01012345678") == "8765432101%"  # the trunk 0 goes
    assert phone_suffix_pattern("8000") == "0008%"


async def test_search_chinese_email_phone_and_ranking(workspace: Workspace, other_workspace: Workspace) -> None:
    people = await _people(workspace, workspace.identity_id)
    company = (await _insert(workspace, "companies", [
        {"name": "北京星辰科技有限公司", "domain": "xingchen.example.cn", "phone": "+86 10 6555 1234",
         "owner_id": workspace.identity_id}]))[0]
    async with tenant_scope(workspace.tenant_id) as tx:
        stage = (await tx.execute_query_dict("SELECT id, pipeline_id FROM stages ORDER BY position LIMIT 1"))[0]
    await _insert(workspace, "deals", [
        {"name": "年度采购合同", "amount": "12000.50", "currency": "CNY", "pipeline_id": stage["pipeline_id"],
         "stage_id": stage["id"], "company_id": company, "owner_id": workspace.identity_id}])
    await _insert(workspace, "leads", [{"name": "赵科技", "email": "zhao@lead.example.cn", "phone": "+86 186 0000 1111",
                                        "owner_id": workspace.identity_id}])
    # another workspace holds the same names: never shown
    await _people(other_workspace, other_workspace.identity_id)
    async with client(headers=await owner_token(workspace)) as c:
        # 2 Chinese characters: exact name first, then names starting with it, then other matches, newest first
        body = (await c.get("/api/v1/search", params={"q": "张伟"})).json()
        assert _names(body, "contacts") == ["张伟", "张伟明", "王张伟"]
        # a 2-character company-name fragment, in contacts, companies and (by the company) deals
        body = (await c.get("/api/v1/search", params={"q": "北京"})).json()
        assert _names(body, "contacts") == ["李娜"]
        assert _names(body, "companies") == ["北京星辰科技有限公司"]
        deal = next(g for g in body["groups"] if g["type"] == "deals")["items"][0]
        assert deal["name"] == "年度采购合同" and deal["amount"] == "12000.50"
        assert deal["company_name"] == "北京星辰科技有限公司"
        body = (await c.get("/api/v1/search", params={"q": "科技"})).json()
        assert _names(body, "contacts") == ["张伟明"] and _names(body, "leads") == ["赵科技"]
        assert _names(body, "companies") == ["北京星辰科技有限公司"]
        # 3+ characters through the trigram index: a longer Chinese fragment, an email fragment
        assert _names((await c.get("/api/v1/search", params={"q": "云图科技"})).json(), "contacts") == ["张伟明"]
        body = (await c.get("/api/v1/search", params={"q": "northwind.exam"})).json()
        assert _names(body, "contacts") == ["Emily Carter"]
        assert next(g for g in body["groups"] if g["type"] == "contacts")["items"][0]["email"] == (
            "emily@northwind.example.com")
        # phone digits whatever the spacing, and the last digits alone
        for typed in ("138 0013 8000", "13800138000", "+86 138-0013-8000", "8000"):
            assert _names((await c.get("/api/v1/search", params={"q": typed})).json(), "contacts") == ["李娜"], typed
        # 1 character: names starting with it
        assert _names((await c.get("/api/v1/search", params={"q": "张"})).json(), "contacts") == ["张伟", "张伟明"]
        # LIKE's own characters are taken literally
        assert _names((await c.get("/api/v1/search", params={"q": "%%%"})).json(), "contacts") == []
        # types and limit
        body = (await c.get("/api/v1/search", params={"q": "张伟", "types": "contacts", "limit": "1"})).json()
        assert [g["type"] for g in body["groups"]] == ["contacts"]
        assert _names(body, "contacts") == ["张伟"] and body["groups"][0]["has_more"] is True
        assert (await c.get("/api/v1/search", params={"q": ""})).json() == {"q": "", "groups": []}
        assert assert_error(await c.get("/api/v1/search", params={"q": "x", "limit": "0"}), 422)["fields"]["limit"]
        assert assert_error(await c.get("/api/v1/search", params={"q": "x", "types": "notes"}), 422)["fields"]["types"]
    assert people["张伟"]
    # the sensitive values returned were audited as a listing read
    async with tenant_scope(workspace.tenant_id) as tx:
        reads = await tx.execute_query_dict(
            "SELECT diff FROM audit_log WHERE action = 'contacts.read_sensitive' ORDER BY seq DESC LIMIT 1")
    assert reads and "ids" in str(reads[0]["diff"])


async def test_search_respects_scope_hidden_fields_and_permissions(workspace: Workspace) -> None:
    owner = await owner_token(workspace)
    sales = await add_member(workspace, "sales")
    await _people(workspace, workspace.identity_id)  # the owner's
    mine = await _insert(workspace, "contacts", [{"name": "张伟 (sales)", "email": "mine@sales.example.cn",
                                                  "owner_id": sales.identity_id}])
    async with client(headers=sales.headers) as c:
        body = (await c.get("/api/v1/search", params={"q": "张伟"})).json()
        # a sales member finds only their own contacts
        group = next(g for g in body["groups"] if g["type"] == "contacts")
        assert [i["id"] for i in group["items"]] == mine
        assert _names((await c.get("/api/v1/search", params={"q": "zhang.wei@"})).json(), "contacts") == []
    # a custom role that hides contacts.email: an email is neither matched nor returned
    async with client(headers=owner) as c:
        role = await c.post("/api/v1/roles", json={
            "name": "No emails", "grants": {"contacts": ["view"]}, "record_scope": {"contacts": "all"},
            "hidden_fields": {"contacts": ["email"]}})
        assert role.status_code == 201, role.text
    hiding = await add_member(workspace, role.json()["key"])
    async with client(headers=hiding.headers) as c:
        body = (await c.get("/api/v1/search", params={"q": "zhang.wei@example"})).json()
        assert _names(body, "contacts") == []
        body = (await c.get("/api/v1/search", params={"q": "北京星辰"})).json()  # company name is visible
        hit = next(g for g in body["groups"] if g["type"] == "contacts")["items"][0]
        assert hit["name"] == "李娜" and "email" not in hit and hit["phone"] == "+86 138 0013 8000"
        # kinds the role may not view are left out
        assert [g["type"] for g in body["groups"]] == ["contacts"]


async def test_search_page_in_chinese(db: Services, workspace: Workspace, other_workspace: Workspace) -> None:
    await _people(workspace, workspace.identity_id)
    await _insert(other_workspace, "contacts", [{"name": "张伟 other", "owner_id": other_workspace.identity_id}])
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        page = await c.get(f"/t/{workspace.slug}/search", params={"q": "张伟"})
        assert page.status_code == 200
        assert "张伟明" in page.text and "王张伟" in page.text and "张伟 other" not in page.text
        assert f'href="/t/{workspace.slug}/contacts/' in page.text
        only = await c.get(f"/t/{workspace.slug}/search", params={"q": "张伟", "type": "contacts"})
        assert only.status_code == 200 and "张伟明" in only.text
        empty = await c.get(f"/t/{workspace.slug}/search")
        assert empty.status_code == 200 and 'name="q"' in empty.text
        # another workspace's search page is not the member's
        assert (await c.get(f"/t/{other_workspace.slug}/search", params={"q": "张伟"})).status_code == 404
