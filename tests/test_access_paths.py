"""Every access path that exists today, walked for a role that hides contacts.phone and for
the sales role (own records only): pages (list, edit form), API (list, get, search), the
audit viewer, and the jobs path. Whatever a path returns must have passed the permission
engine, and reads of sensitive fields must be audited."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from kith.jobs.welcome import welcome_email
from kith.platform.audit.entries import AuditFilter, head_seq, list_entries
from kith.platform.db import platform_tx, tenant_scope
from kith.platform.email.models import OutboxEmail

from .conftest import Services, Workspace, make_workspace
from .factories import Member, add_member, owner_token
from .web_helpers import client, login

PHONE = "+86 138 0013 8000"
PHONE_FRAGMENT = "0013 8000"
EMAIL = "wang.fang@example.cn"


@dataclass
class Paths:
    ws: Workspace
    owner: dict[str, str]
    no_phone: Member  # custom role: view, create, edit on all contacts; phone hidden
    sales: Member  # built-in sales: own contacts only
    reader: Member  # built-in read-only
    theirs: dict[str, Any]  # the owner's contact, with phone and email
    own: dict[str, Any]  # the sales member's own contact


@pytest.fixture(scope="module")
async def paths(db: Services) -> Paths:
    ws = await make_workspace("paths")
    owner = await owner_token(ws)
    async with client(headers=owner) as c:
        role = await c.post("/api/v1/roles", json={
            "name": "No phones", "grants": {"contacts": ["view", "create", "edit"]},
            "record_scope": {"contacts": "all"}, "hidden_fields": {"contacts": ["phone"]}})
        assert role.status_code == 201, role.text
        theirs = await c.post("/api/v1/contacts", json={"name": "王芳", "phone": PHONE, "email": EMAIL})
        assert theirs.status_code == 201
    sales = await add_member(ws, "sales")
    async with client(headers=sales.headers) as c:
        own = await c.post("/api/v1/contacts", json={"name": "Sales own lead", "phone": "+1 202 555 0101"})
        assert own.status_code == 201
    return Paths(ws, owner, await add_member(ws, role.json()["key"]), sales, await add_member(ws, "read_only"),
                 theirs.json(), own.json())


async def _head(ws: Workspace) -> int:
    async with tenant_scope(ws.tenant_id) as tx:
        return await head_seq(tx)


async def _reads_since(ws: Workspace, since: int) -> list[dict[str, Any]]:
    async with tenant_scope(ws.tenant_id) as tx:
        page = await list_entries(tx, AuditFilter(action="contacts.read_sensitive"), limit=200)
    return [e.as_json() for e in page.items if e.seq > since]


async def test_api_hides_the_phone_and_audits_only_what_it_returns(paths: Paths) -> None:
    since = await _head(paths.ws)
    async with client(headers=paths.no_phone.headers) as c:
        listed = (await c.get("/api/v1/contacts")).json()["items"]
        assert listed and all("phone" not in i for i in listed)
        assert PHONE not in str(listed)
        got = (await c.get(f"/api/v1/contacts/{paths.theirs['id']}")).json()
        assert "phone" not in got and got["email"] == EMAIL
        # a search on the hidden field must not match, or the match itself reveals the number
        assert (await c.get("/api/v1/contacts", params={"q": PHONE_FRAGMENT})).json()["items"] == []
        patched = (await c.patch(f"/api/v1/contacts/{paths.theirs['id']}", json={"notes": "called"})).json()
        assert "phone" not in patched
    reads = await _reads_since(paths.ws, since)
    # one per call that returned a sensitive value; the phone is never named, it was never shown
    assert [(e["object_id"], e["diff"]["fields"]) for e in reversed(reads)] == [
        ("", ["email"]), (str(paths.theirs["id"]), ["email"]), (str(paths.theirs["id"]), ["email"])]
    assert {e["actor_id"] for e in reads} == {str(paths.no_phone.identity_id)}
    assert all(PHONE not in str(e["diff"]) and EMAIL not in str(e["diff"]) for e in reads)  # ids and names only


async def test_api_keeps_sales_to_their_own_records(paths: Paths) -> None:
    async with client(headers=paths.sales.headers) as c:
        listed = (await c.get("/api/v1/contacts")).json()["items"]
        assert [i["id"] for i in listed] == [paths.own["id"]]
        assert (await c.get(f"/api/v1/contacts/{paths.theirs['id']}")).status_code == 404
        assert (await c.get("/api/v1/contacts", params={"q": PHONE_FRAGMENT})).json()["items"] == []
        assert (await c.get("/api/v1/contacts", params={"q": "王"})).json()["items"] == []
        patch = await c.patch(f"/api/v1/contacts/{paths.theirs['id']}", json={"notes": "mine now"})
        assert patch.status_code == 404


async def test_pages_hide_the_phone_and_keep_sales_to_their_own(paths: Paths) -> None:
    base = f"/t/{paths.ws.slug}/contacts"
    async with client() as c:
        await login(c, paths.no_phone.email, paths.no_phone.password)
        for page in (base, f"{base}/{paths.theirs['id']}/edit", f"{base}?q=%E7%8E%8B"):
            html = (await c.get(page)).text
            assert "王芳" in html and PHONE_FRAGMENT not in html and 'name="phone"' not in html, page
        assert "王芳" not in (await c.get(base, params={"q": PHONE_FRAGMENT})).text
    async with client() as c:
        await login(c, paths.sales.email, paths.sales.password)
        html = (await c.get(base)).text
        assert "Sales own lead" in html and "王芳" not in html and PHONE_FRAGMENT not in html
        assert (await c.get(f"{base}/{paths.theirs['id']}/edit")).status_code == 404
        assert (await c.get(f"{base}/{paths.theirs['id']}/delete")).status_code == 404


async def test_audit_viewer_refuses_roles_without_manage_settings(paths: Paths) -> None:
    for member in (paths.reader, paths.no_phone, paths.sales):
        async with client() as c:
            await login(c, member.email, member.password)
            assert (await c.get(f"/t/{paths.ws.slug}/settings/audit")).status_code == 403
        async with client(headers=member.headers) as c:
            denied = await c.get("/api/v1/audit")
            assert denied.status_code == 403 and denied.json()["error"]["permission"] == "workspace: manage_settings"


async def test_welcome_job_reads_as_a_job_and_leaks_nothing(paths: Paths) -> None:
    since = await _head(paths.ws)
    result = await welcome_email({"job_try": 1}, paths.ws.tenant_id, paths.ws.identity_id)
    assert result.startswith("email "), result
    async with platform_tx() as tx:
        mail = await OutboxEmail.filter(dedupe_key=f"welcome:{paths.ws.tenant_id}:{paths.ws.identity_id}").using_db(
            tx).get()
    assert "It has 2 contacts so far." in mail.body_text  # a count, nothing of any contact
    for secret in (PHONE, PHONE_FRAGMENT, EMAIL, "王芳", "Sales own lead"):
        assert secret not in mail.body_text and secret not in mail.subject
    async with tenant_scope(paths.ws.tenant_id) as tx:
        page = await list_entries(tx, AuditFilter(), limit=200)
    written = [e for e in page.items if e.seq > since]
    # a job's internal reads are not audited as reads (see TenantSession.audit_read); anything
    # the job does write names it as a job
    assert all(e.action != "contacts.read_sensitive" for e in written)
    assert all(e.actor_kind == "job" for e in written), [(e.action, e.actor_kind) for e in written]


async def test_audit_viewer_hides_fields_hidden_from_the_reader(paths: Paths) -> None:
    async with client(headers=paths.owner) as c:
        role = await c.post("/api/v1/roles", json={
            "name": "Auditor without phones", "grants": {"contacts": ["view"]}, "workspace": ["manage_settings"],
            "record_scope": {"contacts": "all"}, "hidden_fields": {"contacts": ["phone"]}})
        assert role.status_code == 201, role.text
    auditor = await add_member(paths.ws, role.json()["key"])
    async with client(headers=auditor.headers) as c:
        entries = await c.get("/api/v1/audit", params={"action": "contact.create", "limit": "200"})
    assert entries.status_code == 200
    assert PHONE not in entries.text
