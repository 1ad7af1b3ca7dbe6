"""A zh-CN workspace in a real browser (Debian's chromium via Playwright) at phone width: the
contacts list, the form (with a national number read in the CN region) and search, in Chinese."""

from __future__ import annotations

from playwright.async_api import expect

from .browser import SHOTS, chromium, no_horizontal_scroll
from .conftest import Services, unique_slug
from .live_server import web_server, worker


async def test_zh_cn_contacts_at_phone_width(db: Services) -> None:
    slug = unique_slug("zh")
    email = f"owner@{slug}.example.com"
    password = "a long passphrase 42"
    with web_server() as base, worker():
        async with chromium() as browser:
            ctx = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                            locale="zh-CN")
            phone = await ctx.new_page()
            # signup stays out of this test's Chinese checks (its page is translated separately)
            await phone.goto(f"{base}/signup")
            await phone.fill("input[name=company_name]", "示例贸易")
            await phone.fill("input[name=slug]", slug)
            await phone.fill("input[name=email]", email)
            await phone.fill("input[name=password]", password)
            await phone.click("button[type=submit]")
            await phone.wait_for_url(f"{base}/t/{slug}/contacts")
            # the workspace's own settings switch it to Chinese with China's phone region
            await phone.goto(f"{base}/t/{slug}/settings/workspace")
            await phone.select_option("select[name=locale]", "zh-CN")
            await phone.select_option("select[name=default_phone_region]", "CN")
            await phone.click("form:has([name=locale]) button[type=submit]")
            await expect(phone.locator("html")).to_have_attribute("lang", "zh-CN")

            await phone.goto(f"{base}/t/{slug}/contacts")
            await expect(phone.locator("h1")).to_have_text("联系人")
            await expect(phone.locator(".empty")).to_contain_text("还没有记录")
            for name, number, company in (("张伟", "138 0013 8000", "上海云图科技有限公司"),
                                          ("王芳", "139 1234 5678", "北京星河贸易")):
                await phone.click("text=新建联系人")
                await expect(phone.locator("h1")).to_have_text("新建联系人")
                await phone.fill("input[name=name]", name)
                await phone.fill("input[name=phone]", number)
                await phone.fill("input[name=company_name]", company)
                await phone.click("button:has-text('保存')")
                await expect(phone.locator("[role=status]")).to_have_text("联系人已添加。")
            await expect(phone.locator("tbody tr")).to_have_count(2)
            await expect(phone.locator("tr", has_text="张伟")).to_contain_text("+86 138 0013 8000")
            assert not await phone.locator("thead").is_visible()  # cards at phone width
            await no_horizontal_scroll(phone)

            await phone.fill("input[name=q]", "云图")
            await phone.click("button:has-text('搜索')")
            await expect(phone.locator("tbody tr")).to_have_count(1)
            await expect(phone.locator("td.name")).to_have_text("张伟")
            await expect(phone.locator("td[data-label='电话']")).to_have_text("+86 138 0013 8000")
            await no_horizontal_scroll(phone)
            await phone.screenshot(path=str(SHOTS / "contacts-zh-phone.png"), full_page=True)

            # a number impossible in China is refused, in Chinese, naming the region
            await phone.click("text=新建联系人")
            await phone.fill("input[name=name]", "李娜")
            await phone.fill("input[name=phone]", "123")
            await phone.click("button:has-text('保存')")
            await expect(phone.locator('[data-field="phone"]')).to_contain_text("不是 CN 地区可能的电话号码")
            await no_horizontal_scroll(phone)
            await phone.screenshot(path=str(SHOTS / "contact-form-zh-phone.png"), full_page=True)
            await ctx.close()
