"""Activities and tasks in the browser's forms (in-process HTTP, real sessions and CSRF): the
timeline partial in a Chinese workspace, logging from it, safe return paths, local times in the
workspace's time zone, form errors, scope and isolation of the pages."""

from __future__ import annotations

from datetime import UTC, datetime

from kith.platform.access.actor import Actor
from kith.platform.access.session import acting_as
from kith.platform.db import tenant_scope
from kith.tenants.activities.events import record_event

from .conftest import Workspace
from .factories import add_member, owner_token
from .matrix_activities import make_records
from .web_helpers import client, csrf_from, login


async def _settings(ws: Workspace, **values: str) -> None:
    async with client(headers=await owner_token(ws)) as api:
        assert (await api.patch("/api/v1/workspace", json=values)).status_code == 200


async def _activities(ws: Workspace) -> list[dict[str, object]]:
    async with tenant_scope(ws.tenant_id) as tx:
        return await tx.execute_query_dict("SELECT * FROM activities ORDER BY id")


async def _tasks(ws: Workspace) -> list[dict[str, object]]:
    async with tenant_scope(ws.tenant_id) as tx:
        return await tx.execute_query_dict("SELECT * FROM tasks ORDER BY id")


async def test_timeline_partial_in_chinese_and_logging_from_it(workspace: Workspace) -> None:
    await _settings(workspace, locale="zh-CN", time_zone="Asia/Shanghai")
    rec = await make_records(workspace, workspace.identity_id, "云图")
    actor = Actor(kind="user", tenant_id=workspace.tenant_id, role="owner", identity_id=workspace.identity_id)
    async with acting_as(actor) as session:
        await record_event(session, "deal.stage_changed", {"from": "方案", "to": "赢单"}, subject="方案 → 赢单",
                           deal_id=rec["deal_id"], company_id=rec["company_id"],
                           occurred_at=datetime(2024, 1, 1, tzinfo=UTC))
        await record_event(session, "custom.thing", {}, subject="自定义事件", company_id=rec["company_id"],
                           occurred_at=datetime(2024, 1, 2, tzinfo=UTC))
    page = f"/t/{workspace.slug}/timeline/companies/{rec['company_id']}"
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        got = await c.get(page)
        assert got.status_code == 200
        assert "时间线" in got.text and "记录电话 / 会议 / 邮件 / 备注" in got.text and "添加任务" in got.text
        assert "阶段从 方案 变更为 赢单" in got.text  # an event rendered from its name and facts
        assert "自定义事件" in got.text  # an unknown event falls back to its subject
        assert "2024-01-01 08:00 CST" in got.text  # shown in the workspace's time zone
        # log a call from the partial's form, back to the page it came from
        posted = await c.post(f"/t/{workspace.slug}/activities/new", data={
            "csrf_token": csrf_from(got.text), "record_type": "companies", "record_id": str(rec["company_id"]),
            "return": page, "kind": "call", "subject": "电话回访：上海云图", "body": "客户要求下周演示",
            "occurred_date": "2024-03-05", "occurred_time": "10:30", "duration_minutes": "15"})
        assert posted.status_code == 303 and posted.headers["location"] == page
        shown = await c.get(page)
        assert "电话回访：上海云图" in shown.text and "15 分钟" in shown.text and "2024-03-05 10:30 CST" in shown.text
        stored = [a for a in await _activities(workspace) if a["kind"] == "call"][0]
        assert stored["occurred_at"] == datetime(2024, 3, 5, 2, 30, tzinfo=UTC)  # Shanghai is UTC+8
        # an error comes back on the form, in Chinese, naming the field
        bad = await c.post(f"/t/{workspace.slug}/activities/new", data={
            "csrf_token": csrf_from(got.text), "record_type": "companies", "record_id": str(rec["company_id"]),
            "return": page, "kind": "note", "subject": "x", "duration_minutes": "30", "occurred_date": "05/03/2024"})
        assert bad.status_code == 422
        assert 'data-field="occurred_date"' in bad.text and "请按 YYYY-MM-DD 格式填写日期。" in bad.text
        bad = await c.post(f"/t/{workspace.slug}/activities/new", data={
            "csrf_token": csrf_from(got.text), "record_type": "companies", "record_id": str(rec["company_id"]),
            "return": page, "kind": "note", "subject": "x", "duration_minutes": "30"})
        assert bad.status_code == 422 and "只有电话和会议有时长。" in bad.text
        # no CSRF token: refused, nothing written
        before = len(await _activities(workspace))
        refused = await c.post(f"/t/{workspace.slug}/activities/new", data={
            "record_type": "companies", "record_id": str(rec["company_id"]), "kind": "call", "subject": "x"})
        assert refused.status_code == 403 and len(await _activities(workspace)) == before


async def test_return_paths_stay_in_the_workspace(workspace: Workspace, other_workspace: Workspace) -> None:
    rec = await make_records(workspace, workspace.identity_id)
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        token = csrf_from((await c.get(f"/t/{workspace.slug}/tasks")).text)
        fallback = f"/t/{workspace.slug}/contacts/{rec['contact_id']}"
        for unsafe in ("https://evil.example.com/", "//evil.example.com/x", f"/t/{other_workspace.slug}/contacts",
                       "/login", f"/t/{workspace.slug}/../../x", "javascript:alert(1)", ""):
            posted = await c.post(f"/t/{workspace.slug}/activities/new", data={
                "csrf_token": token, "record_type": "contacts", "record_id": str(rec["contact_id"]),
                "return": unsafe, "kind": "note", "body": "x"})
            assert posted.status_code == 303 and posted.headers["location"] == fallback, unsafe
        # an unknown record type, or a record of nobody, is a 404
        for record_type, record_id in (("orders", "1"), ("companies", "98765")):
            resp = await c.post(f"/t/{workspace.slug}/activities/new", data={
                "csrf_token": token, "record_type": record_type, "record_id": record_id, "kind": "note", "body": "x"})
            assert resp.status_code == 404, record_type


async def test_task_pages_use_local_time_and_complete(workspace: Workspace) -> None:
    await _settings(workspace, time_zone="America/New_York")
    rec = await make_records(workspace, workspace.identity_id)
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        form = await c.get(f"/t/{workspace.slug}/tasks/new")
        assert form.status_code == 200 and "America/New_York" in form.text
        token = csrf_from(form.text)
        for values, field in (({"title": "x", "due_date": "tomorrow"}, "due_date"),
                              ({"title": "x", "due_date": "2024-02-30"}, "due_date"),
                              ({"title": "x", "due_date": "2024-07-01", "due_time": "25:99"}, "due_time"),
                              ({"title": "x", "due_time": "10:00"}, "due_date"),
                              ({"title": ""}, "title")):
            bad = await c.post(f"/t/{workspace.slug}/tasks/new", data={"csrf_token": token, **values})
            assert bad.status_code == 422 and f'data-field="{field}"' in bad.text, (values, bad.text[-800:])
        made = await c.post(f"/t/{workspace.slug}/tasks/new", data={
            "csrf_token": token, "title": "Send the quote", "due_date": "2024-07-01", "due_time": "16:45",
            "record_type": "deals", "record_id": str(rec["deal_id"]), "return": f"/t/{workspace.slug}/tasks"})
        assert made.status_code == 303 and made.headers["location"] == f"/t/{workspace.slug}/tasks?task_created=1"
        task = (await _tasks(workspace))[0]
        assert task["due_at"] == datetime(2024, 7, 1, 20, 45, tzinfo=UTC)  # EDT is UTC-4
        assert (task["deal_id"], task["company_id"], task["assignee_id"]) == (
            rec["deal_id"], rec["company_id"], workspace.identity_id)
        listed = await c.get(f"/t/{workspace.slug}/tasks")
        assert "Send the quote" in listed.text and "overdue" in listed.text and "2024-07-01 16:45 EDT" in listed.text
        edit = await c.get(f"/t/{workspace.slug}/tasks/{task['id']}/edit")
        assert 'value="2024-07-01"' in edit.text and 'value="16:45"' in edit.text
        saved = await c.post(f"/t/{workspace.slug}/tasks/{task['id']}/edit", data={
            "csrf_token": token, "title": "Send the quote", "due_date": "2024-07-02", "due_time": "",
            "assignee_id": str(workspace.identity_id), "status": "open"})
        assert saved.status_code == 303
        assert (await _tasks(workspace))[0]["due_at"] == datetime(2024, 7, 2, 13, 0, tzinfo=UTC)  # 09:00 local
        done = await c.post(f"/t/{workspace.slug}/tasks/{task['id']}/complete", data={
            "csrf_token": token, "return": f"/t/{workspace.slug}/tasks"})
        assert done.status_code == 303 and done.headers["location"].endswith("task_done=1")
        stored = (await _tasks(workspace))[0]
        assert stored["status"] == "done" and stored["completed_at"] is not None
        assert "Send the quote" not in (await c.get(f"/t/{workspace.slug}/tasks")).text
        assert "Send the quote" in (await c.get(f"/t/{workspace.slug}/tasks?status=done")).text
        gone = await c.post(f"/t/{workspace.slug}/tasks/{task['id']}/delete", data={"csrf_token": token})
        assert gone.status_code == 303 and await _tasks(workspace) == []


async def test_pages_keep_to_scope_and_workspace(workspace: Workspace, other_workspace: Workspace) -> None:
    sales = await add_member(workspace, "sales")
    rec = await make_records(workspace, workspace.identity_id)  # the owner's: not the sales member's
    async with tenant_scope(workspace.tenant_id) as tx:
        task = await tx.execute_query_dict(
            "INSERT INTO tasks (title, assignee_id) VALUES ('Owner task', $1) RETURNING id", [workspace.identity_id])
        note = await tx.execute_query_dict(
            "INSERT INTO activities (kind, subject, company_id, created_by_id) VALUES ('note', 'Owner note', $1, $2)"
            " RETURNING id", [rec["company_id"], workspace.identity_id])
    async with client() as c:
        await login(c, sales.email, sales.password)
        listed = await c.get(f"/t/{workspace.slug}/tasks?scope=all&status=any")
        assert listed.status_code == 200 and "Owner task" not in listed.text
        for path in (f"/tasks/{task[0]['id']}/edit", f"/tasks/{task[0]['id']}/delete",
                     f"/activities/{note[0]['id']}/edit", f"/timeline/companies/{rec['company_id']}"):
            assert (await c.get(f"/t/{workspace.slug}{path}")).status_code == 404, path
        # another workspace's pages are not reachable at all for a non-member
        assert (await c.get(f"/t/{other_workspace.slug}/tasks")).status_code == 404
    reader = await add_member(workspace, "read_only")
    async with client() as c:
        await login(c, reader.email, reader.password)
        page = await c.get(f"/t/{workspace.slug}/timeline/companies/{rec['company_id']}")
        assert page.status_code == 200 and "Owner note" in page.text
        assert 'data-form="log-activity"' not in page.text and 'data-form="add-task"' not in page.text
        refused = await c.post(f"/t/{workspace.slug}/activities/new", data={
            "csrf_token": csrf_from(page.text), "record_type": "companies", "record_id": str(rec["company_id"]),
            "kind": "note", "body": "x"})
        assert refused.status_code == 403


async def test_every_activity_form_refuses_a_post_without_csrf(workspace: Workspace) -> None:
    from kith.web.activity_pages import routes

    async with client() as c:
        await login(c, workspace.email, workspace.password)
        for route in routes:
            if "POST" not in (route.methods or set()):
                continue
            url = route.path.replace("{slug}", workspace.slug)
            for name in ("activity_id", "task_id", "record_type", "record_id"):
                url = url.replace("{" + name + "}", "1")
            for data in ({"title": "x", "kind": "call"}, {"title": "x", "csrf_token": "forged.value"}):
                resp = await c.post(url, data=data)
                assert resp.status_code == 403 and "security token" in resp.text, (url, resp.status_code)
    assert await _tasks(workspace) == [] and await _activities(workspace) == []
