"""Global search with a Chinese query and a merge of two contacts through the merge screen, in a
real browser (Debian's chromium via Playwright), at desktop and phone widths."""

from __future__ import annotations

from playwright.async_api import expect

from kith.platform.db import tenant_scope

from .browser import SHOTS, chromium, no_horizontal_scroll, sign_in
from .conftest import Workspace
from .live_server import web_server
from .test_search import _insert


async def test_search_and_merge_in_the_browser(workspace: Workspace) -> None:
    me = workspace.identity_id
    await _insert(workspace, "contacts", [
        {"name": "张伟", "email": "zhang.wei@example.cn", "phone": "+86 138 0013 8000",
         "company_name": "上海云图科技有限公司", "owner_id": me},
        {"name": "张伟明", "email": "zwm@example.cn", "company_name": "北京星辰贸易", "owner_id": me},
        {"name": "张伟", "email": "ZHANG.WEI@example.cn", "phone": "", "title": "CTO",
         "company_name": "云图科技", "owner_id": me},
    ])
    await _insert(workspace, "companies", [
        {"name": "上海云图科技有限公司", "domain": "yuntu.example.cn", "owner_id": me}])
    base_path = f"/t/{workspace.slug}"
    with web_server() as base:
        async with chromium() as browser:
            desktop = await browser.new_page(viewport={"width": 1280, "height": 800})
            await sign_in(desktop, base, workspace.email, workspace.password)
            await desktop.wait_for_url(f"{base}{base_path}/**")
            # the top navigation leads to the search page; a Chinese query finds contacts and the company
            await desktop.click("nav[aria-label=Workspace] >> text=Search")
            await desktop.fill("input[name=q]", "云图")
            await desktop.click("form[role=search] button[type=submit]")
            contacts = desktop.locator("section[data-type=contacts] .hit-name")
            await expect(contacts).to_have_count(2)
            await expect(desktop.locator("section[data-type=companies] .hit-name")).to_have_text("上海云图科技有限公司")
            await desktop.fill("input[name=q]", "张伟")
            await desktop.click("form[role=search] button[type=submit]")
            await expect(contacts).to_have_text(["张伟", "张伟", "张伟明"])
            await no_horizontal_scroll(desktop)
            await desktop.screenshot(path=str(SHOTS / "search-desktop.png"), full_page=True)

            # possible duplicates -> the merge screen -> confirm -> one contact with every value chosen
            await desktop.goto(f"{base}{base_path}/duplicates/contacts")
            await desktop.click("text=Merge into")
            await expect(desktop.locator("h1")).to_have_text("Merge records")
            await desktop.check("fieldset[data-field=title] input[value=other]")
            await no_horizontal_scroll(desktop)
            # the merge waits for its confirmation
            await desktop.click("button:has-text('Merge')")
            await expect(desktop.locator("input[name=confirm]:invalid")).to_have_count(1)
            await expect(desktop.locator("h1")).to_have_text("Merge records")
            await desktop.check("input[name=confirm]")
            await desktop.click("button:has-text('Merge')")
            await expect(desktop.locator("[role=status]")).to_contain_text("Records merged.")
            await desktop.screenshot(path=str(SHOTS / "merge-desktop.png"), full_page=True)

            phone_ctx = await browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
            phone = await phone_ctx.new_page()
            await sign_in(phone, base, workspace.email, workspace.password)
            await phone.wait_for_url(f"{base}{base_path}/**")
            await phone.goto(f"{base}{base_path}/search?q=" + "张伟")
            await expect(phone.locator("section[data-type=contacts] .hit-name")).to_have_text(["张伟", "张伟明"])
            await no_horizontal_scroll(phone)
            await phone.screenshot(path=str(SHOTS / "search-phone.png"), full_page=True)
    async with tenant_scope(workspace.tenant_id) as tx:
        rows = await tx.execute_query_dict("SELECT name, email, phone, title FROM contacts WHERE name = '张伟'")
    assert len(rows) == 1 and rows[0]["title"] == "CTO" and rows[0]["phone"] == "+86 138 0013 8000"
