"""The campaigns API and pages in-process: a segment counted before it is saved, a campaign made
from it, started with the dev outbox (the default provider), sent by
kith.tenants.campaigns.sending.send_campaign run here, and its report; the bad input each route
refuses (a segment that reaches nobody, an invalid from-address, a schedule in the past or
without an offset, pausing a draft, an unknown filter field, editing a sent campaign, deleting a
segment in use); who may send (a sales member is refused naming 'campaigns: edit', a custom
role without manage_campaigns naming that) and that another workspace sees none of it (404);
the OpenAPI document; and the pages without JavaScript: the segment editor's Count button, a
schedule typed in the workspace's time zone, the refused start naming its problems, cancel."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx

from kith.platform.db import platform_tx, tenant_scope
from kith.tenants.campaigns.sending import send_campaign
from kith.tenants.campaigns.tracking import record_open

from .conftest import Services, Workspace
from .factories import add_member, owner_token
from .web_helpers import assert_error, client, csrf_from, login

API = "/api/v1"
CONTENT = {"subject": "{{ first_name | default('朋友') }}，双十一快乐",
           "html_body": "<p>你好 {{ name }}，<a href=\"https://example.com/sale\">看看新品</a></p>",
           "text_body": "你好 {{ name }}", "from_name": "星辰科技", "from_email": "news@example.com"}


async def contacts(ws: Workspace, rows: list[tuple[str, str, str, str]]) -> None:
    """(name, email, marketing consent, lifecycle stage) contacts owned by the workspace's owner."""
    async with tenant_scope(ws.tenant_id) as tx:
        for name, email, consent, stage in rows:
            await tx.execute_query(
                "INSERT INTO contacts (name, email, marketing_consent, lifecycle_stage, owner_id)"
                " VALUES ($1, $2, $3, $4, $5)", [name, email, consent, stage, ws.identity_id])


async def outbox(ws: Workspace) -> list[str]:
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT to_address FROM public.outbox_emails WHERE tenant_id = $1 AND kind = 'campaign'"
            " ORDER BY to_address", [ws.tenant_id])
    return [r["to_address"] for r in rows]


async def made(c: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = await c.post(API + path, json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def test_segment_campaign_start_send_and_report(workspace: Workspace) -> None:
    await contacts(workspace, [
        ("张伟", "zhang.wei@example.cn", "granted", "customer"),
        ("Ada Lovelace", "ada@example.com", "granted", "customer"),
        ("李娜", "li.na@example.cn", "unknown", "customer"),   # no consent: counted, never sent to
        ("No Mail", "", "granted", "customer"),                # no address
        ("Grace", "grace@example.com", "granted", "lead"),     # not in the segment
    ])
    definition = {"filters": ["lifecycle_stage:eq:customer"]}
    async with client(headers=await owner_token(workspace)) as c:
        counted = await c.post(f"{API}/segments/count", json={"definition": definition})
        assert counted.status_code == 200, counted.text
        assert counted.json() == {"contacts": 4, "reachable": 2, "without_email": 1, "without_consent": 1}
        segment = await made(c, "/segments", {"name": "客户", "definition": definition})
        assert segment["definition"]["filters"] == ["lifecycle_stage:eq:customer"]
        got = (await c.get(f"{API}/segments/{segment['id']}")).json()
        assert got["counts"]["reachable"] == 2
        assert [s["name"] for s in (await c.get(f"{API}/segments")).json()["items"]] == ["客户"]

        campaign = await made(c, "/campaigns", {"name": "双十一", "segment_id": segment["id"], **CONTENT})
        assert campaign["status"] == "draft" and campaign["from_email"] == "news@example.com"
        renamed = await c.patch(f"{API}/campaigns/{campaign['id']}", json={"name": "双十一促销"})
        assert renamed.status_code == 200 and renamed.json()["name"] == "双十一促销"

        started = await c.post(f"{API}/campaigns/{campaign['id']}/start")
        assert started.status_code == 200, started.text
        assert started.json()["status"] == "sending" and started.json()["recipients_total"] == 2
        progress = (await c.get(f"{API}/campaigns/{campaign['id']}")).json()["progress"]
        assert progress == {"pending": 2, "sent": 0, "failed": 0, "suppressed": 0}

        report = await send_campaign(workspace.tenant_id, campaign["id"], seconds=30)
        assert (report.sent, report.finished) == (2, True)
        assert await outbox(workspace) == ["ada@example.com", "zhang.wei@example.cn"]
        done = (await c.get(f"{API}/campaigns/{campaign['id']}")).json()
        assert done["status"] == "sent" and done["progress"]["sent"] == 2 and done["finished_at"]
        listed = (await c.get(f"{API}/campaigns")).json()["items"]
        assert [(i["name"], i["status"], i["sent"]) for i in listed] == [("双十一促销", "sent", 2)]

        async with tenant_scope(workspace.tenant_id) as tx:  # one recipient opens the email
            first = (await tx.execute_query_dict(
                "SELECT id FROM campaign_recipients WHERE email = 'ada@example.com'"))[0]["id"]
        assert await record_open(workspace.tenant_id, first)
        report_body = (await c.get(f"{API}/campaigns/{campaign['id']}/report")).json()
        assert report_body["campaign"]["status"] == "sent"
        assert report_body["counts"]["sent"] == 2 and report_body["counts"]["opened"] == 1
        assert report_body["rates"]["opened"] == 0.5 and report_body["rates"]["clicked"] == 0.0
        points = report_body["series"]["points"]
        assert sum(p["sent"] for p in points) == 2 and sum(p["opened"] for p in points) == 1

        # bad input after the fact: a sent campaign is not edited, a segment in use not deleted
        assert_error(await c.patch(f"{API}/campaigns/{campaign['id']}", json={"subject": "迟了"}), 409, "wrong_state")
        assert_error(await c.delete(f"{API}/segments/{segment['id']}"), 409, "in_use")
        assert_error(await c.post(f"{API}/campaigns/{campaign['id']}/start"), 409, "wrong_state")


async def test_bad_input_is_refused_naming_the_problem(workspace: Workspace) -> None:
    await contacts(workspace, [("李娜", "li.na@example.cn", "unknown", "customer"),
                               ("王芳", "wang@example.cn", "granted", "lead")])
    async with client(headers=await owner_token(workspace)) as c:
        # a filter on a field contacts do not have, an operator the field does not take
        unknown = assert_error(await c.post(f"{API}/segments", json={
            "name": "Bad", "definition": {"filters": ["shoe_size:eq:42"]}}), 422, "invalid_segment")
        assert "shoe_size" in unknown["message"]
        assert_error(await c.post(f"{API}/segments/count", json={"definition": {"filters": ["name"]}}), 422)
        assert_error(await c.post(f"{API}/segments/count", json={"definition": {"engagement": {
            "campaign_id": 1, "event": "liked"}}}), 422, "invalid_input")
        assert_error(await c.post(f"{API}/segments", content=b"{not json"), 400, "invalid_json")

        # a segment whose only contact never consented: the start names the segment and why
        nobody = await made(c, "/segments", {"name": "没有同意的客户",
                                             "definition": {"filters": ["lifecycle_stage:eq:customer"]}})
        campaign = await made(c, "/campaigns", {"name": "空", "segment_id": nobody["id"], **CONTENT})
        empty = assert_error(await c.post(f"{API}/campaigns/{campaign['id']}/start"), 422, "not_ready")
        assert "没有同意的客户" in empty["fields"]["segment_id"] and "reaches nobody" in empty["message"]
        assert set(empty["fields"]) == {"segment_id"}

        # an invalid from-address, on a segment that does reach someone
        leads = await made(c, "/segments", {"name": "Leads", "definition": {"filters": ["lifecycle_stage:eq:lead"]}})
        bad_from = await made(c, "/campaigns", {"name": "Bad sender", "segment_id": leads["id"],
                                                **CONTENT, "from_email": "not an address"})
        refused = assert_error(await c.post(f"{API}/campaigns/{bad_from['id']}/start"), 422, "not_ready")
        assert set(refused["fields"]) == {"from_email"} and "not an address" in refused["fields"]["from_email"]
        assert (await c.get(f"{API}/campaigns/{bad_from['id']}")).json()["status"] == "draft"

        # a schedule in the past, one without an offset, one not a time at all
        ready = await made(c, "/campaigns", {"name": "Later", "segment_id": leads["id"], **CONTENT})
        past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
        assert "at" in assert_error(await c.post(f"{API}/campaigns/{ready['id']}/schedule", json={"at": past}),
                                    422)["fields"]
        naive = assert_error(await c.post(f"{API}/campaigns/{ready['id']}/schedule",
                                          json={"at": "2099-11-11T09:00:00"}), 422, "invalid_input")
        assert "timezone" in naive["fields"]["at"].lower()
        assert_error(await c.post(f"{API}/campaigns/{ready['id']}/schedule", json={"at": "next friday"}), 422)
        # pausing, resuming or unscheduling a draft: the wrong state
        for action in ("pause", "resume", "unschedule"):
            assert_error(await c.post(f"{API}/campaigns/{ready['id']}/{action}"), 409, "wrong_state")
        # a segment or template that does not exist
        missing = assert_error(await c.post(f"{API}/campaigns", json={"name": "X", "segment_id": 987654}), 422)
        assert missing["fields"] == {"segment_id": "no such segment"}
        assert_error(await c.post(f"{API}/campaigns", json={"name": "X", "template_id": 987654}), 422)
        assert_error(await c.post(f"{API}/campaigns", json={"name": ""}), 422, "invalid_input")
        assert_error(await c.get(f"{API}/campaigns/abc"), 404)
        assert_error(await c.get(f"{API}/campaigns?limit=0"), 422, "invalid_input")

        # a good schedule, with an offset: stored in UTC, undone by unschedule, then cancelled
        at = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
        shanghai = at.astimezone(timezone(timedelta(hours=8))).isoformat()  # "...+08:00"
        scheduled = await c.post(f"{API}/campaigns/{ready['id']}/schedule", json={"at": shanghai})
        assert scheduled.status_code == 200, scheduled.text
        assert datetime.fromisoformat(scheduled.json()["scheduled_at"]) == at
        assert (await c.post(f"{API}/campaigns/{ready['id']}/unschedule")).json()["status"] == "draft"
        assert (await c.post(f"{API}/campaigns/{ready['id']}/cancel")).json()["status"] == "cancelled"
        assert_error(await c.post(f"{API}/campaigns/{ready['id']}/cancel"), 409, "wrong_state")
        # a cancelled campaign that never sent anything can be deleted, once
        assert (await c.delete(f"{API}/campaigns/{ready['id']}")).status_code == 204
        assert_error(await c.get(f"{API}/campaigns/{ready['id']}"), 404)
        assert_error(await c.delete(f"{API}/campaigns/{ready['id']}"), 404)


async def test_who_may_send_and_another_workspace_sees_nothing(workspace: Workspace,
                                                               other_workspace: Workspace) -> None:
    await contacts(workspace, [("张伟", "zw@example.cn", "granted", "customer")])
    owner = await owner_token(workspace)
    async with client(headers=owner) as c:
        segment = await made(c, "/segments", {"name": "客户",
                                               "definition": {"filters": ["lifecycle_stage:eq:customer"]}})
        campaign = await made(c, "/campaigns", {"name": "双十一", "segment_id": segment["id"], **CONTENT})
        role = await made(c, "/roles", {"name": "Campaign writer", "grants": {
            "campaigns": ["view", "create", "edit"], "segments": ["view"]}})
    sales = await add_member(workspace, "sales")
    async with client(headers=sales.headers) as c:
        assert (await c.get(f"{API}/campaigns/{campaign['id']}")).json()["name"] == "双十一"  # may look
        denied = assert_error(await c.post(f"{API}/campaigns/{campaign['id']}/start"), 403, "permission_denied")
        assert denied["permission"] == "campaigns: edit"
        assert_error(await c.post(f"{API}/segments", json={"name": "Mine"}), 403, "permission_denied")
    writer = await add_member(workspace, role["key"])
    async with client(headers=writer.headers) as c:  # may write drafts, not send them
        assert (await c.patch(f"{API}/campaigns/{campaign['id']}", json={"subject": "新主题"})).status_code == 200
        denied = assert_error(await c.post(f"{API}/campaigns/{campaign['id']}/start"), 403, "permission_denied")
        assert denied["permission"] == "workspace: manage_campaigns"
    async with client(headers=await owner_token(other_workspace)) as c:
        one = f"/campaigns/{campaign['id']}"
        for method, path in (("GET", one), ("POST", f"{one}/start"), ("GET", f"{one}/report"),
                             ("POST", f"{one}/cancel"), ("PATCH", one), ("DELETE", one),
                             ("GET", f"/segments/{segment['id']}"),
                             ("DELETE", f"/segments/{segment['id']}")):
            resp = await c.request(method, API + path, json={} if method == "PATCH" else None)
            assert_error(resp, 404, "not_found")
        assert (await c.get(f"{API}/campaigns")).json()["items"] == []
        assert (await c.get(f"{API}/segments")).json()["items"] == []
        # the other workspace's count runs over its own contacts only
        assert (await c.post(f"{API}/segments/count", json={"definition": {}})).json()["contacts"] == 0
    async with client(headers=owner) as c:
        assert (await c.get(f"{API}/campaigns/{campaign['id']}")).json()["status"] == "draft"


async def test_the_openapi_document_lists_the_routes(db: Services) -> None:
    async with client() as c:
        paths = (await c.get(f"{API}/openapi.json")).json()["paths"]
    expected = {
        ("/segments", "get"): "segments: view", ("/segments", "post"): "segments: create",
        ("/segments/count", "post"): "segments: view", ("/segments/{segment_id}", "get"): "segments: view",
        ("/segments/{segment_id}", "patch"): "segments: edit", ("/segments/{segment_id}", "delete"): "segments: delete",
        ("/campaigns", "get"): "campaigns: view", ("/campaigns", "post"): "campaigns: create",
        ("/campaigns/{campaign_id}", "get"): "campaigns: view",
        ("/campaigns/{campaign_id}", "patch"): "campaigns: edit",
        ("/campaigns/{campaign_id}/report", "get"): "campaigns: view",
        ("/campaigns/{campaign_id}", "delete"): "campaigns: delete",
        **{(f"/campaigns/{{campaign_id}}/{action}", "post"): "campaigns: edit"
           for action in ("start", "schedule", "unschedule", "pause", "resume", "cancel")},
    }
    for (path, method), permission in expected.items():
        op = paths[API + path][method]
        assert op["x-kith-permission"] == permission, (path, method)
    schedule = paths[API + "/campaigns/{campaign_id}/schedule"]["post"]
    assert "422" in schedule["responses"] and "409" in schedule["responses"]


def _local(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M")


async def test_the_pages_without_javascript(workspace: Workspace) -> None:
    await contacts(workspace, [("张伟", "zw@example.cn", "granted", "customer"),
                               ("李娜", "li.na@example.cn", "unknown", "customer")])
    base = f"/t/{workspace.slug}/campaigns"
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        patched = await c.patch(f"/t/{workspace.slug}{API}/workspace", json={"time_zone": "Asia/Shanghai"},
                                headers=await owner_token(workspace))
        assert patched.status_code == 200, patched.text
        assert f'href="{base}"' in (await c.get(f"/t/{workspace.slug}/contacts")).text  # the main nav
        city = await c.post(f"/t/{workspace.slug}{API}/custom-fields", headers=await owner_token(workspace),
                            json={"object_type": "contacts", "label": "城市", "kind": "text", "key": "city"})
        assert city.status_code == 201, city.text
        async with tenant_scope(workspace.tenant_id) as tx:
            await tx.execute_query("""UPDATE contacts SET custom = '{"city": "上海"}' WHERE email = 'zw@example.cn'""")

        # the segment editor: Count posts the form and comes back with the count, nothing saved
        editor = await c.get(f"{base}/segments/new")
        assert editor.status_code == 200 and 'name="ff"' in editor.text and 'name="deal_stage"' in editor.text
        assert '<option value="custom.city" data-kind="text">城市</option>' in editor.text  # custom fields too
        in_shanghai = await c.post(f"{base}/segments/count", data={
            "csrf_token": csrf_from(editor.text), "ff": "custom.city", "fo": "eq", "fv": "上海"})
        assert in_shanghai.json()["counts"]["contacts"] == 1
        form = {"csrf_token": csrf_from(editor.text), "name": "客户", "ff": "lifecycle_stage", "fo": "eq",
                "fv": "customer", "action": "count"}
        counted = await c.post(f"{base}/segments/new", data=form)
        assert counted.status_code == 200 and "2 contacts match; a campaign would reach 1 of them." in counted.text
        live = await c.post(f"{base}/segments/count", data=form)
        assert live.json()["counts"] == {"contacts": 2, "reachable": 1, "without_email": 0, "without_consent": 1}
        bad = await c.post(f"{base}/segments/count", data={**form, "ff": "shoe_size"})
        assert bad.status_code == 422 and "shoe_size" in bad.json()["errors"]["form"]
        saved = await c.post(f"{base}/segments/new", data={**form, "action": "save"})
        assert saved.status_code == 303, saved.text
        segment_id = int(saved.headers["location"].split("/")[-1].split("?")[0])
        listing = await c.get(f"{base}/segments")
        assert re.search(rf'data-segment-id="{segment_id}".*?data-count="reachable">1<', listing.text, re.S)

        # a campaign without a from-address: the start is refused and the page names the problem
        new = await c.get(f"{base}/new?segment_id={segment_id}")
        assert f'<option value="{segment_id}" selected>' in new.text
        fields = {"csrf_token": csrf_from(new.text), "name": "双十一", "segment_id": str(segment_id),
                  **{k: v for k, v in CONTENT.items() if k != "from_email"}, "from_email": "", "action": "save"}
        created = await c.post(f"{base}/new", data=fields)
        assert created.status_code == 303, created.text
        page_url = created.headers["location"].split("?")[0]
        campaign_id = int(page_url.rsplit("/", 1)[1])
        detail = await c.get(page_url)
        refused = await c.post(f"{page_url}/start", data={"csrf_token": csrf_from(detail.text)})
        assert refused.status_code == 422 and 'data-problem="from_email"' in refused.text
        assert "The campaign has no from-address." in refused.text

        # a time typed in the workspace's zone (Asia/Shanghai, UTC+8) is stored in UTC
        edit = await c.get(f"{page_url}/edit")
        fixed = await c.post(f"{page_url}/edit", data={**fields, "csrf_token": csrf_from(edit.text),
                                                       "from_email": "news@example.com"})
        assert fixed.status_code == 303
        when = (datetime.now(UTC) + timedelta(days=3)).replace(second=0, microsecond=0)
        local = when + timedelta(hours=8)
        past = await c.post(f"{page_url}/schedule", data={"csrf_token": csrf_from(edit.text),
                                                          "at": _local(local - timedelta(days=4))})
        assert past.status_code == 422 and "Choose a time in the future" in past.text
        scheduled = await c.post(f"{page_url}/schedule", data={"csrf_token": csrf_from(edit.text), "at": _local(local)})
        assert scheduled.status_code == 303
        async with tenant_scope(workspace.tenant_id) as tx:
            row = (await tx.execute_query_dict("SELECT status, scheduled_at FROM campaigns WHERE id = $1",
                                               [campaign_id]))[0]
        assert row["status"] == "scheduled" and row["scheduled_at"] == when
        shown = await c.get(page_url)
        assert f'value="{_local(local)}"' in shown.text and "Asia/Shanghai" in shown.text

        # cancel sits behind its confirm, and then the campaign is over
        assert 'class="confirm-cancel"' in shown.text
        cancelled = await c.post(f"{page_url}/cancel", data={"csrf_token": csrf_from(shown.text)})
        assert cancelled.status_code == 303
        over = await c.get(cancelled.headers["location"])
        assert "Campaign cancelled" in over.text and 'data-action="start"' not in over.text
        listed = await c.get(base)
        assert f'data-campaign-id="{campaign_id}"' in listed.text and "Cancelled" in listed.text
        # it sent nothing: it can be deleted, behind its own confirm
        assert 'data-action="delete"' in over.text
        deleted = await c.post(f"{page_url}/delete", data={"csrf_token": csrf_from(over.text)})
        assert deleted.status_code == 303 and deleted.headers["location"].endswith("/campaigns?done=deleted")
        listed = await c.get(deleted.headers["location"])
        assert "Campaign deleted." in listed.text and f'data-campaign-id="{campaign_id}"' not in listed.text

    async with client(headers=await owner_token(workspace)) as c:
        draft = await made(c, "/campaigns", {"name": "草稿", "segment_id": segment_id, **CONTENT})
    page_url = f"{base}/{draft['id']}"
    sales = await add_member(workspace, "sales")
    async with client() as c:
        await login(c, sales.email, sales.password)
        page = await c.get(page_url)
        assert page.status_code == 200 and 'data-action="start"' not in page.text
        denied = await c.post(f"{page_url}/pause", data={"csrf_token": csrf_from(page.text)})
        assert denied.status_code == 403 and "campaigns: edit" in denied.text
