"""Settings › Email sending in Debian's chromium, against the real web server: the owner chooses
their own SMTP server (the page's script shows that kind's fields alone), points it at a live SMTP
sink, saves, checks the connection and sees it work; then, on a phone (375 px) without sideways
scrolling, checks a closed port and reads the failure naming host and port. Bad input tried: a
port that is not a number."""

from __future__ import annotations

from playwright.async_api import Page, expect

from .browser import SHOTS, chromium, no_horizontal_scroll, sign_in
from .conftest import Workspace
from .live_server import free_port, web_server
from .test_email_provider import Sink, _start


async def _open(page: Page, server: str, ws: Workspace) -> None:
    await sign_in(page, server, ws.email, ws.password)
    await page.wait_for_url(f"{server}/t/{ws.slug}/**")
    await page.goto(f"{server}/t/{ws.slug}/settings/email")
    await expect(page.locator("h1")).to_have_text("Email sending")


async def test_owner_points_the_workspace_at_their_smtp_server(workspace: Workspace) -> None:
    sink, port, controller = _start()
    try:
        with web_server() as server:
            async with chromium() as browser:
                desktop = await browser.new_page(viewport={"width": 1280, "height": 900})
                await _open(desktop, server, workspace)
                smtp = desktop.locator("fieldset[data-kind=smtp]")
                ses = desktop.locator("fieldset[data-kind=ses]")
                await expect(desktop.locator("[data-field=platform]")).to_contain_text("the dev outbox")
                await expect(smtp).to_be_hidden()  # the platform's email: no fields to fill
                await desktop.check("input[name=kind][value=smtp]")
                await expect(smtp).to_be_visible()
                await expect(ses).to_be_hidden()
                await desktop.fill("input[name=smtp_host]", "127.0.0.1")
                await desktop.fill("input[name=smtp_port]", "five-eight-seven")  # bad input: not a number
                await desktop.uncheck("input[name=smtp_starttls]")  # the sink speaks plain SMTP
                await desktop.click("button[value=save]")
                await expect(desktop.locator(".field-error[data-field=smtp_port]")).to_have_text(
                    "The port must be a whole number from 1 to 65535.")
                await expect(smtp).to_be_visible()  # the choice is kept after the refusal
                await desktop.fill("input[name=smtp_port]", str(port))
                await desktop.click("button[value=save]")
                await expect(desktop.locator("[data-saved]")).to_have_text("Settings saved.")
                await expect(desktop.locator("input[name=kind][value=smtp]")).to_be_checked()
                await expect(desktop.locator("input[name=smtp_port]")).to_have_value(str(port))
                await desktop.click("button[value=check]")
                result = desktop.locator("[data-check=ok]")
                await expect(result).to_contain_text("The connection works.")
                await expect(result).to_contain_text(f"Connected to 127.0.0.1:{port}")
                await no_horizontal_scroll(desktop)
                await desktop.screenshot(path=str(SHOTS / "email-provider-desktop.png"), full_page=True)

                phone_ctx = await browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True)
                phone = await phone_ctx.new_page()
                await _open(phone, server, workspace)
                await expect(phone.locator("fieldset[data-kind=smtp]")).to_be_visible()
                await no_horizontal_scroll(phone)
                closed = free_port()
                await phone.fill("input[name=smtp_port]", str(closed))
                await phone.click("button[value=check]")
                failed = phone.locator("[data-check=failed]")
                await expect(failed).to_contain_text("The connection failed.")
                await expect(failed).to_contain_text(f"127.0.0.1:{closed} refused the connection")
                await no_horizontal_scroll(phone)
                await phone.screenshot(path=str(SHOTS / "email-provider-phone.png"), full_page=True)
                await phone.check("input[name=kind][value=ses]")
                await expect(phone.locator("fieldset[data-kind=ses]")).to_be_visible()
                await expect(phone.locator("fieldset[data-kind=smtp]")).to_be_hidden()
                await no_horizontal_scroll(phone)
                await phone_ctx.close()
    finally:
        controller.stop()
    assert isinstance(sink, Sink) and sink.envelopes == []  # a check connects and quits; it sends nothing
