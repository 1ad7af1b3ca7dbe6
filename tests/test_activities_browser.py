"""Tasks and a record's timeline in a real browser (Debian's chromium via Playwright) against
the real web server, at desktop and phone widths: create a task, complete it, log a call."""

from __future__ import annotations

from playwright.async_api import Page, expect

from .browser import SHOTS, chromium, sign_in
from .browser import no_horizontal_scroll as _no_scroll
from .conftest import Services, make_workspace
from .live_server import web_server
from .matrix_activities import make_records


async def no_horizontal_scroll(page: Page) -> None:
    """No sideways scrolling, and (with is_mobile, where a too-wide page widens the layout
    viewport instead of scrolling) a layout no wider than the device."""
    await _no_scroll(page)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert page.viewport_size and width <= page.viewport_size["width"], f"{page.url} is laid out {width}px wide"


async def _create_and_complete(page: Page, base: str, slug: str, title: str) -> None:
    await page.goto(f"{base}/t/{slug}/tasks")
    await no_horizontal_scroll(page)
    await page.click("text=New task")
    await no_horizontal_scroll(page)
    await page.fill("input[name=title]", title)
    await page.fill("input[name=due_date]", "2024-01-15")
    await page.fill("input[name=due_time]", "09:30")
    await page.click("button:has-text('Save')")
    await expect(page.locator("[role=status]")).to_have_text("Task added.")
    row = page.locator("li.task", has_text=title)
    await expect(row).to_have_class("task overdue status-open")
    await expect(row.locator(".overdue-badge")).to_have_text("Overdue")
    await expect(row).to_contain_text("2024-01-15 09:30")
    await no_horizontal_scroll(page)
    await row.locator("button:has-text('Complete')").click()
    await expect(page.locator("[role=status]")).to_have_text("Task completed.")
    await expect(page.locator("li.task", has_text=title)).to_have_count(0)
    await page.select_option("select[name=status]", "done")
    await page.click("button:has-text('Show')")
    await expect(page.locator("li.task.status-done", has_text=title)).to_have_count(1)
    await no_horizontal_scroll(page)


async def test_tasks_and_timeline_in_the_browser(db: Services) -> None:
    ws = await make_workspace("tasks-browser", "云图贸易")
    rec = await make_records(ws, ws.identity_id, "上海云图科技有限公司")
    with web_server() as base:
        async with chromium() as browser:
            desktop = await browser.new_page(viewport={"width": 1280, "height": 800})
            await sign_in(desktop, base, ws.email, ws.password)
            await desktop.wait_for_url(f"{base}/t/{ws.slug}/**")
            await _create_and_complete(desktop, base, ws.slug, "Send the quote to 张伟")

            # log a call on a company's timeline, with a mistake first
            timeline = f"{base}/t/{ws.slug}/timeline/companies/{rec['company_id']}"
            await desktop.goto(timeline)
            await desktop.click("summary:has-text('Log a call')")
            await desktop.check("input[name=kind][value=note]")
            await desktop.fill("input[name=subject]", "电话回访")
            await desktop.fill("input[name=duration_minutes]", "20")
            await desktop.click("button:has-text('Log activity')")
            await expect(desktop.locator('[data-field="duration_minutes"]')).to_have_text(
                "Only calls and meetings have a duration.")
            await desktop.check("input[name=kind][value=call]")
            await desktop.click("button:has-text('Save')")
            await desktop.wait_for_url(timeline)
            entry = desktop.locator("li.timeline-entry").first
            await expect(entry).to_contain_text("电话回访")
            await expect(entry).to_contain_text("20 min")
            await expect(entry.locator(".badge")).to_have_text("Call")
            await desktop.screenshot(path=str(SHOTS / "timeline-desktop.png"), full_page=True)

            phone_ctx = await browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
            phone = await phone_ctx.new_page()
            await sign_in(phone, base, ws.email, ws.password)
            await phone.wait_for_url(f"{base}/t/{ws.slug}/**")
            await _create_and_complete(phone, base, ws.slug, "回访上海云图科技有限公司的采购负责人并确认最终报价单")
            await phone.goto(timeline)
            await phone.click("summary:has-text('Log a call')")
            await phone.click("summary:has-text('Add task')")
            await no_horizontal_scroll(phone)
            await expect(phone.locator("li.timeline-entry").first).to_contain_text("电话回访")
            await phone.screenshot(path=str(SHOTS / "timeline-phone.png"), full_page=True)
            await phone_ctx.close()
