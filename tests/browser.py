"""Debian's chromium driven by Playwright, as every browser test launches it (never a
downloaded browser), and the helpers those tests share."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import Browser, Page, async_playwright

from .live_server import REPO

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags chromium tries to reach Google's hosts, which this
# machine's closed network refuses.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
        "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
SHOTS = REPO / "test-artifacts"


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Debian chromium, closed afterwards; screenshots go to test-artifacts/."""
    SHOTS.mkdir(exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def sign_in(page: Page, base: str, email: str, password: str) -> None:
    """Fill in and submit the sign-in form."""
    await page.goto(f"{base}/login")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", password)
    await page.click("form[action='/login'] button[type=submit]")


async def no_horizontal_scroll(page: Page) -> None:
    """The page is no wider than its viewport (a phone must not scroll sideways)."""
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{page.url} is {overflow}px wider than the viewport"
    # with is_mobile, Chromium widens the layout viewport to fit a too-wide page instead of
    # scrolling, so innerWidth grows with it: compare with the viewport we asked for too
    if page.viewport_size is not None:
        width, wanted = await page.evaluate("document.documentElement.scrollWidth"), page.viewport_size["width"]
        assert width <= wanted + 1, f"{page.url} is {width}px wide at a {wanted}px viewport"
