"""Account security in a real browser (Debian's chromium via Playwright) against the real
web server: turn on two-factor authentication, sign out, sign in with password and code;
and a lockout after repeated failures, at phone width."""

from __future__ import annotations

import time

import pyotp
from argon2 import PasswordHasher
from playwright.async_api import expect

from kith.platform.db import platform_tx
from kith.platform.identity.models import Identity

from .browser import SHOTS, chromium, no_horizontal_scroll, sign_in
from .conftest import Services, make_workspace
from .live_server import web_server


async def test_two_factor_and_lockout_in_the_browser(db: Services) -> None:
    ws = await make_workspace("browser-sec", "安全 Security Co")
    # cheapest argon2 parameters for this identity: verification reads them from the hash
    async with platform_tx() as tx:
        await Identity.filter(id=ws.identity_id).using_db(tx).update(
            password_hash=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(ws.password))
    with web_server() as base:
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            await sign_in(page, base, ws.email, ws.password)
            await page.wait_for_url(f"{base}/t/{ws.slug}/contacts")

            # enrol: the secret is read from the page, the code computed as an app would
            await page.click("header >> text=Account")
            await page.wait_for_url(f"{base}/account/security")
            await page.click("#setup-2fa")
            await expect(page.locator(".qr svg")).to_be_visible()
            secret = (await page.locator("#totp-secret").inner_text()).strip()
            await page.fill("input[name=code]", "000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
            await page.click("main button[type=submit]")
            await expect(page.locator("[role=alert]")).to_contain_text("not correct")
            await page.fill("input[name=code]", pyotp.TOTP(secret).now())
            await page.click("main button[type=submit]")
            await expect(page.locator("#recovery-codes li")).to_have_count(10)
            await page.screenshot(path=str(SHOTS / "security-recovery-codes.png"), full_page=True)
            await page.click("text=Done")
            await expect(page.locator("#recovery-left")).to_have_text("10")
            await page.set_viewport_size({"width": 390, "height": 844})
            await no_horizontal_scroll(page)
            await page.screenshot(path=str(SHOTS / "security-phone.png"), full_page=True)
            await page.set_viewport_size({"width": 1280, "height": 800})

            # sign out, then back in: password, then the code
            await page.click("header button:has-text('Sign out')")
            await page.wait_for_url(f"{base}/login")
            await sign_in(page, base, ws.email, ws.password)
            await page.wait_for_url(f"{base}/login/verify")
            # the next step's code: within the accepted drift, and never used before
            await page.fill("input[name=code]", pyotp.TOTP(secret).at(time.time() + 30))
            await page.click("main button[type=submit]")
            await page.wait_for_url(f"{base}/t/{ws.slug}/contacts")
            await expect(page.locator(".workspace")).to_have_text("安全 Security Co")

            # lockout, at phone width, in a fresh browser context
            phone_ctx = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone = await phone_ctx.new_page()
            for n in range(1, 5):
                await sign_in(phone, base, ws.email, f"wrong guess number {n}")
                await expect(phone.locator("[role=alert]")).to_have_text("Email or password is not correct.")
            await sign_in(phone, base, ws.email, "wrong guess number 5")
            await expect(phone.locator("[role=alert]")).to_contain_text("try again in 15 minutes")
            # the right password is refused while locked
            await sign_in(phone, base, ws.email, ws.password)
            await expect(phone.locator("[role=alert]")).to_contain_text("Too many failed sign-in attempts")
            assert phone.url == f"{base}/login"
            await no_horizontal_scroll(phone)
            await phone.screenshot(path=str(SHOTS / "security-lockout-phone.png"), full_page=True)
            await phone_ctx.close()
