"""Plans, limits, the local provider, the billing page and API, and the banner (no Stripe key)."""

from __future__ import annotations

import pytest

from kith.platform.access.actor import Actor
from kith.platform.access.rules import PermissionDenied
from kith.platform.billing.actions import BillingError, change_plan_locally
from kith.platform.billing.limits import (
    check_contact_capacity,
    check_email_quota,
    check_seat_available,
    usage_of,
)
from kith.platform.billing.plans import PLANS, LimitExceeded, check_limit, current_plan, plan_for, plan_for_price
from kith.platform.billing.subscriptions import current_subscription
from kith.platform.db import platform_tx, tenant_scope

from .conftest import Services, Workspace, make_workspace
from .factories import add_member, owner_token
from .web_helpers import client, form_post, login


def owner(ws: Workspace) -> Actor:
    return Actor(kind="user", tenant_id=ws.tenant_id, role="owner", identity_id=ws.identity_id, label=ws.email)


def test_plans_are_defined_once_with_limits_and_prices() -> None:
    assert list(PLANS) == ["free", "starter", "pro", "enterprise"]
    assert plan_for("starter").seats == 5 and PLANS["enterprise"].seats is None
    assert PLANS["pro"].features.daily_backups and not PLANS["free"].features.ml_scoring
    assert PLANS["pro"].price_id("yearly") == "price_kith_pro_yearly"  # no STRIPE_PRICES: stable local ids
    assert plan_for_price("price_kith_starter_monthly") == (PLANS["starter"], "monthly")
    with pytest.raises(KeyError, match="plans are free, starter"):
        plan_for("gold")


def test_limit_message_names_the_limit_and_how_to_raise_it() -> None:
    with pytest.raises(LimitExceeded) as caught:
        check_limit(PLANS["starter"], "contacts", used=4_990, adding=20)
    message = str(caught.value)
    assert "Starter plan includes 5,000 contacts" in message
    assert "upgrade to Pro on the Billing settings page" in message
    assert "delete contacts you no longer need" in message
    check_limit(PLANS["enterprise"], "contacts", used=10**9, adding=1)  # unlimited


async def test_limits_are_enforced_where_the_work_happens(workspace: Workspace) -> None:
    actor = owner(workspace)
    await change_plan_locally(actor, "free", "monthly")
    assert (await current_plan(workspace.tenant_id)).key == "free"
    await check_seat_available(workspace.tenant_id)  # 1 of 2
    await add_member(workspace, "sales")
    with pytest.raises(LimitExceeded, match="2 user seats"):
        await check_seat_available(workspace.tenant_id)
    await check_contact_capacity(workspace.tenant_id, 500)
    with pytest.raises(LimitExceeded, match="500 contacts"):
        await check_contact_capacity(workspace.tenant_id, 501)
    async with tenant_scope(workspace.tenant_id) as tx:  # inside the caller's own tenant transaction
        with pytest.raises(LimitExceeded):
            await check_contact_capacity(workspace.tenant_id, 501, tx)
    async with tenant_scope(workspace.tenant_id) as tx:  # 3 campaign emails sent this month, 1 waiting
        campaign = await tx.execute_query_dict(
            "INSERT INTO campaigns (name, status) VALUES ('Quota', 'sending') RETURNING id")
        for n in range(4):
            await tx.execute_query(
                "INSERT INTO campaign_recipients (campaign_id, email, status, sent_at)"
                " VALUES ($1, $2, $3, CASE WHEN $3 = 'sent' THEN now() END)",
                [campaign[0]["id"], f"a{n}@example.com", "sent" if n < 3 else "pending"])
    await check_email_quota(workspace.tenant_id, 196)
    with pytest.raises(LimitExceeded, match="200 campaign emails this month; 4 are used"):
        await check_email_quota(workspace.tenant_id, 197)
    usage = await usage_of(workspace.tenant_id)
    assert (usage.seats, usage.contacts, usage.emails_this_month) == (2, 0, 3) and usage.storage_mb > 0


async def test_local_provider_changes_plan_offline_and_audits(workspace: Workspace) -> None:
    sub = await current_subscription(workspace.tenant_id)
    assert (sub.status, sub.provider, sub.plan) == ("trialing", "local", "pro")
    changes = await change_plan_locally(owner(workspace), "starter", "yearly")
    assert changes["plan"] == ["pro", "starter"] and changes["status"] == ["trialing", "active"]
    sub = await current_subscription(workspace.tenant_id)
    assert (sub.plan, sub.billing_interval, sub.state()) == ("starter", "yearly", "active")
    with pytest.raises(BillingError, match="sales team"):
        await change_plan_locally(owner(workspace), "enterprise", "monthly")
    sales = await add_member(workspace, "sales")
    with pytest.raises(PermissionDenied, match="manage_billing"):
        await change_plan_locally(Actor(kind="user", tenant_id=workspace.tenant_id, role="sales",
                                        identity_id=sales.identity_id), "free", "monthly")
    async with tenant_scope(workspace.tenant_id) as tx:
        rows = await tx.execute_query_dict("SELECT action, diff FROM audit_log WHERE action LIKE 'billing.%'")
    assert [r["action"] for r in rows] == ["billing.plan_changed"]


async def test_lapsed_trial_falls_back_to_free(workspace: Workspace) -> None:
    await current_subscription(workspace.tenant_id)  # the trial row is made at first read
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.billing_subscriptions SET trial_ends_at = now() - interval '1 day'"
                               " WHERE tenant_id = $1", [workspace.tenant_id])
    sub = await current_subscription(workspace.tenant_id)
    assert (sub.state(), sub.effective_plan, sub.writable()) == ("active", "free", True)


async def test_billing_api_and_permissions(workspace: Workspace) -> None:
    headers = await owner_token(workspace)
    sales = await add_member(workspace, "sales")
    async with client() as c:
        resp = await c.get("/api/v1/billing", headers=headers)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert (body["plan"], body["state"], body["provider"], body["seats"]) == (
            "pro", "trialing", "local", {"used": 2, "limit": 25})
        resp = await c.post("/api/v1/billing/plan", json={"plan": "starter"}, headers=headers)
        assert resp.status_code == 200 and resp.json()["plan"] == "starter"
        resp = await c.post("/api/v1/billing/checkout", json={"plan": "pro"}, headers=headers)
        assert resp.status_code == 200 and resp.json() == {"url": None}  # applied at once offline
        assert (await current_subscription(workspace.tenant_id)).plan == "pro"
        for method, path in (("GET", "/api/v1/billing"), ("POST", "/api/v1/billing/portal")):
            resp = await c.request(method, path, headers=sales.headers)
            assert resp.status_code == 403 and resp.json()["error"]["permission"] == "workspace: manage_billing"


async def test_billing_page_and_past_due_banner(db: Services) -> None:
    ws = await make_workspace("page")
    async with client() as c:
        await login(c, ws.email, ws.password)
        page = await c.get(f"/t/{ws.slug}/settings/billing")
        assert page.status_code == 200
        assert "Trial" in page.text and "Seats (active users): 1 of 25" in page.text
        resp = await form_post(c, f"/t/{ws.slug}/settings/billing", {"plan": "starter", "interval": "monthly"},
                               f"/t/{ws.slug}/settings/billing/checkout")
        assert resp.status_code == 303
        page = await c.get(resp.headers["location"])
        assert "Plan changed." in page.text and 'id="plan-name">Starter' in page.text
        async with platform_tx() as tx:
            await tx.execute_query("UPDATE public.billing_subscriptions SET status = 'past_due',"
                                   " past_due_since = now() WHERE tenant_id = $1", [ws.tenant_id])
        contacts = await c.get(f"/t/{ws.slug}/contacts")
        assert "Payment overdue." in contacts.text and "billing-banner" in contacts.text
        async with platform_tx() as tx:
            await tx.execute_query("UPDATE public.billing_subscriptions SET past_due_since = now() - interval"
                                   " '20 days' WHERE tenant_id = $1", [ws.tenant_id])
        contacts = await c.get(f"/t/{ws.slug}/contacts")
        assert "Read-only." in contacts.text


async def _outbox(tenant_id: int) -> list[str]:
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT dedupe_key FROM public.outbox_emails WHERE tenant_id = $1 AND kind = 'billing' ORDER BY id",
            [tenant_id])
    return [str(r["dedupe_key"]) for r in rows]


async def test_dunning_and_trial_emails_are_sent_once(workspace: Workspace) -> None:
    from kith.jobs.billing import billing_notices

    await current_subscription(workspace.tenant_id)
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.billing_subscriptions SET trial_ends_at = now() + interval '2 days'"
                               " WHERE tenant_id = $1", [workspace.tenant_id])
    assert (await billing_notices({}, workspace.tenant_id)).startswith("trial-ending")
    await billing_notices({}, workspace.tenant_id)  # a repeated job sends nothing more
    assert [k.split(":")[0] for k in await _outbox(workspace.tenant_id)] == ["trial-ending"]
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.billing_subscriptions SET status = 'past_due', past_due_since ="
                               " now() - interval '3 days 1 hour' WHERE tenant_id = $1", [workspace.tenant_id])
    await billing_notices({}, workspace.tenant_id)
    await billing_notices({}, workspace.tenant_id)
    keys = await _outbox(workspace.tenant_id)
    assert len(keys) == 2 and keys[1].startswith("dunning:") and ":3:" in keys[1]


async def test_cancelled_workspace_is_deleted_after_retention(db: Services) -> None:
    from kith.jobs.billing import billing_notices
    from kith.platform.db import TenantUnavailable

    ws = await make_workspace("gone")
    await current_subscription(ws.tenant_id)
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.billing_subscriptions SET status = 'cancelled', cancelled_at ="
                               " now() - interval '1 day' WHERE tenant_id = $1", [ws.tenant_id])
    assert await billing_notices({}, ws.tenant_id) == "cancelled: 1 emails"  # the final export is offered
    assert "Export it before then" in (await _email_body(ws.tenant_id))
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.billing_subscriptions SET cancelled_at = now() - interval '31 days'"
                               " WHERE tenant_id = $1", [ws.tenant_id])
    assert await billing_notices({}, ws.tenant_id) == "deleted after retention"
    with pytest.raises(TenantUnavailable):
        async with tenant_scope(ws.tenant_id):
            pass
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict("SELECT 1 FROM pg_namespace WHERE nspname = $1", [f"t_{ws.tenant_id}"])
    assert rows == []
    assert (await billing_notices({}, ws.tenant_id)).startswith("skipped")


async def _email_body(tenant_id: int) -> str:
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT body_text FROM public.outbox_emails WHERE tenant_id = $1 AND kind = 'billing'", [tenant_id])
    return str(rows[-1]["body_text"])


async def test_contact_limit_and_read_only_state_reach_the_api(workspace: Workspace) -> None:
    """The plan's contact limit (402, naming the limit) and a read-only workspace (403) are
    enforced where contacts are created, below the web layer, and answered in the API."""
    from kith.platform.billing.plans import PLANS
    from kith.platform.identity.tokens import create_api_token
    from tests.web_helpers import client

    _, raw = await create_api_token(tenant_id=workspace.tenant_id, identity_id=workspace.identity_id, name="lim")
    headers = {"Authorization": f"Bearer {raw}"}
    limit = PLANS["free"].contacts
    assert limit is not None
    async with client(headers=headers) as c:
        assert (await c.get("/api/v1/billing")).status_code == 200  # makes the trial row
        async with platform_tx() as tx:
            await tx.execute_query("UPDATE public.billing_subscriptions SET plan = 'free', status = 'active',"
                                   " trial_ends_at = NULL WHERE tenant_id = $1", [workspace.tenant_id])
        async with tenant_scope(workspace.tenant_id) as tx:
            await tx.execute_query("INSERT INTO contacts (name) SELECT 'c' || g FROM generate_series(1, $1) g",
                                   [limit])
        refused = await c.post("/api/v1/contacts", json={"name": "One too many"})
        assert refused.status_code == 402, refused.text
        assert refused.json()["error"]["code"] == "plan_limit"
        assert "contact" in refused.json()["error"]["message"].lower()
        async with platform_tx() as tx:
            await tx.execute_query("UPDATE public.billing_subscriptions SET plan = 'pro', status = 'past_due',"
                                   " past_due_since = now() - interval '60 days' WHERE tenant_id = $1",
                                   [workspace.tenant_id])
        read_only = await c.post("/api/v1/contacts", json={"name": "Not now"})
        assert read_only.status_code == 403 and read_only.json()["error"]["code"] == "workspace_read_only"
        assert (await c.get("/api/v1/contacts")).status_code == 200  # reading still works
    async with tenant_scope(workspace.tenant_id) as tx:
        rows = await tx.execute_query_dict("SELECT count(*) AS n FROM contacts")
    assert rows[0]["n"] == limit


async def test_read_only_check_uses_the_facts_the_scope_began_with(workspace: Workspace) -> None:
    """The read-only check reads the billing facts handed over when the tenant scope began (no
    query of its own), and a billing change inside the transaction makes it read them anew."""
    from kith.platform.access.session import acting_as
    from kith.platform.billing.subscriptions import WorkspaceReadOnly, assert_writable, update_in
    from kith.platform.db import entry_facts

    actor = Actor(kind="user", tenant_id=workspace.tenant_id, role="owner", identity_id=workspace.identity_id,
                  label=workspace.email)
    await current_subscription(workspace.tenant_id)  # makes the trial row
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.billing_subscriptions SET status = 'past_due',"
                               " past_due_since = now() - interval '60 days' WHERE tenant_id = $1",
                               [workspace.tenant_id])
    async with acting_as(actor) as session:
        facts = entry_facts(session.tx)
        assert facts is not None and facts["e_status"] == "past_due"
        with pytest.raises(WorkspaceReadOnly):
            await assert_writable(session.tx, workspace.tenant_id, "contact.create")
        # paid meanwhile, in this very transaction: the facts are forgotten and re-read
        await update_in(session.tx, workspace.tenant_id, {"status": "active", "past_due_since": None})
        assert entry_facts(session.tx) is None
        await assert_writable(session.tx, workspace.tenant_id, "contact.create")
    async with acting_as(actor) as session:
        assert entry_facts(session.tx)["e_status"] == "active"  # type: ignore[index]
