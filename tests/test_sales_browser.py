"""A product, an order with two lines (live totals from orders.js) and its confirmation in a real
browser, at desktop and phone width; the targets page at phone width without sideways scrolling."""

from __future__ import annotations

from playwright.async_api import Page, expect

from .browser import SHOTS, chromium, no_horizontal_scroll, sign_in
from .conftest import Workspace
from .live_server import web_server


async def _order_with_two_lines(page: Page, base: str, product_label: str) -> None:
    await page.goto(f"{base}/orders/new")
    lines = page.locator("[data-line]")
    await expect(lines).to_have_count(5)
    # the script adds and removes rows
    await page.click("[data-add-line]")
    await expect(lines).to_have_count(6)
    await lines.nth(5).locator("[data-remove-line]").click()
    await expect(lines).to_have_count(5)
    first, second = lines.nth(0), lines.nth(1)
    await first.locator("[data-product]").select_option(label=product_label)
    await expect(first.locator("[data-unit-price]")).to_have_attribute("placeholder", "19.99")
    await first.locator("[data-quantity]").fill("3")
    await first.locator("[data-discount]").fill("12.5")
    await expect(first.locator("[data-line-total]")).to_have_text("52.47")
    await second.locator("[data-description]").fill("安装调试")
    await second.locator("[data-quantity]").fill("1")
    await second.locator("[data-unit-price]").fill("100")
    await expect(second.locator("[data-line-total]")).to_have_text("100.00")
    await expect(page.locator("[data-subtotal]")).to_have_text("159.97 USD")
    await expect(page.locator("[data-discount-total]")).to_have_text("7.50 USD")
    await expect(page.locator("[data-total]")).to_have_text("152.47 USD")
    await no_horizontal_scroll(page)
    await page.click("button:has-text('Save')")
    await expect(page.locator("[role=status]")).to_have_text("Order created.")
    await expect(page.locator("dd[data-total]")).to_have_text("152.47 USD")
    await page.click("button:has-text('Confirm order')")
    await expect(page.locator("[data-order-status]")).to_have_text("Confirmed")
    await no_horizontal_scroll(page)


async def test_products_orders_and_targets_in_the_browser(workspace: Workspace) -> None:
    with web_server() as server:
        base = f"{server}/t/{workspace.slug}"
        async with chromium() as browser:
            desktop = await browser.new_page(viewport={"width": 1280, "height": 800})
            await sign_in(desktop, server, workspace.email, workspace.password)
            await desktop.wait_for_url(f"{base}/**")
            await desktop.goto(f"{base}/products")
            await desktop.click("text=New product")
            await desktop.fill("input[name=sku]", "GT-01")
            await desktop.fill("input[name=name]", "绿茶礼盒")
            await desktop.fill("input[name=unit_price]", "19.99")
            await desktop.click("button:has-text('Save')")
            await expect(desktop.locator("[role=status]")).to_have_text("Product added.")
            await expect(desktop.locator("td.name")).to_have_text("绿茶礼盒")
            await _order_with_two_lines(desktop, base, "GT-01 · 绿茶礼盒 (19.99 USD)")
            await desktop.screenshot(path=str(SHOTS / "order-desktop.png"), full_page=True)
            await desktop.goto(f"{base}/orders")
            await expect(desktop.locator("tbody tr")).to_have_count(1)
            await expect(desktop.locator("tbody tr")).to_contain_text("152.47 USD")

            phone_ctx = await browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True)
            phone = await phone_ctx.new_page()
            await sign_in(phone, server, workspace.email, workspace.password)
            await phone.wait_for_url(f"{base}/**")
            await _order_with_two_lines(phone, base, "GT-01 · 绿茶礼盒 (19.99 USD)")
            await phone.screenshot(path=str(SHOTS / "order-phone.png"), full_page=True)
            for path in ("orders", "products", "products/new"):
                await phone.goto(f"{base}/{path}")
                await no_horizontal_scroll(phone)
            # the targets page: a target for the owner on orders, shown with its progress
            await phone.goto(f"{base}/targets")
            await phone.select_option("select[name=holder]", index=1)
            await phone.select_option("select[name=measure]", "orders")
            await phone.fill("input[name=amount]", "500")
            await phone.click("button:has-text('Save target')")
            await expect(phone.locator("[role=status]")).to_have_text("Target saved.")
            await expect(phone.locator("[data-achieved]")).to_have_text("304.94 USD")
            await expect(phone.locator("[data-percent]")).to_have_text("61.0%")
            await no_horizontal_scroll(phone)
            await phone.screenshot(path=str(SHOTS / "targets-phone.png"), full_page=True)
            await phone_ctx.close()
