"""The generic list page in a real browser (Debian's chromium): filter, sort, save a shared view and
open it again from the views select, bulk-assign two rows; at phone width nothing scrolls sideways."""

from __future__ import annotations

import re

from playwright.async_api import expect

from .browser import SHOTS, chromium, no_horizontal_scroll, sign_in
from .conftest import Workspace
from .factories import add_member, owner_token
from .live_server import web_server
from .web_helpers import client

LIST = "contacts"


async def test_list_filter_sort_saved_view_and_bulk_assign(workspace: Workspace) -> None:
    sales = await add_member(workspace, "sales")
    async with client(headers=await owner_token(workspace)) as c:
        for name in ("张伟", "张敏", "Emily Carter"):
            resp = await c.post(f"/api/v1/{LIST}", json={"name": name})
            assert resp.status_code == 201, resp.text
    with web_server() as base:
        async with chromium() as browser:
            desktop = await browser.new_page(viewport={"width": 1280, "height": 900})
            await sign_in(desktop, base, workspace.email, workspace.password)
            await desktop.goto(f"{base}/t/{workspace.slug}/{LIST}")
            await expect(desktop.locator("tbody tr")).to_have_count(3)

            # a filter from the builder: the operator list follows the field's kind
            row = desktop.locator(".filter-row").last
            await row.locator("select[name=ff]").select_option("name")
            assert await row.locator("select[name=fo]").input_value() == "eq"
            await row.locator("select[name=fo]").select_option("contains")
            await row.locator("input[name=fv]").fill("张")
            await desktop.click("button:has-text('Apply filters')")
            await expect(desktop.locator("tbody tr")).to_have_count(2)

            # sort by the name column, both ways
            await desktop.click("th a:has-text('Name')")
            await expect(desktop.locator("td.name").first).to_have_text("张伟")
            await desktop.click("th a:has-text('Name')")
            await expect(desktop.locator("td.name").first).to_have_text("张敏")
            assert "sort=-name" in desktop.url

            # save it as a shared view
            await desktop.click("summary:has-text('Save view')")
            await desktop.fill(".save-view input[name=name]", "张姓客户")
            await desktop.check(".save-view input[name=shared]")
            await desktop.click(".save-view button:has-text('Save view')")
            await expect(desktop.locator("[role=status]")).to_have_text("View saved.")

            # all records again, then the view from the select (it opens on change)
            await desktop.goto(f"{base}/t/{workspace.slug}/{LIST}")
            await expect(desktop.locator("tbody tr")).to_have_count(3)
            await desktop.select_option("#view-select", label="张姓客户 (shared)")
            await desktop.wait_for_url(re.compile(r"view=\d+"))
            await expect(desktop.locator("tbody tr")).to_have_count(2)
            await expect(desktop.locator("td.name").first).to_have_text("张敏")

            # bulk-assign both rows to the sales member: the bulk actions show once a row is selected
            await expect(desktop.locator(".bulk-bar")).to_be_hidden()
            for box in await desktop.locator("tbody input[name=ids]").all():
                await box.check()
            await expect(desktop.locator(".bulk-bar")).to_be_visible()
            await desktop.select_option("#bulk-owner", label=sales.email)
            await desktop.click("button:has-text('Assign')")
            await expect(desktop.locator("[role=status]")).to_have_text("2 records assigned.")
            await expect(desktop.locator("tbody tr", has_text=sales.email)).to_have_count(2)
            await no_horizontal_scroll(desktop)
            await desktop.screenshot(path=str(SHOTS / "records-list-desktop.png"), full_page=True)

            phone_ctx = await browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True)
            phone = await phone_ctx.new_page()
            await sign_in(phone, base, workspace.email, workspace.password)
            await phone.goto(f"{base}/t/{workspace.slug}/{LIST}")
            await expect(phone.locator("tbody tr")).to_have_count(3)
            await phone.click("summary:has-text('Columns')")
            await phone.click("summary:has-text('Save view')")
            await no_horizontal_scroll(phone)
            await phone.screenshot(path=str(SHOTS / "records-list-phone.png"), full_page=True)
            await phone.goto(f"{base}/t/{workspace.slug}/settings/custom-fields")
            await no_horizontal_scroll(phone)
            await phone_ctx.close()
