"""Tenant administration: invitations, deactivation, password reset, workspace settings, usage.

Against the real app in-process (httpx over ASGI) on the real PostgreSQL; emails are read
from public.outbox_emails, where the app writes them."""

from __future__ import annotations

import re
import secrets

import httpx

from kith.jobs.invites import password_reset_email
from kith.platform.db import platform_tx, tenant_scope

from .conftest import Workspace
from .factories import PASSWORD, add_member, owner_token
from .web_helpers import assert_error, client, csrf_from, form_post, login

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
NEW_PASSWORD = "a brand new passphrase 7"


async def _rows(sql: str, *args: object) -> list[dict[str, object]]:
    async with platform_tx() as tx:
        return await tx.execute_query_dict(sql, list(args))


async def _invite_link(tenant_id: int, email: str) -> str:
    rows = await _rows("SELECT body_text FROM public.outbox_emails WHERE tenant_id = $1 AND kind = 'invitation'"
                       " AND lower(to_address) = lower($2) ORDER BY id DESC LIMIT 1", tenant_id, email)
    match = re.search(r"https?://\S+(/invite/\S+)", str(rows[0]["body_text"]))
    assert match, rows
    return match.group(1)


async def _invite(ws: Workspace, email: str, role: str = "sales") -> str:
    async with client(headers=await owner_token(ws)) as c:
        resp = await c.post("/api/v1/invitations", json={"email": email, "role": role})
        assert resp.status_code == 201, resp.text
    return await _invite_link(ws.tenant_id, email)


async def _state(ws: Workspace, email: str) -> tuple[int, int, int]:
    """(identities with the email, memberships in ws, invitation.accept audit entries) — what acceptance writes."""
    ids = await _rows("SELECT count(*) AS n FROM public.identities WHERE lower(email) = lower($1)", email)
    members = await _rows("SELECT count(*) AS n FROM public.memberships m JOIN public.identities i"
                          " ON i.id = m.identity_id WHERE m.tenant_id = $1 AND lower(i.email) = lower($2)",
                          ws.tenant_id, email)
    async with tenant_scope(ws.tenant_id) as tx:
        audits = await tx.execute_query_dict("SELECT count(*) AS n FROM audit_log WHERE action = 'invitation.accept'")
    return int(ids[0]["n"]), int(members[0]["n"]), int(audits[0]["n"])  # type: ignore[call-overload]


async def _accept_new(c: httpx.AsyncClient, link: str, name: str = "Li Na", password: str = NEW_PASSWORD
                      ) -> httpx.Response:
    page = await c.get(link)
    return await c.post(link, data={"display_name": name, "password": password, "csrf_token": csrf_from(page.text)})


async def test_invite_and_accept_as_a_new_person(workspace: Workspace) -> None:
    email = f"new-{secrets.token_hex(3)}@example.com"
    async with client() as admin_c:
        await login(admin_c, workspace.email, workspace.password)
        members = f"/t/{workspace.slug}/settings/members"
        bad = await form_post(admin_c, members, {"email": "not-an-email", "role": "sales"}, members + "/invite")
        assert bad.status_code == 422 and 'data-field="email"' in bad.text
        resp = await form_post(admin_c, members, {"email": email, "role": "support"}, members + "/invite")
        assert resp.status_code == 303
        page = await admin_c.get(members)
        assert email in page.text and "Pending invitations" in page.text
    link = await _invite_link(workspace.tenant_id, email)
    async with client() as c:
        page = await c.get(link)
        assert page.status_code == 200 and "Test Company" in page.text and "Support" in page.text
        weak = await c.post(link, data={"display_name": "Li Na", "password": "short",
                                        "csrf_token": csrf_from(page.text)})
        assert weak.status_code == 422 and 'data-field="password"' in weak.text
        assert (await _state(workspace, email))[:2] == (0, 0)
        done = await _accept_new(c, link)
        assert done.status_code == 303 and done.headers["location"] == f"/t/{workspace.slug}/contacts"
        assert (await c.get(f"/t/{workspace.slug}/contacts")).status_code == 200  # signed in as the new member
    rows = await _rows("SELECT m.role, i.display_name FROM public.memberships m JOIN public.identities i"
                       " ON i.id = m.identity_id WHERE m.tenant_id = $1 AND i.email = $2", workspace.tenant_id, email)
    assert rows == [{"role": "support", "display_name": "Li Na"}]
    # reused: the same link again is refused and writes nothing
    before = await _state(workspace, email)
    async with client() as c:
        again = await c.get(link)
        assert again.status_code == 410 and "already accepted" in again.text
    assert await _state(workspace, email) == before


async def test_accept_as_an_existing_person_and_the_wrong_account(workspace: Workspace,
                                                                   other_workspace: Workspace) -> None:
    person = await add_member(other_workspace, "sales")  # has an account, not in `workspace`
    stranger = await add_member(other_workspace, "sales")
    link = await _invite(workspace, person.email.upper(), "read_only")
    async with client() as c:
        page = await c.get(link)
        assert "already has a Kith account" in page.text
        # signed in as someone else: a clear message, a way to switch, and nothing written
        await login(c, stranger.email, stranger.password)
        wrong = await c.get(link)
        assert wrong.status_code == 403 and "data-wrong-account" in wrong.text
        before = await _state(workspace, person.email)
        refused = await c.post(link, data={"csrf_token": csrf_from(wrong.text)})
        assert refused.status_code == 403 and "another account" in refused.text
        assert await _state(workspace, person.email) == before
        switch = await c.post(link + "/switch", data={"csrf_token": csrf_from(wrong.text)})
        assert switch.headers["location"] == f"/login?next={link}"
        resp = await form_post(c, "/login", {"email": person.email, "password": PASSWORD, "next": link}, "/login")
        assert resp.headers["location"] == link
        page = await c.get(link)
        done = await c.post(link, data={"csrf_token": csrf_from(page.text)})
        assert done.status_code == 303
        assert (await c.get(f"/t/{workspace.slug}/contacts")).status_code == 200
    rows = await _rows("SELECT role FROM public.memberships WHERE tenant_id = $1 AND identity_id = $2",
                       workspace.tenant_id, person.identity_id)
    assert rows == [{"role": "read_only"}]


async def test_expired_and_revoked_invitations_are_refused(workspace: Workspace) -> None:
    expired_email = f"late-{secrets.token_hex(3)}@example.com"
    revoked_email = f"gone-{secrets.token_hex(3)}@example.com"
    expired = await _invite(workspace, expired_email)
    await _rows("UPDATE public.invitations SET expires_at = now() - interval '1 minute' WHERE email = $1",
                expired_email)
    revoked = await _invite(workspace, revoked_email)
    headers = await owner_token(workspace)
    async with client(headers=headers) as api:
        listed = (await api.get("/api/v1/invitations")).json()["items"]
        target = next(i for i in listed if i["email"] == revoked_email)
        assert (await api.delete(f"/api/v1/invitations/{target['id']}")).status_code == 204
        assert_error(await api.delete(f"/api/v1/invitations/{target['id']}"), 404, "not_found")
    for link, email, words in ((expired, expired_email, "expired"), (revoked, revoked_email, "withdrawn")):
        async with client() as c:
            page = await c.get(link)
            assert page.status_code == 410 and words in page.text
            token = csrf_from((await c.get("/login")).text)  # the refusal page has no form
            resp = await c.post(link, data={"display_name": "X", "password": NEW_PASSWORD, "csrf_token": token})
            assert resp.status_code == 410
        assert await _state(workspace, email) == (0, 0, 0)
    async with client() as c:
        assert (await c.get("/invite/not-a-real-token")).status_code == 404


async def test_inviting_needs_manage_users_and_cannot_exceed_the_inviters_role(workspace: Workspace) -> None:
    sales = await add_member(workspace, "sales")
    admin = await add_member(workspace, "admin")
    async with client(headers=sales.headers) as c:
        assert_error(await c.post("/api/v1/invitations", json={"email": "x@example.com"}), 403, "permission_denied")
    async with client(headers=admin.headers) as c:
        assert_error(await c.post("/api/v1/invitations", json={"email": "x@example.com", "role": "owner"}), 403)
        assert_error(await c.post("/api/v1/invitations", json={"email": sales.email}), 409, "already_member")


async def test_deactivation_stops_sessions_and_tokens_at_once(workspace: Workspace) -> None:
    member = await add_member(workspace, "sales")
    owner = await owner_token(workspace)
    async with client() as browser, client(headers=member.headers) as token, client(headers=owner) as api:
        await login(browser, member.email, member.password)
        contacts = f"/t/{workspace.slug}/contacts"
        assert (await browser.get(contacts)).status_code == 200
        assert (await token.get("/api/v1/contacts")).status_code == 200
        resp = await api.post(f"/api/v1/members/{member.identity_id}/deactivate")
        assert resp.status_code == 200 and resp.json()["is_active"] is False
        assert (await browser.get(contacts)).status_code == 404
        assert_error(await token.get("/api/v1/contacts"), 401, "invalid_token")
        seats = await _rows("SELECT deactivated_at FROM public.memberships WHERE identity_id = $1", member.identity_id)
        assert seats[0]["deactivated_at"] is not None
        resp = await api.post(f"/api/v1/members/{member.identity_id}/reactivate")
        assert resp.status_code == 200 and resp.json()["is_active"] is True
        assert (await browser.get(contacts)).status_code == 200
        assert (await token.get("/api/v1/contacts")).status_code == 200
    async with tenant_scope(workspace.tenant_id) as tx:
        actions = [r["action"] for r in await tx.execute_query_dict(
            "SELECT action FROM audit_log WHERE action LIKE 'member.%activate' ORDER BY seq")]
    assert actions == ["member.deactivate", "member.reactivate"]


async def test_the_last_owner_cannot_be_deactivated(workspace: Workspace) -> None:
    admin = await add_member(workspace, "admin")
    second = await add_member(workspace, "owner")
    first_owner = await owner_token(workspace)
    async with client(headers=admin.headers) as c:
        assert_error(await c.post(f"/api/v1/members/{workspace.identity_id}/deactivate"), 403, "permission_denied")
    async with client(headers=second.headers) as c:
        assert (await c.post(f"/api/v1/members/{workspace.identity_id}/deactivate")).status_code == 200
    async with client(headers=first_owner) as c:  # the deactivated owner's token stopped
        assert (await c.get("/api/v1/contacts")).status_code == 401
    async with client() as c:  # the remaining owner, in the page, deactivating themselves
        await login(c, second.email, second.password)
        members = f"/t/{workspace.slug}/settings/members"
        page = await c.get(members)
        resp = await c.post(f"{members}/{second.identity_id}/deactivate", data={"csrf_token": csrf_from(page.text)})
        assert resp.status_code == 409
    rows = await _rows("SELECT is_active FROM public.memberships WHERE identity_id = $1", second.identity_id)
    assert rows == [{"is_active": True}]


async def test_last_owner_rule_when_an_owner_deactivates_the_other(workspace: Workspace) -> None:
    second = await add_member(workspace, "owner")
    async with client(headers=second.headers) as c:
        assert (await c.post(f"/api/v1/members/{workspace.identity_id}/deactivate")).status_code == 200
    async with client(headers=second.headers) as c:
        assert_error(await c.post(f"/api/v1/members/{second.identity_id}/deactivate"), 409)


async def test_password_reset(workspace: Workspace) -> None:
    async with client() as other_browser:
        await login(other_browser, workspace.email, workspace.password)
        contacts = f"/t/{workspace.slug}/contacts"
        assert (await other_browser.get(contacts)).status_code == 200
        async with client() as c:
            answers = []
            for email in (workspace.email, f"nobody-{secrets.token_hex(3)}@example.com"):
                resp = await form_post(c, "/forgot-password", {"email": email})
                assert resp.status_code == 200
                answers.append(resp.text.replace(email, ""))
            assert answers[0] == answers[1]  # the same page whether or not the account exists
        # the job the page queued (run here; in production the worker runs it)
        assert (await password_reset_email({}, f"nobody-{secrets.token_hex(3)}@example.com")).startswith("skipped")
        assert (await password_reset_email({}, workspace.email)).endswith("outbox")
        rows = await _rows("SELECT body_text FROM public.outbox_emails WHERE kind = 'password_reset'"
                           " AND to_address = $1 ORDER BY id DESC LIMIT 1", workspace.email)
        link = re.search(r"https?://\S+(/reset/\S+)", str(rows[0]["body_text"]))
        assert link
        path = link.group(1)
        async with client() as c:
            page = await c.get(path)
            assert page.status_code == 200
            weak = await c.post(path, data={"password": "short", "csrf_token": csrf_from(page.text)})
            assert weak.status_code == 422 and 'data-field="password"' in weak.text
            done = await c.post(path, data={"password": NEW_PASSWORD, "csrf_token": csrf_from(page.text)})
            assert done.status_code == 303 and done.headers["location"] == "/login?reset=1"
            again = await c.get(path)
            assert again.status_code == 410 and "already used" in again.text
        # every session ended; the new password works, the old one does not
        assert (await other_browser.get(contacts)).status_code == 303
    async with client() as c:
        assert (await login(c, workspace.email, workspace.password)).status_code == 401
        assert (await login(c, workspace.email, NEW_PASSWORD)).status_code == 303
    # an expired link
    assert (await password_reset_email({}, workspace.email)).endswith("outbox")
    rows = await _rows("SELECT body_text FROM public.outbox_emails WHERE kind = 'password_reset'"
                       " AND to_address = $1 ORDER BY id DESC LIMIT 1", workspace.email)
    await _rows("UPDATE public.password_resets SET expires_at = now() - interval '1 second'"
                " WHERE used_at IS NULL AND identity_id = $1", workspace.identity_id)
    link = re.search(r"https?://\S+(/reset/\S+)", str(rows[0]["body_text"]))
    assert link
    async with client() as c:
        assert (await c.get(link.group(1))).status_code == 410
    # the per-email limit: three an hour, then nothing more is sent (and nothing said)
    assert (await password_reset_email({}, workspace.email)).endswith("outbox")
    assert (await password_reset_email({}, workspace.email)).startswith("skipped")


async def test_workspace_settings_validation(workspace: Workspace) -> None:
    page = f"/t/{workspace.slug}/settings/workspace"
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        good = {"name": "Renamed Co", "locale": "en", "time_zone": "Asia/Shanghai", "default_currency": "cny",
                "default_phone_region": "CN"}
        for field, bad, words in (("time_zone", "Mars/Olympus", "not a time zone"),
                                  ("default_currency", "XYZ", "ISO 4217"),
                                  ("default_phone_region", "ZZ", "not a region"),
                                  ("locale", "fr", "Choose one")):
            resp = await form_post(c, page, {**good, field: bad})
            assert resp.status_code == 422, field
            assert f'data-field="{field}"' in resp.text and words in resp.text
        got = await c.get(page)
        token = csrf_from(got.text)
        for name, data, words in (("logo.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * (300 * 1024), "at most 256 KB"),
                                  ("logo.gif", b"GIF89a" + b"\x00" * 20, "PNG, JPEG or WebP"),
                                  ("logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>x()</script></svg>',
                                   "SVG logos are not accepted")):
            resp = await c.post(page, data={**good, "csrf_token": token}, files={"logo": (name, data, "image/png")})
            assert resp.status_code == 422 and 'data-field="logo"' in resp.text and words in resp.text, name
        rows = await _rows("SELECT name, time_zone, default_currency, default_phone_region, logo_updated_at"
                           " FROM public.tenants WHERE id = $1", workspace.tenant_id)
        assert rows == [{"name": "Test Company", "time_zone": "UTC", "default_currency": "USD",
                         "default_phone_region": None, "logo_updated_at": None}]  # nothing changed
        resp = await c.post(page, data={**good, "csrf_token": token}, files={"logo": ("logo.png", PNG, "image/png")})
        assert resp.status_code == 303
        contacts = await c.get(f"/t/{workspace.slug}/contacts")
        logo = re.search(r'src="(/t/[^"]+/logo\?v=\d+)"', contacts.text)
        assert logo and "Renamed Co" in contacts.text
        served = await c.get(logo.group(1))
        assert served.content == PNG and served.headers["content-type"] == "image/png"
        assert served.headers["x-content-type-options"] == "nosniff"
    async with client(headers=await owner_token(workspace)) as api:
        got = (await api.get("/api/v1/workspace")).json()
        assert got["default_currency"] == "CNY" and got["time_zone"] == "Asia/Shanghai"
        err = assert_error(await api.patch("/api/v1/workspace", json={"default_currency": "EURO"}), 422)
        assert "default_currency" in err["fields"]
    async with tenant_scope(workspace.tenant_id) as tx:
        entries = await tx.execute_query_dict(
            "SELECT diff FROM audit_log WHERE action = 'workspace.update' ORDER BY seq")
    assert len(entries) == 1
    assert '"before"' in str(entries[0]["diff"]) and "Test Company" in str(entries[0]["diff"])


async def test_zh_cn_locale_switches_the_ui(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as api:
        assert (await api.patch("/api/v1/workspace", json={"locale": "zh-CN"})).status_code == 200
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        page = await c.get(f"/t/{workspace.slug}/settings/members")
        assert 'lang="zh-CN"' in page.text
        assert ">联系人<" in page.text and ">设置<" in page.text and ">成员<" in page.text and "邀请同事" in page.text
    async with client(headers={"Accept-Language": "zh-CN,zh;q=0.9"}) as c:
        assert "忘记密码" in (await c.get("/login")).text
    async with client() as c:
        assert "Forgot your password?" in (await c.get("/login")).text


async def test_usage_numbers(workspace: Workspace) -> None:
    await add_member(workspace, "sales")
    gone = await add_member(workspace, "sales")
    async with client(headers=await owner_token(workspace)) as api:
        await api.post(f"/api/v1/members/{gone.identity_id}/deactivate")
        for n in range(3):
            assert (await api.post("/api/v1/contacts", json={"name": f"Usage {n}"})).status_code == 201
        await api.post("/api/v1/invitations", json={"email": f"u-{secrets.token_hex(3)}@example.com"})
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        page = (await c.get(f"/t/{workspace.slug}/settings/usage")).text

    def used(name: str) -> int:
        match = re.search(rf'data-usage="{name}">.*?data-used>(\d+)<', page, flags=re.S)
        assert match, name
        return int(match.group(1))

    assert used("seats") == 2  # the owner and one active member
    assert used("contacts") == 3
    assert used("emails_per_month") == 1  # the invitation
    assert used("storage_mb") >= 1
