"""The tenant audit log: same transaction as the change, gapless under concurrency, isolated
per tenant, identity events fanned out, the viewer and its exports, retention."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from kith.platform.access.actor import Actor
from kith.platform.audit.entries import AuditFilter, list_entries
from kith.platform.audit.log import append_entry, raw_connection, record_identity_event
from kith.platform.audit.retention import archive_expired, set_retention_days
from kith.platform.audit.verify import verify_platform, verify_tenant
from kith.platform.db import connect_raw, tenant_scope
from tests.conftest import Services, Workspace, make_workspace


def owner(ws: Workspace, **extra: str) -> Actor:
    return Actor(kind="user", tenant_id=ws.tenant_id, role="owner", identity_id=ws.identity_id, label=ws.email,
                 ip=extra.get("ip", "203.0.113.7"), user_agent=extra.get("user_agent", "pytest"),
                 request_id=extra.get("request_id", "req-1"))


async def entries(ws: Workspace, **filters: str) -> list[dict[str, object]]:
    async with tenant_scope(ws.tenant_id) as tx:
        page = await list_entries(tx, AuditFilter(**filters), limit=200)
    return [e.as_json() for e in page.items]


async def verify(ws: Workspace) -> str:
    conn = await connect_raw()
    try:
        report = await verify_tenant(conn, ws.tenant_id)
    finally:
        await conn.close()
    assert report.ok, report.summary()
    return report.summary()


class Boom(Exception):
    pass


async def test_entry_commits_and_rolls_back_with_the_change(workspace: Workspace) -> None:
    actor = owner(workspace)
    with pytest.raises(Boom):
        async with tenant_scope(workspace.tenant_id) as tx:
            cid = await raw_connection(tx).fetchval("INSERT INTO contacts (name) VALUES ('Gone') RETURNING id")
            await append_entry(tx, actor, action="contact.create", object_type="contact", object_id=cid,
                               diff={"name": [None, "Gone"]})
            raise Boom
    assert await entries(workspace, object_type="contact") == []

    async with tenant_scope(workspace.tenant_id) as tx:
        cid = await raw_connection(tx).fetchval("INSERT INTO contacts (name) VALUES ('张伟') RETURNING id")
        seq = await append_entry(tx, actor, action="contact.create", object_type="contact", object_id=cid,
                                 diff={"name": [None, "张伟"], "score": [1.0, 2.5]})
    found = await entries(workspace, object_type="contact", object_id=str(cid))
    assert len(found) == 1
    entry = found[0]
    assert entry["seq"] == seq
    assert entry["diff"] == {"name": [None, "张伟"], "score": [1.0, 2.5]}
    assert (entry["actor_kind"], entry["actor_id"], entry["actor_label"]) == ("user", str(workspace.identity_id),
                                                                               workspace.email)
    assert (entry["ip"], entry["user_agent"], entry["request_id"]) == ("203.0.113.7", "pytest", "req-1")
    await verify(workspace)


async def test_seq_is_gapless_under_concurrency(workspace: Workspace) -> None:
    actor = owner(workspace)

    async def one(n: int) -> int:
        async with tenant_scope(workspace.tenant_id) as tx:
            return await append_entry(tx, actor, action="contact.update", object_type="contact", object_id=n,
                                      diff={"n": [n - 1, n]})

    seqs = await asyncio.gather(*(one(n) for n in range(50)))
    assert sorted(seqs) == list(range(min(seqs), min(seqs) + 50))
    async with tenant_scope(workspace.tenant_id) as tx:
        all_seqs = [r["seq"] for r in await raw_connection(tx).fetch("SELECT seq FROM audit_log ORDER BY seq")]
    assert all_seqs == list(range(1, len(all_seqs) + 1))
    await verify(workspace)


async def test_entries_stay_in_their_tenant(workspace: Workspace, other_workspace: Workspace) -> None:
    async with tenant_scope(other_workspace.tenant_id) as tx:
        await append_entry(tx, owner(other_workspace), action="contact.delete", object_type="contact",
                           object_id="secret-of-other")
    async with tenant_scope(workspace.tenant_id) as tx:
        await append_entry(tx, owner(workspace), action="contact.delete", object_type="contact", object_id="mine")
    mine = await entries(workspace)
    assert [e["object_id"] for e in mine if e["object_type"] == "contact"] == ["mine"]
    assert all(e["actor_label"] != other_workspace.email for e in mine)
    # An actor of one tenant cannot write into another tenant's log, even inside its scope.
    with pytest.raises(asyncpg.RaiseError, match="written in schema"):
        async with tenant_scope(workspace.tenant_id) as tx:
            await append_entry(tx, owner(other_workspace), action="x", object_type="y", object_id=None)
    await verify(workspace)
    await verify(other_workspace)


async def test_identity_events_fan_out_to_each_workspace(db: Services) -> None:
    from kith.platform.identity.models import Membership

    first = await make_workspace("fan")
    second = await make_workspace("fan")
    await Membership.create(tenant_id=second.tenant_id, identity_id=first.identity_id, role="admin")
    await record_identity_event(first.identity_id, "login.success", email=first.email, ip="198.51.100.4",
                                user_agent="Firefox", request_id="r-42", detail={"method": "password"})
    for ws in (first, second):
        found = await entries(ws, action="login")
        assert [(e["action"], e["object_id"], e["actor_label"], e["ip"], e["diff"]) for e in found] == [
            ("login.success", str(first.identity_id), first.email, "198.51.100.4", {"method": "password"})]
        await verify(ws)
    # the second workspace's owner is not a member of the first: nothing of theirs there
    await record_identity_event(second.identity_id, "logout")
    assert await entries(first, action="logout") == []
    assert len(await entries(second, action="logout")) == 1

    conn = await connect_raw()
    try:
        before = await conn.fetchval("SELECT count(*) FROM public.platform_audit")
        await record_identity_event(None, "login.failure", email="nobody@example.com", ip="192.0.2.9",
                                    detail={"reason": "unknown email"})
        rows = await conn.fetch("SELECT * FROM public.platform_audit ORDER BY seq DESC LIMIT 1")
        assert await conn.fetchval("SELECT count(*) FROM public.platform_audit") == before + 1
        assert (rows[0]["actor_kind"], rows[0]["actor_label"], rows[0]["action"]) == (
            "anonymous", "nobody@example.com", "login.failure")
        report = await verify_platform(conn)
        assert report.ok, report.summary()
    finally:
        await conn.close()


async def test_retention_archives_and_the_chain_still_verifies(workspace: Workspace) -> None:
    actor = owner(workspace)
    for n in range(30):
        async with tenant_scope(workspace.tenant_id) as tx:
            await append_entry(tx, actor, action="contact.update", object_type="contact", object_id=n,
                               diff={"name": [f"a{n}", f"b{n}"]})
    async with tenant_scope(workspace.tenant_id) as tx:
        await set_retention_days(tx, actor, 30)
    # 31 days from now every entry so far is past retention; archive in slices of 7
    result = await archive_expired(workspace.tenant_id, now=datetime.now(UTC) + timedelta(days=31), batch=7)
    assert result.rows >= 31 and result.batches >= 5
    async with tenant_scope(workspace.tenant_id) as tx:
        conn = raw_connection(tx)
        archived = await conn.fetchval("SELECT count(*) FROM audit_archive")
        live = [r["action"] for r in await conn.fetch("SELECT action FROM audit_log ORDER BY seq")]
        checkpoints = await conn.fetchval("SELECT count(*) FROM audit_checkpoint")
    assert archived == result.rows
    assert live and set(live) == {"audit.archive"}  # only the job's own entries remain
    assert checkpoints == result.batches
    summary = await verify(workspace)
    assert f"{archived + len(live):,} entries" in summary
    # idempotent: a second run with the same clock finds nothing more that existed before it
    again = await archive_expired(workspace.tenant_id, now=datetime.now(UTC))
    assert again.rows == 0
    # new entries continue the chain after the archived part
    async with tenant_scope(workspace.tenant_id) as tx:
        await append_entry(tx, actor, action="contact.create", object_type="contact", object_id=99)
    await verify(workspace)


async def test_retention_setting_is_bounded_and_audited(workspace: Workspace) -> None:
    from kith.platform.audit.retention import RetentionError

    actor = owner(workspace)
    with pytest.raises(RetentionError):
        async with tenant_scope(workspace.tenant_id) as tx:
            await set_retention_days(tx, actor, 5)
    async with tenant_scope(workspace.tenant_id) as tx:
        await set_retention_days(tx, actor, 400)
    found = await entries(workspace, action="audit.settings")
    assert [e["diff"] for e in found] == [{"retention_days": [2555, 400]}]


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _jsonl(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def _member(ws: Workspace, role: str) -> Workspace:
    """A person with `role` in `ws` (and a workspace of their own, from signup)."""
    from kith.platform.identity.models import Membership

    own = await make_workspace("member")
    await Membership.create(tenant_id=ws.tenant_id, identity_id=own.identity_id, role=role)
    return Workspace(ws.tenant_id, ws.slug, ws.name, own.identity_id, own.email, own.password)


async def _seed_entries(ws: Workspace) -> None:
    actor = owner(ws)
    async with tenant_scope(ws.tenant_id) as tx:
        for n in range(1, 8):
            await append_entry(tx, actor, action="contact.update", object_type="contacts", object_id=n,
                               diff={"phone": [f"+44 20 7946 000{n}", "=HYPERLINK(\"http://evil\")"]})
        await append_entry(tx, actor, action="contact.delete", object_type="contacts", object_id=3,
                           diff={"name": ["王芳", None]})


async def test_viewer_filters_and_pages(workspace: Workspace) -> None:
    from tests.web_helpers import client, login

    await _seed_entries(workspace)
    page = f"/t/{workspace.slug}/settings/audit"
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        resp = await c.get(page, params={"object_type": "contacts", "object_id": "3"})
        assert resp.status_code == 200, resp.text[:300]
        assert "contact.delete" in resp.text and "王芳" in resp.text and "contact.update" in resp.text
        resp = await c.get(page, params={"action": "contact.delete"})
        assert "王芳" in resp.text and "+44 20 7946 0001" not in resp.text
        resp = await c.get(page, params={"actor": workspace.email.upper()[:12], "action": "contact"})
        assert resp.text.count('data-label="#"') == 8
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
        resp = await c.get(page, params={"since": tomorrow})
        assert "No entries match." in resp.text
        resp = await c.get(page, params={"since": "31/01/2026"})
        assert "Use a date such as" in resp.text
        async with tenant_scope(workspace.tenant_id) as tx:
            first = await list_entries(tx, AuditFilter(action="contact"), limit=5)
        assert first.next_before is not None
        resp = await c.get(page, params={"action": "contact", "before": str(first.next_before)})
        seqs = [int(s) for s in __import__("re").findall(r'data-label="#">(\d+)<', resp.text)]
        assert seqs and max(seqs) < first.next_before


async def test_exports_are_downloads_and_are_audited(workspace: Workspace) -> None:
    from tests.web_helpers import client, csrf_from, login

    await _seed_entries(workspace)
    page = f"/t/{workspace.slug}/settings/audit"
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        token = csrf_from((await c.get(page)).text)
        resp = await c.post(f"{page}/export", data={"csrf_token": token, "format": "csv", "action": "contact.update"})
        assert resp.status_code == 200, resp.text[:300]
        assert resp.headers["content-type"].startswith("text/csv")
        assert resp.headers["content-disposition"].startswith(f'attachment; filename="audit-{workspace.slug}-')
        rows = _csv_rows(resp.text)
        assert len(rows) == 7 and {r["action"] for r in rows} == {"contact.update"}
        assert all(json.loads(r["diff"])["phone"][1].startswith("=HYPERLINK") for r in rows)  # JSON text, inert
        assert rows[0]["actor_label"] == workspace.email and int(rows[0]["seq"]) > int(rows[-1]["seq"])

        resp = await c.post(f"{page}/export", data={"csrf_token": token, "format": "jsonl", "object_id": "3"})
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/x-ndjson")
        lines = _jsonl(resp.text)
        assert [(e["action"], e["object_id"]) for e in lines] == [("contact.delete", "3"), ("contact.update", "3")]
        assert lines[0]["diff"] == {"name": ["王芳", None]}

        bad = await c.post(f"{page}/export", data={"csrf_token": token, "format": "xlsx"})
        assert bad.status_code == 422
        no_csrf = await c.post(f"{page}/export", data={"format": "csv"})
        assert no_csrf.status_code == 403

    exports = await entries(workspace, action="audit.export")
    assert [(e["actor_label"], e["diff"]["format"], e["diff"]["filters"]) for e in exports] == [
        (workspace.email, "jsonl", {"object_id": "3"}),
        (workspace.email, "csv", {"action": "contact.update"}),
    ]
    assert exports[0]["request_id"] and exports[0]["ip"]
    await verify(workspace)


async def test_retention_form_is_audited(workspace: Workspace) -> None:
    from tests.web_helpers import client, csrf_from, login

    page = f"/t/{workspace.slug}/settings/audit"
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        token = csrf_from((await c.get(page)).text)
        bad = await c.post(f"{page}/retention", data={"csrf_token": token, "retention_days": "3"})
        assert bad.status_code == 422 and "Retention must be" in bad.text
        ok = await c.post(f"{page}/retention", data={"csrf_token": token, "retention_days": "730"})
        assert ok.status_code == 303
    assert [e["diff"] for e in await entries(workspace, action="audit.settings.update")] == [
        {"retention_days": [2555, 730]}]


async def test_read_only_role_is_refused_everywhere(workspace: Workspace) -> None:
    from kith.platform.identity.tokens import create_api_token
    from tests.web_helpers import assert_error, client, csrf_from, login

    await _seed_entries(workspace)
    reader = await _member(workspace, "read_only")
    page = f"/t/{workspace.slug}/settings/audit"
    async with client() as c:
        await login(c, reader.email, reader.password)
        resp = await c.get(page)
        assert resp.status_code == 403 and "manage" in resp.text.lower()
        token = csrf_from((await c.get(f"/t/{workspace.slug}/contacts")).text)
        resp = await c.post(f"{page}/export", data={"csrf_token": token, "format": "csv"})
        assert resp.status_code == 403
    assert await entries(workspace, action="audit.export") == []

    _, reader_token = await create_api_token(tenant_id=workspace.tenant_id, identity_id=reader.identity_id, name="r")
    _, owner_token = await create_api_token(tenant_id=workspace.tenant_id, identity_id=workspace.identity_id, name="o")
    async with client() as c:
        denied = await c.get("/api/v1/audit", headers={"Authorization": f"Bearer {reader_token}"})
        assert_error(denied, 403)
        resp = await c.get("/api/v1/audit", params={"action": "contact.update", "limit": "3"},
                           headers={"Authorization": f"Bearer {owner_token}"})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert len(body["items"]) == 3 and body["next_cursor"]
        assert {i["action"] for i in body["items"]} == {"contact.update"}
        more = await c.get("/api/v1/audit", params={"action": "contact.update", "cursor": body["next_cursor"]},
                           headers={"Authorization": f"Bearer {owner_token}"})
        assert [i["seq"] for i in more.json()["items"]] == sorted(
            (i["seq"] for i in more.json()["items"]), reverse=True)
        assert max(i["seq"] for i in more.json()["items"]) < min(i["seq"] for i in body["items"])
        assert_error(await c.get("/api/v1/audit", params={"cursor": "abc"},
                                 headers={"Authorization": f"Bearer {owner_token}"}), 422)


async def test_retention_job_and_daily_enqueue(workspace: Workspace) -> None:
    from kith.jobs.audit_retention import audit_retention, enqueue_audit_retention
    from kith.jobs.queue import close_queue

    assert await audit_retention({"job_try": 1}, workspace.tenant_id) == "nothing to archive"
    assert await audit_retention({"job_try": 1}, 999_999_999) == "skipped: tenant 999999999 does not exist"
    try:
        first = await enqueue_audit_retention({})
        assert first >= 1
        assert await enqueue_audit_retention({}) == 0  # the cron firing twice queues nothing more
    finally:
        await close_queue()


async def test_a_remembered_subject_key_is_rechecked_after_erasure_and_rollback(workspace: Workspace) -> None:
    """append_entry remembers subject keys per process; a key erased (or rolled back) since is
    never used again: the change after it gets a new key, readable, and the chain verifies."""
    from kith.platform.audit.subjects import ERASED, destroy_subject_key

    actor = owner(workspace)
    subject = ("contacts", 424242)

    async def change(value: str) -> None:
        async with tenant_scope(workspace.tenant_id) as tx:
            await append_entry(tx, actor, action="contact.update", object_type="contacts", object_id=424242,
                               diff={"notes": ["", value]}, subject=subject)

    await change("first")
    async with tenant_scope(workspace.tenant_id) as tx:  # erasure, as another process would do it
        assert await destroy_subject_key(raw_connection(tx), subject)
    await change("after erasure")
    # a key made in a transaction that rolls back is remembered, then found missing
    async with tenant_scope(workspace.tenant_id) as tx:
        assert await destroy_subject_key(raw_connection(tx), subject)
    with pytest.raises(Boom):
        async with tenant_scope(workspace.tenant_id) as tx:
            await append_entry(tx, actor, action="contact.update", object_type="contacts", object_id=424242,
                               diff={"notes": ["", "rolled back"]}, subject=subject)
            raise Boom
    await change("after rollback")
    notes = [e["diff"]["notes"][1] for e in reversed(await entries(workspace, object_id="424242"))]
    assert notes == [ERASED, ERASED, "after rollback"]
    await verify(workspace)


async def test_an_emptied_log_continues_from_its_checkpoint(workspace: Workspace) -> None:
    """When retention moved every entry out, the next append continues the chain from the
    archive checkpoint (seq and hash), and the whole chain still verifies."""
    from kith.platform.audit import log as audit_log
    from kith.platform.audit.log import audit_key, checkpoint_mac, key_id_for

    for n in range(3):
        async with tenant_scope(workspace.tenant_id) as tx:
            await append_entry(tx, owner(workspace), action="contact.update", object_type="contacts",
                               object_id=n, diff={"notes": ["", f"n{n}"]})
    async with tenant_scope(workspace.tenant_id) as tx:
        conn = raw_connection(tx)
        head = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        key = audit_key()
        key_id = key_id_for(key)
        await conn.fetchval("SELECT audit_archive_through($1, $2, $3, $4, $5)", workspace.tenant_id, head["seq"],
                            head["hash"], key_id, checkpoint_mac(key, workspace.tenant_id, head["seq"], head["hash"],
                                                                 key_id))
        assert await conn.fetchval("SELECT count(*) FROM audit_log") == 0
    audit_log._heads.pop(workspace.tenant_id, None)  # as a fresh process would start
    async with tenant_scope(workspace.tenant_id) as tx:
        seq = await append_entry(tx, owner(workspace), action="contact.update", object_type="contacts",
                                 object_id=9, diff={"notes": ["", "after"]})
    assert seq == head["seq"] + 1
    await verify(workspace)
