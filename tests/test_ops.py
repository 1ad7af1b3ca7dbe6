"""The ops console: operator sign-in with mandatory TOTP, suspend/reactivate with reasons and
both audit entries, impersonation (banner, attribution, expiry, end), and the walls between
operators, tenant users and workspace data."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import httpx
import pyotp
from starlette.routing import Mount, Route

from kith.platform.db import platform_tx, tenant_scope
from kith.platform.ops.operators import OperatorEnrolment, create_operator

from .conftest import Workspace
from .web_helpers import app, client, csrf_from, form_post, login

PASSWORD = "operator horse battery staple"


async def make_operator() -> OperatorEnrolment:
    return await create_operator(f"op-{secrets.token_hex(4)}@ops.kith.example", PASSWORD)


def code(secret: str, steps_ahead: int = 0) -> str:
    """A TOTP code; steps_ahead=1 is the next 30-second step (still accepted), for a second sign-in."""
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_ahead)


async def ops_login(c: httpx.AsyncClient, op: OperatorEnrolment, steps_ahead: int = 0) -> httpx.Response:
    first = await form_post(c, "/ops/login", {"email": op.operator.email, "password": PASSWORD})
    assert first.status_code == 303 and first.headers["location"] == "/ops/login/verify", first.text[:300]
    return await form_post(c, "/ops/login/verify", {"code": code(op.secret, steps_ahead)})


async def platform_entries(action: str, object_id: str) -> list[dict[str, Any]]:
    async with platform_tx() as tx:
        return await tx.execute_query_dict(
            "SELECT actor_kind, actor_id, actor_label, action, diff::text AS diff FROM public.platform_audit"
            " WHERE action = $1 AND object_id = $2 ORDER BY seq", [action, object_id])


async def tenant_entries(tenant_id: int, action: str) -> list[dict[str, Any]]:
    async with tenant_scope(tenant_id) as tx:
        return await tx.execute_query_dict(
            "SELECT actor_kind, actor_id, actor_label, object_type, object_id, diff::text AS diff FROM audit_log"
            " WHERE action = $1 ORDER BY seq", [action])


async def tenant_status(tenant_id: int) -> str:
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict("SELECT status FROM public.tenants WHERE id = $1", [tenant_id])
    return str(rows[0]["status"])


async def test_operator_sign_in_needs_password_then_code(db: object) -> None:
    op = await make_operator()
    async with client() as c:
        assert (await c.get("/ops")).headers["location"] == "/ops/login"
        first = await form_post(c, "/ops/login", {"email": op.operator.email, "password": PASSWORD})
        assert first.status_code == 303
        # the password alone opens nothing: the challenge cookie is no session
        assert (await c.get("/ops")).headers["location"] == "/ops/login"
        done = await form_post(c, "/ops/login/verify", {"code": code(op.secret)})
        assert done.status_code == 303 and done.headers["location"] == "/ops"
        cookie = done.headers["set-cookie"].lower()
        assert "kith_ops_session=" in cookie and "path=/ops" in cookie and "httponly" in cookie
        assert "samesite=strict" in cookie
        page = await c.get("/ops")
        assert page.status_code == 200 and "Platform dashboard" in page.text
        assert (await c.get("/ops/tenants")).status_code == 200
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT totp_confirmed_at, totp_secret FROM public.operators WHERE id = $1", [op.operator.id])
    assert rows[0]["totp_confirmed_at"] is not None  # the first code confirmed the enrolment
    assert rows[0]["totp_secret"].startswith("kc1:")  # encrypted at rest


async def test_wrong_password_or_code_is_refused_and_throttled(db: object) -> None:
    op = await make_operator()
    async with client() as c:
        first = await form_post(c, "/ops/login", {"email": op.operator.email, "password": PASSWORD})
        assert first.status_code == 303
        wrong = f"{(int(code(op.secret)) + 1) % 1_000_000:06d}"
        refused = await form_post(c, "/ops/login/verify", {"code": wrong})
        assert refused.status_code == 401 and "not correct" in refused.text
        assert (await c.get("/ops")).status_code == 303
        statuses = []
        for _ in range(5):
            resp = await form_post(c, "/ops/login", {"email": op.operator.email, "password": "wrong password 1"})
            statuses.append(resp.status_code)
        # one wrong code and four wrong passwords reach the limit of 5: the fifth is refused and locks
        assert statuses == [401, 401, 401, 429, 429], statuses
        locked = await form_post(c, "/ops/login", {"email": op.operator.email, "password": PASSWORD})
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    # an operator without a second factor cannot sign in at all, even with the right password
    other = await make_operator()
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.operators SET totp_secret = NULL WHERE id = $1", [other.operator.id])
    async with client() as c:
        resp = await form_post(c, "/ops/login", {"email": other.operator.email, "password": PASSWORD})
        assert resp.status_code == 401


async def test_suspend_and_reactivate_need_a_reason_and_are_audited_twice(workspace: Workspace) -> None:
    op = await make_operator()
    page = f"/ops/tenants/{workspace.tenant_id}"
    async with client() as c:
        await ops_login(c, op)
        listing = await c.get("/ops/tenants", params={"q": workspace.slug})
        assert workspace.slug in listing.text and re.search(r'data-label="Seats">1<', listing.text)
        assert (await c.get("/ops/tenants", params={"q": workspace.slug, "status": "suspended"})).text.count(
            f'data-tenant="{workspace.slug}"') == 0
        blank = await form_post(c, page, {"reason": "   "}, f"{page}/suspend")
        assert blank.status_code == 422 and "Give a reason" in blank.text
        assert await tenant_status(workspace.tenant_id) == "active"
        assert await tenant_entries(workspace.tenant_id, "ops.suspend") == []
        done = await form_post(c, page, {"reason": "chargeback fraud review #12"}, f"{page}/suspend")
        assert done.status_code == 303
        assert await tenant_status(workspace.tenant_id) == "suspended"
        async with client() as owner:
            await login(owner, workspace.email, workspace.password)
            assert (await owner.get(f"/t/{workspace.slug}/contacts")).status_code == 403
        shown = await c.get(page)
        assert "suspended" in shown.text and "ops.suspend" in shown.text
        blank = await form_post(c, page, {"reason": ""}, f"{page}/reactivate")
        assert blank.status_code == 422 and await tenant_status(workspace.tenant_id) == "suspended"
        again = await form_post(c, page, {"reason": "review cleared"}, f"{page}/reactivate")
        assert again.status_code == 303 and await tenant_status(workspace.tenant_id) == "active"
    for action, reason in (("ops.suspend", "chargeback fraud review #12"), ("ops.reactivate", "review cleared")):
        [mine] = await tenant_entries(workspace.tenant_id, action)
        assert mine["actor_kind"] == "operator" and op.operator.email in mine["actor_label"]
        assert reason in mine["diff"]
        [platform] = await platform_entries(action, str(workspace.tenant_id))
        assert platform["actor_kind"] == "operator" and platform["actor_id"] == str(op.operator.id)
        assert reason in platform["diff"] and workspace.slug in platform["diff"]


async def test_impersonation_acts_as_the_member_attributed_to_the_operator(
        workspace: Workspace, other_workspace: Workspace) -> None:
    op = await make_operator()
    page = f"/ops/tenants/{workspace.tenant_id}"
    base = f"/t/{workspace.slug}"
    async with client() as c:
        await ops_login(c, op)
        detail = await c.get(page)
        assert workspace.email in detail.text and "owner" in detail.text
        blank = await form_post(c, page, {"identity_id": str(workspace.identity_id), "reason": ""},
                                f"{page}/impersonate")
        assert blank.status_code == 422
        assert (await c.get(f"{base}/contacts")).status_code == 303  # still nothing in the workspace
        started = await form_post(c, page, {"identity_id": str(workspace.identity_id),
                                            "reason": "ticket 881: contacts missing"}, f"{page}/impersonate")
        assert started.status_code == 303 and started.headers["location"] == f"{base}/contacts"
        cookie = started.headers["set-cookie"].lower()
        assert f"path=/t/{workspace.slug}" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        contacts = await c.get(f"{base}/contacts")
        assert contacts.status_code == 200
        assert 'class="impersonation-banner"' in contacts.text and op.operator.email in contacts.text
        assert 'href="/account/security"' not in contacts.text  # the member's account is out of reach
        made = await form_post(c, f"{base}/contacts/new", {"name": "Support Test", "email": "st@example.com"})
        assert made.status_code == 303
        assert 'class="impersonation-banner"' in (await c.get(made.headers["location"])).text
        # no API token can be minted for the member while impersonating
        token = await form_post(c, f"{base}/settings/tokens", {"name": "sneaky"})
        assert token.status_code == 403
        # the impersonation reaches this workspace only, and never the API
        assert (await c.get(f"/t/{other_workspace.slug}/contacts")).status_code == 303
        assert (await c.get(f"{base}/api/v1/contacts")).status_code == 401
        # while impersonating, the console shows this workspace's audit diffs
        assert "Changes are shown" in (await c.get(page)).text
        impersonation_id = re.search(r'data-impersonation="(\d+)"', contacts.text)
        assert impersonation_id
        ended = await c.post(f"/ops/impersonations/{impersonation_id.group(1)}/end",
                             data={"csrf_token": csrf_from(contacts.text)})
        assert ended.status_code == 303
        after = await c.get(f"{base}/contacts")
        assert after.status_code == 303 and after.headers["location"].startswith("/login")
        assert "the changed values are shown only while impersonating" in (await c.get(page)).text
    [created] = await tenant_entries(workspace.tenant_id, "contact.create")
    assert created["actor_kind"] == "operator"
    assert op.operator.email in created["actor_label"] and workspace.email in created["actor_label"]
    [start] = await tenant_entries(workspace.tenant_id, "ops.impersonate.start")
    assert start["actor_kind"] == "operator" and "ticket 881" in start["diff"]
    assert start["object_id"] == str(workspace.identity_id)
    [end] = await tenant_entries(workspace.tenant_id, "ops.impersonate.end")
    assert end["actor_kind"] == "operator"
    assert len(await platform_entries("ops.impersonate.start", str(workspace.identity_id))) == 1
    assert len(await platform_entries("ops.impersonate.end", str(workspace.identity_id))) == 1


async def test_impersonation_expires_and_ends_with_the_console_session(workspace: Workspace) -> None:
    op = await make_operator()
    page = f"/ops/tenants/{workspace.tenant_id}"
    base = f"/t/{workspace.slug}"
    async with client() as c:
        await ops_login(c, op)
        await form_post(c, page, {"identity_id": str(workspace.identity_id), "reason": "check import"},
                        f"{page}/impersonate")
        assert (await c.get(f"{base}/contacts")).status_code == 200
        async with platform_tx() as tx:
            await tx.execute_query(
                "UPDATE public.impersonation_sessions SET expires_at = now() - interval '1 second'"
                " WHERE operator_id = $1", [op.operator.id])
        assert (await c.get(f"{base}/contacts")).status_code == 303
        assert "expired" in (await c.get(page)).text
        # a new one, then signing out of the console ends it too
        await form_post(c, page, {"identity_id": str(workspace.identity_id), "reason": "again"},
                        f"{page}/impersonate")
        assert (await c.get(f"{base}/contacts")).status_code == 200
        out = await form_post(c, "/ops", {}, "/ops/logout")
        assert out.status_code == 303
        assert (await c.get(f"{base}/contacts")).status_code == 303
    # the expired one is closed (marked expired) when the next starts; the next by signing out
    first, second = await tenant_entries(workspace.tenant_id, "ops.impersonate.end")
    assert '"expired": true' in first["diff"] and '"expired": false' in second["diff"]


async def test_a_tenant_users_session_cannot_reach_ops(workspace: Workspace) -> None:
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        for path in ("/ops", "/ops/tenants", f"/ops/tenants/{workspace.tenant_id}"):
            resp = await c.get(path)
            assert resp.status_code == 303 and resp.headers["location"] == "/ops/login", path
        page = await c.get(f"/t/{workspace.slug}/contacts")
        resp = await c.post(f"/ops/tenants/{workspace.tenant_id}/suspend",
                            data={"reason": "x", "csrf_token": csrf_from(page.text)})
        assert resp.status_code == 303 and resp.headers["location"] == "/ops/login"
    assert await tenant_status(workspace.tenant_id) == "active"


def _tenant_paths(slug: str) -> list[str]:
    """Every /t/<slug>/ page and API path of the app, with ids filled in."""
    paths: list[str] = []

    def fill(path: str) -> str:
        return re.sub(r"\{[^}]+\}", lambda m: slug if m.group(0).startswith("{slug") else "1", path)

    for route in app().routes:
        if isinstance(route, Mount) and route.path.startswith("/t/"):
            paths += [fill(route.path + sub.path) for sub in route.routes if isinstance(sub, Route)]
        elif isinstance(route, Route) and route.path.startswith("/t/"):
            paths.append(fill(route.path))
    return paths


async def test_an_operator_without_impersonation_gets_nothing_from_a_workspace(workspace: Workspace) -> None:
    op = await make_operator()
    async with client() as c:
        await ops_login(c, op)
        raw = c.cookies.get("kith_ops_session")
    assert raw
    paths = _tenant_paths(workspace.slug)
    assert len(paths) > 10 and any("/api/v1/" in p for p in paths)
    # the cookie is sent whatever its path says, as a hostile client would
    async with client(headers={"cookie": f"kith_ops_session={raw}"}) as c:
        for path in paths:
            for method in ("GET", "POST"):
                resp = await c.request(method, path)
                if "/api/" in path:
                    assert resp.status_code == 401, (method, path, resp.status_code)
                else:
                    assert resp.status_code == 303 and resp.headers["location"].startswith("/login"), (
                        method, path, resp.status_code)


async def test_kith_ops_create_operator_prints_the_enrolment_once(db: object) -> None:
    from .test_cli import assert_bad_input, kith

    email = f"cli-op-{secrets.token_hex(4)}@ops.kith.example"
    made = await kith("ops", "create-operator", "--email", email, "--password", PASSWORD)
    assert made.returncode == 0, made.stderr
    secret = re.search(r"secret: ([A-Z2-7]+)", made.stdout)
    assert secret and "otpauth://totp/" in made.stdout
    async with client() as c:
        first = await form_post(c, "/ops/login", {"email": email, "password": PASSWORD})
        assert first.status_code == 303
        done = await form_post(c, "/ops/login/verify", {"code": pyotp.TOTP(secret.group(1)).now()})
        assert done.headers["location"] == "/ops"
    assert_bad_input(await kith("ops", "create-operator", "--email", email, "--password", PASSWORD),
                     "already exists")
    assert_bad_input(await kith("ops", "create-operator", "--email", "x@y.example", "--password", "short"),
                     "at least")


async def test_extend_trial_comp_and_resend_verification_need_reasons_and_are_audited(db: object) -> None:
    from datetime import UTC, datetime, timedelta

    from kith.platform.billing.subscriptions import current_subscription

    from .conftest import make_workspace

    ws = await make_workspace("opsbill", verified=False)
    op = await make_operator()
    page = f"/ops/tenants/{ws.tenant_id}"
    before = await current_subscription(ws.tenant_id)
    assert before.trial_ends_at is not None
    until = datetime.now(UTC).date() + timedelta(days=60)
    async with client() as c:
        await ops_login(c, op)
        shown = await c.get(page)
        assert 'data-field="subscription"' in shown.text and "trialing" in shown.text and "No invoices." in shown.text
        # a missing reason: 422, nothing changed, no entry
        for action, data in (("extend-trial", {"days": "10"}), ("comp", {"plan": "starter", "until": str(until)}),
                             ("resend-verification", {"identity_id": str(ws.identity_id)})):
            blank = await form_post(c, page, {**data, "reason": " "}, f"{page}/{action}")
            assert blank.status_code == 422 and "Give a reason" in blank.text, action
        assert await current_subscription(ws.tenant_id) == before
        assert await tenant_entries(ws.tenant_id, "ops.extend_trial") == []
        sent_before = await _verification_rows(ws.identity_id)

        done = await form_post(c, page, {"days": "10", "reason": "ticket 12: needs a week more"},
                               f"{page}/extend-trial")
        assert done.status_code == 303 and done.headers["location"].endswith("done=extended")
        extended = await current_subscription(ws.tenant_id)
        assert extended.trial_ends_at == before.trial_ends_at + timedelta(days=10)

        resent = await form_post(c, page, {"identity_id": str(ws.identity_id), "reason": "ticket 13: no email"},
                                 f"{page}/resend-verification")
        assert resent.status_code == 303 and resent.headers["location"].endswith("done=resent")
        assert await _verification_rows(ws.identity_id) == sent_before + 1

        comped = await form_post(c, page, {"plan": "starter", "until": str(until), "reason": "partner deal"},
                                 f"{page}/comp")
        assert comped.status_code == 303
        detail = await c.get(page)
        assert f"comped until {until}" in detail.text
        # a comped workspace is no longer in its trial
        refused = await form_post(c, page, {"days": "5", "reason": "again"}, f"{page}/extend-trial")
        assert refused.status_code == 409 and "Only a workspace in its trial" in refused.text
    sub = await current_subscription(ws.tenant_id)
    assert (sub.plan, sub.status, sub.comped()) == ("starter", "active", True)
    assert sub.comped_until == datetime.combine(until, datetime.min.time(), UTC)
    # the comp shows on the workspace's billing page and in its API, and nothing is billed
    async with client() as owner:
        await login(owner, ws.email, ws.password)
        billing = await owner.get(f"/t/{ws.slug}/settings/billing")
        assert f"Complimentary Starter plan from Kith support until {until}" in billing.text
        assert 'id="plan-name">Starter' in billing.text and 'class="empty" id="next-invoice"' in billing.text
        body = (await owner.get(f"/t/{ws.slug}/api/v1/billing", headers=await _owner_headers(ws))).json()
        assert body["comped_until"] and body["next_invoice_amount"] is None
    for action, reason in (("ops.extend_trial", "ticket 12"), ("ops.comp_plan", "partner deal"),
                           ("ops.resend_verification", "ticket 13")):
        [mine] = await tenant_entries(ws.tenant_id, action)
        assert mine["actor_kind"] == "operator" and reason in mine["diff"], action
        object_id = str(ws.identity_id) if action == "ops.resend_verification" else str(ws.tenant_id)
        [platform] = await platform_entries(action, object_id)
        assert platform["actor_id"] == str(op.operator.id) and reason in platform["diff"], action
    [comp_entry] = await tenant_entries(ws.tenant_id, "ops.comp_plan")
    assert '"plan": ["pro", "starter"]' in comp_entry["diff"]


async def test_comp_and_extend_refuse_a_workspace_stripe_bills(workspace: Workspace) -> None:
    from kith.platform.billing.subscriptions import current_subscription

    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.billing_subscriptions SET stripe_subscription_id = 'sub_ops_1'"
                               " WHERE tenant_id = $1", [workspace.tenant_id])
    before = await current_subscription(workspace.tenant_id)
    op = await make_operator()
    page = f"/ops/tenants/{workspace.tenant_id}"
    async with client() as c:
        await ops_login(c, op)
        assert "Stripe bills this workspace" in (await c.get(page)).text
        comp = await form_post(c, page, {"plan": "pro", "until": "2099-01-01", "reason": "x"}, f"{page}/comp")
        assert comp.status_code == 409 and "billed by Stripe (subscription sub_ops_1)" in comp.text
        extend = await form_post(c, page, {"days": "3", "reason": "x"}, f"{page}/extend-trial")
        assert extend.status_code == 409 and "Stripe dashboard" in extend.text
        # the owner's email is verified (the fixture): nothing to resend
        resend = await form_post(c, page, {"identity_id": str(workspace.identity_id), "reason": "x"},
                                 f"{page}/resend-verification")
        assert resend.status_code == 409 and "already verified" in resend.text
    assert await current_subscription(workspace.tenant_id) == before
    assert await tenant_entries(workspace.tenant_id, "ops.comp_plan") == []


async def _verification_rows(identity_id: int) -> int:
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT count(*) AS n FROM public.email_verifications WHERE identity_id = $1", [identity_id])
    return int(rows[0]["n"])


async def _owner_headers(ws: Workspace) -> dict[str, str]:
    from .factories import owner_token

    return await owner_token(ws)
