"""The pipeline board in a real browser (Debian's chromium via Playwright): drag a deal to another
column at desktop width (and into a lost stage, answering the loss-reason prompt), then move one
with the stage select at phone width, where the page must not scroll sideways."""

from __future__ import annotations

import re

from playwright.async_api import Dialog, Page, expect

from .browser import SHOTS, chromium, no_horizontal_scroll, sign_in
from .conftest import Workspace
from .factories import owner_token
from .live_server import web_server
from .web_helpers import client


def _column(page: Page, stage: str):  # type: ignore[no-untyped-def]
    return page.locator(".board-column", has=page.locator("h2", has_text=stage))


async def test_board_drag_and_drop_and_phone_fallback(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as api:
        for name, amount in (("拖动 Drag me", "1200.50"), ("Stay put", "300"), ("Phone deal", "75")):
            assert (await api.post("/api/v1/deals", json={"name": name, "amount": amount})).status_code == 201
    board_url_path = f"/t/{workspace.slug}/deals/board"
    with web_server() as base:
        async with chromium() as browser:
            desktop = await browser.new_page(viewport={"width": 1280, "height": 900})
            await sign_in(desktop, base, workspace.email, workspace.password)
            await desktop.wait_for_url(f"{base}/t/{workspace.slug}/**")
            await desktop.goto(base + board_url_path)
            card = desktop.locator(".deal-card", has_text="拖动 Drag me")
            await expect(_column(desktop, "Qualification").locator(".deal-card")).to_have_count(3)
            await card.drag_to(_column(desktop, "Proposal").locator(".cards"))
            # the script posts the move and fetches the board again: counts come from the server
            await expect(_column(desktop, "Proposal").locator("[data-column-count]")).to_have_text("1")
            await desktop.reload()
            await expect(_column(desktop, "Proposal").locator(".deal-card")).to_have_text(
                [re.compile("拖动 Drag me")])
            await expect(_column(desktop, "Proposal").locator(".column-totals")).to_contain_text("1,200.50 USD")
            await expect(desktop.locator("[data-weighted]")).to_contain_text(
                "757.80 USD")  # 60% of 1200.50 + 10% of 375

            # into a lost stage: the prompt asks why
            async def answer(dialog: Dialog) -> None:
                await dialog.accept("Budget cut")
            desktop.on("dialog", answer)
            await _column(desktop, "Proposal").locator(".deal-card").drag_to(_column(desktop, "Lost").locator(".cards"))
            await expect(_column(desktop, "Lost").locator("[data-column-count]")).to_have_text("1")
            await desktop.reload()
            await _column(desktop, "Lost").locator(".deal-name").click()
            await expect(desktop.locator('[data-fact="loss_reason"]')).to_have_text("Budget cut")
            await desktop.screenshot(path=str(SHOTS / "deal-desktop.png"), full_page=True)
            await desktop.goto(base + board_url_path)
            await desktop.screenshot(path=str(SHOTS / "board-desktop.png"), full_page=True)

            phone_ctx = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone = await phone_ctx.new_page()
            await sign_in(phone, base, workspace.email, workspace.password)
            await phone.wait_for_url(f"{base}/t/{workspace.slug}/**")
            await phone.goto(base + board_url_path)
            await no_horizontal_scroll(phone)
            phone_card = phone.locator(".deal-card", has_text="Phone deal")
            await phone_card.locator("summary").click()
            await phone_card.locator("select[name=stage_id]").select_option(label="Won")
            await phone_card.locator("button:has-text('Move')").click()
            await expect(_column(phone, "Won").locator(".deal-card")).to_have_count(1)
            await expect(_column(phone, "Won")).to_contain_text("Phone deal")
            await no_horizontal_scroll(phone)
            await phone.screenshot(path=str(SHOTS / "board-phone.png"), full_page=True)
            for path in ("deals/forecast", "deals/new", "settings/pipelines"):
                await phone.goto(f"{base}/t/{workspace.slug}/{path}")
                await expect(phone.locator("h1").first).to_be_visible()
                await no_horizontal_scroll(phone)
                await phone.screenshot(path=str(SHOTS / f"{path.replace('/', '-')}-phone.png"), full_page=True)
            await phone_ctx.close()
