"""Sales targets: attainment from won deals and from orders, for a member and for a team, in
the workspace's time zone; who may set targets and who sees which; tenant isolation."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from kith.platform.db import platform_tx, tenant_scope

from .conftest import Workspace
from .factories import Member, add_member, owner_token
from .web_helpers import assert_error, client


async def _deal(ws: Workspace, owner: Member, amount: str, currency: str, closed_at: str | None, *,
                kind: str = "won", name: str = "Deal") -> int:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "INSERT INTO deals (name, amount, currency, pipeline_id, stage_id, owner_id, closed_at)"
            " SELECT $1, $2, $3, s.pipeline_id, s.id, $4, $5 FROM stages s WHERE s.kind = $6 ORDER BY s.id LIMIT 1"
            " RETURNING id",
            [name, Decimal(amount), currency, owner.identity_id,
             datetime.fromisoformat(closed_at) if closed_at else None, kind])
    return int(rows[0]["id"])


async def _order(ws: Workspace, owner: Member, total: str, status: str, order_date: str, currency: str = "USD") -> None:
    async with tenant_scope(ws.tenant_id) as tx:
        await tx.execute_query(
            "INSERT INTO orders (number, owner_id, status, currency, order_date, subtotal, total)"
            " VALUES ('T-' || md5(random()::text), $1, $2, $3, $4::text::date, $5, $5)",
            [owner.identity_id, status, currency, order_date, Decimal(total)])


async def _team(ws: Workspace, headers: dict[str, str], name: str, *members: Member) -> int:
    async with client(headers=headers) as c:
        team = await c.post("/api/v1/teams", json={"name": name})
        assert team.status_code == 201, team.text
        for member in members:
            added = await c.put(f"/api/v1/teams/{team.json()['id']}/members/{member.identity_id}", json={})
            assert added.status_code in (200, 201, 204), added.text
    return int(team.json()["id"])


async def test_attainment_for_a_member_and_a_team(workspace: Workspace) -> None:
    # the workspace lives in Shanghai: its March starts at 2024-02-29 16:00 UTC
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.tenants SET time_zone = 'Asia/Shanghai' WHERE id = $1",
                               [workspace.tenant_id])
    owner = await owner_token(workspace)
    rep = await add_member(workspace, "sales")
    colleague = await add_member(workspace, "sales")
    outsider = await add_member(workspace, "sales")
    team_id = await _team(workspace, owner, "华东销售", rep, colleague)
    await _deal(workspace, rep, "1000.00", "USD", "2024-03-15T10:00:00+00:00", name="Inside")
    await _deal(workspace, rep, "50.00", "USD", "2024-02-29T17:00:00+00:00", name="Shanghai 1 March 01:00")
    await _deal(workspace, rep, "500.00", "USD", "2024-02-29T15:00:00+00:00", name="Shanghai 29 Feb 23:00")
    await _deal(workspace, rep, "700.00", "USD", "2024-03-31T16:30:00+00:00", name="Shanghai 1 April 00:30")
    euro = await _deal(workspace, rep, "300.00", "EUR", "2024-03-10T00:00:00+00:00", name="欧元交易")
    await _deal(workspace, rep, "999.00", "USD", None, kind="open", name="Still open")
    await _deal(workspace, rep, "888.00", "USD", "2024-03-12T00:00:00+00:00", kind="lost", name="Lost")
    await _deal(workspace, colleague, "200.00", "USD", "2024-03-20T00:00:00+00:00", name="Colleague's")
    await _deal(workspace, outsider, "5000.00", "USD", "2024-03-20T00:00:00+00:00", name="Outsider's")
    await _order(workspace, rep, "150.00", "confirmed", "2024-03-05")
    await _order(workspace, rep, "60.00", "fulfilled", "2024-03-31")
    await _order(workspace, rep, "70.00", "draft", "2024-03-05")
    await _order(workspace, rep, "80.00", "cancelled", "2024-03-05")
    await _order(workspace, colleague, "40.00", "confirmed", "2024-02-28")
    async with client(headers=owner) as c:
        made = {}
        for key, body in (
            ("rep", {"identity_id": rep.identity_id, "amount": "2100", "currency": "USD"}),
            ("team", {"team_id": team_id, "amount": "2500.00"}),
            ("rep_orders", {"identity_id": rep.identity_id, "measure": "orders", "amount": "420"}),
            ("outsider", {"identity_id": outsider.identity_id, "amount": "100"}),
        ):
            resp = await c.post("/api/v1/targets", json={"period_kind": "month", "period_start": "2024-03-01", **body})
            assert resp.status_code == 201, resp.text
            made[key] = resp.json()
        rep_target = made["rep"]
        # 1000 + 50 (1 March in Shanghai); not 29 Feb nor 1 April local time; not the open or lost deal
        assert (rep_target["achieved"], rep_target["percent"], rep_target["counted"]) == ("1050.00", "50.0", 2)
        assert rep_target["period_end"] == "2024-03-31" and rep_target["holder_name"]
        assert [(n["id"], n["currency"], n["amount"]) for n in rep_target["not_counted"]] == [(euro, "EUR", "300.00")]
        assert (made["team"]["achieved"], made["team"]["percent"]) == ("1250.00", "50.0")
        assert made["team"]["currency"] == "USD"  # the workspace's default
        assert (made["rep_orders"]["achieved"], made["rep_orders"]["percent"]) == ("210.00", "50.0")
        # the quarter holds the 1 April deal too
        quarter = await c.post("/api/v1/targets", json={"identity_id": rep.identity_id, "period_kind": "quarter",
                                                        "period_start": "2024-01-01", "amount": "3000"})
        assert quarter.json()["achieved"] == "1550.00", quarter.text
        listed = (await c.get("/api/v1/targets", params={"period_kind": "month", "period_start": "2024-03-01"})).json()
        assert listed["period_end"] == "2024-03-31" and len(listed["items"]) == 4
        # one target per holder, period and measure
        err = assert_error(await c.post("/api/v1/targets", json={
            "identity_id": rep.identity_id, "period_kind": "month", "period_start": "2024-03-01", "amount": "1"}), 409)
        assert "already" in err["message"]
        changed = await c.patch(f"/api/v1/targets/{rep_target['id']}", json={"amount": "1050"})
        assert changed.json()["percent"] == "100.0"
    # who sees what: their own and their teams' targets; manage_targets holders all
    async with client(headers=colleague.headers) as c:
        mine = (await c.get("/api/v1/targets", params={"period_start": "2024-03-01"})).json()["items"]
        assert [t["team_id"] for t in mine] == [team_id]
        assert_error(await c.get(f"/api/v1/targets/{rep_target['id']}"), 404)
    async with client(headers=rep.headers) as c:
        mine = (await c.get("/api/v1/targets", params={"period_start": "2024-03-01"})).json()["items"]
        assert {t["id"] for t in mine} == {made["rep"]["id"], made["team"]["id"], made["rep_orders"]["id"]}
    async with client(headers=outsider.headers) as c:
        mine = (await c.get("/api/v1/targets", params={"period_start": "2024-03-01"})).json()["items"]
        assert [t["id"] for t in mine] == [made["outsider"]["id"]]
    manager = await add_member(workspace, "manager")
    async with client(headers=manager.headers) as c:
        seen = (await c.get("/api/v1/targets", params={"period_start": "2024-03-01"})).json()["items"]
        assert len(seen) == 4
        assert (await c.delete(f"/api/v1/targets/{made['outsider']['id']}")).status_code == 204


async def test_setting_targets_needs_manage_targets_and_valid_input(
    workspace: Workspace, other_workspace: Workspace
) -> None:
    rep = await add_member(workspace, "sales")
    body = {"identity_id": rep.identity_id, "period_kind": "month", "period_start": "2024-05-01", "amount": "10"}
    async with client(headers=rep.headers) as c:
        err = assert_error(await c.post("/api/v1/targets", json=body), 403, "permission_denied")
        assert err["permission"] == "workspace: manage_targets" and "manage_targets" in err["message"]
    async with client(headers=await owner_token(workspace)) as c:
        for bad, field in (({"period_start": "2024-05-02"}, "period_start"),
                           ({"period_kind": "quarter", "period_start": "2024-05-01"}, "period_start"),
                           ({"period_kind": "year"}, "period_kind"), ({"amount": "0"}, "amount"),
                           ({"amount": "1.005"}, "amount"), ({"measure": "calls"}, "measure"),
                           ({"currency": "usd1"}, "currency")):
            err = assert_error(await c.post("/api/v1/targets", json={**body, **bad}), 422, "invalid_input")
            assert field in err["fields"], (bad, err)
        err = assert_error(await c.post("/api/v1/targets", json={**body, "team_id": 1}), 422)
        assert "identity_id" in err["fields"] and "team_id" in err["fields"]
        other_owner = other_workspace.identity_id  # a person of another workspace is no member here
        err = assert_error(await c.post("/api/v1/targets", json={**body, "identity_id": other_owner}), 422)
        assert "identity_id" in err["fields"]
        assert_error(await c.get("/api/v1/targets", params={"period_kind": "month", "period_start": "2024-05-02"}),
                     422)
        created = await c.post("/api/v1/targets", json=body)
        assert created.status_code == 201
    async with client(headers=await owner_token(other_workspace)) as c:
        assert (await c.get("/api/v1/targets", params={"period_start": "2024-05-01"})).json()["items"] == []
        assert_error(await c.get(f"/api/v1/targets/{created.json()['id']}"), 404)
        assert_error(await c.delete(f"/api/v1/targets/{created.json()['id']}"), 404)
