"""The public customer pool (公海): who sees it, claims (limit, races), returns, the rules, isolation and
the pages."""

from __future__ import annotations

import asyncio
import json

from kith.platform.access.actor import Actor
from kith.platform.db import tenant_scope
from kith.tenants.pool import claims
from kith.tenants.pool.errors import PoolError

from .conftest import Workspace
from .factories import Member, add_member, owner_token
from .web_helpers import assert_error, client, csrf_from, form_post, login


def _actor(ws: Workspace, member: Member, role: str) -> Actor:
    return Actor(kind="user", tenant_id=ws.tenant_id, role=role, identity_id=member.identity_id, label=member.email)


async def _pool_lead(headers: dict[str, str], name: str) -> int:
    async with client(headers=headers) as c:
        resp = await c.post("/api/v1/leads", json={"name": name, "company_name": "上海某某贸易有限公司",
                                                   "owner_id": None})
        assert resp.status_code == 201, resp.text
        assert resp.json()["owner_id"] is None and resp.json()["pooled_at"] is not None
        return int(resp.json()["id"])


async def _events(ws: Workspace, link: str, record_id: int) -> list[dict]:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            f"SELECT event FROM activities WHERE kind = 'event' AND {link} = $1 ORDER BY id", [record_id])
    return [json.loads(r["event"]) if isinstance(r["event"], str) else r["event"] for r in rows]


async def test_claim_release_and_who_sees_the_pool(workspace: Workspace, other_workspace: Workspace) -> None:
    owner = await owner_token(workspace)
    sales, rival, read_only = [await add_member(workspace, r) for r in ("sales", "sales", "read_only")]
    pooled = await _pool_lead(owner, "王芳")
    async with client(headers=rival.headers) as c:
        owned_by_rival = (await c.post("/api/v1/leads", json={"name": "Rival's own"})).json()["id"]
    async with client(headers=sales.headers) as c:
        # a sales member sees the pool (whatever their own scope), never the leads others own
        pool = (await c.get("/api/v1/pool/leads")).json()
        assert [x["id"] for x in pool["items"]] == [pooled] and pool["held"] == 0 and pool["limit"] is None
        assert pool["items"][0]["name"] == "王芳"
        assert (await c.get(f"/api/v1/leads/{pooled}")).status_code == 200
        assert_error(await c.get(f"/api/v1/leads/{owned_by_rival}"), 404)
        assert_error(await c.post(f"/api/v1/leads/{owned_by_rival}/claim"), 404)  # never pooled: not theirs
        # search in the pool, in Chinese
        assert len((await c.get("/api/v1/pool/leads", params={"q": "某某贸易"})).json()["items"]) == 1
        assert (await c.get("/api/v1/pool/leads", params={"q": "nothing like it"})).json()["items"] == []
        # a change needs a claim first; read-only may look but not claim
        assert_error(await c.patch(f"/api/v1/leads/{pooled}", json={"notes": "mine?"}), 409, "in_pool")
        assert_error(await c.post(f"/api/v1/leads/{pooled}/convert", json={}), 409, "in_pool")
    async with client(headers=read_only.headers) as c:
        assert len((await c.get("/api/v1/pool/leads")).json()["items"]) == 1
        assert_error(await c.post(f"/api/v1/leads/{pooled}/claim"), 403, "permission_denied")
    async with client(headers=sales.headers) as c:
        claimed = await c.post(f"/api/v1/leads/{pooled}/claim")
        assert claimed.status_code == 200, claimed.text
        body = claimed.json()
        assert body["owner_id"] == sales.identity_id and body["claimed_at"] and body["pooled_at"] is None
        assert body["held"] == 1
        assert (await c.get("/api/v1/pool/leads")).json()["items"] == []
        assert [x["id"] for x in (await c.get("/api/v1/leads")).json()["items"]] == [pooled]
        assert_error(await c.post(f"/api/v1/leads/{pooled}/claim"), 409, "already_yours")
    async with client(headers=rival.headers) as c:
        assert "already claimed" in assert_error(await c.post(f"/api/v1/leads/{pooled}/claim"), 409,
                                                 "already_claimed")["message"]
        # not the owner, own scope: the record is out of reach
        assert_error(await c.post(f"/api/v1/leads/{pooled}/release", json={}), 404)
    async with client(headers=sales.headers) as c:
        back = await c.post(f"/api/v1/leads/{pooled}/release", json={"reason": "预算冻结"})
        assert back.status_code == 200 and back.json()["owner_id"] is None and back.json()["held"] == 0
        assert_error(await c.post(f"/api/v1/leads/{pooled}/release", json={}), 409, "already_in_pool")
        assert (await c.post(f"/api/v1/leads/{pooled}/claim")).status_code == 200
    # an all-scope role returns a member's lead; the history stays on the lead's timeline
    async with client(headers=owner) as c:
        assert (await c.post(f"/api/v1/leads/{pooled}/release", json={})).status_code == 200
    events = await _events(workspace, "lead_id", pooled)
    assert [e["name"] for e in events] == ["pool.claimed", "pool.returned", "pool.claimed", "pool.returned"]
    assert events[1]["reason"] == "预算冻结" and events[1]["previous_owner"] == sales.identity_id
    assert events[3]["reason"] == "returned by a manager"
    async with tenant_scope(workspace.tenant_id) as tx:
        actions = [r["action"] for r in await tx.execute_query_dict(
            "SELECT action FROM audit_log WHERE object_type = 'leads' AND object_id = $1 ORDER BY seq", [str(pooled)])]
    assert actions == ["lead.create", "lead.claim", "lead.release", "lead.claim", "lead.release"]
    # another workspace sees none of it and cannot claim it
    async with client(headers=await owner_token(other_workspace)) as c:
        assert (await c.get("/api/v1/pool/leads")).json()["items"] == []
        assert_error(await c.post(f"/api/v1/leads/{pooled}/claim"), 404)
        assert_error(await c.post(f"/api/v1/leads/{pooled}/release", json={}), 404)


async def test_companies_pool(workspace: Workspace, other_workspace: Workspace) -> None:
    sales = await add_member(workspace, "sales")
    async with tenant_scope(workspace.tenant_id) as tx:
        company = (await tx.execute_query_dict(
            "INSERT INTO companies (name, pooled_at) VALUES ('上海某某贸易有限公司', now()) RETURNING id"))[0]["id"]
    async with client(headers=sales.headers) as c:
        pool = (await c.get("/api/v1/pool/companies")).json()
        assert [x["name"] for x in pool["items"]] == ["上海某某贸易有限公司"]
        assert (await c.post(f"/api/v1/companies/{company}/claim")).json()["owner_id"] == sales.identity_id
        assert (await c.get("/api/v1/pool/companies")).json()["items"] == []
        assert (await c.post(f"/api/v1/companies/{company}/release", json={"reason": "重复"})).status_code == 200
        assert_error(await c.post("/api/v1/companies/999999999/claim"), 404)
    assert [e["name"] for e in await _events(workspace, "company_id", company)] == ["pool.claimed", "pool.returned"]
    async with client(headers=await owner_token(other_workspace)) as c:
        assert (await c.get("/api/v1/pool/companies")).json()["items"] == []
        assert_error(await c.post(f"/api/v1/companies/{company}/claim"), 404)


async def test_claim_limit_and_rules(workspace: Workspace) -> None:
    owner = await owner_token(workspace)
    sales = await add_member(workspace, "sales")
    first, second = await _pool_lead(owner, "甲"), await _pool_lead(owner, "乙")
    async with client(headers=sales.headers) as c:
        assert_error(await c.put("/api/v1/pool/rules", json={"claim_limits": {"sales": 1}}), 403, "permission_denied")
        assert (await c.get("/api/v1/pool/rules")).status_code == 200  # any member may read the rules
    async with client(headers=owner) as c:
        bad = await c.put("/api/v1/pool/rules", json={"reclaim_days": 0, "claim_limits": {"sales": -1}})
        assert set(assert_error(bad, 422)["fields"]) == {"reclaim_days", "claim_limits"}
        bad = await c.put("/api/v1/pool/rules", json={"claim_limits": {"no-such-role": 3}})
        assert "claim_limits.no-such-role" in assert_error(bad, 422)["fields"]
        ok = await c.put("/api/v1/pool/rules", json={"reclaim_days": 30, "claim_limits": {"sales": 1}})
        assert ok.status_code == 200 and ok.json()["reclaim_days"] == 30
        assert {r["key"]: r["limit"] for r in ok.json()["roles"]}["sales"] == 1
    async with client(headers=sales.headers) as c:
        assert (await c.post(f"/api/v1/leads/{first}/claim")).status_code == 200
        refused = assert_error(await c.post(f"/api/v1/leads/{second}/claim"), 409, "claim_limit")
        assert "at most 1 leads" in refused["message"] and "claim limit" in refused["message"]
        assert (await c.get("/api/v1/pool/leads")).json()["held"] == 1
        # the limit counts per type: companies are not leads
        async with tenant_scope(workspace.tenant_id) as tx:
            company = (await tx.execute_query_dict("INSERT INTO companies (name) VALUES ('乙公司') RETURNING id"))[0]
        assert (await c.post(f"/api/v1/companies/{company['id']}/claim")).status_code == 200
        # converting the claimed lead frees its place (a converted lead is done, not held from the pool)
        assert (await c.post(f"/api/v1/leads/{first}/convert", json={"create_company": False})).status_code == 201
        assert (await c.post(f"/api/v1/leads/{second}/claim")).status_code == 200
    async with tenant_scope(workspace.tenant_id) as tx:
        audit = await tx.execute_query_dict("SELECT diff FROM audit_log WHERE action = 'pool.rules_update'")
    assert len(audit) == 1


async def test_concurrent_claims_one_wins(workspace: Workspace) -> None:
    owner = await owner_token(workspace)
    members = [await add_member(workspace, "sales") for _ in range(4)]
    lead = await _pool_lead(owner, "抢手客户")
    results = await asyncio.gather(*(claims.claim(_actor(workspace, m, "sales"), "leads", lead) for m in members),
                                   return_exceptions=True)
    won = [r for r in results if isinstance(r, dict)]
    lost = [r for r in results if isinstance(r, PoolError)]
    assert len(won) == 1 and len(lost) == 3, results
    assert all(e.status == 409 and e.code == "already_claimed" for e in lost)
    async with tenant_scope(workspace.tenant_id) as tx:
        row = (await tx.execute_query_dict("SELECT owner_id FROM leads WHERE id = $1", [lead]))[0]
        claimed_events = await tx.execute_query_dict(
            "SELECT id FROM activities WHERE lead_id = $1 AND event->>'name' = 'pool.claimed'", [lead])
    assert row["owner_id"] == won[0]["owner_id"] and len(claimed_events) == 1
    # one member racing for several records cannot overrun the limit either
    async with client(headers=owner) as c:
        assert (await c.put("/api/v1/pool/rules", json={"claim_limits": {"sales": 1}})).status_code == 200
    leads = [await _pool_lead(owner, f"客户{i}") for i in range(3)]
    racer = members[1] if won[0]["owner_id"] != members[1].identity_id else members[2]
    results = await asyncio.gather(*(claims.claim(_actor(workspace, racer, "sales"), "leads", i) for i in leads),
                                   return_exceptions=True)
    assert sum(isinstance(r, dict) for r in results) == 1, results
    assert all(r.code == "claim_limit" for r in results if isinstance(r, PoolError))


async def test_pool_pages(workspace: Workspace) -> None:
    owner = await owner_token(workspace)
    sales = await add_member(workspace, "sales")
    lead = await _pool_lead(owner, "王芳")
    async with client() as c:
        await login(c, sales.email, sales.password)
        page = await c.get(f"/t/{workspace.slug}/pool/leads")
        assert page.status_code == 200 and "王芳" in page.text and 'data-action="claim"' in page.text
        token = {"csrf_token": csrf_from(page.text)}
        claimed = await c.post(f"/t/{workspace.slug}/pool/leads/{lead}/claim", data=token)
        assert claimed.status_code == 303 and claimed.headers["location"].endswith(f"/leads/{lead}?claimed=1")
        shown = await c.get(claimed.headers["location"])
        assert 'data-action="release"' in shown.text and 'data-section="convert"' in shown.text
        again = await c.post(f"/t/{workspace.slug}/pool/leads/{lead}/claim", data=token)
        assert again.status_code == 409 and "data-pool-error" in again.text
        assert (await c.get(f"/t/{workspace.slug}/pool/companies")).status_code == 200
        assert (await c.get(f"/t/{workspace.slug}/settings/pool")).status_code == 403
        other = await _pool_lead(owner, "李雷")
        refused = await c.get(f"/t/{workspace.slug}/leads/{other}/edit")
        assert refused.status_code == 403 and "Claim this lead" in refused.text
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        settings = f"/t/{workspace.slug}/settings/pool"
        bad = await form_post(c, settings, {"reclaim_days": "0", "limit.sales": "x"})
        assert bad.status_code == 422 and 'data-field="reclaim_days"' in bad.text
        assert 'data-field="claim_limits.sales"' in bad.text
        saved = await form_post(c, settings, {"reclaim_days": "14", "limit.sales": "20", "limit.admin": ""})
        assert saved.status_code == 303
        shown = await c.get(saved.headers["location"])
        assert 'value="14"' in shown.text and 'value="20"' in shown.text
    async with client(headers=owner) as c:
        rules = (await c.get("/api/v1/pool/rules")).json()
        assert rules["reclaim_days"] == 14 and rules["claim_limits"] == {"sales": 20}
