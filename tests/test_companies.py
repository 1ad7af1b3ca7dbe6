"""Companies through the API: CRUD and validation, the deletion rule for a company's contacts,
deals and orders, the contact <-> company link, the customer 360 overview and its scoping, and
tenant isolation."""

from __future__ import annotations

from typing import Any

import pytest

from kith.platform.access.actor import Actor
from kith.platform.access.session import acting_as
from kith.platform.db import tenant_scope
from kith.tenants.companies.actions import delete_in
from kith.tenants.companies.errors import CompanyHasContacts
from kith.tenants.records.kinds import record_kind

from .conftest import Workspace
from .factories import add_member, owner_token
from .web_helpers import assert_error, client

STAR = "北京星辰科技有限公司"


async def _sql(ws: Workspace, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with tenant_scope(ws.tenant_id) as tx:
        return [dict(r) for r in await tx.execute_query_dict(sql, list(params))]


async def _count(ws: Workspace, table: str, where: str = "true", *params: Any) -> int:
    rows = await _sql(ws, f"SELECT count(*) AS n FROM {table} WHERE {where}", *params)  # noqa: S608
    return int(rows[0]["n"])


async def _first_stage(ws: Workspace) -> tuple[int, int]:
    rows = await _sql(ws, "SELECT s.id, s.pipeline_id FROM stages s JOIN pipelines p ON p.id = s.pipeline_id"
                          " WHERE p.is_default ORDER BY s.position LIMIT 1")
    return int(rows[0]["id"]), int(rows[0]["pipeline_id"])


async def _deal(ws: Workspace, name: str, owner: int | None, *, company_id: int | None = None,
                contact_id: int | None = None, amount: str = "0") -> int:
    stage, pipeline = await _first_stage(ws)
    rows = await _sql(ws, "INSERT INTO deals (name, amount, currency, pipeline_id, stage_id, company_id, contact_id,"
                          " owner_id) VALUES ($1, $2::numeric, 'CNY', $3, $4, $5, $6, $7) RETURNING id",
                      name, amount, pipeline, stage, company_id, contact_id, owner)
    return int(rows[0]["id"])


async def test_company_crud_with_chinese_names_and_normalised_fields(workspace: Workspace) -> None:
    headers = await owner_token(workspace)
    await _sql(workspace, "INSERT INTO custom_fields (object_type, key, label, kind, options)"
                          " VALUES ('companies', 'tier', 'Tier', 'select', '[\"gold\", \"silver\"]'::jsonb)")
    async with client(headers=headers) as c:
        created = await c.post("/api/v1/companies", json={
            "name": STAR, "domain": "HTTPS://www.XingChen.cn/about?x=1", "industry": "软件", "size": "51-200",
            "phone": "+86 10 6552 9988", "address": "朝阳区建国路 88 号", "city": "北京", "country": "cn",
            "tags": [" vip ", "VIP", "大客户"], "custom": {"tier": "gold"}, "notes": "展会认识"})
        assert created.status_code == 201, created.text
        company = created.json()
        assert company["name"] == STAR
        assert company["domain"] == "www.xingchen.cn"  # scheme, path and query gone, lower case
        assert company["country"] == "CN"
        assert company["phone"] == "+86 10 6552 9988"
        assert company["tags"] == ["vip", "大客户"]  # trimmed, duplicates (ignoring case) dropped
        assert company["custom"] == {"tier": "gold"}
        assert company["owner_id"] == workspace.identity_id  # the creator owns it
        got = await c.get(f"/api/v1/companies/{company['id']}")
        assert got.status_code == 200 and got.json()["city"] == "北京"
        patched = await c.patch(f"/api/v1/companies/{company['id']}", json={"industry": "SaaS",
                                                                            "custom": {"tier": "silver"}})
        assert patched.status_code == 200, patched.text
        assert patched.json()["industry"] == "SaaS" and patched.json()["name"] == STAR
        assert patched.json()["custom"] == {"tier": "silver"}
        # the list engine: search in Chinese, a filter, a sort
        found = await c.get("/api/v1/companies", params={"q": "星辰"})
        assert [i["id"] for i in found.json()["items"]] == [company["id"]]
        filtered = await c.get("/api/v1/companies", params=[("f", "country:eq:CN"), ("sort", "name")])
        assert [i["id"] for i in filtered.json()["items"]] == [company["id"]]
        assert_error(await c.get("/api/v1/companies", params={"f": "colour:eq:red"}), 422, "invalid_input")
        # audited with the company's actions
        actions = [r["action"] for r in await _sql(
            workspace, "SELECT action FROM audit_log WHERE object_type = 'companies' AND object_id = $1 ORDER BY seq",
            str(company["id"]))]
        assert actions == ["company.create", "company.update"]
        assert (await c.delete(f"/api/v1/companies/{company['id']}")).status_code == 204
        assert_error(await c.get(f"/api/v1/companies/{company['id']}"), 404, "not_found")
        assert_error(await c.delete(f"/api/v1/companies/{company['id']}"), 404, "not_found")
        assert_error(await c.get("/api/v1/companies/abc"), 404, "not_found")


async def test_bad_company_input_names_each_field_and_writes_nothing(
        workspace: Workspace, other_workspace: Workspace) -> None:
    headers = await owner_token(workspace)
    stranger = await add_member(other_workspace, "sales")
    async with client(headers=headers) as c:
        # a domain that is no host name, a three-letter and an unknown country, an unknown size,
        # a phone with letters, an unknown field
        err = assert_error(await c.post("/api/v1/companies", json={
            "name": "Acme", "domain": "not a domain", "country": "CHN", "size": "huge", "phone": "call us",
            "colour": "red"}), 422, "invalid_input")
        assert set(err["fields"]) == {"domain", "country", "size", "phone", "colour"}
        assert "domain" in err["fields"]["domain"]
        for domain in ("http://", "localhost", "exa_mple.com", "-bad-.com", "example.123"):
            err = assert_error(await c.post("/api/v1/companies", json={"name": "Acme", "domain": domain}), 422)
            assert "domain" in err["fields"], domain
        err = assert_error(await c.post("/api/v1/companies", json={"name": "Acme", "country": "XX"}), 422)
        assert "country" in err["fields"]["country"]
        # fields 10 characters over their limits
        err = assert_error(await c.post("/api/v1/companies", json={
            "name": "x" * 210, "industry": "x" * 110, "city": "x" * 110, "address": "x" * 510}), 422)
        assert {k: "0" in v for k, v in err["fields"].items()} == {
            "name": True, "industry": True, "city": True, "address": True}
        assert "200" in err["fields"]["name"] and "500" in err["fields"]["address"]
        # tags: one too long (60 characters), 21 of them, an empty one
        assert "tags" in assert_error(await c.post("/api/v1/companies", json={"name": "A", "tags": ["x" * 60]}),
                                      422)["fields"]
        assert "tags" in assert_error(await c.post("/api/v1/companies", json={
            "name": "A", "tags": [f"t{i}" for i in range(21)]}), 422)["fields"]
        assert "tags" in assert_error(await c.post("/api/v1/companies", json={"name": "A", "tags": ["  "]}),
                                      422)["fields"]
        # an owner who is nobody, and one who belongs to another workspace
        err = assert_error(await c.post("/api/v1/companies", json={"name": "A", "owner_id": 987654321}), 422)
        assert "not an active member" in err["fields"]["owner_id"]
        err = assert_error(await c.post("/api/v1/companies", json={"name": "A", "owner_id": stranger.identity_id}),
                           422)
        assert "owner_id" in err["fields"]
        # a custom field the workspace does not have
        err = assert_error(await c.post("/api/v1/companies", json={"name": "A", "custom": {"colour": "red"}}), 422)
        assert err["fields"] == {"custom.colour": "there is no such custom field"}
        # PATCH: an empty name, a bad domain
        made = await c.post("/api/v1/companies", json={"name": "Keep Me"})
        assert_error(await c.patch(f"/api/v1/companies/{made.json()['id']}", json={"name": ""}), 422)
        assert_error(await c.patch(f"/api/v1/companies/{made.json()['id']}", json={"domain": "a b"}), 422)
    assert await _count(workspace, "companies") == 1
    assert (await _sql(workspace, "SELECT name, domain FROM companies"))[0] == {"name": "Keep Me", "domain": ""}


async def test_sales_member_may_not_give_a_company_away(workspace: Workspace) -> None:
    sales = await add_member(workspace, "sales")
    other = await add_member(workspace, "sales")
    async with client(headers=sales.headers) as c:
        err = assert_error(await c.post("/api/v1/companies", json={"name": "A", "owner_id": other.identity_id}), 422)
        assert "yourself" in err["fields"]["owner_id"]
        mine = await c.post("/api/v1/companies", json={"name": "Mine", "owner_id": sales.identity_id})
        assert mine.status_code == 201 and mine.json()["owner_id"] == sales.identity_id
    async with client(headers=await owner_token(workspace)) as c:
        moved = await c.patch(f"/api/v1/companies/{mine.json()['id']}", json={"owner_id": other.identity_id})
        assert moved.json()["owner_id"] == other.identity_id
    async with client(headers=sales.headers) as c:  # no longer theirs: the same 404 as a missing one
        assert_error(await c.get(f"/api/v1/companies/{mine.json()['id']}"), 404, "not_found")


async def test_deleting_a_company_asks_what_to_do_with_its_contacts(workspace: Workspace) -> None:
    headers = await owner_token(workspace)
    async with client(headers=headers) as c:
        company = (await c.post("/api/v1/companies", json={"name": STAR})).json()
        for name in ("张伟", "李娜"):
            made = await c.post("/api/v1/contacts", json={"name": name, "company_id": company["id"]})
            assert made.status_code == 201, made.text
        # no decision: refused, naming the count; nothing changed
        err = assert_error(await c.delete(f"/api/v1/companies/{company['id']}"), 409, "company_has_contacts")
        assert "2 contacts" in err["message"] and "unlink" in err["message"]
        assert_error(await c.delete(f"/api/v1/companies/{company['id']}", params={"contacts": "orphan"}), 422)
        assert await _count(workspace, "contacts", "company_id = $1", company["id"]) == 2
        # unlink: the contacts stay, without a company, each change audited
        assert (await c.delete(f"/api/v1/companies/{company['id']}", params={"contacts": "unlink"})).status_code == 204
        assert await _count(workspace, "companies") == 0
        rows = await _sql(workspace, "SELECT company_id, company_name FROM contacts ORDER BY id")
        assert rows == [{"company_id": None, "company_name": STAR}] * 2
        assert await _count(workspace, "audit_log", "action = 'contact.update' AND object_type = 'contacts'") == 2

        # delete: the contacts go with it, each deletion audited
        other = (await c.post("/api/v1/companies", json={"name": "Northwind"})).json()
        contact = (await c.post("/api/v1/contacts", json={"name": "Emily", "company_id": other["id"]})).json()
        assert (await c.delete(f"/api/v1/companies/{other['id']}", params={"contacts": "delete"})).status_code == 204
        assert_error(await c.get(f"/api/v1/contacts/{contact['id']}"), 404)
        assert await _count(workspace, "audit_log", "action = 'contact.delete'") == 1
        assert await _count(workspace, "audit_log", "action = 'company.delete'") == 2

        # deals and orders block the deletion whatever the choice: nothing half done
        held = (await c.post("/api/v1/companies", json={"name": "Contoso"})).json()
        kept = (await c.post("/api/v1/contacts", json={"name": "Kept", "company_id": held["id"]})).json()
        await _deal(workspace, "Big deal", workspace.identity_id, company_id=held["id"])
        err = assert_error(await c.delete(f"/api/v1/companies/{held['id']}", params={"contacts": "delete"}),
                           409, "company_in_use")
        assert "1 deal" in err["message"]
        await _sql(workspace, "DELETE FROM deals")
        await _sql(workspace, "INSERT INTO orders (number, company_id, currency) VALUES ('SO-1', $1, 'CNY'),"
                              " ('SO-2', $1, 'CNY')", held["id"])
        err = assert_error(await c.delete(f"/api/v1/companies/{held['id']}", params={"contacts": "delete"}),
                           409, "company_in_use")
        assert "2 orders" in err["message"]
        assert (await c.get(f"/api/v1/contacts/{kept['id']}")).json()["company_id"] == held["id"]
        assert (await c.get(f"/api/v1/companies/{held['id']}")).status_code == 200

    # bulk delete's single-record deletion refuses a company with contacts the same way
    actor = Actor(kind="user", tenant_id=workspace.tenant_id, role="owner", identity_id=workspace.identity_id)
    kind = record_kind("companies")
    assert kind is not None and kind.delete_in is delete_in and kind.path == "companies"
    await _sql(workspace, "DELETE FROM orders")
    with pytest.raises(CompanyHasContacts) as refused:
        async with acting_as(actor) as session:
            await delete_in(session, held["id"])
    assert refused.value.count == 1
    assert await _count(workspace, "companies", "id = $1", held["id"]) == 1


async def test_a_sales_member_cannot_unlink_contacts_of_others(workspace: Workspace) -> None:
    sales = await add_member(workspace, "sales")
    async with client(headers=sales.headers) as c:
        company = (await c.post("/api/v1/companies", json={"name": "Shared"})).json()
    async with client(headers=await owner_token(workspace)) as c:
        made = await c.post("/api/v1/contacts", json={"name": "Owner's contact", "company_id": company["id"]})
        assert made.status_code == 201, made.text
    async with client(headers=sales.headers) as c:
        err = assert_error(await c.delete(f"/api/v1/companies/{company['id']}", params={"contacts": "unlink"}),
                           409, "company_in_use")
        assert "may not change" in err["message"]
    assert await _count(workspace, "contacts", "company_id = $1", company["id"]) == 1


async def test_contact_company_link(workspace: Workspace, other_workspace: Workspace) -> None:
    headers = await owner_token(workspace)
    # an id this workspace does not have (each schema counts its own ids)
    foreign = await _sql(other_workspace, "INSERT INTO companies (id, name) VALUES (424242, 'Foreign') RETURNING id")
    async with client(headers=headers) as c:
        company = (await c.post("/api/v1/companies", json={"name": STAR})).json()
        created = await c.post("/api/v1/contacts", json={
            "name": "王芳", "company_id": company["id"], "company_name": "typed name", "title": "采购经理",
            "lifecycle_stage": "customer", "source": "展会", "tags": ["重点"]})
        assert created.status_code == 201, created.text
        contact = created.json()
        assert contact["company_name"] == STAR  # the company's name wins
        assert (contact["title"], contact["lifecycle_stage"], contact["tags"]) == ("采购经理", "customer", ["重点"])
        # search by company keeps working, and follows a rename
        found = await c.get("/api/v1/contacts", params={"q": "星辰"})
        assert [i["id"] for i in found.json()["items"]] == [contact["id"]]
        await c.patch(f"/api/v1/companies/{company['id']}", json={"name": "上海星辰科技"})
        assert (await c.get(f"/api/v1/contacts/{contact['id']}")).json()["company_name"] == "上海星辰科技"
        # a company of another workspace, or none at all, is refused by name
        for bad in (foreign[0]["id"], 987654321):
            err = assert_error(await c.post("/api/v1/contacts", json={"name": "X", "company_id": bad}), 422)
            assert err["fields"]["company_id"] == f"There is no company {bad}."
        err = assert_error(await c.post("/api/v1/contacts", json={"name": "X", "lifecycle_stage": "vip"}), 422)
        assert "lifecycle_stage" in err["fields"]
        assert "custom.colour" in assert_error(await c.post("/api/v1/contacts", json={
            "name": "X", "custom": {"colour": "red"}}), 422)["fields"]
        # unlinking keeps the name as text
        unlinked = await c.patch(f"/api/v1/contacts/{contact['id']}", json={"company_id": None})
        assert unlinked.status_code == 200, unlinked.text
        assert unlinked.json()["company_id"] is None and unlinked.json()["company_name"] == "上海星辰科技"
    # a sales member cannot link a contact to a company they cannot see
    sales = await add_member(workspace, "sales")
    async with client(headers=sales.headers) as c:
        err = assert_error(await c.post("/api/v1/contacts", json={"name": "X", "company_id": company["id"]}), 422)
        assert "company_id" in err["fields"]
    assert await _count(workspace, "contacts") == 1


async def test_overview_shows_each_section_in_the_actors_scope(workspace: Workspace) -> None:
    owner = await owner_token(workspace)
    rep = await add_member(workspace, "sales")
    colleague = await add_member(workspace, "sales")
    async with client(headers=owner) as c:
        company = (await c.post("/api/v1/companies", json={"name": STAR, "owner_id": rep.identity_id})).json()
        contact = (await c.post("/api/v1/contacts", json={
            "name": "张伟", "email": "zhang@example.cn", "company_id": company["id"],
            "owner_id": rep.identity_id})).json()
    mine = await _deal(workspace, "星辰 CRM 项目", rep.identity_id, company_id=company["id"],
                       contact_id=contact["id"], amount="1234.50")
    theirs = await _deal(workspace, "Colleague's deal", colleague.identity_id, company_id=company["id"])
    await _sql(workspace, "INSERT INTO orders (number, company_id, contact_id, owner_id, currency, status, total,"
                          " order_date) VALUES ('SO-88', $1, $2, $3, 'CNY', 'confirmed', 99.90, '2026-11-01')",
               company["id"], contact["id"], rep.identity_id)
    await _sql(workspace, "INSERT INTO tasks (title, status, assignee_id, company_id, contact_id) VALUES"
                          " ('回电话', 'open', $1, $2, $3), ('Done already', 'done', $1, $2, $3)",
               rep.identity_id, company["id"], contact["id"])
    await _sql(workspace, "INSERT INTO activities (kind, subject, company_id, contact_id, created_by_id)"
                          " VALUES ('note', '第一次拜访', $1, $2, $3)", company["id"], contact["id"], rep.identity_id)

    async with client(headers=owner) as c:
        full = (await c.get(f"/api/v1/companies/{company['id']}/overview")).json()
    assert full["company"]["name"] == STAR
    assert [d["id"] for d in full["deals"]["items"]] == [theirs, mine] and full["deals"]["total"] == 2
    assert full["contacts"]["total"] == 1 and full["contacts"]["items"][0]["email"] == "zhang@example.cn"

    async with client(headers=rep.headers) as c:
        view = (await c.get(f"/api/v1/companies/{company['id']}/overview")).json()
        person = (await c.get(f"/api/v1/contacts/{contact['id']}/overview")).json()
    # the rep sees their own deal only, with its stage and exact amount
    assert view["deals"]["total"] == 1
    (deal,) = view["deals"]["items"]
    assert (deal["id"], deal["stage"], deal["amount"], deal["currency"]) == (mine, "Qualification", "1234.50", "CNY")
    (order,) = view["orders"]["items"]
    assert (order["number"], order["status"], order["total"], order["order_date"]) == (
        "SO-88", "confirmed", "99.90", "2026-11-01")
    assert [t["title"] for t in view["tasks"]["items"]] == ["回电话"]  # open tasks only
    assert any(e["subject"] == "第一次拜访" for e in view["timeline"])
    # the contact's overview: its company, deals, orders, tasks and timeline
    assert person["contact"]["name"] == "张伟" and person["company"]["name"] == STAR
    assert [d["id"] for d in person["deals"]["items"]] == [mine]
    assert [o["number"] for o in person["orders"]["items"]] == ["SO-88"]
    assert [t["title"] for t in person["tasks"]["items"]] == ["回电话"]
    assert any(e["subject"] == "第一次拜访" for e in person["timeline"])

    # a role without deals or orders sees no such sections at all
    async with client(headers=owner) as c:
        role = await c.post("/api/v1/roles", json={"name": "Company viewer", "grants": {
            "companies": ["view"], "contacts": ["view"]}, "record_scope": {"companies": "all", "contacts": "all"}})
        assert role.status_code == 201, role.text
    viewer = await add_member(workspace, role.json()["key"])
    async with client(headers=viewer.headers) as c:
        limited = (await c.get(f"/api/v1/companies/{company['id']}/overview")).json()
    assert "deals" not in limited and "orders" not in limited and "tasks" not in limited
    assert limited["contacts"]["total"] == 1
    # the colleague may not see the rep's company at all
    async with client(headers=colleague.headers) as c:
        assert_error(await c.get(f"/api/v1/companies/{company['id']}/overview"), 404, "not_found")
        assert_error(await c.get(f"/api/v1/contacts/{contact['id']}/overview"), 404, "not_found")
    # contacts' emails shown in the overview are audited as sensitive reads
    assert await _count(workspace, "audit_log", "action = 'contacts.read_sensitive'") >= 2


async def test_another_workspaces_company_is_not_found(workspace: Workspace, other_workspace: Workspace) -> None:
    # an id this workspace does not have (each schema counts its own ids)
    foreign = (await _sql(other_workspace, "INSERT INTO companies (id, name) VALUES (424243, '其他公司') RETURNING id"
                          ))[0]["id"]
    async with client(headers=await owner_token(workspace)) as c:
        for method, path in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/overview")):
            kwargs: dict[str, Any] = {"json": {"notes": "x"}} if method == "PATCH" else {}
            assert_error(await c.request(method, f"/api/v1/companies/{foreign}{path}", **kwargs), 404, "not_found")
        assert (await c.get("/api/v1/companies", params={"q": "其他"})).json()["items"] == []
        resp = await c.get(f"/t/{workspace.slug}/companies/{foreign}")
        assert resp.status_code in (401, 303, 404)
    assert await _count(other_workspace, "companies") == 1
