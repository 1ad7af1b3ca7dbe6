"""A sales rep claims a lead from the public pool and converts it (contact, company and deal), in
Debian's chromium via Playwright against the real web server, at desktop and phone widths, with no
sideways scrolling; the admin sets the pool rules."""

from __future__ import annotations

from playwright.async_api import Page, expect

from kith.platform.db import tenant_scope

from .browser import SHOTS, chromium, no_horizontal_scroll, sign_in
from .conftest import Services, make_workspace
from .factories import add_member
from .live_server import web_server


async def _pool_leads(tenant_id: int, names: list[tuple[str, str]]) -> None:
    async with tenant_scope(tenant_id) as tx:
        for name, company in names:
            await tx.execute_query(
                "INSERT INTO leads (name, company_name, email, phone, source, pooled_at)"
                " VALUES ($1, $2, 'lead@example.cn', '+86 138 0013 8000', '展会', now())", [name, company])


async def _claim_and_convert(page: Page, base: str, slug: str, name: str, amount: str, shot: str) -> None:
    await page.goto(f"{base}/t/{slug}/pool/leads")
    await no_horizontal_scroll(page)
    row = page.locator("tr", has_text=name)
    await row.locator("button[data-action=claim]").click()
    await expect(page.locator("[role=status]")).to_have_text("You claimed this lead from the pool.")
    await expect(page.locator("[data-lead-name]")).to_contain_text(name)
    await no_horizontal_scroll(page)
    # a bad amount first: the form says which field, nothing is converted
    await page.check("input[name=create_deal]")
    await page.fill("input[name=deal_amount]", "-3")
    await page.click("button[data-action=convert]")
    await expect(page.locator('[data-field="deal_amount"]')).to_be_visible()
    await page.check("input[name=create_deal]")
    await page.fill("input[name=deal_amount]", amount)
    await page.click("button[data-action=convert]")
    await expect(page.locator("[role=status]")).to_have_text("Lead converted.")
    await expect(page.locator("[data-made=contact]")).to_have_text(name)
    await expect(page.locator("[data-made=deal]")).to_be_visible()
    await expect(page.locator('[data-event="lead.converted"]')).to_be_visible()
    await expect(page.locator('[data-event="pool.claimed"]')).to_be_visible()
    await no_horizontal_scroll(page)
    await page.screenshot(path=str(SHOTS / shot), full_page=True)


async def test_claim_from_the_pool_and_convert_in_the_browser(db: Services) -> None:
    ws = await make_workspace("leads-browser", "线索 Browser")
    sales = await add_member(ws, "sales")
    await _pool_leads(ws.tenant_id, [("王芳", "上海某某贸易有限公司"), ("李雷", "北京示例科技有限公司")])
    with web_server() as base:
        async with chromium() as browser:
            desktop = await browser.new_page(viewport={"width": 1280, "height": 800})
            await sign_in(desktop, base, sales.email, sales.password)
            await desktop.wait_for_url(f"{base}/t/{ws.slug}/**")
            await _claim_and_convert(desktop, base, ws.slug, "王芳", "12500.00", "lead-convert-desktop.png")
            await expect(desktop.locator("[data-made=company]")).to_have_text("上海某某贸易有限公司")
            await desktop.goto(f"{base}/t/{ws.slug}/pool/leads")
            await expect(desktop.locator("tbody tr")).to_have_count(1)

            phone_ctx = await browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True)
            phone = await phone_ctx.new_page()
            await sign_in(phone, base, sales.email, sales.password)
            await phone.wait_for_url(f"{base}/t/{ws.slug}/**")
            await _claim_and_convert(phone, base, ws.slug, "李雷", "800", "lead-convert-phone.png")
            await phone.goto(f"{base}/t/{ws.slug}/pool/leads")
            await expect(phone.locator(".empty")).to_be_visible()
            await phone.goto(f"{base}/t/{ws.slug}/leads/new")
            await no_horizontal_scroll(phone)
            await phone_ctx.close()

            # the admin's pool rules page, at phone width too
            admin_ctx = await browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True)
            admin = await admin_ctx.new_page()
            await sign_in(admin, base, ws.email, ws.password)
            await admin.wait_for_url(f"{base}/t/{ws.slug}/**")
            await admin.goto(f"{base}/t/{ws.slug}/settings/pool")
            await admin.fill("input[name=reclaim_days]", "30")
            await admin.fill("input[name='limit.sales']", "50")
            await admin.click("button:has-text('Save')")
            await expect(admin.locator("[role=status]")).to_have_text("Settings saved.")
            await expect(admin.locator("input[name=reclaim_days]")).to_have_value("30")
            await no_horizontal_scroll(admin)
            await admin.screenshot(path=str(SHOTS / "pool-rules-phone.png"), full_page=True)
            await admin_ctx.close()
