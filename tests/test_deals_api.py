"""Deals through the API: exact amounts, currencies, stage rules (won, lost, loss reason, closed_at),
stage history and timeline events, pipeline and stage administration (409s), permissions and
tenant isolation."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from kith.platform.db import tenant_scope

from .conftest import Workspace
from .factories import add_member, owner_token
from .web_helpers import assert_error, client


async def _stages(c: httpx.AsyncClient, pipeline: str = "Sales") -> dict[str, dict[str, Any]]:
    resp = await c.get("/api/v1/pipelines")
    assert resp.status_code == 200, resp.text
    found = next(p for p in resp.json()["items"] if p["name"] == pipeline)
    return {s["name"]: s for s in found["stages"]}


async def test_amounts_are_exact_decimals_and_bad_amounts_are_refused(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        # JSON numbers are read through their text: 0.1 and 0.2 stay exact, and so does their sum
        a = await c.post("/api/v1/deals", json={"name": "A", "amount": 0.1})
        b = await c.post("/api/v1/deals", json={"name": "B", "amount": "0.2"})
        assert a.status_code == b.status_code == 201, (a.text, b.text)
        assert a.json()["amount"] == "0.10" and b.json()["amount"] == "0.20"
        assert Decimal(a.json()["amount"]) + Decimal(b.json()["amount"]) == Decimal("0.3")
        big = await c.post("/api/v1/deals", json={"name": "Big", "amount": "9999999999999999.99"})
        assert big.status_code == 201 and big.json()["amount"] == "9999999999999999.99"
        trailing = await c.post("/api/v1/deals", json={"name": "Trailing zero", "amount": "12.300"})
        assert trailing.json()["amount"] == "12.30"
        # "abc": not a number; -1: negative; 1.234: a third decimal; 1e400: JSON's infinity; NaN; a boolean
        for bad in ("abc", -1, 1.234, "1e400", "NaN", True, "10000000000000000", ""):
            resp = await c.post("/api/v1/deals", json={"name": "Bad", "amount": bad})
            error = assert_error(resp, 422, "invalid_input")
            assert "amount" in error["fields"], (bad, error)
        raw = await c.post("/api/v1/deals", content=b'{"name": "Huge", "amount": 1e400}',
                           headers={"Content-Type": "application/json"})
        assert "amount" in assert_error(raw, 422)["fields"]
        # totals on the board add the same exact values
        board = (await c.get("/api/v1/deals/board")).json()
        first = board["columns"][0]
        usd = next(t for t in first["totals"] if t["currency"] == "USD")
        assert Decimal(usd["total"]) == Decimal("0.10") + Decimal("0.20") + Decimal("9999999999999999.99") + \
            Decimal("12.30")


async def test_currency_defaults_to_the_workspace_and_must_be_iso_4217(workspace: Workspace) -> None:
    headers = await owner_token(workspace)
    async with client(headers=headers) as c:
        assert (await c.patch("/api/v1/workspace", json={"default_currency": "CNY"})).status_code == 200
        made = await c.post("/api/v1/deals", json={"name": "默认币种", "amount": 100})
        assert made.status_code == 201 and made.json()["currency"] == "CNY"
        lower = await c.post("/api/v1/deals", json={"name": "Euro", "amount": 5, "currency": "eur"})
        assert lower.json()["currency"] == "EUR"
        for bad in ("EURO", "XYZ", "12A"):
            error = assert_error(await c.post("/api/v1/deals", json={"name": "X", "currency": bad}), 422)
            assert "currency" in error["fields"]
        patched = await c.patch(f"/api/v1/deals/{made.json()['id']}", json={"currency": "usd"})
        assert patched.json()["currency"] == "USD"
        assert "currency" in assert_error(
            await c.patch(f"/api/v1/deals/{made.json()['id']}", json={"currency": None}), 422)["fields"]


async def test_stage_rules_loss_reason_closed_at_history_and_timeline(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        stages = await _stages(c)
        deal = (await c.post("/api/v1/deals", json={"name": "Rules", "amount": "500"})).json()
        assert deal["stage_id"] == stages["Qualification"]["id"] and deal["closed_at"] is None
        did = deal["id"]
        # a lost stage needs a loss reason (422 naming loss_reason); nothing changes
        refused = await c.post(f"/api/v1/deals/{did}/move", json={"stage_id": stages["Lost"]["id"]})
        assert "loss_reason" in assert_error(refused, 422)["fields"]
        assert (await c.get(f"/api/v1/deals/{did}")).json()["stage_id"] == stages["Qualification"]["id"]
        lost = await c.post(f"/api/v1/deals/{did}/move",
                            json={"stage_id": stages["Lost"]["id"], "loss_reason": "Price too high"})
        assert lost.status_code == 200, lost.text
        assert lost.json()["stage_kind"] == "lost" and lost.json()["closed_at"] and \
            lost.json()["loss_reason"] == "Price too high"
        # reopened: closed_at cleared (and the old reason with it); won: closed again
        reopened = (await c.patch(f"/api/v1/deals/{did}", json={"stage_id": stages["Proposal"]["id"]})).json()
        assert reopened["closed_at"] is None and reopened["loss_reason"] == ""
        won = (await c.post(f"/api/v1/deals/{did}/move", json={"stage_id": stages["Won"]["id"]})).json()
        assert won["stage_kind"] == "won" and won["closed_at"]
        # a stage of another pipeline is refused
        other = (await c.post("/api/v1/pipelines", json={"name": "Partners"})).json()
        wrong = await c.post(f"/api/v1/deals/{did}/move", json={"stage_id": other["stages"][0]["id"]})
        assert "stage_id" in assert_error(wrong, 422)["fields"]
        history = (await c.get(f"/api/v1/deals/{did}/stage-history")).json()["items"]
        assert [(h["from_stage_name"], h["to_stage_name"]) for h in history] == [
            ("Proposal", "Won"), ("Lost", "Proposal"), ("Qualification", "Lost"), (None, "Qualification")]
        assert all(h["changed_by_id"] == workspace.identity_id and h["changed_by"] for h in history)
    async with tenant_scope(workspace.tenant_id) as tx:
        events = await tx.execute_query_dict(
            "SELECT event->>'from' AS f, event->>'to' AS t FROM activities WHERE deal_id = $1 AND kind = 'event'"
            " ORDER BY id", [did])
        audit = await tx.execute_query_dict(
            "SELECT action FROM audit_log WHERE object_type = 'deals' AND object_id = $1 ORDER BY seq", [str(did)])
    assert [(e["f"], e["t"]) for e in events] == [("Qualification", "Lost"), ("Lost", "Proposal"), ("Proposal", "Won")]
    assert [a["action"] for a in audit] == ["deal.create", "deal.move", "deal.move", "deal.move"]


async def test_create_in_a_pipeline_and_stage_rules(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        custom = (await c.post("/api/v1/pipelines", json={"name": "Renewals", "stages": [
            {"name": "Due", "probability": 70}, {"name": "Renewed", "kind": "won", "probability": 100},
            {"name": "Churned", "kind": "lost"}]})).json()
        due = custom["stages"][0]
        made = await c.post("/api/v1/deals", json={"name": "Renewal", "pipeline_id": custom["id"]})
        assert made.json()["stage_id"] == due["id"]
        lost_at_birth = await c.post("/api/v1/deals", json={"name": "Dead", "stage_id": custom["stages"][2]["id"]})
        assert "loss_reason" in assert_error(lost_at_birth, 422)["fields"]
        sales = await _stages(c)
        mixed = await c.post("/api/v1/deals", json={"name": "Mixed", "pipeline_id": custom["id"],
                                                    "stage_id": sales["Proposal"]["id"]})
        assert "stage_id" in assert_error(mixed, 422)["fields"]
        missing = await c.post("/api/v1/deals", json={"name": "Nowhere", "pipeline_id": 999999})
        assert "pipeline_id" in assert_error(missing, 422)["fields"]
        for field in ("company_id", "contact_id", "owner_id"):
            resp = await c.post("/api/v1/deals", json={"name": "Refs", field: 999999})
            assert field in assert_error(resp, 422)["fields"]
        assert "probability" in assert_error(await c.post("/api/v1/deals", json={"name": "P", "probability": 101}),
                                             422)["fields"]


async def test_pipeline_and_stage_administration(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        pipelines = (await c.get("/api/v1/pipelines")).json()["items"]
        default = pipelines[0]
        assert default["is_default"] and len(default["stages"]) == 6
        assert_error(await c.delete(f"/api/v1/pipelines/{default['id']}"), 409, "conflict")
        # a new pipeline needs an open, a won and a lost stage
        bad = await c.post("/api/v1/pipelines", json={"name": "Half", "stages": [{"name": "Only open"}]})
        assert "stages" in assert_error(bad, 422)["fields"]
        dup = await c.post("/api/v1/pipelines", json={"name": "sales"})
        assert "name" in assert_error(dup, 422)["fields"]
        made = (await c.post("/api/v1/pipelines", json={"name": "Projects"})).json()
        assert [(s["name"], s["kind"]) for s in made["stages"]] == [("New", "open"), ("Won", "won"),
                                                                    ("Lost", "lost")]
        # reorder: first place, renumbered
        moved = (await c.patch(f"/api/v1/pipelines/{made['id']}", json={"position": 0})).json()
        assert moved["position"] == 0
        names = [p["name"] for p in (await c.get("/api/v1/pipelines")).json()["items"]]
        assert names == ["Projects", "Sales"]
        # stages: add at a position, rename, reorder
        added = (await c.post(f"/api/v1/pipelines/{made['id']}/stages",
                              json={"name": "Scoping", "probability": 25, "position": 1})).json()
        assert added["position"] == 1
        renamed = (await c.patch(f"/api/v1/stages/{added['id']}", json={"name": "Scope", "position": 0})).json()
        assert renamed["name"] == "Scope" and renamed["position"] == 0
        order = [s["name"] for s in next(p for p in (await c.get("/api/v1/pipelines")).json()["items"]
                                         if p["id"] == made["id"])["stages"]]
        assert order == ["Scope", "New", "Won", "Lost"]
        won_id = made["stages"][1]["id"]
        # the only won stage can be neither deleted nor turned into another kind
        assert_error(await c.delete(f"/api/v1/stages/{won_id}"), 409)
        assert_error(await c.patch(f"/api/v1/stages/{won_id}", json={"kind": "open"}), 409)
        # a stage or pipeline with deals is not deleted: the message says how many, and what to do
        deal = (await c.post("/api/v1/deals", json={"name": "Blocker", "stage_id": added["id"]})).json()
        stage_refusal = assert_error(await c.delete(f"/api/v1/stages/{added['id']}"), 409)
        assert "move" in stage_refusal["message"]
        refusal = assert_error(await c.delete(f"/api/v1/pipelines/{made['id']}"), 409)
        assert "1 deal" in refusal["message"]
        assert_error(await c.patch(f"/api/v1/stages/{added['id']}", json={"kind": "won"}), 409)
        assert (await c.delete(f"/api/v1/deals/{deal['id']}")).status_code == 204
        assert (await c.delete(f"/api/v1/stages/{added['id']}")).status_code == 204
        # the default moves: then the old default may go
        assert (await c.patch(f"/api/v1/pipelines/{made['id']}", json={"is_default": True})).json()["is_default"]
        assert (await c.delete(f"/api/v1/pipelines/{default['id']}")).status_code == 204
        assert_error(await c.delete(f"/api/v1/pipelines/{made['id']}"), 409)
        assert_error(await c.patch("/api/v1/stages/999999", json={"name": "x"}), 404)


async def test_permissions_scope_and_read_only(workspace: Workspace) -> None:
    owner = await owner_token(workspace)
    sales = await add_member(workspace, "sales")
    other_rep = await add_member(workspace, "sales")
    reader = await add_member(workspace, "read_only")
    async with client(headers=sales.headers) as c:
        mine = (await c.post("/api/v1/deals", json={"name": "Mine", "amount": "100"})).json()
        assert mine["owner_id"] == sales.identity_id
        # a rep gives deals only to people within their own scope
        handed = await c.post("/api/v1/deals", json={"name": "Handed", "owner_id": other_rep.identity_id})
        assert "owner_id" in assert_error(handed, 422)["fields"]
        assert_error(await c.post("/api/v1/pipelines", json={"name": "Nope"}), 403, "permission_denied")
    async with client(headers=other_rep.headers) as c:
        theirs = (await c.post("/api/v1/deals", json={"name": "Theirs", "amount": "7"})).json()
    async with client(headers=sales.headers) as c:
        board = (await c.get("/api/v1/deals/board")).json()
        names = [card["name"] for col in board["columns"] for card in col["cards"]]
        assert names == ["Mine"]
        assert board["columns"][0]["count"] == 1
        assert_error(await c.get(f"/api/v1/deals/{theirs['id']}"), 404)
        assert_error(await c.post(f"/api/v1/deals/{theirs['id']}/move", json={"stage_id": mine["stage_id"]}), 404)
        assert_error(await c.get(f"/api/v1/deals/{theirs['id']}/stage-history"), 404)
        listed = (await c.get("/api/v1/deals")).json()["items"]
        assert [d["name"] for d in listed] == ["Mine"]
    async with client(headers=reader.headers) as c:
        board = (await c.get("/api/v1/deals/board")).json()
        assert sorted(card["name"] for col in board["columns"] for card in col["cards"]) == ["Mine", "Theirs"]
        stages = await _stages(c)
        refused = await c.post(f"/api/v1/deals/{mine['id']}/move", json={"stage_id": stages["Proposal"]["id"]})
        assert assert_error(refused, 403, "permission_denied")["permission"] == "deals: edit"
    async with client(headers=owner) as c:
        assert (await c.get(f"/api/v1/deals/{mine['id']}")).json()["stage_name"] == "Qualification"


async def test_tenant_isolation(workspace: Workspace, other_workspace: Workspace) -> None:
    async with client(headers=await owner_token(other_workspace)) as c:
        foreign = (await c.post("/api/v1/deals", json={"name": "Foreign", "amount": "1"})).json()
        foreign_pipeline = (await c.post("/api/v1/pipelines", json={"name": "Foreign pipeline"})).json()
    async with client(headers=await owner_token(workspace)) as c:
        assert_error(await c.get(f"/api/v1/deals/{foreign['id'] + 100000}"), 404)
        listed = (await c.get("/api/v1/deals")).json()["items"]
        assert "Foreign" not in [d["name"] for d in listed]
        board = (await c.get("/api/v1/deals/board")).json()
        assert all(card["name"] != "Foreign" for col in board["columns"] for card in col["cards"])
        names = [p["name"] for p in (await c.get("/api/v1/pipelines")).json()["items"]]
        assert "Foreign pipeline" not in names
        # the foreign pipeline's id means nothing here (ids are per schema: a pipeline of ours or none)
        resp = await c.get(f"/api/v1/deals/board?pipeline_id={foreign_pipeline['id'] + 100000}")
        assert_error(resp, 404)
        # the foreign workspace's slug with our token: 404
        assert (await c.get(f"/t/{other_workspace.slug}/api/v1/deals/{foreign['id']}")).status_code == 404
