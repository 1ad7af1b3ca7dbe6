"""The public unsubscribe page in Debian's chromium, against the real web server: a recipient of a
zh-CN workspace reads it in Chinese on a desktop and on a 390px phone (no sideways scrolling, even
with a long address), presses the button and is unsubscribed at once, without an account; an
English workspace's page reads in English; a broken link says so in the browser's language."""

from __future__ import annotations

from playwright.async_api import expect

from kith.platform.db import tenant_scope
from kith.tenants.campaigns import links

from .browser import SHOTS, chromium, no_horizontal_scroll
from .conftest import Services, make_workspace
from .live_server import web_server
from .test_campaign_tracking import sent_email, state, tampered


async def test_unsubscribe_page_in_chinese_at_phone_and_desktop_width(db: Services) -> None:
    ws = await make_workspace("unsub-zh", "星河贸易有限公司")
    async with tenant_scope(ws.tenant_id) as tx:
        await tx.execute_query("UPDATE public.tenants SET locale = 'zh-CN' WHERE id = $1", [ws.tenant_id])
    long_address = "wang.xiaoming.marketing-department-newsletters@subscribers.long-domain-name.example.org"
    zh = await sent_email(ws, long_address, name="春季促销")
    en_ws = await make_workspace("unsub-en", "Harbour Supplies")
    en = await sent_email(en_ws)
    with web_server() as base:
        async with chromium() as browser:
            desktop = await browser.new_page(viewport={"width": 1280, "height": 800})
            await desktop.goto(f"{base}/e/u/{links.unsubscribe_token(ws.tenant_id, zh.recipient_id)}")
            await expect(desktop.locator("html")).to_have_attribute("lang", "zh-CN")
            await expect(desktop.locator("h1")).to_have_text("退订营销邮件")
            await expect(desktop.locator("[data-field=workspace]")).to_have_text("星河贸易有限公司")
            await expect(desktop.locator("[data-field=email]")).to_have_text(long_address)
            await expect(desktop.locator("button[type=submit]")).to_have_text("退订")
            await no_horizontal_scroll(desktop)
            await desktop.screenshot(path=str(SHOTS / "unsubscribe-zh-desktop.png"), full_page=True)

            phone_ctx = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone = await phone_ctx.new_page()
            await phone.goto(f"{base}/e/u/{links.unsubscribe_token(ws.tenant_id, zh.recipient_id)}")
            await expect(phone.locator("h1")).to_have_text("退订营销邮件")
            await no_horizontal_scroll(phone)
            await phone.screenshot(path=str(SHOTS / "unsubscribe-zh-phone.png"), full_page=True)
            await phone.click("button[type=submit]")
            await expect(phone.locator("h1")).to_have_text("您已退订")
            await expect(phone.locator("[role=status]")).to_contain_text("星河贸易有限公司 将不再向此地址发送营销邮件")
            await no_horizontal_scroll(phone)
            await phone.screenshot(path=str(SHOTS / "unsubscribe-zh-phone-done.png"), full_page=True)
            after = await state(zh)
            assert after["contact"]["marketing_consent"] == "withdrawn" and after["suppressed"] == "unsubscribed"

            # the desktop page, reloaded, knows it is done
            await desktop.reload()
            await expect(desktop.locator("[role=status]")).to_contain_text("此地址已退订")
            await expect(desktop.locator("button[type=submit]")).to_have_count(0)
            await phone_ctx.close()

            await desktop.goto(f"{base}/e/u/{links.unsubscribe_token(en_ws.tenant_id, en.recipient_id)}")
            await expect(desktop.locator("html")).to_have_attribute("lang", "en")
            await expect(desktop.locator("h1")).to_have_text("Unsubscribe from marketing emails")
            await expect(desktop.locator("[data-field=workspace]")).to_have_text("Harbour Supplies")

            zh_browser = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                                   locale="zh-CN")
            broken = await zh_browser.new_page()
            token = tampered(links.unsubscribe_token(ws.tenant_id, zh.recipient_id))
            response = await broken.goto(f"{base}/e/u/{token}")
            assert response is not None and response.status == 404
            await expect(broken.locator("h1")).to_have_text("此链接无效")
            await no_horizontal_scroll(broken)
            await zh_browser.close()
