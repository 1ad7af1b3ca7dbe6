"""Stripe end to end: the real stripe SDK against tests/stripe_fake.py, webhooks signed with the
SDK's own helper and delivered to POST /webhooks/stripe in every order we can think of."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import stripe

from kith.platform.access.actor import Actor
from kith.platform.billing.actions import start_checkout, sync_seats
from kith.platform.billing.subscriptions import WorkspaceReadOnly, assert_writable, current_subscription
from kith.platform.config import reset_settings, restored_environment
from kith.platform.db import platform_tx, tenant_scope
from kith.platform.tenancy.models import Tenant

from .conftest import Services, Workspace, make_workspace
from .factories import add_member
from .stripe_fake import FakeStripe, fake_stripe
from .web_helpers import client

SECRET = "whsec_test_kith"
PRICES = {"price_starter_m": 1500, "price_starter_y": 15000, "price_pro_m": 4900, "price_pro_y": 49000}
PRICE_ENV = ("starter_monthly=price_starter_m,starter_yearly=price_starter_y,"
             "pro_monthly=price_pro_m,pro_yearly=price_pro_y")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    with fake_stripe(PRICES) as running:
        yield running


@pytest.fixture
async def stripe_env(db: Services, fake: FakeStripe) -> AsyncIterator[FakeStripe]:
    names = ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE", "STRIPE_PRICES")
    with restored_environment(*names):
        os.environ.update({"STRIPE_SECRET_KEY": "sk_test_fake", "STRIPE_WEBHOOK_SECRET": SECRET,
                           "STRIPE_API_BASE": fake.base, "STRIPE_PRICES": PRICE_ENV})
        reset_settings()
        yield fake


def owner(ws: Workspace) -> Actor:
    return Actor(kind="user", tenant_id=ws.tenant_id, role="owner", identity_id=ws.identity_id, label=ws.email)


async def deliver(event: dict[str, Any], *, secret: str = SECRET, timestamp: int | None = None) -> int:
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)
    async with client() as c:
        resp = await c.post("/webhooks/stripe", content=payload,
                            headers={"Stripe-Signature": header, "Content-Type": "application/json"})
    return resp.status_code


async def snapshot(tenant_id: int) -> tuple[Any, ...]:
    """The tenant's billing state, without the times we stamp ourselves."""
    sub = await current_subscription(tenant_id)
    async with platform_tx() as tx:
        invoices = await tx.execute_query_dict(
            "SELECT stripe_invoice_id, status, amount_paid FROM public.billing_invoices WHERE tenant_id = $1"
            " ORDER BY 1", [tenant_id])
    return (sub.plan, sub.status, sub.seats, sub.stripe_subscription_id, sub.stripe_customer_id,
            sub.billing_interval, sub.past_due_since is not None, tuple(tuple(r.values()) for r in invoices))


async def applied_events(tenant_id: int) -> int:
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT count(*) AS n FROM public.billing_events WHERE tenant_id = $1 AND outcome = 'applied'", [tenant_id])
    return int(rows[0]["n"])


async def checkout(fake: FakeStripe, ws: Workspace, plan: str = "starter") -> tuple[str, list[dict[str, Any]]]:
    tenant = await Tenant.get(id=ws.tenant_id)
    url = await start_checkout(owner(ws), tenant, plan, "monthly",
                               success_url="http://x/ok", cancel_url="http://x/no")
    assert url and url.startswith(fake.base + "/pay/cs_")
    session_id = url.rsplit("/", 1)[-1]
    events = fake.complete_checkout(session_id)
    return str(fake.sessions[session_id]["subscription"]), events


async def test_signup_checkout_active_end_to_end(stripe_env: FakeStripe) -> None:
    ws = await make_workspace("bill")
    before = await current_subscription(ws.tenant_id)
    assert before.status == "trialing" and before.trial_ends_at is not None
    assert 13 <= before.days_left_in_trial() <= 14  # type: ignore[operator]
    sub_id, events = await checkout(stripe_env, ws)
    # the SDK created a customer tagged with the tenant, and a checkout for one seat
    created = [p for m, path, p in stripe_env.requests if path == "/v1/checkout/sessions"][-1]
    assert created["line_items"][0] == {"price": "price_starter_m", "quantity": "1"}
    assert created["client_reference_id"] == str(ws.tenant_id)
    for event in events:
        assert await deliver(event) == 200
    sub = await current_subscription(ws.tenant_id)
    assert (sub.plan, sub.status, sub.stripe_subscription_id, sub.state()) == ("starter", "active", sub_id, "active")
    async with tenant_scope(ws.tenant_id) as tx:
        actions = [r["action"] for r in await tx.execute_query_dict("SELECT action FROM audit_log ORDER BY seq")]
    assert "billing.checkout_started" in actions and "billing.customer.subscription.created" in actions


async def test_shuffled_duplicated_and_replayed_sequences_end_the_same(stripe_env: FakeStripe) -> None:
    """Checkout, a failed renewal, a paid retry, a plan change: every delivery order, with duplicates,
    ends in the state Stripe holds."""
    results = set()
    orders: list[list[int]] = []
    rng = random.Random(5)
    for n in range(5):
        ws = await make_workspace("perm")
        sub_id, events = await checkout(stripe_env, ws)
        events += stripe_env.fail_payment(sub_id)
        events += stripe_env.pay_open_invoices(sub_id)
        events += stripe_env.change_price(sub_id, "price_pro_m")
        order = list(range(len(events)))
        if n == 0:
            pass  # as sent
        elif n == 1:
            order.reverse()
        else:
            rng.shuffle(order)
        orders.append(order)
        for i in order:
            assert await deliver(events[i]) == 200
        for i in rng.sample(order, 4):  # duplicates and replays of some of them
            assert await deliver(events[i]) == 200
        assert await applied_events(ws.tenant_id) == len(events)
        state = await snapshot(ws.tenant_id)
        results.add(state[:3] + state[5:7] + (tuple((s, p) for _, s, p in state[7]),))
    assert len(set(map(tuple, orders))) == 5
    assert results == {("pro", "active", 1, "monthly", False, (("paid", 1500), ("paid", 1500)))}


async def test_bad_signature_is_400_and_changes_nothing(stripe_env: FakeStripe) -> None:
    ws = await make_workspace("sig")
    _, events = await checkout(stripe_env, ws)
    before = await snapshot(ws.tenant_id)
    assert await deliver(events[1], secret="whsec_wrong") == 400
    # a genuine signature older than the tolerance is refused the same way (a replay)
    assert await deliver(events[1], timestamp=int(time.time()) - 3600) == 400
    async with client() as c:
        resp = await c.post("/webhooks/stripe", content=json.dumps(events[1]))  # no header at all
    assert resp.status_code == 400
    assert await snapshot(ws.tenant_id) == before
    assert await applied_events(ws.tenant_id) == 0


async def test_unknown_event_types_are_stored_and_ignored(stripe_env: FakeStripe) -> None:
    ws = await make_workspace("unk")
    before = await snapshot(ws.tenant_id)
    event = {"id": "evt_unknown_kind_1", "object": "event", "type": "radar.early_fraud_warning.created",
             "created": int(time.time()), "data": {"object": {"id": "issfr_1", "customer": "cus_x"}}}
    assert await deliver(event) == 200
    assert await deliver(event) == 200
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT outcome FROM public.billing_events WHERE event_id = 'evt_unknown_kind_1'")
    assert [r["outcome"] for r in rows] == ["ignored"]
    assert await snapshot(ws.tenant_id) == before


async def test_dunning_past_due_read_only_then_paid_reactivates(stripe_env: FakeStripe) -> None:
    ws = await make_workspace("dun")
    sub_id, events = await checkout(stripe_env, ws)
    for e in events:
        await deliver(e)
    for e in stripe_env.fail_payment(sub_id):
        await deliver(e)
    sub = await current_subscription(ws.tenant_id)
    assert sub.state() == "past_due" and sub.grace_ends_at() is not None
    async with tenant_scope(ws.tenant_id) as tx:
        await assert_writable(tx, ws.tenant_id, "contacts.create")  # grace period: still writable
    # the grace period runs out
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.billing_subscriptions SET past_due_since = now() - interval '30 days'"
                               " WHERE tenant_id = $1", [ws.tenant_id])
    assert (await current_subscription(ws.tenant_id)).state() == "read_only"
    async with tenant_scope(ws.tenant_id) as tx:
        with pytest.raises(WorkspaceReadOnly, match="read-only because payment is overdue"):
            await assert_writable(tx, ws.tenant_id, "contacts.create")
        await assert_writable(tx, ws.tenant_id, "contacts.export")  # data stays exportable
        await assert_writable(tx, ws.tenant_id, "billing.plan_changed")
    for e in stripe_env.pay_open_invoices(sub_id):
        await deliver(e)
    sub = await current_subscription(ws.tenant_id)
    assert (sub.state(), sub.past_due_since) == ("active", None)


async def test_cancellation_keeps_data_read_only(stripe_env: FakeStripe) -> None:
    ws = await make_workspace("cxl")
    sub_id, events = await checkout(stripe_env, ws)
    for e in [*events, *stripe_env.cancel(sub_id)][::-1]:
        await deliver(e)
    sub = await current_subscription(ws.tenant_id)
    assert (sub.state(), sub.effective_plan, sub.cancelled_at is not None) == ("cancelled", "free", True)


async def test_seat_sync_updates_the_stripe_quantity(stripe_env: FakeStripe) -> None:
    ws = await make_workspace("seat")
    sub_id, events = await checkout(stripe_env, ws)
    for e in events:
        await deliver(e)
    await add_member(ws, "sales")
    await add_member(ws, "support")
    assert await sync_seats(ws.tenant_id) == 3
    item = stripe_env.subscriptions[sub_id]["items"]["data"][0]
    assert (item["quantity"], item["proration_behavior"]) == (3, "create_prorations")
    assert (await current_subscription(ws.tenant_id)).seats == 3
    assert await sync_seats(ws.tenant_id) == 3  # nothing to do the second time
    assert sum(1 for _, path, _ in stripe_env.requests if path.startswith("/v1/subscription_items/")) == 1


async def test_api_checkout_and_portal_urls_come_from_stripe(stripe_env: FakeStripe) -> None:
    from .factories import owner_token

    ws = await make_workspace("apichk")
    headers = await owner_token(ws)
    async with client() as c:
        resp = await c.post("/api/v1/billing/checkout", json={"plan": "pro", "interval": "yearly"}, headers=headers)
        assert resp.status_code == 200, resp.text
        assert resp.json()["url"].startswith(stripe_env.base + "/pay/")
        resp = await c.post("/api/v1/billing/portal", headers=headers)
        assert resp.json()["url"].startswith(stripe_env.base + "/portal/cus_")
        # with Stripe as the provider a plan cannot be switched without paying
        resp = await c.post("/api/v1/billing/plan", json={"plan": "pro"}, headers=headers)
        assert resp.status_code == 422

