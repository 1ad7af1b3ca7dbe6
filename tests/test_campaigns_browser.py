"""Campaigns in a real browser (Debian's chromium) against the real web server. On a desktop, in
English: from the main nav to Segments, a new segment whose live count follows the filter as it
is typed, saved; a new campaign from it whose template select copies the template's subject and
bodies in; Start now, the progress while nothing is sent yet; then the test sends the campaign
in-process (kith.tenants.campaigns.sending.send_campaign, the dev outbox) and the page's poller
notices and shows the report with its chart. On a phone (390px) in Chinese: the campaigns list,
the sent campaign's page with its report, a draft refused at Start naming its problems, and the
segment editor, none wider than the screen."""

from __future__ import annotations

from playwright.async_api import expect

from kith.platform.db import platform_tx, tenant_scope
from kith.tenants.campaigns.sending import send_campaign

from .browser import SHOTS, chromium, no_horizontal_scroll, sign_in
from .conftest import Workspace
from .factories import owner_token
from .live_server import web_server
from .web_helpers import client

WAIT_MS = 30_000  # the poller checks every 2 s; two cores are shared with other tests


async def _contacts(ws: Workspace) -> None:
    async with tenant_scope(ws.tenant_id) as tx:
        for name, email, consent, stage in (("张伟", "zhang.wei@example.cn", "granted", "customer"),
                                            ("Ada Lovelace", "ada@example.com", "granted", "customer"),
                                            ("李娜", "li.na@example.cn", "unknown", "customer"),
                                            ("Grace", "grace@example.com", "granted", "lead")):
            await tx.execute_query(
                "INSERT INTO contacts (name, email, marketing_consent, lifecycle_stage, owner_id)"
                " VALUES ($1, $2, $3, $4, $5)", [name, email, consent, stage, ws.identity_id])


async def test_segment_campaign_progress_report_and_phone_in_chinese(workspace: Workspace) -> None:
    await _contacts(workspace)
    async with client(headers=await owner_token(workspace)) as c:
        template = await c.post("/api/v1/email-templates", json={
            "name": "双十一模板", "subject": "{{ first_name | default('朋友') }}，双十一快乐",
            "html_body": "<p>你好 {{ name }}，<a href=\"https://example.com/sale\">看看新品</a></p>",
            "text_body": "你好 {{ name }}"})
        assert template.status_code == 201, template.text
    slug = workspace.slug
    with web_server() as base:
        async with chromium() as browser:
            desktop = await browser.new_page(viewport={"width": 1280, "height": 900})
            await sign_in(desktop, base, workspace.email, workspace.password)
            await desktop.goto(f"{base}/t/{slug}/contacts")
            await desktop.click("nav.nav >> text=Campaigns")
            await expect(desktop.locator("h1")).to_have_text("Campaigns")
            await desktop.click(".campaign-tabs >> text=Segments")
            await desktop.click("a.button:has-text('New segment')")

            # the live count follows the filter: everyone first, then the customers
            output = desktop.locator("[data-count-output]")
            await expect(output).to_contain_text("4 contacts match; a campaign would reach 3 of them.")
            await desktop.fill("input[name=name]", "双十一客户")
            row = desktop.locator("[data-part=filters] [data-filter-row]").first
            await row.locator("select[name=ff]").select_option("lifecycle_stage")
            await expect(row.locator("select[name=fo]")).to_have_value("eq")
            await row.locator("input[name=fv]").fill("customer")
            await expect(output).to_contain_text("3 contacts match; a campaign would reach 2 of them.")
            await expect(output).to_contain_text("1 have not consented to marketing email")
            # a value the field does not take: the count says why instead
            await row.locator("select[name=ff]").select_option("last_activity_at")
            await row.locator("select[name=fo]").select_option("gte")
            await row.locator("input[name=fv]").fill("someday")
            await expect(output).to_have_class("error")
            await row.locator("select[name=ff]").select_option("lifecycle_stage")
            await row.locator("select[name=fo]").select_option("eq")
            await row.locator("input[name=fv]").fill("customer")
            await expect(output).to_contain_text("a campaign would reach 2 of them.")
            await no_horizontal_scroll(desktop)
            await desktop.screenshot(path=str(SHOTS / "campaigns-segment-desktop.png"), full_page=True)
            await desktop.click("[data-action=save]")
            await expect(desktop.locator(".notice")).to_have_text("Segment saved.")
            segment_url = desktop.url.split("?")[0]

            # a campaign from it; the template select copies the template in
            await desktop.click(".campaign-head a:has-text('New campaign')")
            await expect(desktop.locator("select[name=segment_id] option:checked")).to_have_text("双十一客户")
            await desktop.fill("input[name=name]", "双十一促销")
            await desktop.select_option("select[name=template_id]", label="双十一模板")
            await expect(desktop.locator("input[name=subject]")).to_have_value(
                "{{ first_name | default('朋友') }}，双十一快乐")
            await expect(desktop.locator("input[name=name]")).to_have_value("双十一促销")
            await expect(desktop.locator("textarea[name=text_body]")).to_have_value("你好 {{ name }}")
            await desktop.fill("input[name=from_name]", "星辰科技")
            await desktop.fill("input[name=from_email]", "news@example.com")
            await desktop.click("button[value=save]")
            await expect(desktop.locator(".notice")).to_contain_text("Campaign created.")
            await expect(desktop.locator("[data-field=reach]")).to_contain_text("a campaign would reach 2 of them")
            campaign_url = desktop.url.split("?")[0]
            campaign_id = int(campaign_url.rsplit("/", 1)[1])

            # start: the progress shows while nothing is sent (no worker runs here)
            await desktop.click("[data-action=start]")
            await expect(desktop.locator(".notice")).to_have_text("Sending started.")
            progress = desktop.locator("[data-campaign-progress]")
            await expect(progress.locator("[data-field=done]")).to_have_text("0 of 2 recipients done")
            await expect(progress.locator("[data-count=pending]")).to_have_text("2")
            await expect(desktop.locator("[data-action=pause]")).to_be_visible()
            await desktop.screenshot(path=str(SHOTS / "campaigns-progress-desktop.png"), full_page=True)

            # sent in-process; the page's poller sees the status change and shows the report
            report = await send_campaign(workspace.tenant_id, campaign_id, seconds=30)
            assert (report.sent, report.finished) == (2, True)
            section = desktop.locator("[data-section=report]")
            await expect(section).to_be_visible(timeout=WAIT_MS)
            await expect(desktop.locator(".campaign-head [data-status]")).to_have_text("Sent")
            await expect(section.locator("[data-report=sent]")).to_have_text("2")
            await expect(section.locator("[data-rate=opened]")).to_have_text("0.0%")
            await expect(section.locator("svg.campaign-chart")).to_be_visible()
            await expect(desktop.locator("[data-campaign-progress]")).to_have_count(0)
            await no_horizontal_scroll(desktop)
            await desktop.screenshot(path=str(SHOTS / "campaigns-report-desktop.png"), full_page=True)
            await desktop.goto(f"{base}/t/{slug}/campaigns")
            await expect(desktop.locator(f"tr[data-campaign-id='{campaign_id}']")).to_contain_text("Sent")

            # a phone, in Chinese
            async with platform_tx() as tx:
                await tx.execute_query("UPDATE public.tenants SET locale = 'zh-CN' WHERE id = $1",
                                       [workspace.tenant_id])
            phone_ctx = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone = await phone_ctx.new_page()
            await sign_in(phone, base, workspace.email, workspace.password)
            await phone.goto(f"{base}/t/{slug}/campaigns")
            await expect(phone.locator("h1")).to_have_text("营销活动")
            await expect(phone.locator(f"tr[data-campaign-id='{campaign_id}']")).to_contain_text("已发送")
            await no_horizontal_scroll(phone)
            await phone.goto(campaign_url)
            await expect(phone.locator("[data-section=report] h2")).to_have_text("报告")
            await expect(phone.locator("svg.campaign-chart title")).to_have_text("发送、打开和点击随时间的变化")
            await no_horizontal_scroll(phone)
            await phone.screenshot(path=str(SHOTS / "campaigns-report-phone.png"), full_page=True)

            # a draft without a from-address: Start is refused and the page says why, in Chinese
            await phone.goto(f"{base}/t/{slug}/campaigns/new")
            await phone.fill("input[name=name]", "草稿活动")
            await phone.select_option("select[name=segment_id]", label="双十一客户")
            await phone.fill("input[name=subject]", "你好")
            await phone.fill("textarea[name=text_body]", "你好 {{ name }}")
            await phone.click("button[value=save]")
            await expect(phone.locator(".notice")).to_contain_text("营销活动已创建")
            await expect(phone.locator("input[name=at]")).to_be_visible()
            await expect(phone.locator("[data-section=actions] .hint")).to_contain_text("UTC")
            await no_horizontal_scroll(phone)
            await phone.click("[data-action=start]")
            problems = phone.locator("[data-problems]")
            await expect(problems).to_contain_text("此营销活动还不能开始")
            await expect(problems.locator("[data-problem=from_email]")).to_contain_text("营销活动没有发件地址。")
            await no_horizontal_scroll(phone)
            await phone.screenshot(path=str(SHOTS / "campaigns-refused-phone.png"), full_page=True)

            await phone.goto(segment_url)
            await expect(phone.locator("[data-count-output]")).to_contain_text("营销活动可以送达其中 2 位")
            await expect(phone.locator("[data-part=filters] legend")).to_have_text("联系人条件")
            await no_horizontal_scroll(phone)
            await phone.screenshot(path=str(SHOTS / "campaigns-segment-phone.png"), full_page=True)
            await phone_ctx.close()
