"""Every ops console action once in a real browser (Debian's chromium via Playwright), against
the real web server: sign-in with a TOTP code, search, suspend and reactivate with reasons,
extend the trial, resend the email verification, comp a plan, impersonate (the banner on the
workspace's pages), end; and one phone-width check."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pyotp
from playwright.async_api import expect

from kith.platform.db import platform_tx
from kith.platform.ops.operators import create_operator

from .browser import SHOTS, chromium, no_horizontal_scroll
from .conftest import Workspace
from .live_server import web_server

PASSWORD = "operator horse battery staple"


async def test_ops_console_in_the_browser(workspace: Workspace) -> None:
    op = await create_operator(f"browser-op-{workspace.slug}@ops.kith.example", PASSWORD)
    async with platform_tx() as tx:  # an owner who has not followed the link yet: resend applies
        await tx.execute_query("UPDATE public.identities SET email_verified_at = NULL WHERE id = $1",
                               [workspace.identity_id])
    with web_server() as base:
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            await page.goto(f"{base}/ops/tenants")
            await page.wait_for_url(f"{base}/ops/login")
            await page.fill("input[name=email]", op.operator.email)
            await page.fill("input[name=password]", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{base}/ops/login/verify")
            await page.fill("input[name=code]", pyotp.TOTP(op.secret).at(time.time()))
            await page.click("button[type=submit]")
            await expect(page.locator("h1")).to_have_text("Platform dashboard")

            # search
            await page.click("nav >> text=Workspaces")
            await page.fill("input[name=q]", workspace.slug)
            await page.click("button:has-text('Search')")
            await expect(page.locator("tbody tr")).to_have_count(1)
            await page.click(f"tr[data-tenant='{workspace.slug}'] a")
            await expect(page.locator("h1")).to_contain_text(workspace.name)

            # suspend, then reactivate, each with a reason
            await page.fill("input[data-action=suspend]", "browser test: suspend")
            await page.click("button:has-text('Suspend')")
            await expect(page.locator("[role=status]")).to_have_text("Workspace suspended.")
            await expect(page.locator("[data-field=status]")).to_contain_text("suspended")
            await page.fill("input[data-action=reactivate]", "browser test: reactivate")
            await page.click("button:has-text('Reactivate')")
            await expect(page.locator("[role=status]")).to_have_text("Workspace reactivated.")

            # billing and verification support, each with a reason
            await page.fill("input[data-action=extend-trial]", "browser test: extend")
            await page.click("button:has-text('Extend trial')")
            await expect(page.locator("[role=status]")).to_have_text("Trial extended.")
            await page.fill("input[data-action=resend-verification]", "browser test: resend")
            await page.click("button:has-text('Resend verification')")
            await expect(page.locator("[role=status]")).to_have_text("Verification email sent.")
            await page.fill("input[name=until]", str(datetime.now(UTC).date() + timedelta(days=30)))
            await page.fill("input[data-action=comp]", "browser test: comp")
            await page.click("button:has-text('Comp plan')")
            await expect(page.locator("[role=status]")).to_have_text("Plan comped.")
            await expect(page.locator("[data-field=comp]")).to_contain_text("comped until")

            # impersonate the owner: the workspace's pages, with the banner throughout
            row = page.locator(f"tr[data-member='{workspace.email}']")
            await row.locator("input[name=reason]").fill("browser test: look at contacts")
            await row.locator("button:has-text('Impersonate')").click()
            await page.wait_for_url(f"{base}/t/{workspace.slug}/contacts")
            banner = page.locator(".impersonation-banner")
            await expect(banner).to_contain_text(op.operator.email)
            await page.click("text=New contact")
            await expect(banner).to_be_visible()
            await page.screenshot(path=str(SHOTS / "ops-impersonation-desktop.png"), full_page=True)

            # end
            await banner.locator("button:has-text('End impersonation')").click()
            await expect(page.locator("[role=status]")).to_have_text("Impersonation ended.")
            await page.goto(f"{base}/t/{workspace.slug}/contacts")
            await page.wait_for_url(f"{base}/login?next=*")

            # phone width: the console's list does not scroll sideways
            phone_ctx = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
            await phone_ctx.add_cookies(await page.context.cookies())
            phone = await phone_ctx.new_page()
            await phone.goto(f"{base}/ops/tenants?q={workspace.slug}")
            await expect(phone.locator("td.name")).to_contain_text(workspace.name)
            await no_horizontal_scroll(phone)
            await phone.screenshot(path=str(SHOTS / "ops-phone.png"), full_page=True)
            await phone_ctx.close()
