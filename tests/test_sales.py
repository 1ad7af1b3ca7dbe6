"""Products and orders through the API: Decimal arithmetic, validation, statuses, the product
delete rule, purchase histories under record scopes, tenant isolation, Chinese names."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from kith.platform.access.session import acting_as
from kith.platform.db import tenant_scope
from kith.tenants.sales.pricing import line_amounts, order_totals, percent_of
from kith.tenants.sales.queries import orders_for

from .conftest import Workspace
from .factories import add_member, owner_token
from .web_helpers import assert_error, client


async def _company(ws: Workspace, owner_id: int | None, name: str = "上海云图科技有限公司") -> int:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "INSERT INTO companies (name, owner_id, created_by_id) VALUES ($1, $2, $2) RETURNING id", [name, owner_id])
    return int(rows[0]["id"])


async def _contact(ws: Workspace, owner_id: int, company_id: int | None) -> int:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "INSERT INTO contacts (name, owner_id, created_by_id, company_id) VALUES ('张伟', $1, $1, $2) RETURNING id",
            [owner_id, company_id])
    return int(rows[0]["id"])


async def _product(c: httpx.AsyncClient, sku: str, price: str, **extra: Any) -> dict[str, Any]:
    resp = await c.post("/api/v1/products", json={"sku": sku, "name": f"Product {sku}", "unit_price": price, **extra})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def _audit_actions(ws: Workspace, object_type: str, object_id: int) -> list[str]:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "SELECT action FROM audit_log WHERE object_type = $1 AND object_id = $2 ORDER BY seq",
            [object_type, str(object_id)])
    return [r["action"] for r in rows]


def test_pricing_is_exact_decimal_arithmetic() -> None:
    # 3 x 19.99 = 59.97; less 12.5% = 52.47375 -> 52.47 (half up); the discount is what was taken off
    line = line_amounts(Decimal("3"), Decimal("19.99"), Decimal("12.5"))
    assert (line.gross, line.total, line.discount) == (Decimal("59.97"), Decimal("52.47"), Decimal("7.50"))
    # half up, not the banker's rounding of Python's default: 0.5 x 0.05 = 0.025 -> 0.03
    assert line_amounts(Decimal("0.5"), Decimal("0.05")).total == Decimal("0.03")
    # a float would give 0.30000000000000004 somewhere here: 3 x 0.10
    assert line_amounts(Decimal("3"), Decimal("0.10")).total == Decimal("0.30")
    # large values keep every digit (beyond the default 28-digit context)
    big = line_amounts(Decimal("999999999.999"), Decimal("9999999999999999.99"), Decimal("0.01"))
    exact_cents = (999999999999 * 999999999999999999 + 500) // 1000  # the same product in integers, half up
    assert big.gross == Decimal(exact_cents).scaleb(-2)
    totals = order_totals([line, line_amounts(Decimal("1"), Decimal("100.00"))])
    assert (totals.subtotal, totals.discount_total, totals.total) == (
        Decimal("159.97"), Decimal("7.50"), Decimal("152.47"))
    assert percent_of(Decimal("1"), Decimal("3")) == Decimal("33.3")
    assert percent_of(Decimal("5"), Decimal("0")) == Decimal("0.0")


async def test_products_crud_search_pagination_and_sku_rules(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        created = await c.post("/api/v1/products", json={
            "sku": "CLOUD-1", "name": "云服务器 标准版", "description": "每月", "unit_price": 19.99})
        assert created.status_code == 201, created.text
        product = created.json()
        # the workspace's default currency, and money as a Decimal string
        assert product["currency"] == "USD" and product["unit_price"] == "19.99" and product["active"] is True
        # the SKU is unique whatever its case: 409 naming the field
        err = assert_error(await c.post("/api/v1/products", json={"sku": "cloud-1", "name": "x", "unit_price": "1"}),
                           409, "conflict")
        assert "cloud-1" in err["fields"]["sku"]
        # bad input, each named: negative price, three decimals, text, unknown currency, empty name
        for body, field in (({"unit_price": "-1"}, "unit_price"), ({"unit_price": "1.999"}, "unit_price"),
                            ({"unit_price": "abc"}, "unit_price"), ({"currency": "XYZ"}, "currency"),
                            ({"name": ""}, "name")):
            bad = {"sku": "NEW-1", "name": "新产品", "unit_price": "5", **body}
            err = assert_error(await c.post("/api/v1/products", json=bad), 422, "invalid_input")
            assert field in err["fields"], (body, err)
        for i in range(5):
            await _product(c, f"BULK-{i}", "1.00", name=f"批量产品 {i}", currency="CNY")
        # search in Chinese, by SKU, case-insensitively
        found = (await c.get("/api/v1/products", params={"q": "云服务"})).json()["items"]
        assert [p["sku"] for p in found] == ["CLOUD-1"]
        found = (await c.get("/api/v1/products", params={"q": "bulk-3"})).json()["items"]
        assert [p["name"] for p in found] == ["批量产品 3"]
        # keyset pagination by SKU walks every product once
        seen: list[str] = []
        cursor = None
        while True:
            page = (await c.get("/api/v1/products", params={"limit": "2", **({"cursor": cursor} if cursor else {})}))
            seen += [p["sku"] for p in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if not cursor:
                break
        assert seen == ["BULK-0", "BULK-1", "BULK-2", "BULK-3", "BULK-4", "CLOUD-1"]
        # change, deactivate, filter
        patched = await c.patch(f"/api/v1/products/{product['id']}", json={"unit_price": "21.50", "active": False})
        assert patched.json()["unit_price"] == "21.50" and patched.json()["active"] is False
        inactive = (await c.get("/api/v1/products", params={"active": "false"})).json()["items"]
        assert [p["sku"] for p in inactive] == ["CLOUD-1"]
        assert_error(await c.patch(f"/api/v1/products/{product['id']}", json={"sku": "bulk-0"}), 409, "conflict")
        assert (await c.delete(f"/api/v1/products/{product['id']}")).status_code == 204
        assert_error(await c.get(f"/api/v1/products/{product['id']}"), 404, "not_found")
    assert await _audit_actions(workspace, "products", product["id"]) == [
        "product.create", "product.update", "product.delete"]


async def test_order_totals_numbers_and_bad_lines(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        product = await _product(c, "WIDGET", "19.99", name="小部件")
        body = {"lines": [{"product_id": product["id"], "quantity": "3", "discount_percent": "12.5"},
                          {"description": "安装服务", "quantity": 1, "unit_price": "100"}]}
        created = await c.post("/api/v1/orders", json=body)
        assert created.status_code == 201, created.text
        order = created.json()
        assert order["number"] == "SO-000001" and order["status"] == "draft" and order["currency"] == "USD"
        assert (order["subtotal"], order["discount_total"], order["total"]) == ("159.97", "7.50", "152.47")
        first, second = order["lines"]
        # the product filled description and unit price
        assert (first["description"], first["unit_price"], first["line_total"]) == ("小部件", "19.99", "52.47")
        assert (second["quantity"], second["line_total"]) == ("1.000", "100.00")
        second_order = (await c.post("/api/v1/orders", json={})).json()
        assert second_order["number"] == "SO-000002" and second_order["total"] == "0.00"
        # numbers are unique regardless of case
        named = await c.post("/api/v1/orders", json={"number": "PO-2024/7"})
        assert named.status_code == 201
        err = assert_error(await c.post("/api/v1/orders", json={"number": "po-2024/7"}), 409, "conflict")
        assert "po-2024/7" in err["fields"]["number"]
        err = assert_error(await c.patch(f"/api/v1/orders/{order['id']}", json={"number": "SO-000002"}), 409)
        assert "number" in err["fields"]
        # bad quantities and discounts, each named with its line
        bad_lines = [
            ({"quantity": "0"}, "lines.0.quantity", "greater than 0"),
            ({"quantity": "-1"}, "lines.0.quantity", "greater than 0"),
            ({"quantity": "x"}, "lines.0.quantity", "valid decimal"),
            ({"quantity": "1.2345"}, "lines.0.quantity", "3 decimal places"),
            ({"quantity": "1", "discount_percent": "101"}, "lines.0.discount_percent", "less than or equal to 100"),
            ({"quantity": "1", "discount_percent": "-5"}, "lines.0.discount_percent", "greater than or equal to 0"),
            ({"quantity": "1", "unit_price": "0.001"}, "lines.0.unit_price", "2 decimal places"),
        ]
        for line, field, words in bad_lines:
            sent = {"description": "x", "unit_price": "1", **line}
            err = assert_error(await c.post("/api/v1/orders", json={"lines": [sent]}), 422, "invalid_input")
            assert words in err["fields"][field], (line, err)
        # a line without a product needs a description and a price
        err = assert_error(await c.post("/api/v1/orders", json={"lines": [{"quantity": "1"}]}), 422)
        assert set(err["fields"]) == {"lines.0.description", "lines.0.unit_price"}
        err = assert_error(await c.post("/api/v1/orders", json={"lines": [{"product_id": 999999, "quantity": "1"}]}),
                           422)
        assert "999999" in err["fields"]["lines.0.product_id"]
        # nothing was created by the refused calls
        listed = (await c.get("/api/v1/orders")).json()["items"]
        assert len(listed) == 3 and "lines" not in listed[0]


async def test_currency_mismatch_is_refused(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        euro = await _product(c, "EU-1", "10.00", currency="EUR")
        dollar = await _product(c, "US-1", "10.00")
        err = assert_error(await c.post("/api/v1/orders", json={"lines": [
            {"product_id": dollar["id"], "quantity": "1"}, {"product_id": euro["id"], "quantity": "1"}]}), 422)
        assert set(err["fields"]) == {"lines.1.product_id"}
        assert "EUR" in err["fields"]["lines.1.product_id"] and "USD" in err["fields"]["lines.1.product_id"]
        # in the product's currency it is fine; switching the draft's currency re-checks its lines
        order = (await c.post("/api/v1/orders", json={"currency": "eur", "lines": [
            {"product_id": euro["id"], "quantity": "2"}]})).json()
        assert order["currency"] == "EUR" and order["total"] == "20.00"
        err = assert_error(await c.patch(f"/api/v1/orders/{order['id']}", json={"currency": "USD"}), 422)
        assert "lines.0.product_id" in err["fields"]


async def test_status_transitions_and_draft_only_lines(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        line = {"description": "Consulting", "quantity": "2", "unit_price": "50"}
        empty = (await c.post("/api/v1/orders", json={})).json()
        err = assert_error(await c.post(f"/api/v1/orders/{empty['id']}/status", json={"status": "confirmed"}), 409)
        assert "no lines" in err["message"]
        order = (await c.post("/api/v1/orders", json={"lines": [line]})).json()
        url = f"/api/v1/orders/{order['id']}"
        err = assert_error(await c.post(f"{url}/status", json={"status": "fulfilled"}), 409, "conflict")
        assert "draft" in err["message"] and "fulfilled" in err["message"]
        assert_error(await c.post(f"{url}/status", json={"status": "shipped"}), 422, "invalid_input")
        confirmed = await c.post(f"{url}/status", json={"status": "confirmed"})
        assert confirmed.status_code == 200 and confirmed.json()["status"] == "confirmed"
        err = assert_error(await c.post(f"{url}/status", json={"status": "draft"}), 409)
        assert "confirmed" in err["message"] and "draft" in err["message"]
        # only drafts change lines (or currency); other fields still change
        err = assert_error(await c.patch(url, json={"lines": [line, line]}), 409)
        assert "draft" in err["message"]
        assert (await c.patch(url, json={"notes": "客户要求周五送货"})).json()["notes"] == "客户要求周五送货"
        assert_error(await c.delete(url), 409)
        assert (await c.post(f"{url}/status", json={"status": "fulfilled"})).json()["status"] == "fulfilled"
        err = assert_error(await c.post(f"{url}/status", json={"status": "cancelled"}), 409)
        assert "fulfilled" in err["message"] and "cancelled" in err["message"]
        # draft -> cancelled, then it may be deleted
        other = (await c.post("/api/v1/orders", json={"lines": [line]})).json()
        assert (await c.post(f"/api/v1/orders/{other['id']}/status", json={"status": "cancelled"})).status_code == 200
        assert (await c.delete(f"/api/v1/orders/{other['id']}")).status_code == 204
        # a draft's lines are replaced, and its totals recomputed
        draft = (await c.post("/api/v1/orders", json={"lines": [line]})).json()
        changed = (await c.patch(f"/api/v1/orders/{draft['id']}", json={"lines": [
            {**line, "quantity": "1.5", "discount_percent": "10"}]})).json()
        assert (changed["subtotal"], changed["discount_total"], changed["total"]) == ("75.00", "7.50", "67.50")
    assert await _audit_actions(workspace, "orders", order["id"]) == [
        "order.create", "order.status", "order.update", "order.status"]
    assert await _audit_actions(workspace, "orders", other["id"]) == ["order.create", "order.status", "order.delete"]


async def test_a_product_on_an_order_is_deactivated_not_deleted(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        product = await _product(c, "USED-1", "5.00")
        used = {"lines": [{"product_id": product["id"], "quantity": "1"}]}
        order = (await c.post("/api/v1/orders", json=used)).json()
        err = assert_error(await c.delete(f"/api/v1/products/{product['id']}"), 409, "conflict")
        assert "deactivate" in err["message"]
        assert (await c.patch(f"/api/v1/products/{product['id']}", json={"active": False})).status_code == 200
        # a deactivated product is not offered on new orders, but the draft that has it keeps it
        err = assert_error(await c.post("/api/v1/orders", json={"lines": [
            {"product_id": product["id"], "quantity": "1"}]}), 422)
        assert "deactivated" in err["fields"]["lines.0.product_id"]
        kept = await c.patch(f"/api/v1/orders/{order['id']}", json={"lines": [
            {"product_id": product["id"], "quantity": "4"}]})
        assert kept.status_code == 200 and kept.json()["total"] == "20.00"


async def test_purchase_history_follows_record_scope(workspace: Workspace) -> None:
    rep = await add_member(workspace, "sales")
    colleague = await add_member(workspace, "sales")
    company = await _company(workspace, rep.identity_id)
    contact = await _contact(workspace, rep.identity_id, company)
    owner = await owner_token(workspace)
    line = {"description": "年度订阅", "quantity": "1", "unit_price": "1200"}
    async with client(headers=rep.headers) as c:
        # the contact's company fills the order's company
        mine = (await c.post("/api/v1/orders", json={"contact_id": contact, "lines": [line]})).json()
        assert mine["company_id"] == company and mine["company_name"] == "上海云图科技有限公司"
        assert mine["owner_id"] == rep.identity_id
    async with client(headers=owner) as c:
        theirs = (await c.post("/api/v1/orders", json={"company_id": company, "owner_id": colleague.identity_id,
                                                        "lines": [line]})).json()
        err = assert_error(await c.post("/api/v1/orders", json={"owner_id": 999999}), 422)
        assert "owner_id" in err["fields"]
        everything = (await c.get("/api/v1/orders", params={"company_id": str(company)})).json()["items"]
        assert {o["id"] for o in everything} == {mine["id"], theirs["id"]}
    async with client(headers=rep.headers) as c:
        seen = (await c.get("/api/v1/orders", params={"company_id": str(company)})).json()["items"]
        assert [o["id"] for o in seen] == [mine["id"]]
        by_contact = (await c.get("/api/v1/orders", params={"contact_id": str(contact)})).json()["items"]
        assert [o["id"] for o in by_contact] == [mine["id"]]
        assert_error(await c.get(f"/api/v1/orders/{theirs['id']}"), 404, "not_found")
        assert_error(await c.patch(f"/api/v1/orders/{theirs['id']}", json={"notes": "x"}), 404)
        # a rep cannot give an order to someone outside their scope
        err = assert_error(await c.post("/api/v1/orders", json={"owner_id": colleague.identity_id}), 422)
        assert "owner_id" in err["fields"]
    async with client(headers=colleague.headers) as c:
        # the rep's company is not the colleague's to link
        err = assert_error(await c.post("/api/v1/orders", json={"company_id": company}), 422, "invalid_input")
        assert str(company) in err["fields"]["company_id"]
        assert_error(await c.get("/api/v1/orders", params={"company_id": "x"}), 422)
    # the function the customer 360 pages call, inside their session
    from kith.platform.access.actor import Actor

    for who, expected in ((rep.identity_id, [mine["id"]]), (colleague.identity_id, [theirs["id"]])):
        actor = Actor(kind="user", tenant_id=workspace.tenant_id, role="sales", identity_id=who)
        async with acting_as(actor) as session:
            assert [o["id"] for o in await orders_for(session, company_id=company)] == expected
    reader = Actor(kind="user", tenant_id=workspace.tenant_id, role="read_only", identity_id=workspace.identity_id)
    async with acting_as(reader) as session:
        history = await orders_for(session, contact_id=contact, limit=5)
        assert [o["id"] for o in history] == [mine["id"]] and history[0]["total"] == Decimal("1200.00")


async def test_roles_and_tenant_isolation(workspace: Workspace, other_workspace: Workspace) -> None:
    async with client(headers=await owner_token(other_workspace)) as c:
        foreign_product = await _product(c, "FOREIGN", "1.00", name="外部产品")
        foreign_order = (await c.post("/api/v1/orders", json={"lines": [
            {"product_id": foreign_product["id"], "quantity": "1"}]})).json()
    reader = await add_member(workspace, "read_only")
    async with client(headers=await owner_token(workspace)) as c:
        assert (await c.get("/api/v1/products")).json()["items"] == []
        assert (await c.get("/api/v1/orders")).json()["items"] == []
        assert_error(await c.get(f"/api/v1/products/{foreign_product['id']}"), 404)
        assert_error(await c.get(f"/api/v1/orders/{foreign_order['id']}"), 404)
        assert_error(await c.post(f"/api/v1/orders/{foreign_order['id']}/status", json={"status": "cancelled"}), 404)
        err = assert_error(await c.post("/api/v1/orders", json={"lines": [
            {"product_id": foreign_product["id"], "quantity": "1"}]}), 422)
        assert "lines.0.product_id" in err["fields"]
        # the other tenant's order number is free here
        assert (await c.post("/api/v1/orders", json={})).json()["number"] == "SO-000001"
        mine = await _product(c, "MINE", "2.00")
    async with client(headers=reader.headers) as c:
        # the catalogue has no owner: a read-only member sees all of it, and changes nothing
        assert [p["sku"] for p in (await c.get("/api/v1/products")).json()["items"]] == ["MINE"]
        err = assert_error(await c.post("/api/v1/products", json={"sku": "R", "name": "r", "unit_price": "1"}), 403)
        assert err["permission"] == "products: create"
        assert_error(await c.patch(f"/api/v1/products/{mine['id']}", json={"active": False}), 403)
        err = assert_error(await c.post("/api/v1/orders", json={}), 403, "permission_denied")
        assert err["permission"] == "orders: create"


async def test_the_product_catalogue_is_kept_by_owners_admins_and_managers(workspace: Workspace) -> None:
    """Products belong to nobody, so a record scope cannot narrow them: a sales member may look
    the catalogue up but not change it (it would change every rep's prices); a manager may."""
    rep = await add_member(workspace, "sales")
    manager = await add_member(workspace, "manager")
    async with client(headers=manager.headers) as c:
        made = await c.post("/api/v1/products", json={"sku": "CAT-1", "name": "目录产品", "unit_price": "9.90"})
        assert made.status_code == 201, made.text
    async with client(headers=rep.headers) as c:
        assert [p["sku"] for p in (await c.get("/api/v1/products")).json()["items"]] == ["CAT-1"]
        err = assert_error(await c.post("/api/v1/products", json={"sku": "CAT-2", "name": "x", "unit_price": "1"}),
                           403, "permission_denied")
        assert err["permission"] == "products: create"
        err = assert_error(await c.patch(f"/api/v1/products/{made.json()['id']}", json={"unit_price": "0.01"}), 403)
        assert err["permission"] == "products: edit"
