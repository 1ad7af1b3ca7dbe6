"""Products, orders and targets pages without JavaScript: forms, errors on the form, statuses,
permissions, CSRF, and the pages in Simplified Chinese."""

from __future__ import annotations

import re

from kith.platform.db import platform_tx

from .conftest import Workspace
from .factories import add_member, owner_token
from .web_helpers import client, csrf_from, form_post, login


async def test_product_and_order_flow_in_pages(workspace: Workspace) -> None:
    base = f"/t/{workspace.slug}"
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        made = await form_post(c, f"{base}/products/new", {
            "sku": "TEA-01", "name": "龙井茶 250g", "description": "", "unit_price": "88.80", "currency": "",
            "active": "1"})
        assert made.status_code == 303, made.text
        page = await c.get(f"{base}/products?q=龙井")
        assert "龙井茶 250g" in page.text and "88.80 USD" in page.text
        # a duplicate SKU and a bad price come back on the form, each at its field
        again = await form_post(c, f"{base}/products/new", {"sku": "tea-01", "name": "x", "unit_price": "1,5",
                                                            "currency": "", "active": "1"})
        assert again.status_code == 422 and 'data-field="unit_price"' in again.text
        again = await form_post(c, f"{base}/products/new", {"sku": "tea-01", "name": "x", "unit_price": "1",
                                                            "currency": "", "active": "1"})
        assert again.status_code == 409 and 'data-field="sku"' in again.text
        product_id = re.search(r'data-product-id="(\d+)"', page.text).group(1)  # type: ignore[union-attr]

        # an order with two lines, without JavaScript: five empty line rows to fill
        form = await c.get(f"{base}/orders/new")
        assert form.status_code == 200 and len(re.findall(r'name="lines-\d+-quantity"', form.text)) == 5
        data = {"number": "", "order_date": "2024-06-01", "currency": "USD", "company_id": "", "contact_id": "",
                "deal_id": "", "notes": "",
                "lines-0-product_id": product_id, "lines-0-quantity": "3", "lines-0-discount_percent": "12.5",
                "lines-2-description": "运费", "lines-2-quantity": "1", "lines-2-unit_price": "15"}
        bad = await c.post(f"{base}/orders/new", data={**data, "lines-2-quantity": "0",
                                                       "csrf_token": csrf_from(form.text)})
        assert bad.status_code == 422
        # the rows come back compacted, the error at the second line's quantity, what was typed kept
        assert 'data-field="lines.1.quantity"' in bad.text and 'value="运费"' in bad.text
        created = await c.post(f"{base}/orders/new", data={**data, "csrf_token": csrf_from(form.text)})
        assert created.status_code == 303, created.text
        detail = await c.get(created.headers["location"])
        assert "SO-000001" in detail.text and "Draft" in detail.text
        # 3 x 88.80 = 266.40, less 12.5% = 233.10; + 15.00
        assert "281.40 USD" in detail.text and "248.10 USD" in detail.text and "33.30 USD" in detail.text
        order_path = created.headers["location"].split("?")[0]
        confirmed = await c.post(f"{order_path}/status", data={"status": "confirmed",
                                                               "csrf_token": csrf_from(detail.text)})
        assert confirmed.status_code == 303
        detail = await c.get(order_path)
        assert "Confirmed" in detail.text and "Mark fulfilled" in detail.text
        refused = await c.post(f"{order_path}/status", data={"status": "draft", "csrf_token": csrf_from(detail.text)})
        assert refused.status_code == 409 and "cannot go from confirmed to draft" in refused.text
        # a confirmed order's lines are shown but not editable; its notes are
        edit = await c.get(f"{order_path}/edit")
        assert "Only draft orders can change their lines." in edit.text
        saved = await c.post(f"{order_path}/edit", data={**data, "number": "SO-000001", "notes": "加急",
                                                         "lines-0-quantity": "99", "csrf_token": csrf_from(edit.text)})
        assert saved.status_code == 303, saved.text
        detail = await c.get(order_path)
        assert "加急" in detail.text and "248.10 USD" in detail.text
        listing = await c.get(f"{base}/orders?status=confirmed")
        assert "SO-000001" in listing.text and "248.10 USD" in listing.text
        assert "SO-000001" not in (await c.get(f"{base}/orders?status=draft")).text

        # the product is on an order: deleting it is refused, deactivating offered
        confirm = await c.get(f"{base}/products/{product_id}/delete")
        deleted = await c.post(f"{base}/products/{product_id}/delete", data={"csrf_token": csrf_from(confirm.text)})
        assert deleted.status_code == 409 and "Deactivate" in deleted.text
        off = await c.post(f"{base}/products/{product_id}/active", data={"active": "false",
                                                                         "csrf_token": csrf_from(confirm.text)})
        assert off.status_code == 303
        assert "龙井茶" not in (await c.get(f"{base}/products")).text
        assert "龙井茶" in (await c.get(f"{base}/products?show=inactive")).text

        # targets: the owner sets one from the page
        targets = await c.get(f"{base}/targets?kind=month&start=2024-06-01")
        assert targets.status_code == 200 and "Set a target" in targets.text
        set_target = await c.post(f"{base}/targets?kind=month&start=2024-06-01", data={
            "holder": f"member:{workspace.identity_id}", "period_kind": "month", "period_start": "2024-06-01",
            "measure": "orders", "amount": "500", "currency": "USD", "csrf_token": csrf_from(targets.text)})
        assert set_target.status_code == 303, set_target.text
        targets = await c.get(set_target.headers["location"])
        assert "248.10 USD" in targets.text and "49.6%" in targets.text
        wrong = await c.post(f"{base}/targets", data={
            "holder": "", "period_kind": "month", "period_start": "2024-06-02", "measure": "orders", "amount": "0",
            "currency": "USD", "csrf_token": csrf_from(targets.text)})
        assert wrong.status_code == 422
        assert all(f'data-field="{f}"' in wrong.text for f in ("period_start", "amount"))


async def test_sales_member_pages_permissions_and_csrf(workspace: Workspace, other_workspace: Workspace) -> None:
    rep = await add_member(workspace, "sales")
    async with client(headers=await owner_token(workspace)) as api:
        owners = (await api.post("/api/v1/orders", json={"number": "OWNER-1"})).json()
        product = (await api.post("/api/v1/products", json={"sku": "P", "name": "p", "unit_price": "1"})).json()
    async with client(headers=rep.headers) as api:
        own = (await api.post("/api/v1/orders", json={})).json()
    base = f"/t/{workspace.slug}"
    async with client() as c:
        await login(c, rep.email, rep.password)
        assert "OWNER-1" not in (await c.get(f"{base}/orders")).text
        assert (await c.get(f"{base}/orders/{owners['id']}")).status_code == 404
        page = await c.get(f"{base}/targets")
        assert page.status_code == 200 and "Set a target" not in page.text
        refused = await c.post(f"{base}/targets", data={
            "holder": f"member:{rep.identity_id}", "period_kind": "month", "period_start": "2024-06-01",
            "measure": "orders", "amount": "500", "currency": "USD", "csrf_token": csrf_from(page.text)})
        assert refused.status_code == 403 and "workspace: manage_targets" in refused.text
        # every form route refuses a POST without its CSRF token
        for path in ("products/new", "orders/new", "targets", f"orders/{own['id']}/status", f"orders/{own['id']}/edit",
                     f"products/{product['id']}/active", f"products/{product['id']}/delete",
                     f"products/{product['id']}/edit", f"orders/{own['id']}/delete"):
            assert (await c.post(f"{base}/{path}", data={"status": "cancelled"})).status_code == 403, path
        # another workspace's pages are not theirs
        assert (await c.get(f"/t/{other_workspace.slug}/orders")).status_code == 404


async def test_sales_pages_in_simplified_chinese(workspace: Workspace) -> None:
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.tenants SET locale = 'zh-CN' WHERE id = $1", [workspace.tenant_id])
    base = f"/t/{workspace.slug}"
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        assert "新建产品" in (await c.get(f"{base}/products")).text
        assert "订单行" in (await c.get(f"{base}/orders/new")).text
        targets = await c.get(f"{base}/targets")
        assert "销售目标" in targets.text and "设定目标" in targets.text
