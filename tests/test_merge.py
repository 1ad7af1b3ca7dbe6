"""Duplicates and merges: detection reasons, the workspace-wide groups, a merge that keeps every
related record and records itself, its refusals, and a failure that leaves nothing half-written."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kith.platform.access.actor import Actor
from kith.platform.db import connect_raw, tenant_schema, tenant_scope
from kith.tenants.search.merge import merge_records

from .conftest import Services, Workspace
from .factories import add_member, owner_token
from .test_search import _insert
from .web_helpers import assert_error, client, csrf_from, login


async def _rows(ws: Workspace, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    async with tenant_scope(ws.tenant_id) as tx:
        return list(await tx.execute_query_dict(sql, params or []))


async def _elsewhere(ws: Workspace) -> int:
    """A contact of another workspace whose id is not taken in the first (schemas number rows alike)."""
    ids = await _insert(ws, "contacts", [{"name": f"X{i}", "owner_id": ws.identity_id} for i in range(8)])
    return ids[-1]


async def _two_contacts_with_relations(ws: Workspace) -> tuple[int, int, dict[str, Any]]:
    """A kept and an other contact; the other has a deal, activities, a task, an order, consent history,
    a converted lead and an earlier merge."""
    me = ws.identity_id
    company = (await _insert(ws, "companies", [{"name": "上海云图科技有限公司", "owner_id": me}]))[0]
    kept, other = await _insert(ws, "contacts", [
        {"name": "张伟", "email": "", "phone": "+86 138 0013 8000", "company_name": "上海云图科技有限公司",
         "tags": ["vip"], "custom": json.dumps({"wechat": "zw1"}), "owner_id": me},
        {"name": "张 伟", "email": "Zhang.Wei@Example.cn", "phone": "138 0013 8000", "company_name": "云图科技",
         "title": "CTO", "tags": ["vip", "beijing"], "custom": json.dumps({"wechat": "other", "city": "上海"}),
         "company_id": company, "owner_id": me},
    ])
    stage = (await _rows(ws, "SELECT id, pipeline_id FROM stages ORDER BY position LIMIT 1"))[0]
    deal = (await _insert(ws, "deals", [{"name": "云图 renewal", "currency": "CNY", "pipeline_id": stage["pipeline_id"],
                                         "stage_id": stage["id"], "contact_id": other, "owner_id": me}]))[0]
    await _insert(ws, "activities", [{"kind": "call", "subject": "First call", "contact_id": other},
                                     {"kind": "note", "subject": "Kept note", "contact_id": kept}])
    await _insert(ws, "tasks", [{"title": "Send quote", "contact_id": other, "assignee_id": me}])
    await _insert(ws, "orders", [{"number": f"SO-{other}", "currency": "CNY", "contact_id": other, "owner_id": me}])
    await _insert(ws, "consent_events", [{"contact_id": other, "state": "granted", "source": "web form"}])
    await _insert(ws, "leads", [{"name": "张伟 lead", "converted_contact_id": other, "owner_id": me}])
    await _insert(ws, "record_merges", [{"object_type": "contacts", "kept_id": other, "merged_id": 999999,
                                         "merged_values": json.dumps({"name": "older"})}])
    return kept, other, {"deal": deal, "company": company}


async def test_duplicate_reasons_and_groups(workspace: Workspace, other_workspace: Workspace) -> None:
    me = workspace.identity_id
    base, same_email, same_phone, same_name, unrelated = await _insert(workspace, "contacts", [
        {"name": "李娜", "email": "lina@example.cn", "phone": "+86 138 0013 8000", "company_name": "北京星辰",
         "owner_id": me},
        {"name": "Li Na", "email": "LINA@example.cn", "owner_id": me},
        {"name": "娜娜", "phone": "86-138-0013-8000", "owner_id": me},
        {"name": "李娜", "company_name": "北京星辰", "owner_id": me},
        {"name": "李娜", "company_name": "上海", "owner_id": me},
    ])
    acme, acme_domain, acme_name = await _insert(workspace, "companies", [
        {"name": "Acme", "domain": "acme.example.com", "owner_id": me},
        {"name": "Acme China", "domain": "ACME.example.com", "owner_id": me},
        {"name": "ACME", "owner_id": me},
    ])
    await _insert(other_workspace, "contacts", [{"name": "李娜", "email": "lina@example.cn",
                                                 "owner_id": other_workspace.identity_id}])
    async with client(headers=await owner_token(workspace)) as c:
        found = (await c.get(f"/api/v1/contacts/{base}/duplicates")).json()["items"]
        reasons = {item["record"]["id"]: item["reasons"] for item in found}
        assert reasons == {same_email: ["email"], same_phone: ["phone"], same_name: ["name_company"]}
        assert unrelated not in reasons
        found = (await c.get(f"/api/v1/companies/{acme}/duplicates")).json()["items"]
        assert {item["record"]["id"]: item["reasons"] for item in found} == {acme_domain: ["domain"],
                                                                             acme_name: ["name"]}
        assert_error(await c.get("/api/v1/contacts/999999/duplicates"), 404, "not_found")
        # workspace-wide groups, one reason at a time
        groups = (await c.get("/api/v1/duplicates/contacts", params={"reason": "email"})).json()
        assert groups["reasons"] == ["email", "phone", "name_company"]
        assert [(g["key"], [r["id"] for r in g["records"]]) for g in groups["groups"]] == [
            (["lina@example.cn"], [base, same_email])]
        groups = (await c.get("/api/v1/duplicates/contacts", params={"reason": "name_company"})).json()
        assert [g["key"] for g in groups["groups"]] == [["李娜", "北京星辰"]]
        groups = (await c.get("/api/v1/duplicates/companies", params={"reason": "name"})).json()
        assert [(g["key"], g["count"]) for g in groups["groups"]] == [(["acme"], 2)]
        assert_error(await c.get("/api/v1/duplicates/contacts", params={"reason": "shoe"}), 422)
        assert_error(await c.get("/api/v1/duplicates/contacts", params={"reason": "email", "cursor": "@@"}), 422)
    # paging: one group per page, the cursor carries on after the last key
    many = await _insert(workspace, "contacts", [{"name": f"dup {i}", "email": f"dup{i // 2}@example.com",
                                                  "owner_id": me} for i in range(6)])
    async with client(headers=await owner_token(workspace)) as c:
        keys: list[str] = []
        cursor = None
        for _ in range(5):
            params = {"reason": "email", **({"cursor": cursor} if cursor else {})}
            page = (await c.get("/api/v1/duplicates/contacts", params=params)).json()
            keys += [g["key"][0] for g in page["groups"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
    assert keys == ["dup0@example.com", "dup1@example.com", "dup2@example.com", "lina@example.cn"]
    assert len(many) == 6


async def test_merge_contacts_moves_everything_and_records_it(workspace: Workspace) -> None:
    kept, other, related = await _two_contacts_with_relations(workspace)
    async with client(headers=await owner_token(workspace)) as c:
        resp = await c.post(f"/api/v1/contacts/{kept}/merge",
                            json={"other_id": other, "fields": {"email": "other", "title": "other", "name": "kept"}})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["kept_id"] == kept and body["merged_id"] == other
    assert body["kept"]["email"] == "Zhang.Wei@Example.cn" and body["kept"]["name"] == "张伟"
    assert body["moved"]["deals"] == 1 and body["moved"]["activities"] == 1 and body["moved"]["tasks"] == 1
    assert body["moved"]["orders"] == 1 and body["moved"]["consent_events"] == 1 and body["moved"]["leads"] == 1
    assert body["moved"]["record_merges"] == 1
    row = (await _rows(workspace, "SELECT * FROM contacts WHERE id = $1", [kept]))[0]
    assert row["title"] == "CTO" and row["tags"] == ["vip", "beijing"]
    assert json.loads(row["custom"]) == {"wechat": "zw1", "city": "上海"}
    assert not await _rows(workspace, "SELECT 1 FROM contacts WHERE id = $1", [other])
    deal = await _rows(workspace, "SELECT contact_id FROM deals WHERE id = $1", [related["deal"]])
    assert deal[0]["contact_id"] == kept
    for table, column in (("tasks", "contact_id"), ("orders", "contact_id"), ("consent_events", "contact_id"),
                          ("leads", "converted_contact_id")):
        assert (await _rows(workspace, f"SELECT count(*) AS n FROM {table} WHERE {column} = $1", [kept]))[0]["n"] == 1
    merges = await _rows(workspace, "SELECT * FROM record_merges WHERE kept_id = $1 ORDER BY id", [kept])
    assert [m["merged_id"] for m in merges] == [999999, other]
    assert json.loads(merges[-1]["merged_values"])["email"] == "Zhang.Wei@Example.cn"
    assert json.loads(merges[-1]["moved"])["deals"] == 1 and merges[-1]["merged_by_id"] == workspace.identity_id
    # the timeline keeps both records' entries and tells of the merge
    timeline = await _rows(workspace, "SELECT kind, subject, event FROM activities WHERE contact_id = $1 ORDER BY id",
                           [kept])
    assert [t["subject"] for t in timeline][:2] == ["First call", "Kept note"]
    event = json.loads(timeline[-1]["event"])
    assert event["name"] == "record.merged" and event["merged_id"] == other
    audit = await _rows(workspace, "SELECT action, object_id FROM audit_log WHERE action LIKE 'contact.%' ORDER BY seq")
    assert [(a["action"], a["object_id"]) for a in audit][-2:] == [("contact.merge", str(kept)),
                                                                  ("contact.delete", str(other))]


async def test_merge_refusals(workspace: Workspace, other_workspace: Workspace) -> None:
    me = workspace.identity_id
    a, b = await _insert(workspace, "contacts", [{"name": "A", "owner_id": me}, {"name": "B", "owner_id": me}])
    elsewhere = await _elsewhere(other_workspace)
    sales = await add_member(workspace, "sales")
    reader = await add_member(workspace, "read_only")
    own = (await _insert(workspace, "contacts", [{"name": "Own", "owner_id": sales.identity_id}]))[0]
    async with client(headers=await owner_token(workspace)) as c:
        assert_error(await c.post(f"/api/v1/contacts/{a}/merge", json={"other_id": a}), 422)["fields"]["other_id"]
        assert_error(await c.post(f"/api/v1/contacts/{a}/merge", json={"other_id": elsewhere}), 404, "not_found")
        err = assert_error(await c.post(f"/api/v1/contacts/{a}/merge", json={"other_id": b, "fields": {"id": "other"}}),
                           422)
        assert "fields.id" in err["fields"]
        assert_error(await c.post(f"/api/v1/contacts/{a}/merge", json={"other_id": b, "fields": {"name": "both"}}), 422)
        assert_error(await c.post(f"/api/v1/contacts/{a}/merge", json={}), 422)
    async with client(headers=sales.headers) as c:  # another's record is not there for a sales member
        assert_error(await c.post(f"/api/v1/contacts/{own}/merge", json={"other_id": a}), 404)
    async with client(headers=reader.headers) as c:
        assert_error(await c.post(f"/api/v1/contacts/{a}/merge", json={"other_id": b}), 403, "permission_denied")
    assert len(await _rows(workspace, "SELECT id FROM contacts WHERE id = ANY($1::bigint[])", [[a, b, own]])) == 3


async def test_a_failed_merge_leaves_everything_as_it_was(db: Services, workspace: Workspace) -> None:
    kept, other, related = await _two_contacts_with_relations(workspace)
    before = {t: await _rows(workspace, f"SELECT * FROM {t} ORDER BY id") for t in  # noqa: S608
              ("contacts", "deals", "activities", "tasks", "orders", "consent_events", "leads", "record_merges")}
    seq = (await _rows(workspace, "SELECT max(seq) AS s FROM audit_log"))[0]["s"]
    # the database refuses the deletion of the other contact, the merge's last step (a trigger
    # only the owner role may add: the application's role owns nothing)
    schema = tenant_schema(workspace.tenant_id)
    owner = await connect_raw()
    try:
        await owner.execute(
            f"CREATE FUNCTION {schema}.refuse_delete() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'deletes refused by the test'; END $$;"
            f" CREATE TRIGGER refuse_delete BEFORE DELETE ON {schema}.contacts"
            f" FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_delete()")
        actor = Actor(kind="user", tenant_id=workspace.tenant_id, identity_id=workspace.identity_id,
                      role="owner", label=workspace.email)
        with pytest.raises(Exception, match="deletes refused by the test"):
            await merge_records(actor, "contacts", kept, other, {"email": "other"})
    finally:
        await owner.execute(f"DROP TRIGGER refuse_delete ON {schema}.contacts; DROP FUNCTION {schema}.refuse_delete()")
        await owner.close()
    for table, rows in before.items():
        assert await _rows(workspace, f"SELECT * FROM {table} ORDER BY id") == rows, table  # noqa: S608
    assert (await _rows(workspace, "SELECT max(seq) AS s FROM audit_log"))[0]["s"] == seq
    assert related["deal"]


async def test_merge_companies_moves_contacts_and_deals(workspace: Workspace) -> None:
    me = workspace.identity_id
    kept, other = await _insert(workspace, "companies", [
        {"name": "Acme", "domain": "acme.example.com", "owner_id": me},
        {"name": "Acme Ltd", "domain": "acme.example.com", "city": "上海", "tags": ["key"], "owner_id": me}])
    contacts = await _insert(workspace, "contacts", [{"name": "C1", "company_id": other, "owner_id": me},
                                                     {"name": "C2", "company_id": other, "owner_id": me}])
    stage = (await _rows(workspace, "SELECT id, pipeline_id FROM stages ORDER BY position LIMIT 1"))[0]
    await _insert(workspace, "deals", [{"name": "D", "currency": "USD", "pipeline_id": stage["pipeline_id"],
                                        "stage_id": stage["id"], "company_id": other, "owner_id": me}])
    async with client(headers=await owner_token(workspace)) as c:
        resp = await c.post(f"/api/v1/companies/{kept}/merge", json={"other_id": other, "fields": {"city": "other"}})
        assert resp.status_code == 200, resp.text
        assert resp.json()["moved"]["contacts"] == 2 and resp.json()["moved"]["deals"] == 1
        assert resp.json()["kept"]["city"] == "上海" and resp.json()["kept"]["tags"] == ["key"]
        assert_error(await c.post(f"/api/v1/companies/{kept}/merge", json={"other_id": other}), 404)
    rows = await _rows(workspace, "SELECT company_id FROM contacts WHERE id = ANY($1::bigint[])", [contacts])
    assert {r["company_id"] for r in rows} == {kept}
    audit = await _rows(workspace, "SELECT action FROM audit_log WHERE object_type = 'companies' ORDER BY seq")
    assert [a["action"] for a in audit][-2:] == ["company.merge", "company.delete"]


async def test_merge_screen_and_duplicates_page(workspace: Workspace, other_workspace: Workspace) -> None:
    me = workspace.identity_id
    kept, other = await _insert(workspace, "contacts", [
        {"name": "王芳", "email": "wangfang@example.cn", "owner_id": me},
        {"name": "王芳", "email": "WangFang@example.cn", "phone": "+86 139 0000 0000", "owner_id": me}])
    elsewhere = await _elsewhere(other_workspace)
    base = f"/t/{workspace.slug}"
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        dup = await c.get(f"{base}/duplicates/contacts")
        assert dup.status_code == 200 and f"{base}/merge/contacts/{kept}/{other}" in dup.text
        assert (await c.get(f"{base}/duplicates/deals")).status_code == 404
        screen = await c.get(f"{base}/merge/contacts/{kept}/{other}")
        assert screen.status_code == 200
        # the kept record has no phone, so the other's is proposed
        assert 'name="field_phone" value="other" checked' in screen.text
        assert (await c.get(f"{base}/merge/contacts/{kept}/{kept}")).status_code == 422
        assert (await c.get(f"{base}/merge/contacts/{kept}/{elsewhere}")).status_code == 404
        token = csrf_from(screen.text)
        # without the confirmation nothing happens
        refused = await c.post(f"{base}/merge/contacts/{kept}/{other}",
                               data={"csrf_token": token, "field_phone": "other", "field_email": "other"})
        assert refused.status_code == 422 and 'data-field="confirm"' in refused.text
        assert await _rows(workspace, "SELECT 1 FROM contacts WHERE id = $1", [other])
        # no CSRF token, no merge
        assert (await c.post(f"{base}/merge/contacts/{kept}/{other}", data={"confirm": "yes"})).status_code == 403
        choices = {"field_phone": "other", "field_email": "other", "confirm": "yes"}
        done = await c.post(f"{base}/merge/contacts/{kept}/{other}", data={"csrf_token": token, **choices})
        assert done.status_code == 303 and done.headers["location"] == f"{base}/duplicates/contacts?merged={kept}"
        notice = await c.get(done.headers["location"])
        assert notice.status_code == 200 and f"{base}/contacts/{kept}" in notice.text
    row = (await _rows(workspace, "SELECT email, phone FROM contacts WHERE id = $1", [kept]))[0]
    assert row == {"email": "WangFang@example.cn", "phone": "+86 139 0000 0000"}
