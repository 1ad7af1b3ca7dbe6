"""Invite a colleague, open the emailed link from the dev outbox, accept, sign in as them;
switch the workspace to Simplified Chinese — in Debian's chromium via Playwright, against the
real web server and worker processes, at desktop and phone widths."""

from __future__ import annotations

import re

from playwright.async_api import expect

from .browser import SHOTS, chromium, no_horizontal_scroll, sign_in
from .conftest import Services, make_workspace
from .live_server import web_server, worker


async def test_invite_accept_and_chinese_ui_in_the_browser(db: Services) -> None:
    ws = await make_workspace("invite-browser", "Browser Co")
    colleague = f"colleague@{ws.slug}.example.com"
    colleague_password = "colleague passphrase 9"
    with web_server() as base, worker():
        async with chromium() as browser:
            owner = await browser.new_page(viewport={"width": 1280, "height": 800})
            await sign_in(owner, base, ws.email, ws.password)
            await owner.wait_for_url(f"{base}/t/{ws.slug}/contacts")
            await owner.click("nav[aria-label=Workspace] >> text=Settings")
            await owner.click("nav[aria-label=Settings] >> text=Members")
            await owner.fill("#invite input[name=email]", colleague)
            await owner.select_option("#invite select[name=role]", "support")
            await owner.click("#invite button[type=submit]")
            await expect(owner.locator("[role=status]")).to_have_text("Invitation sent.")
            await expect(owner.locator("tr[data-invitation]")).to_contain_text(colleague)

            # the worker delivers the invitation to the dev outbox
            email = owner.locator("article.email[data-kind=invitation]")
            for _ in range(60):
                await owner.goto(f"{base}/dev/outbox")
                if await email.count() and "· outbox" in await email.first.inner_text():
                    break
                await owner.wait_for_timeout(250)
            body = await email.first.locator("pre").inner_text()
            link = re.search(r"https?://\S+/invite/\S+", body)
            assert link, body

            # the colleague accepts in their own browser, then signs out and in again
            ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
            guest = await ctx.new_page()
            await guest.goto(link.group(0))
            await expect(guest.locator("h1")).to_have_text("Join Browser Co")
            await guest.fill("input[name=display_name]", "王芳 Wang Fang")
            await guest.fill("input[name=password]", colleague_password)
            await guest.click("button:has-text('Create account and join')")
            await guest.wait_for_url(f"{base}/t/{ws.slug}/contacts")
            await guest.click("button:has-text('Sign out')")
            await sign_in(guest, base, colleague, colleague_password)
            await guest.wait_for_url(f"{base}/t/{ws.slug}/contacts")
            await ctx.close()

            # the owner switches the workspace to Simplified Chinese
            await owner.goto(f"{base}/t/{ws.slug}/settings/workspace")
            await owner.select_option("select[name=locale]", "zh-CN")
            await owner.fill("input[name=time_zone]", "Asia/Shanghai")
            await owner.click("form[enctype] button[type=submit]")
            await expect(owner.locator("[role=status]")).to_have_text("设置已保存。")
            await expect(owner.locator("nav[aria-label=Workspace]")).to_contain_text("联系人")
            await owner.goto(f"{base}/t/{ws.slug}/settings/members")
            await expect(owner.locator("h2").first).to_have_text("邀请同事")
            await expect(owner.locator("tr", has_text=colleague)).to_contain_text("停用")
            await owner.screenshot(path=str(SHOTS / "members-zh-desktop.png"), full_page=True)

            # the colleague, on a phone, sees the Chinese UI without sideways scrolling
            phone_ctx = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone = await phone_ctx.new_page()
            await sign_in(phone, base, colleague, colleague_password)
            await phone.wait_for_url(f"{base}/t/{ws.slug}/contacts")
            await expect(phone.locator("nav[aria-label=Workspace]")).to_contain_text("联系人")
            await no_horizontal_scroll(phone)
            await phone_ctx.close()
            owner_phone_ctx = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
            owner_phone = await owner_phone_ctx.new_page()
            await sign_in(owner_phone, base, ws.email, ws.password)
            await owner_phone.wait_for_url(f"{base}/t/{ws.slug}/contacts")
            for page in ("members", "workspace", "usage"):
                await owner_phone.goto(f"{base}/t/{ws.slug}/settings/{page}")
                await no_horizontal_scroll(owner_phone)
            await owner_phone.screenshot(path=str(SHOTS / "usage-zh-phone.png"), full_page=True)
            await owner_phone_ctx.close()
