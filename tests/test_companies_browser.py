"""A company and a linked contact made in a real browser (Debian's chromium via Playwright), and
the company's 360 page at desktop and phone width."""

from __future__ import annotations

from playwright.async_api import expect

from kith.platform.db import tenant_scope

from .browser import SHOTS, chromium, no_horizontal_scroll, sign_in
from .conftest import Services, make_workspace
from .live_server import web_server

STAR = "北京星辰科技有限公司"


async def test_company_360_page_in_the_browser(db: Services) -> None:
    ws = await make_workspace("companies-browser", "星辰贸易")
    with web_server() as base:
        async with chromium() as browser:
            desktop = await browser.new_page(viewport={"width": 1280, "height": 800})
            await sign_in(desktop, base, ws.email, ws.password)
            await desktop.wait_for_url(f"{base}/t/{ws.slug}/**")

            # a company, with a bad domain first
            await desktop.goto(f"{base}/t/{ws.slug}/companies/new")
            await desktop.fill("input[name=name]", STAR)
            await desktop.fill("input[name=domain]", "not a domain")
            await desktop.click("button:has-text('Save')")
            await expect(desktop.locator('[data-field="domain"]')).to_contain_text("domain")
            await desktop.fill("input[name=domain]", "https://www.xingchen.example.cn/about")
            await desktop.fill("input[name=city]", "北京")
            await desktop.fill("input[name=country]", "cn")
            await desktop.fill("input[name=tags]", "vip, 大客户")
            await desktop.click("button:has-text('Save')")
            await expect(desktop.locator("[role=status]")).to_have_text("Company added.")
            await expect(desktop.locator("[data-company-name]")).to_have_text(STAR)
            company_url = desktop.url.split("?")[0]

            # a contact linked to it from the company page
            await desktop.click("text=Add a contact")
            await desktop.fill("input[name=name]", "张伟")
            await desktop.fill("input[name=email]", "zhang.wei@xingchen.example.cn")
            await desktop.fill("input[name=title]", "采购总监")
            await expect(desktop.locator("select[name=company_id] option:checked")).to_have_text(STAR)
            await desktop.click("button:has-text('Save')")
            await expect(desktop.locator("[role=status]")).to_have_text("Contact added.")

            # a deal and an order for the purchase history, as other parts of Kith would add them
            company_id = int(company_url.rsplit("/", 1)[1])
            async with tenant_scope(ws.tenant_id) as tx:
                stage = (await tx.execute_query_dict("SELECT id, pipeline_id FROM stages ORDER BY position LIMIT 1"))[0]
                await tx.execute_query(
                    "INSERT INTO deals (name, amount, currency, pipeline_id, stage_id, company_id, owner_id)"
                    " VALUES ('星辰年度采购合同（第二期）', 1280000.50, 'CNY', $1, $2, $3, $4)",
                    [stage["pipeline_id"], stage["id"], company_id, ws.identity_id])
                await tx.execute_query(
                    "INSERT INTO orders (number, company_id, owner_id, currency, status, total)"
                    " VALUES ('SO-2026-0001', $1, $2, 'CNY', 'confirmed', 88000.00)", [company_id, ws.identity_id])

            await desktop.goto(company_url)
            await expect(desktop.locator("#contacts li")).to_contain_text("张伟")
            await expect(desktop.locator("#deals li")).to_contain_text("1,280,000.50")
            await expect(desktop.locator("#orders li")).to_contain_text("SO-2026-0001")
            await expect(desktop.locator("[data-timeline]")).to_be_visible()
            await no_horizontal_scroll(desktop)
            await desktop.screenshot(path=str(SHOTS / "company-360-desktop.png"), full_page=True)

            # the contact's page links back to its company
            await desktop.click("#contacts a:has-text('张伟')")
            await expect(desktop.locator("[data-company-link]")).to_have_text(STAR)
            await no_horizontal_scroll(desktop)

            phone_ctx = await browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
            phone = await phone_ctx.new_page()
            await sign_in(phone, base, ws.email, ws.password)
            await phone.wait_for_url(f"{base}/t/{ws.slug}/**")
            await phone.goto(company_url)
            await expect(phone.locator("[data-company-name]")).to_have_text(STAR)
            await expect(phone.locator("#deals li")).to_contain_text("星辰年度采购合同")
            await no_horizontal_scroll(phone)
            await phone.screenshot(path=str(SHOTS / "company-360-phone.png"), full_page=True)
            await phone.goto(f"{company_url}/delete")
            await no_horizontal_scroll(phone)
            await phone.goto(f"{company_url}/edit")
            await no_horizontal_scroll(phone)
            await phone_ctx.close()
