"""Account security through the real app: sign-in throttling and lockout, TOTP two-factor
authentication (enrolment, login, reuse, recovery codes, disabling, workspace mandate),
sessions and tokens a person can see and revoke, password change; each audited."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import time
from typing import Any

import httpx
import pyotp
import pytest
from argon2 import PasswordHasher

from kith.platform.config import reset_settings, restored_environment
from kith.platform.db import platform_tx, tenant_scope
from kith.platform.identity.models import Identity, Membership, RecoveryCode
from kith.platform.identity.passwords import verify_password
from kith.platform.identity.ratelimit import Attempt, Lockout, begin_attempt
from kith.platform.identity.tokens import create_api_token

from .conftest import Workspace, make_workspace
from .web_helpers import app, csrf_from, form_post

_ips = itertools.count(1)
# The suite checks many passwords; argon2 at production cost takes ~0.2-0.5 s each on a
# shared 2-core machine. Identities made here store a hash with the cheapest parameters:
# verification reads the cost from the hash, so the code under test runs unchanged.
_CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


async def _cheap_password(identity_id: int, password: str) -> None:
    async with platform_tx() as tx:
        await Identity.filter(id=identity_id).using_db(tx).update(password_hash=_CHEAP.hash(password))


@pytest.fixture
async def workspace(db: object) -> Workspace:
    """A fresh tenant with its owner, whose password is cheap to check."""
    ws = await make_workspace("sec")
    await _cheap_password(ws.identity_id, ws.password)
    return ws


def _client(ip: str | None = None, agent: str = "pytest-browser/1.0") -> httpx.AsyncClient:
    """A client from its own address, so tests never share a per-IP count."""
    n = next(_ips)
    address = ip or f"10.{os.getpid() % 250}.{n // 250}.{n % 250}"
    transport = httpx.ASGITransport(app=app(), client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers={"user-agent": agent})


async def _login(c: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await form_post(c, "/login", {"email": email, "password": password}, "/login")


async def _code(c: httpx.AsyncClient, code: str) -> httpx.Response:
    return await form_post(c, "/login/verify", {"code": code})


async def _actions(tenant_id: int) -> list[tuple[str, dict[str, Any] | None]]:
    """The tenant's audit log, oldest first: (action, diff)."""
    async with tenant_scope(tenant_id) as tx:
        rows = await tx.execute_query_dict("SELECT action, diff FROM audit_log ORDER BY seq")
    return [(r["action"], json.loads(r["diff"]) if isinstance(r["diff"], str) else r["diff"]) for r in rows]


async def _action_names(tenant_id: int) -> list[str]:
    return [a for a, _ in await _actions(tenant_id)]


async def _identity(identity_id: int) -> Identity:
    async with platform_tx() as tx:
        return await Identity.filter(id=identity_id).using_db(tx).get()


async def _expire_lock(email: str) -> None:
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.login_throttles SET locked_until = now() - interval '1 second'"
                               " WHERE scope = 'email' AND key = $1", [email.lower()])


async def _enrol(c: httpx.AsyncClient) -> tuple[str, list[str]]:
    """Turn 2FA on for the signed-in client; returns the secret and the recovery codes."""
    page = await c.get("/account/security/2fa")
    assert page.status_code == 200
    assert "<svg" in page.text  # the QR code, drawn by the server
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text)
    assert secret
    done = await c.post("/account/security/2fa", data={"code": pyotp.TOTP(secret.group(1)).now(),
                                                       "csrf_token": csrf_from(page.text)})
    assert done.status_code == 200, done.text[-1500:]
    codes = re.findall(r"<li><code>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})</code></li>", done.text)
    assert len(codes) == 10 and len(set(codes)) == 10
    return secret.group(1), codes


def _wrong_code(secret: str) -> str:
    """A well-formed code that no step in the accepted window produces."""
    totp = pyotp.TOTP(secret)
    valid = {totp.at(time.time() + d) for d in (-60, -30, 0, 30, 60)}
    return next(c for c in ("000000", "111111", "222222", "333333", "444444", "555555") if c not in valid)


def _next_code(secret: str) -> str:
    """The code of the next time-step: accepted (clock drift allowance) yet never used before."""
    return pyotp.TOTP(secret).at(time.time() + 30)


async def test_lockout_refuses_even_the_right_password_and_names_the_wait(workspace: Workspace) -> None:
    async with _client() as c:
        for n in range(1, 5):
            resp = await _login(c, workspace.email, f"wrong password {n}")
            assert resp.status_code == 401 and "not correct" in resp.text
        locked = await _login(c, workspace.email, "wrong password 5")
        assert locked.status_code == 429
        assert "try again in 15 minutes" in locked.text
        assert 890 <= int(locked.headers["retry-after"]) <= 900
        # the right password, in another case, is refused while the lock lasts
        again = await _login(c, workspace.email.upper(), workspace.password)
        assert again.status_code == 429 and "try again in" in again.text and "kith_session" not in again.headers.get(
            "set-cookie", "")
        assert (await c.get(f"/t/{workspace.slug}/contacts")).status_code == 303
        await _expire_lock(workspace.email)
        ok = await _login(c, workspace.email, workspace.password)
        assert ok.status_code == 303 and ok.headers["location"] == f"/t/{workspace.slug}/contacts"
    names = await _action_names(workspace.tenant_id)
    assert names.count("login.failure") == 5
    assert names.count("login.locked") == 1  # the lock's start; refusals during it go to the request log
    assert names[-1] == "login.success"
    locked_entry = [d for a, d in await _actions(workspace.tenant_id) if a == "login.locked"][0]
    assert locked_entry is not None and locked_entry["scope"] == "email"


async def test_a_success_resets_the_email_count(workspace: Workspace) -> None:
    async with _client() as c:
        for _ in range(4):
            assert (await _login(c, workspace.email, "not the password")).status_code == 401
        assert (await _login(c, workspace.email, workspace.password)).status_code == 303
        for _ in range(4):  # four more: not locked, the earlier four were forgiven
            assert (await _login(c, workspace.email, "not the password")).status_code == 401
        assert (await _login(c, workspace.email, workspace.password)).status_code == 303


async def test_per_ip_limit_spans_emails(workspace: Workspace) -> None:
    with restored_environment("KITH_LOGIN_MAX_FAILURES_PER_IP"):
        os.environ["KITH_LOGIN_MAX_FAILURES_PER_IP"] = "3"
        reset_settings()
        member_email, _ = await _add_member(workspace, "sales")
        async with _client() as c:
            assert (await _login(c, f"nobody-0-{workspace.slug}@example.com", "guess one two")).status_code == 401
            assert (await _login(c, member_email, "guess one two")).status_code == 401
            third = await _login(c, workspace.email, "guess one two")  # each email failed only once
            assert third.status_code == 429 and "from your network" in third.text
            # a real account with its right password, from the same address: refused
            refused = await _login(c, workspace.email, workspace.password)
            assert refused.status_code == 429 and "retry-after" in refused.headers
        async with _client() as elsewhere:
            assert (await _login(elsewhere, workspace.email, workspace.password)).status_code == 303
    # failures for unknown emails land in the platform's own audit log
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT action FROM public.platform_audit WHERE actor_label = $1",
            [f"nobody-0-{workspace.slug}@example.com"])
    assert [r["action"] for r in rows] == ["login.failure"]


async def test_two_factor_enrolment_login_reuse_and_recovery_codes(workspace: Workspace) -> None:
    async with _client() as c:
        await _login(c, workspace.email, workspace.password)
        page = await c.get("/account/security/2fa")
        secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text)
        assert secret
        # bad codes first: nothing is turned on
        for bad, words in (("12ab", "6-digit"), ("000000", "not correct")):
            resp = await c.post("/account/security/2fa", data={"code": bad, "csrf_token": csrf_from(page.text)})
            assert resp.status_code == 422 and words in resp.text, (bad, resp.text[-800:])
        assert (await _identity(workspace.identity_id)).totp_enabled_at is None
        # reloading shows the same pending secret (the app may have stored it already)
        assert secret.group(1) in (await c.get("/account/security/2fa")).text
        used_at_enrolment = pyotp.TOTP(secret.group(1)).now()
        done = await c.post("/account/security/2fa", data={"code": used_at_enrolment,
                                                           "csrf_token": csrf_from(page.text)})
        assert done.status_code == 200 and "will not be shown again" in done.text
        codes = re.findall(r"<li><code>([a-z2-7-]{19})</code></li>", done.text)
        assert len(codes) == 10
        async with platform_tx() as tx:
            stored = [r.code_hash for r in await RecoveryCode.filter(identity_id=workspace.identity_id).using_db(tx)]
        assert len(stored) == 10 and not set(codes) & set(stored)  # only hashes are kept
        assert "Recovery codes left" in (await c.get("/account/security")).text
        await form_post(c, "/account/security", {}, "/logout")

    totp = secret.group(1)
    async with _client() as c:
        first = await _login(c, workspace.email, workspace.password)
        assert first.status_code == 303 and first.headers["location"] == "/login/verify"
        assert "kith_session" not in first.headers.get("set-cookie", "")  # half signed in is not a session
        assert (await c.get(f"/t/{workspace.slug}/contacts")).status_code == 303
        wrong = await _code(c, _wrong_code(totp))
        assert wrong.status_code == 401 and "not correct" in wrong.text
        malformed = await _code(c, "12 34")
        assert malformed.status_code == 422 and "6-digit" in malformed.text
        reused = await _code(c, used_at_enrolment)
        assert reused.status_code == 401 and "already used" in reused.text
        ok = await _code(c, _next_code(totp))
        assert ok.status_code == 303 and ok.headers["location"] == f"/t/{workspace.slug}/contacts"
        assert (await c.get(f"/t/{workspace.slug}/contacts")).status_code == 200
        await form_post(c, f"/t/{workspace.slug}/contacts", {}, "/logout")

    async with _client() as c:
        await _login(c, workspace.email, workspace.password)
        ok = await _code(c, codes[3].upper().replace("-", " "))  # case, spaces and hyphens do not matter
        assert ok.status_code == 303
        await form_post(c, f"/t/{workspace.slug}/contacts", {}, "/logout")
        await _login(c, workspace.email, workspace.password)
        again = await _code(c, codes[3])
        assert again.status_code == 401 and "already used" in again.text
        assert (await _code(c, codes[4])).status_code == 303
        left = re.search(r'id="recovery-left">(\d+)<', (await c.get("/account/security")).text)
        assert left and left.group(1) == "8"

    names = await _action_names(workspace.tenant_id)
    assert "2fa.enable" in names and names.count("logout") == 3
    factors = [d["factor"] for a, d in await _actions(workspace.tenant_id) if a == "login.success" and d]
    assert factors[-3:] == ["totp", "recovery", "recovery"]
    second = [d for a, d in await _actions(workspace.tenant_id) if a == "login.failure" and d]
    assert [d["reason"] for d in second] == ["second_factor"] * 3


async def test_the_code_step_expires_after_too_many_wrong_codes(workspace: Workspace) -> None:
    async with _client() as c:
        await _login(c, workspace.email, workspace.password)
        secret, _ = await _enrol(c)
    async with _client() as c:
        assert (await _login(c, workspace.email, workspace.password)).headers["location"] == "/login/verify"
        for _ in range(4):
            assert (await _code(c, _wrong_code(secret))).status_code == 401
        # the fifth wrong code also reaches the email's lock (5 failures)
        last = await _code(c, _wrong_code(secret))
        assert last.status_code == 429 and "try again in" in last.text
        await _expire_lock(workspace.email)
        gone = await c.get("/login/verify")
        assert gone.status_code == 401 and "Enter your email and password again" in gone.text


async def test_disable_two_factor_needs_password_and_code(workspace: Workspace) -> None:
    async with _client() as c:
        await _login(c, workspace.email, workspace.password)
        secret, codes = await _enrol(c)
        cases = [
            ({"password": "not my password", "code": _next_code(secret)}, "current_password", "not correct"),
            ({"password": workspace.password, "code": "abc"}, "code", "6-digit"),
            ({"password": workspace.password, "code": "bbbb-bbbb-bbbb-bbbb"}, "code", "recovery code is not correct"),
        ]
        for data, field, words in cases:
            resp = await form_post(c, "/account/security", data, "/account/security/2fa/disable")
            assert resp.status_code == 422, (data, resp.status_code)
            message = re.search(rf'data-field="{field}">([^<]+)<', resp.text)
            assert message and words in message.group(1), (data, resp.text[-1200:])
        assert (await _identity(workspace.identity_id)).totp_enabled_at is not None
        off = await form_post(c, "/account/security", {"password": workspace.password, "code": _next_code(secret)},
                              "/account/security/2fa/disable")
        assert off.status_code == 303 and off.headers["location"].endswith("done=2fa-off")
        identity = await _identity(workspace.identity_id)
        assert identity.totp_enabled_at is None and identity.totp_secret is None
        async with platform_tx() as tx:
            assert await RecoveryCode.filter(identity_id=workspace.identity_id).using_db(tx).count() == 0
        await form_post(c, "/account/security", {}, "/logout")
        # password alone signs in again
        assert (await _login(c, workspace.email, workspace.password)).headers["location"].endswith("/contacts")
    assert "2fa.disable" in await _action_names(workspace.tenant_id)


async def _add_member(ws: Workspace, role: str) -> tuple[str, str]:
    email = f"member-{role}-{ws.slug}@example.com"
    password = "member passphrase 77"
    async with platform_tx() as tx:
        identity = await Identity.create(email=email, password_hash=_CHEAP.hash(password), using_db=tx)
        await Membership.create(tenant_id=ws.tenant_id, identity_id=identity.id, role=role, using_db=tx)
    return email, password


async def test_mandatory_two_factor_sends_members_to_enrol(workspace: Workspace) -> None:
    member_email, member_password = await _add_member(workspace, "sales")
    _, raw_token = await create_api_token(tenant_id=workspace.tenant_id, identity_id=workspace.identity_id,
                                          name="sync")
    settings_page = f"/t/{workspace.slug}/settings/security"
    async with _client() as member:
        await _login(member, member_email, member_password)
        # only owners and admins may change it
        denied = await member.get(settings_page)
        assert denied.status_code == 403 and "manage_settings" in denied.text
    async with _client() as owner:
        await _login(owner, workspace.email, workspace.password)
        saved = await form_post(owner, settings_page, {"require_2fa": "on"})
        assert saved.status_code == 303
        sent = await owner.get(f"/t/{workspace.slug}/contacts")
        assert sent.status_code == 303
        assert sent.headers["location"] == f"/account/security?required={workspace.slug}"
        notice = await owner.get(sent.headers["location"])
        assert "requires" in notice.text and workspace.name in notice.text
        # API tokens are separate credentials: unaffected
        api = await owner.get("/api/v1/contacts", headers={"Authorization": f"Bearer {raw_token}"})
        assert api.status_code == 200
        secret, _ = await _enrol(owner)
        assert (await owner.get(f"/t/{workspace.slug}/contacts")).status_code == 200
        listing = await owner.get(settings_page)
        assert listing.status_code == 200 and member_email in listing.text
    async with _client() as member:
        await _login(member, member_email, member_password)
        assert (await member.get(f"/t/{workspace.slug}/contacts")).status_code == 303
    entries = await _actions(workspace.tenant_id)
    assert ("settings.update", {"require_2fa": [False, True]}) in entries


async def test_sessions_are_listed_and_revoked_at_once(workspace: Workspace) -> None:
    async with _client(agent="Laptop Firefox") as laptop, _client(agent="Phone Safari") as phone, \
            _client(agent="Tablet Chrome") as tablet:
        for c in (laptop, phone, tablet):
            await _login(c, workspace.email, workspace.password)
        page = await laptop.get("/account/security")
        assert page.status_code == 200
        for agent in ("Laptop Firefox", "Phone Safari", "Tablet Chrome"):
            assert agent in page.text
        rows = re.findall(r'<tr data-session="(\d+)">\s*<td data-label="Device">([^<]+)<', page.text)
        phone_id = next(sid for sid, agent in rows if agent.startswith("Phone Safari"))
        revoked = await laptop.post(f"/account/sessions/{phone_id}/revoke", data={"csrf_token": csrf_from(page.text)})
        assert revoked.status_code == 303
        assert (await phone.get(f"/t/{workspace.slug}/contacts")).status_code == 303  # its cookie is dead
        assert (await tablet.get(f"/t/{workspace.slug}/contacts")).status_code == 200
        # last seen is written at most once a minute
        async with platform_tx() as tx:
            await tx.execute_query("UPDATE public.web_sessions SET last_seen_at = now() - interval '5 minutes'"
                                   " WHERE identity_id = $1", [workspace.identity_id])
        await tablet.get(f"/t/{workspace.slug}/contacts")
        async with platform_tx() as tx:
            seen = await tx.execute_query_dict(
                "SELECT user_agent, now() - last_seen_at < interval '1 minute' AS fresh FROM public.web_sessions"
                " WHERE identity_id = $1", [workspace.identity_id])
        assert {r["user_agent"]: r["fresh"] for r in seen} == {"Laptop Firefox": False, "Tablet Chrome": True}
        others = await form_post(laptop, "/account/security", {}, "/account/sessions/revoke-others")
        assert others.status_code == 303
        assert (await tablet.get(f"/t/{workspace.slug}/contacts")).status_code == 303
        assert (await laptop.get(f"/t/{workspace.slug}/contacts")).status_code == 200
        left = await laptop.get("/account/security")
        assert len(re.findall(r'<tr data-session="', left.text)) == 1 and "this browser" in left.text
    revokes = [d for a, d in await _actions(workspace.tenant_id) if a == "session.revoke"]
    assert len(revokes) == 2 and revokes[1] is not None and revokes[1]["sessions_ended"] == 1


async def test_password_change_checks_input_and_ends_other_sessions(workspace: Workspace) -> None:
    new_password = "a brand new passphrase 2026"
    async with _client() as here, _client() as there:
        await _login(here, workspace.email, workspace.password)
        await _login(there, workspace.email, workspace.password)
        cases = [
            ({"current_password": "wrong current pw", "new_password": new_password,
              "new_password_confirm": new_password}, "current_password", "not correct"),
            ({"current_password": workspace.password, "new_password": "short", "new_password_confirm": "short"},
             "new_password", "at least 10"),
            ({"current_password": workspace.password, "new_password": "password123",
              "new_password_confirm": "password123"}, "new_password", "too easy"),
            ({"current_password": workspace.password, "new_password": new_password,
              "new_password_confirm": new_password + "x"}, "new_password_confirm", "do not match"),
        ]
        for data, field, words in cases:
            resp = await form_post(here, "/account/password", data)
            assert resp.status_code == 422, (data, resp.status_code)
            message = re.search(rf'data-field="{field}">([^<]+)<', resp.text)
            assert message and words in message.group(1), (field, resp.text[-1200:])
        assert verify_password((await _identity(workspace.identity_id)).password_hash, workspace.password)
        assert (await there.get(f"/t/{workspace.slug}/contacts")).status_code == 200
        changed = await form_post(here, "/account/password", {
            "current_password": workspace.password, "new_password": new_password,
            "new_password_confirm": new_password})
        assert changed.status_code == 303
        assert (await there.get(f"/t/{workspace.slug}/contacts")).status_code == 303
        assert (await here.get(f"/t/{workspace.slug}/contacts")).status_code == 200
    async with _client() as c:
        assert (await _login(c, workspace.email, workspace.password)).status_code == 401
        assert (await _login(c, workspace.email, new_password)).status_code == 303
    entries = [d for a, d in await _actions(workspace.tenant_id) if a == "password.change"]
    assert entries == [{"sessions_ended": 1}]


async def test_tokens_across_workspaces_are_listed_and_revocable(workspace: Workspace) -> None:
    second = await make_workspace("second", "Second Co")
    async with platform_tx() as tx:
        await Membership.create(tenant_id=second.tenant_id, identity_id=workspace.identity_id, role="sales",
                                using_db=tx)
    first_token, first_raw = await create_api_token(tenant_id=workspace.tenant_id,
                                                    identity_id=workspace.identity_id, name="first sync")
    _, second_raw = await create_api_token(tenant_id=second.tenant_id, identity_id=workspace.identity_id,
                                           name="second sync")
    async with _client() as c:
        await _login(c, workspace.email, workspace.password)
        page = await c.get("/account/security")
        assert "first sync" in page.text and "second sync" in page.text and "Second Co" in page.text
        revoked = await c.post(f"/account/tokens/{first_token.id}/revoke", data={"csrf_token": csrf_from(page.text)})
        assert revoked.status_code == 303
        api = await c.get("/api/v1/me", headers={"Authorization": f"Bearer {first_raw}"})
        assert api.status_code == 401
        assert (await c.get("/api/v1/me", headers={"Authorization": f"Bearer {second_raw}"})).status_code == 200
    first_log = await _action_names(workspace.tenant_id)
    assert "token.create" in first_log and "token.revoke" in first_log
    # each token's events are in its own workspace's log only
    second_log = await _actions(second.tenant_id)
    assert [d["name"] for a, d in second_log if a == "token.create" and d] == ["second sync"]
    assert "token.revoke" not in [a for a, _ in second_log]


async def test_a_parallel_burst_gets_no_more_password_checks_than_the_limit(db: object) -> None:
    email = f"burst-{os.getpid()}-{next(_ips)}@example.com"
    results = await asyncio.gather(*(begin_attempt(email, f"192.0.2.{n}") for n in range(12)))
    allowed = [r for r in results if isinstance(r, Attempt)]
    refused = [r for r in results if isinstance(r, Lockout)]
    assert len(allowed) == 5 and len(refused) == 7  # counted before the check, so a race cannot overrun it
    assert all(r.scope == "email" for r in refused)


async def test_the_daily_purge_deletes_expired_sessions_and_challenges_only(workspace: Workspace) -> None:
    from datetime import UTC, datetime, timedelta

    from kith.jobs.housekeeping import purge_sessions
    from kith.platform.identity.models import LoginChallenge, WebSession
    from kith.platform.identity.sessions import load_session, start_login_challenge, start_session, token_hash

    identity = await Identity.get(id=workspace.identity_id)
    live = await start_session(identity)
    expired = [await start_session(identity) for _ in range(3)]
    challenge = await start_login_challenge(identity.id)
    past = datetime.now(UTC) - timedelta(minutes=1)
    async with platform_tx() as tx:
        await WebSession.filter(token_hash__in=[token_hash(t) for t in expired]).using_db(tx).update(expires_at=past)
        await LoginChallenge.filter(token_hash=token_hash(challenge)).using_db(tx).update(expires_at=past)
        before = await WebSession.filter(identity_id=identity.id).using_db(tx).count()
    assert await purge_sessions({}) >= 4  # other tests' expired rows may go too
    async with platform_tx() as tx:
        after = await WebSession.filter(identity_id=identity.id).using_db(tx).count()
        challenges = await LoginChallenge.filter(token_hash=token_hash(challenge)).using_db(tx).count()
    assert (before, after, challenges) == (4, 1, 0)
    assert await load_session(live) is not None  # the live one still signs in
