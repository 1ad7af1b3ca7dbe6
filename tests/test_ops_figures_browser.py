"""The ops console's figures in a real browser (Debian's chromium via Playwright) against the real
web server: the dashboard's MRR, trials-and-churn table and failing jobs, the workspace list's
money filters and order (and a junk minimum refused with a message), the workspace's MRR and
recent jobs; at desktop and phone widths, with no sideways scrolling on the phone."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pyotp
from playwright.async_api import Page, expect

from kith.jobs.queue import enqueue_tenant_job
from kith.platform.billing.actions import change_plan_locally
from kith.platform.ops.operators import create_operator

from .browser import SHOTS, chromium, no_horizontal_scroll
from .conftest import make_workspace
from .live_server import web_server
from .test_billing import owner
from .test_ops_figures import run_queued_jobs

PASSWORD = "operator horse battery staple"


async def test_ops_figures_in_the_browser_at_desktop_and_phone_widths(db: object) -> None:
    token = f"brfig{datetime.now(UTC):%H%M%S%f}"
    paying = await make_workspace("brpay", f"{token} Paying")
    trial = await make_workspace("brtrial", f"{token} Trial")
    await change_plan_locally(owner(paying), "pro", "monthly")
    # a real job that fails in the worker: queued without its second argument
    assert await enqueue_tenant_job("welcome_email", paying.tenant_id, job_id=f"brfig-broken:{paying.slug}")
    await run_queued_jobs()
    op = await create_operator(f"figures-op-{paying.slug}@ops.kith.example", PASSWORD)

    with web_server() as base:
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            await page.goto(f"{base}/ops/login")
            await page.fill("input[name=email]", op.operator.email)
            await page.fill("input[name=password]", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{base}/ops/login/verify")
            await page.fill("input[name=code]", pyotp.TOTP(op.secret).at(time.time()))
            await page.click("button[type=submit]")
            await expect(page.locator("h1")).to_have_text("Platform dashboard")

            # dashboard: MRR, the two periods side by side, the failed job with its workspace
            await expect(page.locator("[data-field=total-mrr]")).to_contain_text("$")
            await expect(page.locator("[data-list=periods] tr[data-figure=conversion]")).to_be_visible()
            # (one row per job function, naming the workspace of its latest failure)
            failed = page.locator("[data-list=failing-jobs] tr[data-job=welcome_email]")
            await expect(failed).to_contain_text("welcome_email")
            await expect(failed).to_contain_text("TypeError: welcome_email() missing 1 required positional argument")
            await page.screenshot(path=str(SHOTS / "ops-figures-dashboard-desktop.png"), full_page=True)

            # the list: paying only, highest MRR first, through the form
            await page.click("nav >> text=Workspaces")
            await page.fill("input[name=q]", token)
            await page.check("input[name=paying]")
            await page.select_option("select[name=sort]", "mrr")
            await page.click("button:has-text('Search')")
            await expect(page.locator("tbody tr")).to_have_count(1)
            row = page.locator(f"tr[data-tenant='{paying.slug}']")
            await expect(row.locator("td[data-label=MRR]")).to_have_text("$49.00")
            await expect(row.locator("td[data-label=Storage]")).to_contain_text("MB")
            await expect(page.locator(f"tr[data-tenant='{trial.slug}']")).to_have_count(0)

            # a minimum MRR that is no amount: a message, and the list waits for a fix
            await page.fill("input[name=min_mrr]", "abc")
            await page.click("button:has-text('Search')")
            await expect(page.locator("[data-error=filters]")).to_contain_text('Minimum MRR "abc" is not an amount')
            await page.fill("input[name=min_mrr]", "40")
            await page.click("button:has-text('Search')")
            await expect(page.locator("tbody tr")).to_have_count(1)

            # the workspace: its MRR and its recent jobs, the failure among them
            await row.locator("a").first.click()
            await expect(page.locator("[data-field=mrr]")).to_contain_text("$49.00")
            await expect(page.locator("[data-list=jobs] tr[data-outcome=failed]")).to_contain_text("welcome_email")
            await page.screenshot(path=str(SHOTS / "ops-figures-tenant-desktop.png"), full_page=True)
            detail_url = page.url

            # phone width: dashboard, list and workspace without sideways scrolling
            phone_ctx = await browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True)
            await phone_ctx.add_cookies(await page.context.cookies())
            phone = await phone_ctx.new_page()
            for url, shot, ready in (
                (f"{base}/ops", "ops-figures-dashboard-phone.png", "[data-field=total-mrr]"),
                (f"{base}/ops/tenants?q={token}&sort=mrr", "ops-figures-list-phone.png", "td[data-label=MRR]"),
                (detail_url, "ops-figures-tenant-phone.png", "[data-field=mrr]"),
            ):
                await phone.goto(url)
                await expect(phone.locator(ready).first).to_be_visible()
                await no_horizontal_scroll(phone)
                await phone.screenshot(path=str(SHOTS / shot), full_page=True)
            await _sort_survives_on_phone(phone, base, token, paying.slug, trial.slug)
            await phone_ctx.close()


async def _sort_survives_on_phone(phone: Page, base: str, token: str, first: str, second: str) -> None:
    """On a phone the table's header (with its sort links) is hidden: the form's order still works."""
    await phone.goto(f"{base}/ops/tenants?q={token}")
    await phone.select_option("select[name=sort]", "mrr")
    await phone.click("button:has-text('Search')")
    await expect(phone.locator("tbody tr").first).to_have_attribute("data-tenant", first)
    await expect(phone.locator("tbody tr").nth(1)).to_have_attribute("data-tenant", second)
