"""A support agent opens a ticket for a customer found by email, replies and waits for the customer,
and a colleague on a phone adds an internal note and resolves it; the admin sets the service levels.
In Debian's chromium via Playwright against the real web server, at desktop and phone widths, with no
sideways scrolling."""

from __future__ import annotations

from playwright.async_api import Page, expect

from kith.platform.db import tenant_scope

from .browser import SHOTS, chromium, no_horizontal_scroll, sign_in
from .conftest import Services, make_workspace
from .factories import add_member
from .live_server import web_server


async def _contact(tenant_id: int) -> None:
    async with tenant_scope(tenant_id) as tx:
        company = await tx.execute_query_dict(
            "INSERT INTO companies (name) VALUES ('上海某某贸易有限公司') RETURNING id")
        await tx.execute_query(
            "INSERT INTO contacts (name, email, company_id) VALUES ('王芳', 'wang.fang@example.cn', $1)",
            [company[0]["id"]])


async def _signed_in(page: Page, base: str, slug: str, email: str, password: str) -> None:
    await sign_in(page, base, email, password)
    await page.wait_for_url(f"{base}/t/{slug}/**")


async def test_open_answer_and_resolve_a_ticket_in_the_browser(db: Services) -> None:
    ws = await make_workspace("tickets-browser", "工单 Browser")
    agent, colleague = await add_member(ws, "support"), await add_member(ws, "support")
    await _contact(ws.tenant_id)
    with web_server() as base:
        async with chromium() as browser:
            desktop = await browser.new_page(viewport={"width": 1280, "height": 800})
            await _signed_in(desktop, base, ws.slug, agent.email, agent.password)
            await desktop.click("nav[aria-label=Workspace] a:has-text('Service')")
            await expect(desktop.locator("[data-count=new] strong")).to_have_text("0")
            await desktop.click("a:has-text('New ticket')")
            # a customer's email nobody has first: the form says so and keeps what was typed
            await desktop.fill("input[name=subject]", "发票抬头错误，请重新开具")
            await desktop.fill("input[name=contact_email]", "nobody@example.cn")
            await desktop.click("button:has-text('Open ticket')")
            await expect(desktop.locator('[data-field="contact_email"]')).to_be_visible()
            await expect(desktop.locator("input[name=subject]")).to_have_value("发票抬头错误，请重新开具")
            await desktop.fill("input[name=contact_email]", "wang.fang@example.cn")
            await desktop.select_option("select[name=priority]", "urgent")
            await desktop.select_option("select[name=channel]", "phone")
            await desktop.click("button:has-text('Open ticket')")
            await expect(desktop.locator("[role=status]")).to_have_text("Ticket opened.")
            await expect(desktop.locator('[data-field="contact"]')).to_contain_text("王芳")
            await expect(desktop.locator('[data-field="company"]')).to_contain_text("上海某某贸易有限公司")
            await expect(desktop.locator("[data-priority=urgent]")).to_be_visible()
            await desktop.check("input[name=kind][value=reply]")
            await desktop.fill("textarea[name=body]", "您好，发票已重新开具，请查收。")
            await desktop.select_option(".ticket-reply select[name=status]", "pending")
            await desktop.click("button[data-action=send]")
            await expect(desktop.locator("[role=status]")).to_have_text("Reply added.")
            await expect(desktop.locator(".ticket-head [data-status=pending]")).to_be_visible()
            await expect(desktop.locator("[data-message=reply]")).to_contain_text("发票已重新开具")
            # emailed to the customer (its job runs in the worker, which this test does not start)
            await expect(desktop.locator("[data-email-status=pending]")).to_contain_text("wang.fang@example.cn")
            await no_horizontal_scroll(desktop)
            await desktop.screenshot(path=str(SHOTS / "ticket-desktop.png"), full_page=True)
            ticket_url = desktop.url.split("?")[0]

            phone_ctx = await browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True)
            phone = await phone_ctx.new_page()
            await _signed_in(phone, base, ws.slug, colleague.email, colleague.password)
            await phone.goto(f"{base}/t/{ws.slug}/tickets")
            await expect(phone.locator("tbody tr")).to_have_count(1)
            await no_horizontal_scroll(phone)
            await phone.goto(ticket_url)
            await no_horizontal_scroll(phone)
            await phone.click("button[data-action=take]")
            await expect(phone.locator('[data-field="assignee"]')).to_contain_text(colleague.email.split("@")[0])
            await phone.check("input[name=kind][value=note]")
            await phone.fill("textarea[name=body]", "客户电话确认已收到")
            await phone.select_option(".ticket-reply select[name=status]", "resolved")
            await phone.click("button[data-action=send]")
            await expect(phone.locator("[role=status]")).to_have_text("Internal note added.")
            await expect(phone.locator(".ticket-head [data-status=resolved]")).to_be_visible()
            await expect(phone.locator("[data-message]")).to_have_count(2)
            await no_horizontal_scroll(phone)
            await phone.screenshot(path=str(SHOTS / "ticket-phone.png"), full_page=True)
            await phone.goto(f"{base}/t/{ws.slug}/service")
            await expect(phone.locator("[data-count=pending] strong")).to_have_text("0")
            await no_horizontal_scroll(phone)
            await phone.goto(f"{base}/t/{ws.slug}/tickets/new")
            await no_horizontal_scroll(phone)
            await phone_ctx.close()

            admin_ctx = await browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True)
            admin = await admin_ctx.new_page()
            await _signed_in(admin, base, ws.slug, ws.email, ws.password)
            await admin.goto(f"{base}/t/{ws.slug}/settings/service")
            await admin.fill("input[name='urgent.first_response_hours']", "9")
            await admin.fill("input[name='urgent.resolution_hours']", "3")
            await admin.click("button:has-text('Save')")
            await expect(admin.locator('[data-field="urgent"]')).to_be_visible()  # shorter than the first reply
            await admin.fill("input[name='urgent.first_response_hours']", "2")
            await admin.fill("input[name='urgent.resolution_hours']", "8")
            await admin.click("button:has-text('Save')")
            await expect(admin.locator("[role=status]")).to_have_text("Settings saved.")
            await expect(admin.locator("input[name='urgent.resolution_hours']")).to_have_value("8")
            await no_horizontal_scroll(admin)
            await admin.screenshot(path=str(SHOTS / "service-levels-phone.png"), full_page=True)
            await admin_ctx.close()
