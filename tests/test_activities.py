"""Activities, timelines and tasks through the API: validation, links, keyset order, scope,
events, tenant isolation and Chinese text, against the real app and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kith.platform.access.actor import Actor
from kith.platform.access.session import acting_as
from kith.platform.db import tenant_scope
from kith.tenants.activities.events import record_event
from kith.tenants.activities.queries import timeline

from .conftest import Workspace
from .factories import add_member, owner_token
from .matrix_activities import make_records
from .web_helpers import assert_error, client


async def _last_activity(ws: Workspace, table: str, record_id: int) -> datetime | None:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(f"SELECT last_activity_at FROM {table} WHERE id = $1", [record_id])  # noqa: S608
    return rows[0]["last_activity_at"]


async def test_bad_activity_input_is_refused_naming_the_field(workspace: Workspace, other_workspace: Workspace) -> None:
    headers = await owner_token(workspace)
    mine = await make_records(workspace, workspace.identity_id)
    for _ in range(3):  # ids past ours: an id that exists here too would prove nothing
        theirs = await make_records(other_workspace, other_workspace.identity_id)
    async with client(headers=headers) as c:
        # no link at all
        err = assert_error(await c.post("/api/v1/activities", json={"kind": "call", "subject": "x"}), 422)
        assert "links" in err["fields"]
        # two unknown links: both named
        err = assert_error(await c.post("/api/v1/activities", json={
            "kind": "call", "subject": "x", "company_id": 999999, "deal_id": 888888}), 422)
        assert set(err["fields"]) == {"company_id", "deal_id"}
        # a record of another workspace is unknown here
        err = assert_error(await c.post("/api/v1/activities", json={
            "kind": "note", "body": "x", "contact_id": theirs["contact_id"]}), 422)
        assert err["fields"] == {"contact_id": "There is no such contact."}
        # bad kind, and 'event' (only Kith writes those)
        for kind in ("fax", "event", ""):
            err = assert_error(await c.post("/api/v1/activities", json={
                "kind": kind, "subject": "x", "company_id": mine["company_id"]}), 422)
            assert "kind" in err["fields"], kind
        # duration out of range, not a number, and on a kind without one
        for duration in (1441, -1, "an hour"):
            err = assert_error(await c.post("/api/v1/activities", json={
                "kind": "call", "subject": "x", "company_id": mine["company_id"], "duration_minutes": duration}), 422)
            assert "duration_minutes" in err["fields"], duration
        err = assert_error(await c.post("/api/v1/activities", json={
            "kind": "note", "subject": "x", "company_id": mine["company_id"], "duration_minutes": 10}), 422)
        assert err["fields"] == {"duration_minutes": "Only calls and meetings have a duration."}
        # nothing to say, a naive time, a time that is no time, a link id that is not an id, an unknown field
        for body, field in (({"kind": "call"}, "subject"),
                            ({"kind": "call", "subject": "x", "occurred_at": "2024-05-01T10:00:00"}, "occurred_at"),
                            ({"kind": "call", "subject": "x", "occurred_at": "yesterday"}, "occurred_at"),
                            ({"kind": "call", "subject": "x", "company_id": "abc"}, "company_id"),
                            ({"kind": "call", "subject": "x", "company_id": 0}, "company_id"),
                            ({"kind": "call", "subject": "x" * 201}, "subject"),
                            ({"kind": "call", "subject": "x", "colour": "red"}, "colour")):
            err = assert_error(await c.post("/api/v1/activities", json={"company_id": mine["company_id"], **body}),
                               422)
            assert field in err["fields"], (body, err)
        # nothing was written by any of that
        assert (await c.get(f"/api/v1/timeline?company_id={mine['company_id']}")).json()["items"] == []
        assert await _last_activity(workspace, "companies", mine["company_id"]) is None


async def test_logging_links_related_records_and_stamps_follow_up(workspace: Workspace) -> None:
    headers = await owner_token(workspace)
    rec = await make_records(workspace, workspace.identity_id, "云图")
    async with client(headers=headers) as c:
        # a contact brings its company
        on_contact = await c.post("/api/v1/activities", json={
            "kind": "call", "subject": "电话回访：上海云图科技", "body": "客户希望下周二演示。\n第二行",
            "duration_minutes": 25, "contact_id": rec["contact_id"]})
        assert on_contact.status_code == 201, on_contact.text
        body = on_contact.json()
        assert (body["contact_id"], body["company_id"], body["deal_id"]) == (rec["contact_id"], rec["company_id"], None)
        assert body["author_email"] == workspace.email and body["subject"] == "电话回访：上海云图科技"
        assert datetime.fromisoformat(body["occurred_at"]).tzinfo is not None
        # a deal brings its company and contact
        on_deal = (await c.post("/api/v1/activities", json={
            "kind": "meeting", "subject": "报价会议", "deal_id": rec["deal_id"],
            "occurred_at": "2024-03-05T10:00:00+08:00"})).json()
        assert (on_deal["deal_id"], on_deal["company_id"], on_deal["contact_id"]) == (
            rec["deal_id"], rec["company_id"], rec["contact_id"])
        assert on_deal["occurred_at"].startswith("2024-03-05T02:00:00")  # stored and returned in UTC
        company_tl = (await c.get(f"/api/v1/timeline?company_id={rec['company_id']}")).json()["items"]
        assert [e["id"] for e in company_tl] == [body["id"], on_deal["id"]]  # newest first
        deal_tl = (await c.get(f"/api/v1/timeline?deal_id={rec['deal_id']}")).json()["items"]
        assert [e["id"] for e in deal_tl] == [on_deal["id"]]
        found = (await c.get("/api/v1/activities", params={"kind": "meeting"})).json()["items"]
        assert [e["subject"] for e in found] == ["报价会议"]
    for table, key in (("companies", "company_id"), ("contacts", "contact_id"), ("deals", "deal_id")):
        assert await _last_activity(workspace, table, rec[key]) is not None, table
    assert await _last_activity(workspace, "leads", rec["lead_id"]) is None


async def test_timeline_is_newest_first_with_a_keyset_cursor(workspace: Workspace) -> None:
    headers = await owner_token(workspace)
    rec = await make_records(workspace, workspace.identity_id)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    # seven entries, two pairs sharing a time (the id breaks the tie), logged out of order
    times = [base + timedelta(hours=h) for h in (3, 1, 5, 5, 2, 2, 4)]
    ids: list[tuple[datetime, int]] = []
    async with client(headers=headers) as c:
        for n, when in enumerate(times):
            made = await c.post("/api/v1/activities", json={
                "kind": "note", "subject": f"note {n}", "lead_id": rec["lead_id"], "occurred_at": when.isoformat()})
            assert made.status_code == 201, made.text
            ids.append((when, made.json()["id"]))
        expected = [i for _, i in sorted(ids, reverse=True)]
        seen: list[int] = []
        cursor = None
        pages = 0
        while True:
            params = {"lead_id": str(rec["lead_id"]), "limit": "3", **({"cursor": cursor} if cursor else {})}
            page = (await c.get("/api/v1/timeline", params=params)).json()
            seen += [e["id"] for e in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == expected and pages == 3
        # exactly one record, a real cursor, a sane limit
        assert_error(await c.get("/api/v1/timeline"), 422)
        err = assert_error(await c.get("/api/v1/timeline", params={"lead_id": rec["lead_id"],
                                                                     "company_id": rec["company_id"]}), 422)
        assert set(err["fields"]) == {"lead_id", "company_id"}
        assert_error(await c.get("/api/v1/timeline", params={"lead_id": "x"}), 422)
        assert_error(await c.get("/api/v1/timeline", params={"lead_id": rec["lead_id"], "cursor": "bogus"}), 422)
        assert_error(await c.get("/api/v1/timeline", params={"lead_id": rec["lead_id"], "limit": "0"}), 422)
        assert_error(await c.get("/api/v1/timeline", params={"lead_id": 987654}), 404, "not_found")
    # the query function itself, inside a session: the same order, and `before` continues it
    actor = Actor(kind="user", tenant_id=workspace.tenant_id, role="owner", identity_id=workspace.identity_id)
    async with acting_as(actor) as session:
        first = await timeline(session, lead_id=rec["lead_id"], limit=4)
        rest = await timeline(session, lead_id=rec["lead_id"], limit=50, before=first[-1]["cursor"])
    assert [e["id"] for e in first + rest] == expected
    assert first[0]["links"] == {"lead_id": rec["lead_id"]} and first[0]["author_email"] == workspace.email


async def test_sales_scope_and_events_on_the_timeline(workspace: Workspace) -> None:
    owner = await owner_token(workspace)
    alice = await add_member(workspace, "sales")
    bob = await add_member(workspace, "sales")
    rec = await make_records(workspace, alice.identity_id, "Alice")
    async with client(headers=alice.headers) as c:
        own = (await c.post("/api/v1/activities", json={"kind": "call", "subject": "Alice's call",
                                                        "company_id": rec["company_id"]})).json()
    async with client(headers=owner) as c:
        by_owner = (await c.post("/api/v1/activities", json={"kind": "note", "subject": "Owner's note",
                                                             "company_id": rec["company_id"]})).json()
    # Kith records a stage change on the deal (and its company) in the owner's transaction
    owner_actor = Actor(kind="user", tenant_id=workspace.tenant_id, role="owner", identity_id=workspace.identity_id)
    async with acting_as(owner_actor) as session:
        event_id = await record_event(session, "deal.stage_changed", {"from": "Proposal", "to": "Won"},
                                      subject="Proposal → Won", company_id=rec["company_id"], deal_id=rec["deal_id"])
    async with client(headers=alice.headers) as c:
        items = (await c.get(f"/api/v1/timeline?company_id={rec['company_id']}")).json()["items"]
        # her own call and the event; the owner's note is outside her 'activities' scope
        assert [i["id"] for i in items] == [event_id, own["id"]]
        assert items[0]["event"] == {"name": "deal.stage_changed", "from": "Proposal", "to": "Won"}
        assert_error(await c.get(f"/api/v1/activities/{by_owner['id']}"), 404, "not_found")
        assert_error(await c.patch(f"/api/v1/activities/{by_owner['id']}", json={"subject": "mine now"}), 404)
        assert_error(await c.delete(f"/api/v1/activities/{by_owner['id']}"), 404)
        # an event is visible through its record but nobody changes it
        assert (await c.get(f"/api/v1/activities/{event_id}")).status_code == 200
        assert_error(await c.patch(f"/api/v1/activities/{event_id}", json={"subject": "x"}), 409, "event_is_history")
        assert_error(await c.delete(f"/api/v1/activities/{event_id}"), 409, "event_is_history")
        listed = (await c.get("/api/v1/activities")).json()["items"]
        assert [i["id"] for i in listed] == [own["id"]]
        changed = await c.patch(f"/api/v1/activities/{own['id']}", json={"kind": "note", "body": "went well"})
        assert changed.status_code == 200, changed.text
        assert (changed.json()["kind"], changed.json()["duration_minutes"]) == ("note", None)
    async with client(headers=bob.headers) as c:
        # Bob may not see Alice's company: he can neither log on it nor read its timeline
        err = assert_error(await c.post("/api/v1/activities", json={"kind": "call", "subject": "x",
                                                                    "company_id": rec["company_id"]}), 422)
        assert err["fields"] == {"company_id": "There is no such company."}
        assert_error(await c.get(f"/api/v1/timeline?company_id={rec['company_id']}"), 404)
        assert_error(await c.get(f"/api/v1/activities/{event_id}"), 404)
        assert_error(await c.get(f"/api/v1/activities/{own['id']}"), 404)
        assert (await c.get("/api/v1/activities")).json()["items"] == []
    async with client(headers=owner) as c:
        # the owner sees everything, and events stay undeletable for the owner too
        items = (await c.get(f"/api/v1/timeline?company_id={rec['company_id']}")).json()["items"]
        assert {i["id"] for i in items} == {event_id, own["id"], by_owner["id"]}
        assert_error(await c.delete(f"/api/v1/activities/{event_id}"), 409)
        assert (await c.delete(f"/api/v1/activities/{own['id']}")).status_code == 204
        assert_error(await c.get(f"/api/v1/activities/{own['id']}"), 404)
    reader = await add_member(workspace, "read_only")
    async with client(headers=reader.headers) as c:
        assert len((await c.get(f"/api/v1/timeline?company_id={rec['company_id']}")).json()["items"]) == 2
        denied = assert_error(await c.post("/api/v1/activities", json={"kind": "call", "subject": "x",
                                                                       "company_id": rec["company_id"]}), 403)
        assert denied["code"] == "permission_denied"


async def test_other_workspaces_never_show(workspace: Workspace, other_workspace: Workspace) -> None:
    ours, theirs = await owner_token(workspace), await owner_token(other_workspace)
    their_rec = await make_records(other_workspace, other_workspace.identity_id)
    async with client(headers=theirs) as c:
        act = (await c.post("/api/v1/activities", json={"kind": "email", "subject": "secret",
                                                        "company_id": their_rec["company_id"]})).json()
        task = (await c.post("/api/v1/tasks", json={"title": "secret task"})).json()
    async with client(headers=ours) as c:
        assert_error(await c.get(f"/api/v1/activities/{act['id']}"), 404)
        assert_error(await c.patch(f"/api/v1/activities/{act['id']}", json={"subject": "x"}), 404)
        assert_error(await c.delete(f"/api/v1/activities/{act['id']}"), 404)
        assert_error(await c.get(f"/api/v1/timeline?company_id={their_rec['company_id']}"), 404)
        assert_error(await c.get(f"/api/v1/tasks/{task['id']}"), 404)
        assert_error(await c.post(f"/api/v1/tasks/{task['id']}/complete"), 404)
        assert_error(await c.delete(f"/api/v1/tasks/{task['id']}"), 404)
        assert (await c.get("/api/v1/activities")).json()["items"] == []
        assert (await c.get("/api/v1/tasks", params={"assignee": "all", "status": "any"})).json()["items"] == []
        err = assert_error(await c.post("/api/v1/tasks", json={"title": "x", "company_id": their_rec["company_id"]}),
                           422)
        assert "company_id" in err["fields"]
        # their owner is no member here: no task can be assigned to them
        err = assert_error(await c.post("/api/v1/tasks", json={"title": "x",
                                                               "assignee_id": other_workspace.identity_id}), 422)
        assert err["fields"] == {"assignee_id": "Choose an active member of this workspace."}
    async with client(headers=theirs) as c:
        assert (await c.get(f"/api/v1/tasks/{task['id']}")).json()["status"] == "open"


async def test_tasks_validation_completion_and_scope(workspace: Workspace) -> None:
    owner = await owner_token(workspace)
    sales = await add_member(workspace, "sales")
    other = await add_member(workspace, "sales")
    rec = await make_records(workspace, sales.identity_id)
    async with client(headers=sales.headers) as c:
        for body, field in (({"title": "x", "due_at": "next tuesday"}, "due_at"),
                            ({"title": "x", "due_at": "2024-13-40T25:00:00Z"}, "due_at"),
                            ({"title": "x", "due_at": "2024-05-01T09:00:00"}, "due_at"),  # no zone
                            ({"title": ""}, "title"), ({}, "title"),
                            ({"title": "x", "status": "later"}, "status"),
                            ({"title": "x", "notes": "n" * 5001}, "notes"),
                            ({"title": "x", "assignee_id": other.identity_id}, "assignee_id"),
                            ({"title": "x", "assignee_id": 10**12}, "assignee_id"),
                            ({"title": "x", "deal_id": 424242}, "deal_id")):
            err = assert_error(await c.post("/api/v1/tasks", json=body), 422)
            assert field in err["fields"], (body, err)
        made = await c.post("/api/v1/tasks", json={
            "title": "给张伟回电话", "notes": "确认报价", "due_at": "2024-05-01T09:30:00+08:00",
            "contact_id": rec["contact_id"]})
        assert made.status_code == 201, made.text
        task = made.json()
        assert task["assignee_id"] == sales.identity_id and task["assignee_email"] == sales.email
        assert task["due_at"].startswith("2024-05-01T01:30:00") and task["overdue"] is True
        assert task["company_id"] == rec["company_id"]  # the contact's company comes along
        mine = (await c.get("/api/v1/tasks")).json()["items"]
        assert [t["id"] for t in mine] == [task["id"]]
        assert_error(await c.get("/api/v1/tasks", params={"status": "later"}), 422)
        assert_error(await c.get("/api/v1/tasks", params={"assignee": "bob"}), 422)
        done = await c.post(f"/api/v1/tasks/{task['id']}/complete")
        assert done.status_code == 200 and done.json()["status"] == "done" and done.json()["completed_at"]
        assert (await c.get("/api/v1/tasks")).json()["items"] == []
        assert [t["id"] for t in (await c.get("/api/v1/tasks", params={"status": "done"})).json()["items"]] == [
            task["id"]]
        reopened = (await c.patch(f"/api/v1/tasks/{task['id']}", json={"status": "open"})).json()
        assert reopened["completed_at"] is None
    # completing wrote no timeline entry, and stamped the records as followed up
    async with client(headers=owner) as c:
        assert (await c.get(f"/api/v1/timeline?contact_id={rec['contact_id']}")).json()["items"] == []
    assert await _last_activity(workspace, "contacts", rec["contact_id"]) is not None
    assert await _last_activity(workspace, "companies", rec["company_id"]) is not None
    async with client(headers=other.headers) as c:
        assert_error(await c.get(f"/api/v1/tasks/{task['id']}"), 404)
        assert_error(await c.post(f"/api/v1/tasks/{task['id']}/complete"), 404)
        assert (await c.get("/api/v1/tasks", params={"assignee": "all"})).json()["items"] == []
    async with client(headers=owner) as c:
        # the owner may assign to anyone active, and sees every task
        moved = await c.patch(f"/api/v1/tasks/{task['id']}", json={"assignee_id": other.identity_id})
        assert moved.status_code == 200 and moved.json()["assignee_id"] == other.identity_id
        assert_error(await c.patch(f"/api/v1/tasks/{task['id']}", json={"title": None}), 422)
        assert_error(await c.patch(f"/api/v1/tasks/{task['id']}", json={"due_at": "soon"}), 422)
        cleared = await c.patch(f"/api/v1/tasks/{task['id']}", json={"due_at": None})
        assert cleared.json()["due_at"] is None
        assert (await c.delete(f"/api/v1/tasks/{task['id']}")).status_code == 204
        assert_error(await c.get(f"/api/v1/tasks/{task['id']}"), 404)


async def test_task_list_keyset_by_due_time(workspace: Workspace) -> None:
    headers = await owner_token(workspace)
    base = datetime(2030, 6, 1, tzinfo=UTC)
    dues = [base + timedelta(days=d) for d in (3, 1, 2, 1)] + [None, None]
    async with client(headers=headers) as c:
        made = []
        for n, due in enumerate(dues):
            body = {"title": f"Task {n}", **({"due_at": due.isoformat()} if due else {})}
            made.append((due, (await c.post("/api/v1/tasks", json=body)).json()["id"]))
        expected = [i for d, i in sorted((m for m in made if m[0]), key=lambda m: (m[0], m[1]))] + \
                   [i for d, i in made if d is None]
        seen: list[int] = []
        cursor = None
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = (await c.get("/api/v1/tasks", params=params)).json()
            seen += [t["id"] for t in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == expected
        assert_error(await c.get("/api/v1/tasks", params={"cursor": "x_1"}), 422)
