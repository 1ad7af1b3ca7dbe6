"""Signup -> contacts CRUD -> search in a real browser (Debian's chromium via Playwright),
against the real web server and worker processes, at desktop and phone widths."""

from __future__ import annotations

from playwright.async_api import expect

from .browser import SHOTS, chromium, no_horizontal_scroll
from .conftest import Services, unique_slug
from .live_server import web_server, worker


async def test_signup_and_contacts_in_the_browser(db: Services) -> None:
    slug = unique_slug("browser")
    email = f"owner@{slug}.example.com"
    password = "a long passphrase 42"
    with web_server() as base, worker():
        async with chromium() as browser:
            desktop = await browser.new_page(viewport={"width": 1280, "height": 800})
            await desktop.goto(f"{base}/signup")
            # bad input first: a reserved address is refused with a message, nothing created
            await desktop.fill("input[name=company_name]", "示例贸易 Demo")
            await desktop.fill("input[name=slug]", "admin")
            await desktop.fill("input[name=email]", email)
            await desktop.fill("input[name=password]", password)
            await desktop.click("button[type=submit]")
            await expect(desktop.locator('[data-field="slug"]')).to_contain_text("reserved")
            await desktop.fill("input[name=slug]", slug)
            await desktop.fill("input[name=password]", password)
            await desktop.click("button[type=submit]")
            await desktop.wait_for_url(f"{base}/t/{slug}/contacts")
            await expect(desktop.locator(".workspace")).to_have_text("示例贸易 Demo")

            # create
            for name, mail, company in (("张伟", "zhang.wei@example.cn", "上海云图科技有限公司"),
                                        ("Emily Carter", "emily@northwind.example.com", "Northwind Traders")):
                await desktop.click("text=New contact")
                await desktop.fill("input[name=name]", name)
                await desktop.fill("input[name=email]", mail)
                await desktop.fill("input[name=phone]", "+86 138 0013 8000")
                await desktop.fill("input[name=company_name]", company)
                await desktop.click("button:has-text('Save')")
                await expect(desktop.locator("[role=status]")).to_have_text("Contact added.")
            await expect(desktop.locator("tbody tr")).to_have_count(2)

            # search, in Chinese and in English
            await desktop.fill("input[name=q]", "云图")
            await desktop.click("button:has-text('Search')")
            await expect(desktop.locator("tbody tr")).to_have_count(1)
            await expect(desktop.locator("td.name")).to_have_text("张伟")
            await desktop.fill("input[name=q]", "northwind")
            await desktop.click("button:has-text('Search')")
            await expect(desktop.locator("td.name")).to_have_text("Emily Carter")

            # edit from the contact's page, with a bad email first
            await desktop.click("td.name a")
            await desktop.click("a:has-text('Edit')")
            await desktop.fill("input[name=email]", "not-an-email")
            await desktop.click("button:has-text('Save')")
            await expect(desktop.locator('[data-field="email"]')).to_be_visible()
            await desktop.fill("input[name=email]", "emily@contoso.example.com")
            await desktop.fill("input[name=company_name]", "Contoso Ltd")
            await desktop.click("button:has-text('Save')")
            await expect(desktop.locator("[role=status]")).to_have_text("Contact saved.")
            await expect(desktop.locator("text=Contoso Ltd")).to_be_visible()
            await desktop.screenshot(path=str(SHOTS / "contacts-desktop.png"), full_page=True)

            # delete, after a confirmation page
            await desktop.locator("tr", has_text="Emily Carter").locator("td.name a").click()
            await desktop.click("a:has-text('Delete')")
            await expect(desktop.locator("h1")).to_have_text("Delete contact")
            await desktop.click("button:has-text('Delete')")
            await expect(desktop.locator("[role=status]")).to_have_text("Contact deleted.")
            await expect(desktop.locator("tbody tr")).to_have_count(1)

            # the worker delivered the welcome email to the dev outbox
            for _ in range(40):
                await desktop.goto(f"{base}/dev/outbox")
                if await desktop.locator("article.email").count():
                    break
                await desktop.wait_for_timeout(250)
            await expect(desktop.locator("article.email").first).to_contain_text("示例贸易 Demo")

            # a phone-width session: cards, no sideways scrolling
            phone_ctx = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone = await phone_ctx.new_page()
            await phone.goto(f"{base}/login")
            await phone.fill("input[name=email]", email)
            await phone.fill("input[name=password]", password)
            await phone.click("button[type=submit]")
            await phone.wait_for_url(f"{base}/t/{slug}/contacts")
            await expect(phone.locator("td.name")).to_have_text("张伟")
            assert not await phone.locator("thead").is_visible()
            await no_horizontal_scroll(phone)
            await phone.goto(f"{base}/t/{slug}/contacts/new")
            await no_horizontal_scroll(phone)
            await phone.screenshot(path=str(SHOTS / "contacts-phone.png"), full_page=True)
            await phone_ctx.close()
