"""Backups in Debian's chromium via Playwright, against the real web server and worker processes: a
workspace owner starts a backup on the Backups settings page, is refused a second one while the
first waits, and watches it complete (the page reloads itself, no JavaScript involved), at desktop
and phone widths; a support operator triggers one from the ops console with a reason."""

from __future__ import annotations

import time

import pyotp
from playwright.async_api import Page, expect

from kith.platform.db import tenant_scope
from kith.platform.ops.operators import create_operator

from .browser import SHOTS, chromium, no_horizontal_scroll, sign_in
from .conftest import Services, make_workspace
from .live_server import web_server, worker
from .test_ops import tenant_entries

PASSWORD = "operator horse battery staple"
DONE_WITHIN_MS = 45_000  # a small workspace backs up in well under a second; the machine may be busy


async def _open_backups(page: Page, base: str, slug: str, email: str, password: str) -> None:
    await sign_in(page, base, email, password)
    await page.wait_for_url(f"{base}/t/{slug}/contacts")
    await page.goto(f"{base}/t/{slug}/settings/backups")
    await expect(page.locator("h1")).to_have_text("Backups")


async def test_backups_page_and_console_in_the_browser(db: Services) -> None:
    ws = await make_workspace("backups-browser", "Backup Browser Co")
    async with tenant_scope(ws.tenant_id) as tx:
        for name in ("王小明", "李娜", "Ada Lovelace"):
            await tx.execute_query("INSERT INTO contacts (name) VALUES ($1)", [name])
    op = await create_operator(f"backup-op-{ws.slug}@ops.kith.example", PASSWORD)
    with web_server() as base:
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            await _open_backups(page, base, ws.slug, ws.email, ws.password)
            await expect(page.locator("[data-field=schedule]")).to_contain_text("every day")
            await expect(page.locator("[data-list=backups]")).to_contain_text("No backups yet.")

            # no worker yet: the backup waits in the queue, and a second one is refused
            await page.click("button:has-text('Back up now')")
            await expect(page.locator("[role=status].notice")).to_contain_text("Backup started.")
            await expect(page.locator("[data-active-run] [data-field=phase]")).to_have_text("Waiting for a worker")
            await page.click("button:has-text('Back up now')")
            await expect(page.locator("[data-refused]")).to_contain_text("already under way")
            await page.screenshot(path=str(SHOTS / "backups-refused-desktop.png"), full_page=True)

            with worker():
                # the page reloads itself every few seconds until the run is done
                done = page.locator("tr[data-run][data-status=done]")
                await expect(done).to_have_count(1, timeout=DONE_WITHIN_MS)
                await expect(page.locator("[data-active-run]")).to_have_count(0)
                [row] = await page.locator("tr[data-backup]").all()
                await expect(row.locator("[data-field=rows]")).not_to_have_text("0")
                await page.screenshot(path=str(SHOTS / "backups-done-desktop.png"), full_page=True)

                # on a phone: no sideways scrolling, before and after another backup
                phone_ctx = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
                phone = await phone_ctx.new_page()
                await _open_backups(phone, base, ws.slug, ws.email, ws.password)
                await no_horizontal_scroll(phone)
                await phone.click("button:has-text('Back up now')")
                await expect(phone.locator("tr[data-run][data-status=done]")).to_have_count(
                    2, timeout=DONE_WITHIN_MS)
                await expect(phone.locator("tr[data-backup]")).to_have_count(2)
                await no_horizontal_scroll(phone)
                await phone.screenshot(path=str(SHOTS / "backups-done-phone.png"), full_page=True)
                await phone_ctx.close()

                # the ops console: a backup with a reason, seen through to the end
                console = await browser.new_page(viewport={"width": 1280, "height": 800})
                await console.goto(f"{base}/ops/login")
                await console.fill("input[name=email]", op.operator.email)
                await console.fill("input[name=password]", PASSWORD)
                await console.click("button[type=submit]")
                await console.wait_for_url(f"{base}/ops/login/verify")
                await console.fill("input[name=code]", pyotp.TOTP(op.secret).at(time.time()))
                await console.click("button[type=submit]")
                await console.wait_for_url(f"{base}/ops")
                await console.goto(f"{base}/ops/tenants/{ws.tenant_id}")
                await console.click("button:has-text('Trigger backup')")  # without a reason: refused
                await expect(console.locator("[role=alert]")).to_contain_text("Give a reason")
                await console.fill("input[data-action=backup]", "browser test: backup before a data fix")
                await console.click("button:has-text('Trigger backup')")
                await expect(console.locator("[role=status]")).to_have_text("Backup queued.")
                ops_runs = console.locator("[data-list=backup-runs] tr[data-status=done]")
                deadline = time.monotonic() + DONE_WITHIN_MS / 1000
                while await ops_runs.count() < 3 and time.monotonic() < deadline:
                    await console.wait_for_timeout(300)
                    await console.reload()
                await expect(ops_runs).to_have_count(3)
                await expect(console.locator("[data-list=backup-runs] tbody tr").first).to_contain_text(
                    "browser test: backup before a data fix")
                await console.screenshot(path=str(SHOTS / "ops-backups-desktop.png"), full_page=True)

            # the owner sees Kith support's backup, and the workspace's audit log names the operator
            await page.goto(f"{base}/t/{ws.slug}/settings/backups")
            await expect(page.locator("tr[data-backup]")).to_have_count(3)
            await expect(page.locator("[data-list=backups]")).to_contain_text("Kith support")
    [entry] = await tenant_entries(ws.tenant_id, "ops.backup")
    assert entry["actor_kind"] == "operator" and "browser test: backup before a data fix" in entry["diff"]
