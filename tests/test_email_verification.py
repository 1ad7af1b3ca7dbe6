"""Email verification by signed link, and the plan chosen at signup.

Against the real app in-process (httpx over ASGI) on the real PostgreSQL; emails are read from
public.outbox_emails and delivered to the dev outbox by the job the worker would run."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx

from kith.jobs.invites import verification_email
from kith.platform.billing.subscriptions import current_subscription
from kith.platform.db import platform_tx, tenant_scope
from kith.platform.identity.verification import SENDS_PER_HOUR

from .conftest import Services, make_workspace, unique_slug
from .factories import owner_token
from .test_tenant_admin import _accept_new, _invite
from .web_helpers import client, csrf_from, form_post, login

PASSWORD = "a long passphrase 42"


async def _rows(sql: str, *args: object) -> list[dict[str, Any]]:
    async with platform_tx() as tx:
        return await tx.execute_query_dict(sql, list(args))


async def _verified(email: str) -> bool:
    rows = await _rows("SELECT email_verified_at FROM public.identities WHERE lower(email) = lower($1)", email)
    return rows[0]["email_verified_at"] is not None


async def _latest_link(email: str) -> tuple[str, dict[str, Any]]:
    """The newest verification email to `email`: its link's path, and its outbox row."""
    rows = await _rows("SELECT id, status, body_text FROM public.outbox_emails WHERE kind = 'email_verification'"
                       " AND lower(to_address) = lower($1) ORDER BY id DESC LIMIT 1", email)
    match = re.search(r"https?://\S+(/verify-email/\S+)", str(rows[0]["body_text"]))
    assert match, rows
    return match.group(1), rows[0]


async def _verify_entries(tenant_id: int) -> list[str]:
    async with tenant_scope(tenant_id) as tx:
        rows = await tx.execute_query_dict("SELECT diff::text AS diff FROM audit_log WHERE action = 'email.verify'")
    return [str(r["diff"]) for r in rows]


async def _signup(c: httpx.AsyncClient, slug: str, email: str, plan: str | None = None) -> httpx.Response:
    data = {"company_name": "Verify Co", "slug": slug, "email": email, "password": PASSWORD}
    if plan is not None:
        data["plan"] = plan
    return await form_post(c, "/signup", data)


async def test_signup_emails_a_link_that_verifies_once(db: Services) -> None:
    slug = unique_slug("verify")
    email = f"boss@{slug}.example.com"
    async with client() as c:
        resp = await _signup(c, slug, email)
        assert resp.status_code == 303
        assert not await _verified(email)
        contacts = await c.get(f"/t/{slug}/contacts")
        assert 'data-banner="verify-email"' in contacts.text and email in contacts.text
        # the job the signup queued delivers the email to the dev outbox (no SMTP_HOST)
        path, row = await _latest_link(email)
        link = await _rows("SELECT id FROM public.email_verifications WHERE identity_id ="
                           " (SELECT id FROM public.identities WHERE email = $1)", email)
        assert row["status"] == "pending"
        assert await verification_email({}, int(link[0]["id"]), int(row["id"])) == f"email {row['id']}: outbox"
        assert (await c.get("/dev/outbox")).text.count("Confirm your email address") >= 1
        page = await c.get(path)
        assert page.status_code == 200 and email in page.text and not await _verified(email)  # GET changes nothing
        done = await c.post(path, data={"csrf_token": csrf_from(page.text)})
        assert done.status_code == 200 and "is verified" in done.text
        assert await _verified(email)
        assert 'data-banner="verify-email"' not in (await c.get(f"/t/{slug}/contacts")).text
        # reused: refused, nothing written
        again = await c.post(path, data={"csrf_token": csrf_from(page.text)})
        assert again.status_code == 410 and "already used" in again.text
        assert (await c.get(path)).status_code == 410
        assert (await c.get("/verify-email/not-a-real-token")).status_code == 404
    tenant = await _rows("SELECT id FROM public.tenants WHERE slug = $1", slug)
    assert await _verify_entries(int(tenant[0]["id"])) == ['{"via": "link"}']
    # the link was used up: the delivery job now skips it
    assert (await verification_email({}, int(link[0]["id"]), int(row["id"]))).startswith("skipped")


async def test_expired_links_are_refused_and_resend_is_rate_limited(db: Services) -> None:
    ws = await make_workspace("vexp", verified=False)
    path, _ = await _latest_link(ws.email)  # written by signup: one of the hour's sends
    await _rows("UPDATE public.email_verifications SET expires_at = now() - interval '1 second'"
                " WHERE identity_id = $1", ws.identity_id)
    async with client() as c:
        expired = await c.get(path)
        assert expired.status_code == 410 and "expired" in expired.text
        await login(c, ws.email, ws.password)
        for _ in range(SENDS_PER_HOUR - 1):
            sent = await form_post(c, "/account/verify-email", {}, "/account/verify-email/resend")
            assert sent.status_code == 303 and sent.headers["location"] == "/account/verify-email?sent=1"
        refused = await form_post(c, "/account/verify-email", {}, "/account/verify-email/resend")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert "in the last hour" in refused.text
        newest, _ = await _latest_link(ws.email)
        assert newest != path
        page = await c.get(newest)
        assert (await c.post(newest, data={"csrf_token": csrf_from(page.text)})).status_code == 200
        # verified: the account page says so, and a resend sends nothing
        assert "is verified" in (await c.get("/account/verify-email")).text
        after = await form_post(c, "/account/verify-email", {}, "/account/verify-email/resend")
        assert after.status_code == 303 and after.headers["location"] == "/account/verify-email"
    count = await _rows("SELECT count(*) AS n FROM public.email_verifications WHERE identity_id = $1", ws.identity_id)
    assert int(count[0]["n"]) == SENDS_PER_HOUR


async def test_paid_checkout_waits_for_a_verified_email(db: Services) -> None:
    ws = await make_workspace("vpay", verified=False)
    headers = await owner_token(ws)
    async with client() as c:
        refused = await c.post("/api/v1/billing/checkout", json={"plan": "starter"}, headers=headers)
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["code"] == "email_not_verified" and ws.email in error["message"]
        assert (await c.post("/api/v1/billing/plan", json={"plan": "pro"}, headers=headers)).status_code == 403
        await login(c, ws.email, ws.password)
        page = f"/t/{ws.slug}/settings/billing"
        shown = await form_post(c, page, {"plan": "starter", "interval": "monthly"}, f"{page}/checkout")
        assert shown.status_code == 403 and "Verify your email address" in shown.text
        # the free plan costs nothing: no verification needed
        assert (await c.post("/api/v1/billing/plan", json={"plan": "free"}, headers=headers)).status_code == 200
        path, _ = await _latest_link(ws.email)
        confirm = await c.get(path)
        await c.post(path, data={"csrf_token": csrf_from(confirm.text)})
        done = await c.post("/api/v1/billing/checkout", json={"plan": "starter"}, headers=headers)
        assert done.status_code == 200 and done.json() == {"url": None}  # the local provider: at once
    sub = await current_subscription(ws.tenant_id)
    assert (sub.plan, sub.status) == ("starter", "active")


async def test_accepting_an_invitation_verifies_the_email(db: Services) -> None:
    ws = await make_workspace("vinv")
    email = f"new-{secrets.token_hex(3)}@example.com"
    link = await _invite(ws, email)
    async with client() as c:
        assert (await _accept_new(c, link)).status_code == 303
    assert await _verified(email)
    # someone with an unverified account, signed in as the invited email
    other = await make_workspace("vinv2", verified=False)
    link = await _invite(ws, other.email)
    async with client() as c:
        await login(c, other.email, other.password)
        page = await c.get(link)
        done = await c.post(link, data={"csrf_token": csrf_from(page.text)})
        assert done.status_code == 303, done.text[:300]
    assert await _verified(other.email)
    assert await _verify_entries(ws.tenant_id) == ['{"via": "invitation"}', '{"via": "invitation"}']
    assert await _verify_entries(other.tenant_id) == ['{"via": "invitation"}']
    # the link signup sent the other person is not needed any more: the job skips it
    rows = await _rows("SELECT v.id, e.id AS email_id FROM public.email_verifications v JOIN public.outbox_emails e"
                       " ON e.dedupe_key = 'email_verification:' || v.id WHERE v.identity_id = $1", other.identity_id)
    assert (await verification_email({}, int(rows[0]["id"]), int(rows[0]["email_id"]))).startswith("skipped")


async def test_signup_plan_choice(db: Services) -> None:
    async with client() as c:
        form = await c.get("/signup")
        assert re.search(r'<option value="pro" selected>', form.text) and 'value="starter"' in form.text
        assert 'value="enterprise"' not in form.text and 'value="free"' not in form.text
        before = await _rows("SELECT count(*) AS n FROM public.tenants")
        for bad in ("enterprise", "free", "gold"):
            slug = unique_slug("vplan")
            resp = await _signup(c, slug, f"p@{slug}.example.com", bad)
            assert resp.status_code == 422
            message = re.search(r'data-field="plan">([^<]+)<', resp.text)
            assert message and "Starter, Pro" in message.group(1), resp.text[-1500:]
        assert await _rows("SELECT count(*) AS n FROM public.tenants") == before
        slug = unique_slug("vplan")
        assert (await _signup(c, slug, f"p@{slug}.example.com", "starter")).status_code == 303
    tenant = await _rows("SELECT id FROM public.tenants WHERE slug = $1", slug)
    sub = await current_subscription(int(tenant[0]["id"]))
    assert (sub.plan, sub.status) == ("starter", "trialing") and sub.trial_ends_at is not None
    entries = await _rows("SELECT diff::text AS diff FROM public.platform_audit WHERE action = 'billing.trial_started'"
                          " AND object_id = $1", str(tenant[0]["id"]))
    assert len(entries) == 1 and '"plan": "starter"' in entries[0]["diff"]
