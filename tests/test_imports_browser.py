"""Imports in a real browser (Debian's chromium) against the real web server and a real worker
process: from the contacts list's Import link, upload a GBK-encoded CSV with Chinese headers, see
the suggested mapping, check it (the progress follows the worker, the outcome shows counts and the
rejected row with its download link), import it, undo it from the confirm page. The first check is
queued before the worker starts, so its progress shows and its Cancel is tried; then, at phone
width in Chinese, the mapping screen and the imports list do not scroll sideways."""

from __future__ import annotations

from playwright.async_api import Page, expect

from kith.platform.db import platform_tx, tenant_scope

from .browser import SHOTS, chromium, no_horizontal_scroll, sign_in
from .conftest import Workspace
from .live_server import web_server, worker

GBK_FILE = ("姓名,手机,邮箱,公司\n"
            "张伟,13800138000,zhang.wei@example.cn,北京星辰科技\n"
            "李娜,13900139000,li.na@example.cn,上海明月贸易\n"
            "王芳,,wang.fang@example.cn,\n"
            "赵强,,不是邮箱,\n").encode("gbk")
WAIT_MS = 60_000  # the worker process starts while the page is open; two cores are shared


async def _contact_names(ws: Workspace) -> list[str]:
    async with tenant_scope(ws.tenant_id) as tx:
        return [r["name"] for r in await tx.execute_query_dict("SELECT name FROM contacts ORDER BY id")]


async def _upload(page: Page, base: str, ws: Workspace, name: str) -> None:
    await page.set_input_files("input[name=file]", files=[{"name": name, "mimeType": "text/csv",
                                                           "buffer": GBK_FILE}])
    await page.click("form[data-form=upload] button[type=submit]")
    await page.wait_for_url(f"{base}/t/{ws.slug}/imports/*")


async def test_upload_map_check_import_undo_and_phone_width(workspace: Workspace) -> None:
    with web_server() as base:
        async with chromium() as browser:
            desktop = await browser.new_page(viewport={"width": 1280, "height": 900})
            await sign_in(desktop, base, workspace.email, workspace.password)
            await desktop.goto(f"{base}/t/{workspace.slug}/contacts")
            await desktop.click("a.import-link")
            await expect(desktop.locator("select[name=object_type]")).to_have_value("contacts")
            await _upload(desktop, base, workspace, "客户名单.csv")

            # the suggested mapping, from the Chinese headers of a file read as GBK
            first_import = desktop.url
            await expect(desktop.locator("h1")).to_have_text("客户名单.csv")
            for column, field in ((0, "name"), (1, "phone"), (2, "email"), (3, "company_name")):
                await expect(desktop.locator(f"select[name='map.{column}']")).to_have_value(field)
            await expect(desktop.locator("tr[data-column='0'] td.samples")).to_contain_text("张伟")
            await expect(desktop.locator("select[name=match_key]")).to_have_value("email")
            await expect(desktop.locator("select[name=encoding]")).to_have_value("gb18030")
            await no_horizontal_scroll(desktop)
            await desktop.screenshot(path=str(SHOTS / "imports-mapping-desktop.png"), full_page=True)

            # no worker yet: the check waits in the queue, the page shows its progress; cancel it
            await desktop.click("button[value=check]")
            progress = desktop.locator("[data-import-progress]")
            await expect(progress).to_be_visible()
            await expect(progress.locator("[data-field=phase]")).to_have_text("Waiting for a worker")
            await desktop.screenshot(path=str(SHOTS / "imports-progress-desktop.png"), full_page=True)
            await progress.locator("button:has-text('Cancel')").click()
            outcome = desktop.locator("[data-field=outcome]")
            await expect(outcome).to_contain_text("Cancelled: nothing was written")

            # again, and now a worker process runs it: the page's poller reloads it with the outcome
            await desktop.click("button[value=check]")
            await expect(progress).to_be_visible()
            with worker():
                await expect(outcome).to_contain_text("Checked, nothing written: 4 rows, 3 would be created",
                                                      timeout=WAIT_MS)
                await expect(desktop.locator("tr[data-count=rejected] td")).to_have_text("1")
                await expect(desktop.locator("table.rejected tbody tr")).to_have_count(1)
                await expect(desktop.locator("table.rejected tr[data-line='5']")).to_contain_text("不是邮箱")
                download = desktop.locator("a[data-link=rejected]")
                await expect(download).to_have_text("Download rejected rows (CSV)")
                got = await desktop.request.get(base + (await download.get_attribute("href") or ""))
                assert got.status == 200 and "不是邮箱" in (await got.body()).decode("utf-8-sig")
                assert await _contact_names(workspace) == []

                # import: same mapping, now written
                await desktop.click("button[value=import]")
                await expect(outcome).to_contain_text("Imported: 3 created, 0 updated", timeout=WAIT_MS)
                await expect(desktop.locator("a[data-link=rejected]")).to_be_visible()
                assert sorted(await _contact_names(workspace)) == sorted(["张伟", "李娜", "王芳"])
                await desktop.screenshot(path=str(SHOTS / "imports-outcome-desktop.png"), full_page=True)

                # undo, through its confirm page
                await desktop.click("a[data-link=undo]")
                await expect(desktop.locator("[data-section=undo]")).to_contain_text(
                    "3 records it created are deleted")
                await desktop.click("[data-section=undo] button[type=submit]")
                await expect(outcome).to_contain_text("Undone", timeout=WAIT_MS)
                await expect(desktop.locator("a[data-link=undo]")).to_have_count(0)
                assert await _contact_names(workspace) == []

            # the imports list
            await desktop.goto(f"{base}/t/{workspace.slug}/imports")
            await expect(desktop.locator("tr[data-import]")).to_have_count(1)
            await expect(desktop.locator("tr[data-import]")).to_contain_text(workspace.email)

            # a phone, in Chinese: the same headers are mapped as chosen before; nothing scrolls sideways
            async with platform_tx() as tx:
                await tx.execute_query("UPDATE public.tenants SET locale = 'zh-CN' WHERE id = $1",
                                       [workspace.tenant_id])
            phone_ctx = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone = await phone_ctx.new_page()
            await sign_in(phone, base, workspace.email, workspace.password)
            await phone.goto(f"{base}/t/{workspace.slug}/imports/new?type=contacts")
            await no_horizontal_scroll(phone)
            await _upload(phone, base, workspace, "客户名单.csv")
            await expect(phone.locator("[data-field=mapping-source]")).to_contain_text("上次")
            await expect(phone.locator("button[value=check]")).to_have_text("检查（试运行）")
            await expect(phone.locator("select[name='map.2']")).to_have_value("email")
            await no_horizontal_scroll(phone)
            await phone.screenshot(path=str(SHOTS / "imports-mapping-phone.png"), full_page=True)
            await phone.click("button[value=check]")
            await expect(phone.locator("[data-import-progress] [data-field=phase]")).to_have_text("等待后台任务处理")
            await no_horizontal_scroll(phone)
            await phone.goto(first_import)
            await expect(phone.locator("[data-field=outcome]")).to_contain_text("已撤销")
            await no_horizontal_scroll(phone)
            await phone.goto(f"{base}/t/{workspace.slug}/imports")
            await expect(phone.locator("tr[data-import]")).to_have_count(2)
            await no_horizontal_scroll(phone)
            await phone_ctx.close()
