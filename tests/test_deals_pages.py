"""Deal pages over HTTP: the board's totals, weighted figure and per-column limit, the form move
(with the loss-reason prompt), the forecast's buckets, a deal's page, the forms, and the pipelines
settings page; a sales member sees only their deals and a read-only member cannot move any."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx

from kith.platform.access.actor import Actor
from kith.platform.db import tenant_scope
from kith.tenants.deals.board import forecast, forecast_months

from .conftest import Workspace
from .factories import add_member, owner_token
from .web_helpers import client, csrf_from, form_post, login


async def _sign_in(c: httpx.AsyncClient, email: str, password: str) -> None:
    resp = await login(c, email, password)
    assert resp.status_code in (302, 303), resp.text[:300]


async def _stage_ids(tenant_id: int) -> dict[str, int]:
    async with tenant_scope(tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "SELECT s.id, s.name FROM stages s JOIN pipelines p ON p.id = s.pipeline_id WHERE p.is_default")
    return {r["name"]: int(r["id"]) for r in rows}


async def test_board_totals_weighted_figure_and_column_limit(workspace: Workspace) -> None:
    stages = await _stage_ids(workspace.tenant_id)
    async with client(headers=await owner_token(workspace)) as api:
        # Qualification (10%): 0.10 + 0.20 USD and 100 CNY with a 50% override; Proposal (60%): 1000 USD
        for body in ({"name": "Q1", "amount": "0.10"}, {"name": "Q2", "amount": 0.2},
                     {"name": "Q3", "amount": "100", "currency": "CNY", "probability": 50},
                     {"name": "P1", "amount": "1000", "stage_id": stages["Proposal"]},
                     {"name": "W1", "amount": "5000", "stage_id": stages["Won"]}):
            assert (await api.post("/api/v1/deals", json=body)).status_code == 201
        board = (await api.get("/api/v1/deals/board")).json()
        columns = {c["stage"]["name"]: c for c in board["columns"]}
        qualification = {t["currency"]: t for t in columns["Qualification"]["totals"]}
        assert columns["Qualification"]["count"] == 3
        assert qualification["USD"] == {"currency": "USD", "count": 2, "total": "0.30", "weighted": "0.03"}
        assert qualification["CNY"] == {"currency": "CNY", "count": 1, "total": "100.00", "weighted": "50.00"}
        # the weighted pipeline: open deals only (the won 5000 is not in it), per currency
        weighted = {t["currency"]: t for t in board["weighted"]}
        assert Decimal(weighted["USD"]["weighted"]) == Decimal("0.03") + Decimal("600.00")
        assert weighted["USD"]["total"] == "1000.30" and weighted["CNY"]["weighted"] == "50.00"
        assert columns["Won"]["totals"][0]["total"] == "5000.00"
        # cards are limited per column; the count and totals still cover every deal
        limited = (await api.get("/api/v1/deals/board?limit=1")).json()
        first = limited["columns"][0]
        assert len(first["cards"]) == 1 and first["more"] == 2 and first["count"] == 3
    async with client() as page:
        await _sign_in(page, workspace.email, workspace.password)
        html = (await page.get(f"/t/{workspace.slug}/deals/board")).text
        assert "600.03 USD" in html and "50.00 CNY" in html
        assert f"/deals?f=stage_id:eq:{stages['Qualification']}" not in html  # 3 cards fit in 50
        assert html.count('class="deal-card"') == 5


async def test_form_move_with_loss_reason_prompt_and_permissions(workspace: Workspace) -> None:
    stages = await _stage_ids(workspace.tenant_id)
    sales = await add_member(workspace, "sales")
    reader = await add_member(workspace, "read_only")
    async with client(headers=sales.headers) as api:
        mine = (await api.post("/api/v1/deals", json={"name": "Rep deal", "amount": "10"})).json()
    async with client(headers=await owner_token(workspace)) as api:
        theirs = (await api.post("/api/v1/deals", json={"name": "Owner deal", "amount": "20"})).json()
    async with client() as c:
        await _sign_in(c, sales.email, sales.password)
        board = await c.get(f"/t/{workspace.slug}/deals/board")
        assert "Rep deal" in board.text and "Owner deal" not in board.text
        token = csrf_from(board.text)
        move = f"/t/{workspace.slug}/deals/{mine['id']}/move"
        # lost without a reason: the prompt page (422) asks for it
        prompt = await c.post(move, data={"csrf_token": token, "stage_id": str(stages["Lost"])})
        assert prompt.status_code == 422 and 'data-field="loss_reason"' in prompt.text
        done = await c.post(move, data={"csrf_token": token, "stage_id": str(stages["Lost"]),
                                        "loss_reason": "Went with a competitor"})
        assert done.status_code == 303 and done.headers["location"].endswith("/deals/board")
        detail = await c.get(f"/t/{workspace.slug}/deals/{mine['id']}")
        assert "Went with a competitor" in detail.text and "Qualification → Lost" in detail.text
        assert 'data-timeline="deals:' in detail.text
        # another rep's deal: the same 404 as a missing one
        assert (await c.get(f"/t/{workspace.slug}/deals/{theirs['id']}")).status_code == 404
        other = await c.post(f"/t/{workspace.slug}/deals/{theirs['id']}/move",
                             data={"csrf_token": token, "stage_id": str(stages["Won"])})
        assert other.status_code == 404
        # the script's move answers JSON
        js = await c.post(move, data={"csrf_token": token, "stage_id": str(stages["Won"])},
                          headers={"X-Requested-With": "board"})
        assert js.status_code == 200 and js.json() == {"ok": True}
        # without a CSRF token: refused
        assert (await c.post(move, data={"stage_id": str(stages["Proposal"])})).status_code == 403
        # the settings page needs manage_settings
        assert (await c.get(f"/t/{workspace.slug}/settings/pipelines")).status_code == 403
    async with client() as r:
        await _sign_in(r, reader.email, reader.password)
        board = await r.get(f"/t/{workspace.slug}/deals/board")
        assert "Rep deal" in board.text and "Owner deal" in board.text
        assert 'draggable="true"' not in board.text and "move-form" not in board.text
        refused = await r.post(f"/t/{workspace.slug}/deals/{theirs['id']}/move",
                               data={"csrf_token": csrf_from(board.text), "stage_id": str(stages["Won"])})
        assert refused.status_code == 403


async def test_deal_forms_and_detail(workspace: Workspace) -> None:
    stages = await _stage_ids(workspace.tenant_id)
    async with client() as c:
        await _sign_in(c, workspace.email, workspace.password)
        new = f"/t/{workspace.slug}/deals/new"
        bad = await form_post(c, new, {"name": "", "amount": "1.234", "currency": "EURO"})
        assert bad.status_code == 422
        for field in ("name", "amount", "currency"):
            assert f'data-field="{field}"' in bad.text
        made = await form_post(c, new, {"name": "云图 ERP 项目", "amount": "1,250.50", "currency": "cny",
                                        "stage_id": str(stages["Proposal"]), "tags": "erp， 续约",
                                        "expected_close": "2030-01-15"})
        assert made.status_code == 303, made.text[:500]
        deal_url = made.headers["location"].split("?")[0]
        detail = await c.get(deal_url)
        assert "1,250.50 CNY" in detail.text and "Proposal" in detail.text and "续约" in detail.text
        edit = await form_post(c, f"{deal_url}/edit", {"name": "云图 ERP 项目", "amount": "99",
                                                        "stage_id": str(stages["Lost"]), "currency": "CNY"})
        assert edit.status_code == 422 and 'data-field="loss_reason"' in edit.text
        edit = await form_post(c, f"{deal_url}/edit", {"name": "云图 ERP", "amount": "99", "currency": "CNY",
                                                        "stage_id": str(stages["Lost"]), "loss_reason": "预算取消"})
        assert edit.status_code == 303
        detail = await c.get(deal_url)
        assert "云图 ERP" in detail.text and "预算取消" in detail.text and "Proposal → Lost" in detail.text
        gone = await form_post(c, f"{deal_url}/delete", {})
        assert gone.status_code == 303
        assert (await c.get(deal_url)).status_code == 404
        forecast_page = await c.get(f"/t/{workspace.slug}/deals/forecast")
        assert forecast_page.status_code == 200 and 'data-forecast="won"' in forecast_page.text


async def test_forecast_buckets(workspace: Workspace) -> None:
    today = date(2031, 3, 20)
    stages = await _stage_ids(workspace.tenant_id)
    async with client(headers=await owner_token(workspace)) as api:
        for name, close, amount, stage in (
                ("Late", "2031-03-19", "10", "Qualification"), ("This month", "2031-03-20", "20", "Qualification"),
                ("Same month", "2031-03-31", "30", "Proposal"), ("Next year", "2032-02-29", "40", "Qualification"),
                ("Beyond", "2032-03-01", "50", "Qualification"), ("Undated", None, "60", "Qualification"),
                ("Won deal", "2031-03-01", "70", "Won")):
            body = {"name": name, "amount": amount, "stage_id": stages[stage], "expected_close": close}
            assert (await api.post("/api/v1/deals", json=body)).status_code == 201
    async with tenant_scope(workspace.tenant_id) as tx:  # won in February of the workspace's 2031
        await tx.execute_query("UPDATE deals SET closed_at = $1 WHERE name = 'Won deal'",
                               [datetime(2031, 2, 10, tzinfo=UTC)])
    actor = Actor(kind="user", tenant_id=workspace.tenant_id, role="owner", identity_id=workspace.identity_id)
    result = await forecast(actor, today=today, time_zone="Asia/Shanghai")
    buckets = {b["key"]: b["totals"] for b in result["open"]}
    assert [b["key"] for b in result["open"]] == ["overdue", *forecast_months(today), "later", "none"]
    assert forecast_months(today)[0] == "2031-03" and forecast_months(today)[-1] == "2032-02"
    assert buckets["overdue"][0]["total"] == "10.00"
    march = buckets["2031-03"][0]
    assert march["count"] == 2 and march["total"] == "50.00" and march["weighted"] == "20.00"  # 2 + 18
    assert buckets["2032-02"][0]["total"] == "40.00"
    assert buckets["later"][0]["total"] == "50.00" and buckets["none"][0]["total"] == "60.00"
    assert buckets["2031-04"] == []
    won = {m["month"]: m["totals"] for m in result["won"]}
    assert list(won)[-1] == "2031-03" and len(won) == 12
    assert won["2031-02"][0]["total"] == "70.00" and won["2031-03"] == []
    assert re.fullmatch(r"\d{4}-\d{2}", list(won)[0])
    assert today - timedelta(days=400) < date.fromisoformat(list(won)[0] + "-01")


async def test_pipelines_settings_page(workspace: Workspace) -> None:
    async with client() as c:
        await _sign_in(c, workspace.email, workspace.password)
        url = f"/t/{workspace.slug}/settings/pipelines"
        page = await c.get(url)
        assert page.status_code == 200 and "Qualification" in page.text and 'class="settings-nav"' in page.text
        made = await form_post(c, url, {"name": "Renewals"})
        assert made.status_code == 303
        async with tenant_scope(workspace.tenant_id) as tx:
            rows = await tx.execute_query_dict("SELECT id, is_default FROM pipelines ORDER BY id")
        default_id, new_id = int(rows[0]["id"]), int(rows[1]["id"])
        refused = await form_post(c, url, {"op": "delete"}, f"{url}/{default_id}")
        assert refused.status_code == 409 and "default pipeline" in refused.text
        added = await form_post(c, url, {"name": "Quote", "probability": "40", "kind": "open"},
                                f"{url}/{new_id}/stages")
        assert added.status_code == 303
        bad = await form_post(c, url, {"name": "Bad", "probability": "140", "kind": "open"}, f"{url}/{new_id}/stages")
        assert bad.status_code == 422
        async with tenant_scope(workspace.tenant_id) as tx:
            lost = await tx.execute_query_dict(
                "SELECT id FROM stages WHERE pipeline_id = $1 AND kind = 'lost'", [new_id])
        only_lost = await form_post(c, url, {"op": "delete"}, f"/t/{workspace.slug}/settings/stages/{lost[0]['id']}")
        assert only_lost.status_code == 409
        assert (await form_post(c, url, {"op": "delete"}, f"{url}/{new_id}")).status_code == 303


async def test_every_deal_form_refuses_a_post_without_csrf(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as api:
        deal = (await api.post("/api/v1/deals", json={"name": "Keep", "amount": "5"})).json()
    base = f"/t/{workspace.slug}"
    paths = [f"{base}/deals/new", f"{base}/deals/{deal['id']}/edit", f"{base}/deals/{deal['id']}/delete",
             f"{base}/deals/{deal['id']}/move", f"{base}/deals/999999/edit", f"{base}/settings/pipelines",
             f"{base}/settings/pipelines/1", f"{base}/settings/pipelines/1/stages", f"{base}/settings/stages/1"]
    async with client() as c:
        await _sign_in(c, workspace.email, workspace.password)
        for path in paths:
            for data in ({"name": "x", "op": "delete", "stage_id": "2"},
                         {"name": "x", "op": "delete", "stage_id": "2", "csrf_token": "forged.value"}):
                resp = await c.post(path, data=data)
                assert resp.status_code == 403 and "security token" in resp.text, (path, resp.status_code)
    async with tenant_scope(workspace.tenant_id) as tx:
        rows = await tx.execute_query_dict("SELECT name, stage_id FROM deals")
        assert [(r["name"], r["stage_id"]) for r in rows] == [("Keep", deal["stage_id"])]
        assert len(await tx.execute_query_dict("SELECT 1 FROM pipelines")) == 1


async def test_deal_form_offers_company_and_contact_selects_and_custom_fields(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as api:
        company = (await api.post("/api/v1/companies", json={"name": "云图科技"})).json()
        other = (await api.post("/api/v1/companies", json={"name": "Acme"})).json()
        outside = await api.post("/api/v1/contacts", json={"name": "Zed Outside", "company_id": other["id"]})
        assert outside.status_code == 201, outside.text
        person = (await api.post("/api/v1/contacts", json={"name": "张伟", "company_id": company["id"]})).json()
        for body in ({"object_type": "deals", "label": "Budget owner", "kind": "text", "key": "budget_owner"},
                     {"object_type": "deals", "label": "Tier", "kind": "select", "options": ["Gold", "Silver"],
                      "key": "tier", "required": True},
                     {"object_type": "deals", "label": "Renewal", "kind": "boolean", "key": "renewal"}):
            made = await api.post("/api/v1/custom-fields", json=body)
            assert made.status_code == 201, made.text
    base = f"/t/{workspace.slug}"
    async with client() as c:
        await _sign_in(c, workspace.email, workspace.password)
        form = await c.get(f"{base}/deals/new?company_id={other['id']}")
        assert form.status_code == 200
        assert '<select name="company_id">' in form.text and '<select name="contact_id">' in form.text
        assert f'<option value="{other["id"]}" selected>Acme</option>' in form.text
        assert f'<option value="{company["id"]}">云图科技</option>' in form.text
        # the preselected company's contacts come first
        contacts = form.text.split('<select name="contact_id">')[1].split("</select>")[0]
        assert contacts.index("Zed Outside") < contacts.index("张伟")
        assert 'name="custom.budget_owner"' in form.text and 'name="custom.tier"' in form.text
        # a required custom field left empty: its own message, the rest kept
        missing = await form_post(c, f"{base}/deals/new", {"name": "ERP", "amount": "10", "currency": "USD",
                                                          "company_id": str(company["id"]),
                                                          "contact_id": str(person["id"]),
                                                          "custom.budget_owner": "王经理"})
        assert missing.status_code == 422 and 'data-field="custom.tier"' in missing.text
        assert 'value="王经理"' in missing.text
        made = await form_post(c, f"{base}/deals/new", {"name": "ERP", "amount": "10", "currency": "USD",
                                                       "company_id": str(company["id"]),
                                                       "contact_id": str(person["id"]),
                                                       "custom.budget_owner": "王经理", "custom.tier": "Gold",
                                                       "custom.renewal": "true"})
        assert made.status_code == 303, made.text[:500]
        deal_url = made.headers["location"].split("?")[0]
        async with tenant_scope(workspace.tenant_id) as tx:
            row = (await tx.execute_query_dict("SELECT company_id, contact_id, custom::text AS custom FROM deals"))[0]
        assert (row["company_id"], row["contact_id"]) == (company["id"], person["id"])
        assert json.loads(row["custom"]) == {"budget_owner": "王经理", "tier": "Gold", "renewal": True}
        # the edit form shows the stored links and values; a change is stored, a bad option refused
        edit = await c.get(f"{deal_url}/edit")
        assert f'<option value="{company["id"]}" selected>云图科技</option>' in edit.text
        assert f'<option value="{person["id"]}" selected>张伟</option>' in edit.text
        assert '<option value="Gold" selected>Gold</option>' in edit.text
        fields = {"name": "ERP", "amount": "10", "currency": "USD", "company_id": str(company["id"]),
                  "contact_id": str(person["id"]), "custom.budget_owner": "王经理", "custom.renewal": "false"}
        bad = await form_post(c, f"{deal_url}/edit", {**fields, "custom.tier": "Platinum"})
        assert bad.status_code == 422 and 'data-field="custom.tier"' in bad.text
        done = await form_post(c, f"{deal_url}/edit", {**fields, "custom.tier": "Silver"})
        assert done.status_code == 303, done.text[:500]
        async with tenant_scope(workspace.tenant_id) as tx:
            row = (await tx.execute_query_dict("SELECT custom::text AS custom FROM deals"))[0]
        assert json.loads(row["custom"]) == {"budget_owner": "王经理", "tier": "Silver", "renewal": False}


async def test_deal_form_selects_follow_the_role(workspace: Workspace, other_workspace: Workspace) -> None:
    sales = await add_member(workspace, "sales")
    async with client(headers=await owner_token(workspace)) as api:
        hidden = (await api.post("/api/v1/companies", json={"name": "Owner Only Co"})).json()
        await api.post("/api/v1/contacts", json={"name": "Owner Only Person"})
    async with client(headers=await owner_token(other_workspace)) as api:
        await api.post("/api/v1/companies", json={"name": "Foreign Co"})
    async with client(headers=sales.headers) as api:
        await api.post("/api/v1/companies", json={"name": "Rep Co", "owner_id": sales.identity_id})
        await api.post("/api/v1/contacts", json={"name": "Rep Person", "owner_id": sales.identity_id})
    async with client() as c:
        await _sign_in(c, sales.email, sales.password)
        form = await c.get(f"/t/{workspace.slug}/deals/new")
        assert "Rep Co" in form.text and "Rep Person" in form.text
        for text in ("Owner Only Co", "Owner Only Person", "Foreign Co"):
            assert text not in form.text, text
        # an id out of reach given in the address shows as a number, never its name
        reach = await c.get(f"/t/{workspace.slug}/deals/new?company_id={hidden['id']}")
        assert "Owner Only Co" not in reach.text and f'>#{hidden["id"]}</option>' in reach.text
