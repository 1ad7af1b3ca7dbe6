"""Background exports in a real browser (Debian's chromium) against the real web server and a real
worker process: from a filtered contacts list, "Export in the background" leads to the export's
form, which queues it; with no worker yet its page shows it waiting (and its Cancel is tried);
then a worker process writes the next one while the page's progress poller follows it to the
download link, whose file is the filtered list (a UTF-8 CSV with a BOM). At phone width in
Chinese the list, the form, the export's page and the exports list do not scroll sideways."""

from __future__ import annotations

import csv
import io

from playwright.async_api import Page, expect

from kith.platform.db import platform_tx, tenant_scope

from .browser import SHOTS, chromium, no_horizontal_scroll, sign_in
from .conftest import Workspace
from .live_server import web_server, worker

WAIT_MS = 60_000  # the worker process starts while the page is open; two cores are shared


async def _start_export(page: Page, base: str, ws: Workspace) -> None:
    await page.goto(f"{base}/t/{ws.slug}/contacts?f=name:contains:北京")
    await page.click("a.export-job-link")
    await expect(page.locator("[data-section=asked]")).to_contain_text("name:contains:北京")
    await page.click("form[data-form=export-new] button[type=submit]")
    await page.wait_for_url(f"{base}/t/{ws.slug}/exports/*")


async def test_queue_follow_and_download_at_desktop_and_phone_width(workspace: Workspace) -> None:
    async with tenant_scope(workspace.tenant_id) as tx:
        await tx.execute_query(
            "INSERT INTO contacts (name, email, owner_id) SELECT '北京客户 ' || n, 'bj' || n || '@example.cn', $1"
            " FROM generate_series(1, 250) AS n", [workspace.identity_id])
        await tx.execute_query("INSERT INTO contacts (name) VALUES ('上海客户'), ('=1+1 北京')")
    with web_server() as base:
        async with chromium() as browser:
            desktop = await browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            await sign_in(desktop, base, workspace.email, workspace.password)

            # no worker yet: the export waits in the queue, its page says so; cancel it
            await _start_export(desktop, base, workspace)
            progress = desktop.locator("[data-export-progress]")
            await expect(progress).to_be_visible()
            await expect(progress.locator("[data-field=phase]")).to_have_text("Waiting for a worker.")
            await expect(progress.locator("[data-field=rows]")).to_have_text("0 of about 251 rows")
            await no_horizontal_scroll(desktop)
            await desktop.screenshot(path=str(SHOTS / "export-jobs-progress-desktop.png"), full_page=True)
            await progress.locator("button:has-text('Cancel')").click()
            outcome = desktop.locator("[data-field=outcome]")
            await expect(outcome).to_contain_text("Cancelled: no file was kept.")

            # again, and a worker process writes it while the page follows it
            await _start_export(desktop, base, workspace)
            await expect(progress).to_be_visible()
            with worker():
                await expect(outcome).to_contain_text("Done: 251 rows", timeout=WAIT_MS)
                link = desktop.locator("a[data-link=download]")
                await expect(link).to_be_visible()
                await expect(desktop.locator("[data-field=expires]")).to_contain_text("Kept until")
                async with desktop.expect_download() as info:
                    await link.click()
                download = await info.value
                saved = await download.path()
                content = saved.read_bytes()
                assert download.suggested_filename.startswith("contacts-")
                assert content.startswith(b"\xef\xbb\xbf")
                rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"), newline="")))
                assert len(rows) == 252 and rows[0][0] == "Name"
                names = {r[0] for r in rows[1:]}
                assert "'=1+1 北京" in names and "北京客户 250" in names and "上海客户" not in names
                await no_horizontal_scroll(desktop)
                await desktop.screenshot(path=str(SHOTS / "export-jobs-done-desktop.png"), full_page=True)

                # the exports list: both, the finished one with its download
                await desktop.goto(f"{base}/t/{workspace.slug}/exports")
                await expect(desktop.locator("tr[data-export]")).to_have_count(2)
                await expect(desktop.locator("tr[data-status=done] a[data-link=download]")).to_have_text("CSV")
                await expect(desktop.locator("tr[data-status=cancelled]")).to_contain_text("Cancelled")

                # a phone, in Chinese: nothing scrolls sideways, and the export completes there too
                async with platform_tx() as tx:
                    await tx.execute_query("UPDATE public.tenants SET locale = 'zh-CN' WHERE id = $1",
                                           [workspace.tenant_id])
                phone_ctx = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
                phone = await phone_ctx.new_page()
                await sign_in(phone, base, workspace.email, workspace.password)
                await phone.goto(f"{base}/t/{workspace.slug}/contacts?f=name:contains:北京")
                await expect(phone.locator("a.export-job-link")).to_have_text("后台导出")
                await no_horizontal_scroll(phone)
                await phone.click("a.export-job-link")
                await expect(phone.locator("form[data-form=export-new] button[type=submit]")).to_have_text("开始导出")
                await phone.check("input[name=format][value=xlsx]")
                await no_horizontal_scroll(phone)
                await phone.screenshot(path=str(SHOTS / "export-jobs-new-phone.png"), full_page=True)
                await phone.click("form[data-form=export-new] button[type=submit]")
                await phone.wait_for_url(f"{base}/t/{workspace.slug}/exports/*")
                await expect(phone.locator("[data-field=outcome]")).to_contain_text("已完成：251 行",
                                                                                     timeout=WAIT_MS)
                await expect(phone.locator("a[data-link=download]")).to_be_visible()
                await no_horizontal_scroll(phone)
                await phone.screenshot(path=str(SHOTS / "export-jobs-done-phone.png"), full_page=True)
                await phone.goto(f"{base}/t/{workspace.slug}/exports")
                await expect(phone.locator("tr[data-export]")).to_have_count(3)
                await no_horizontal_scroll(phone)
                await phone.screenshot(path=str(SHOTS / "export-jobs-list-phone.png"), full_page=True)
                await phone_ctx.close()
