"""Email templates in a real browser: writing a template with the live preview (the page's
script), previewing as a chosen contact, saving, sending a test to yourself; the same form
without JavaScript (the preview rendered by the server); every page at phone width without
sideways scrolling, in English and Chinese."""

from __future__ import annotations

from playwright.async_api import expect

from kith.platform.db import platform_tx, tenant_scope

from .browser import SHOTS, chromium, no_horizontal_scroll, sign_in
from .conftest import Workspace
from .live_server import web_server


async def _contact(ws: Workspace, name: str, email: str) -> int:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "INSERT INTO contacts (name, email, owner_id, created_by_id) VALUES ($1, $2, $3, $3) RETURNING id",
            [name, email, ws.identity_id])
    return int(rows[0]["id"])


async def test_templates_in_the_browser(workspace: Workspace) -> None:
    contact = await _contact(workspace, "陈静 Chen", "chen.jing@example.com")
    with web_server() as server:
        base = f"{server}/t/{workspace.slug}/campaigns/templates"
        async with chromium() as browser:
            desktop = await browser.new_page(viewport={"width": 1280, "height": 900})
            await sign_in(desktop, server, workspace.email, workspace.password)
            await desktop.wait_for_url(f"{server}/t/{workspace.slug}/**")
            await desktop.goto(base)
            await desktop.click("text=New template")
            await desktop.fill("input[name=name]", "新品通知")
            await desktop.fill("input[name=subject]", "{{ first_name | default('朋友') }}，新品到了")
            await desktop.fill("textarea[name=html_body]",
                               "<p data-greeting>您好 {{ name | default('朋友') }}</p><a href='https://shop.example/'>看看</a>")
            # the script refreshes the preview while typing: nobody chosen, the defaults show
            panel = desktop.locator("[data-preview-panel]")
            await expect(panel.locator("[data-preview=subject]")).to_have_text("朋友，新品到了")
            frame = desktop.frame_locator("iframe[data-preview=html]")
            await expect(frame.locator("[data-greeting]")).to_have_text("您好 朋友")
            await expect(frame.locator("text=Unsubscribe")).to_be_visible()
            # preview as a contact
            await desktop.select_option("select[name=contact_id]", str(contact))
            await expect(panel.locator("[data-preview=subject]")).to_have_text("陈静，新品到了")
            await expect(frame.locator("[data-greeting]")).to_have_text("您好 陈静 Chen")
            await expect(panel.locator("[data-preview=who]")).to_have_text("As 陈静 Chen")
            # a mistake shows in the preview at once, and at its field when saving
            await desktop.fill("input[name=subject]", "{{ 1 // 0 }}")
            await expect(panel.locator("[data-preview=error]")).to_contain_text("division by zero")
            await desktop.fill("input[name=subject]", "{{ frist_name }}")
            await desktop.click("button[value=save]")
            await expect(desktop.locator(".field-error[data-field=subject]")).to_contain_text(
                "{{ frist_name }} is not a field you can use")
            await desktop.fill("input[name=subject]", "{{ first_name | default('朋友') }}，新品到了")
            await desktop.click("button[value=save]")
            await expect(desktop.locator("[role=status]")).to_have_text("Template saved.")
            await no_horizontal_scroll(desktop)
            await desktop.click("button[value=test]")
            await expect(desktop.locator("[data-field=sent]")).to_contain_text(f"Test email sent to {workspace.email}")
            await desktop.screenshot(path=str(SHOTS / "email-template-desktop.png"), full_page=True)
            await desktop.goto(base)
            await expect(desktop.locator("td.name")).to_have_text("新品通知")

            # without JavaScript: the Preview button renders the preview on the server
            plain_ctx = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                                  java_script_enabled=False)
            plain = await plain_ctx.new_page()
            await sign_in(plain, server, workspace.email, workspace.password)
            await plain.wait_for_url(f"{server}/t/{workspace.slug}/**")
            await plain.goto(f"{base}/new")
            await expect(plain.locator("[data-preview=who]")).to_have_text(
                "Press Preview to see the email filled in for the contact you chose.")
            await plain.fill("input[name=name]", "无脚本")
            await plain.fill("input[name=subject]", "Hi {{ first_name }}")
            await plain.fill("textarea[name=text_body]", "Hello {{ name }}")
            await plain.fill("input[name=contact_q]", "陈静")
            await plain.click("button[value=find]")
            await plain.select_option("select[name=contact_id]", str(contact))
            await plain.click(".template-actions button[value=preview]")
            await expect(plain.locator("[data-preview=subject]")).to_have_text("Hi 陈静")
            await expect(plain.locator("[data-preview=text]")).to_contain_text("Hello 陈静 Chen")
            await expect(plain.locator("input[name=name]")).to_have_value("无脚本")  # nothing typed is lost
            await expect(plain.frame_locator("iframe[data-preview=html]").locator("p")).to_have_text(
                "Text only: this template has no HTML body.")
            await no_horizontal_scroll(plain)
            await plain.screenshot(path=str(SHOTS / "email-template-phone.png"), full_page=True)
            await plain_ctx.close()

            # every page at phone width, in Chinese too
            phone_ctx = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone = await phone_ctx.new_page()
            await sign_in(phone, server, workspace.email, workspace.password)
            await phone.wait_for_url(f"{server}/t/{workspace.slug}/**")
            async with tenant_scope(workspace.tenant_id) as tx:
                rows = await tx.execute_query_dict("SELECT id FROM email_templates WHERE name = '新品通知'")
            edit = f"{base}/{rows[0]['id']}"
            for url in (base, f"{base}/new", edit, f"{edit}/delete"):
                await phone.goto(url)
                await no_horizontal_scroll(phone)
            async with platform_tx() as tx:
                await tx.execute_query("UPDATE public.tenants SET locale = 'zh-CN' WHERE id = $1",
                                       [workspace.tenant_id])
            await phone.goto(edit)
            await expect(phone.locator("h1")).to_have_text("编辑邮件模板")
            await expect(phone.locator("button[value=test]")).to_have_text("给我发送测试邮件")
            await no_horizontal_scroll(phone)
            await phone.screenshot(path=str(SHOTS / "email-template-phone-zh.png"), full_page=True)
    async with platform_tx() as tx:
        sent = await tx.execute_query_dict(
            "SELECT subject FROM public.outbox_emails WHERE to_address = $1 AND kind = 'campaign'", [workspace.email])
    assert [r["subject"] for r in sent] == ["[Test] " + workspace.email.split("@")[0] + "，新品到了"]
