"""Billing actions: what people and Kith do to a workspace's subscription.

Each change happens in one `acting_as` transaction that updates `public.billing_subscriptions`
and writes the tenant's audit entry, so the two commit together. Provider calls (Stripe)
happen before that transaction opens, so no database transaction waits on the network.

Starting a paid plan (checkout, or the local provider's plan change) needs the person's email
to be verified: invoices, receipts and dunning go by email. Support's trial extensions and
comps (`extend_trial_in`, `comp_plan_in`) run in the ops console's transaction, which writes
their audit entries; both apply only to workspaces Stripe does not bill, because the next
webhook would reconcile Stripe's subscription over them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from kith.platform.access.actor import Actor
from kith.platform.access.session import acting_as
from kith.platform.billing.limits import Usage, active_seats_in, usage_of
from kith.platform.billing.plans import INTERVALS, Interval, Plan, get_plan, plan_for
from kith.platform.billing.provider import Customer, NextInvoice, get_provider
from kith.platform.billing.subscriptions import (
    Subscription,
    current_subscription,
    load_subscription_in,
    now_utc,
    update_in,
)
from kith.platform.db import platform_tx
from kith.platform.identity.verification import require_verified
from kith.platform.tenancy.models import Tenant

PERMISSION = "manage_billing"
MAX_TRIAL_EXTENSION_DAYS = 90
# A comp is a favour with an end; longer than this belongs in a contract (Enterprise).
MAX_COMP = timedelta(days=366)


class BillingError(ValueError):
    """A billing request that cannot be done as asked (unknown plan, plan sold by sales)."""


@dataclass(frozen=True)
class Invoice:
    number: str
    status: str
    amount_due: int
    amount_paid: int
    currency: str
    created: Any
    url: str


@dataclass(frozen=True)
class Overview:
    """Everything the billing page and GET /billing show."""

    subscription: Subscription
    plan: Plan
    state: str
    usage: Usage
    next_invoice: NextInvoice | None
    invoices: list[Invoice]
    provider: str


async def billing_overview(actor: Actor) -> Overview:
    """The workspace's plan, state, usage, next and past invoices (needs manage_billing)."""
    async with acting_as(actor) as session:
        session.policy.require_manage(PERMISSION)
        sub = await load_subscription_in(session.tx, actor.tenant_id)
        invoices = await invoices_in(session.tx, actor.tenant_id)
    usage = await usage_of(actor.tenant_id)
    provider = get_provider()
    try:
        upcoming = await provider.next_invoice(sub)
    except Exception:  # noqa: BLE001 - the page must render while Stripe is down; it shows "unknown"
        upcoming = None
    return Overview(subscription=sub, plan=plan_for(sub.effective_plan), state=sub.state(), usage=usage,
                    next_invoice=upcoming, invoices=invoices, provider=provider.name)


async def invoices_in(tx: BaseDBAsyncClient, tenant_id: int, limit: int = 24) -> list[Invoice]:
    """The workspace's invoices as Stripe last reported them, newest first (billing page, ops console)."""
    rows = await tx.execute_query_dict(
        "SELECT number, status, amount_due, amount_paid, currency, created, hosted_invoice_url"
        " FROM public.billing_invoices WHERE tenant_id = $1 ORDER BY created DESC LIMIT $2",
        [int(tenant_id), int(limit)],
    )
    return [Invoice(number=r["number"], status=r["status"], amount_due=int(r["amount_due"]),
                    amount_paid=int(r["amount_paid"]), currency=r["currency"], created=r["created"],
                    url=r["hosted_invoice_url"]) for r in rows]


def _chosen(plan_key: str, interval: str) -> tuple[Plan, Interval]:
    try:
        plan = get_plan(plan_key)
    except KeyError as exc:
        raise BillingError(str(exc.args[0])) from None
    if interval not in INTERVALS:
        raise BillingError(f"interval must be one of {', '.join(INTERVALS)}")
    if not plan.self_serve:
        raise BillingError(f"The {plan.name} plan is arranged with our sales team; contact us to switch.")
    return plan, interval  # type: ignore[return-value]


async def _owner_email(tenant_id: int) -> str:
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT i.email FROM public.memberships m JOIN public.identities i ON i.id = m.identity_id"
            " WHERE m.tenant_id = $1 AND m.is_active AND m.role = 'owner' ORDER BY m.id LIMIT 1", [tenant_id],
        )
    return str(rows[0]["email"]) if rows else ""


async def start_checkout(actor: Actor, tenant: Tenant, plan_key: str, interval: str, *,
                         success_url: str, cancel_url: str) -> str | None:
    """Start paying for `plan_key`: the Stripe Checkout URL, or None when it applied at once (offline).

    With the local provider this is `change_plan_locally`. A paid plan needs the person's email
    verified (EmailNotVerified, a 403 whose message says how).
    """
    plan, chosen_interval = _chosen(plan_key, interval)
    async with acting_as(actor) as session:  # permission first: nothing reaches Stripe for a refused actor
        session.policy.require_manage(PERMISSION)
        if plan.paid:
            await require_verified(session.tx, actor.identity_id, f"starting the paid {plan.name} plan")
        sub = await load_subscription_in(session.tx, actor.tenant_id)
        seats = await active_seats_in(session.tx, actor.tenant_id)
    provider = get_provider()
    if provider.name == "local":
        await change_plan_locally(actor, plan_key, interval)
        return None
    customer_id = await provider.ensure_customer(
        sub, Customer(tenant_id=tenant.id, name=tenant.name, email=await _owner_email(tenant.id))
    )
    url = await provider.checkout_url(sub, customer_id, plan, chosen_interval, seats,
                                      success_url=success_url, cancel_url=cancel_url)
    async with acting_as(actor) as session:
        session.policy.require_manage(PERMISSION)
        changes = await update_in(session.tx, actor.tenant_id, {"stripe_customer_id": customer_id})
        await session.audit("billing.checkout_started", "billing_subscription", actor.tenant_id,
                            {"plan": plan.key, "interval": chosen_interval, "seats": seats, **changes})
    return url


async def open_portal(actor: Actor, *, return_url: str) -> str | None:
    """The Stripe customer portal URL (payment methods, cancellation, invoices); None offline."""
    async with acting_as(actor) as session:
        session.policy.require_manage(PERMISSION)
        sub = await load_subscription_in(session.tx, actor.tenant_id)
        await session.audit("billing.portal_opened", "billing_subscription", actor.tenant_id, None)
    return await get_provider().portal_url(sub.stripe_customer_id, return_url=return_url)


async def change_plan_locally(actor: Actor, plan_key: str, interval: str) -> dict[str, list[Any]]:
    """Switch plan with no payment (the local provider); returns what changed.

    Refused while Stripe is the provider: there, the plan follows what Stripe says was paid.
    It stands in for paying, so a paid plan needs a verified email as checkout does; it ends a comp.
    """
    plan, chosen_interval = _chosen(plan_key, interval)
    if get_provider().name != "local":
        raise BillingError("Plans change through Stripe Checkout or the customer portal.")
    async with acting_as(actor) as session:
        session.policy.require_manage(PERMISSION)
        if plan.paid:
            await require_verified(session.tx, actor.identity_id, f"starting the paid {plan.name} plan")
        seats = await active_seats_in(session.tx, actor.tenant_id)
        changes = await update_in(session.tx, actor.tenant_id, {
            "plan": plan.key, "billing_interval": chosen_interval, "status": "active", "provider": "local",
            "trial_ends_at": None, "past_due_since": None, "cancelled_at": None, "seats": seats,
            "comped_until": None,
        })
        if changes:
            await session.audit("billing.plan_changed", "billing_subscription", actor.tenant_id, changes)
    return changes


async def sync_seats(tenant_id: int) -> int:
    """Make the subscription's seat quantity equal the active memberships; return the count.

    Call after a user is invited in, deactivated or reactivated (after that change committed).
    Stripe prorates the change as it does for any quantity update.
    """
    actor = Actor.system(tenant_id, "billing:sync_seats")
    sub = await current_subscription(tenant_id)
    async with platform_tx() as tx:
        seats = await active_seats_in(tx, tenant_id)
    if seats == sub.seats:
        return seats
    # Stripe first: if it refuses, our row still says what Stripe bills, and the next sync retries.
    await get_provider().set_seats(sub, seats)
    async with acting_as(actor) as session:
        changes = await update_in(session.tx, tenant_id, {"seats": seats})
        if changes:
            await session.audit("billing.seats_synced", "billing_subscription", tenant_id, changes)
    return seats


# --- support's changes (the ops console writes the audit entries in the same transaction) ---


def _not_stripe(sub: Subscription, what: str) -> None:
    if sub.stripe_subscription_id is not None:
        raise BillingError(
            f"This workspace is billed by Stripe (subscription {sub.stripe_subscription_id}), so it cannot be "
            f"{what} here: the next webhook would put Stripe's subscription back. Make the change in the Stripe "
            "dashboard (a trial end, a coupon or a price); webhooks bring it to Kith.")


async def extend_trial_in(tx: BaseDBAsyncClient, tenant_id: int, days: int) -> dict[str, list[Any]]:
    """Move the end of the workspace's own trial `days` later (1 to MAX_TRIAL_EXTENSION_DAYS) inside
    the caller's transaction; returns what changed. A trial that already lapsed restarts from now.

    Refused (BillingError) for a workspace not in its trial, and for a trial Stripe runs.
    """
    if not 1 <= days <= MAX_TRIAL_EXTENSION_DAYS:
        raise BillingError(f"Extend a trial by 1 to {MAX_TRIAL_EXTENSION_DAYS} days.")
    sub = await load_subscription_in(tx, tenant_id, for_update=True)
    _not_stripe(sub, "given a longer trial")
    if sub.status != "trialing":
        raise BillingError(f"Only a workspace in its trial can have it extended; this one is {sub.state()} on the "
                           f"{plan_for(sub.effective_plan).name} plan.")
    now = now_utc()
    start = sub.trial_ends_at if sub.trial_ends_at is not None and sub.trial_ends_at > now else now
    return await update_in(tx, tenant_id, {"trial_ends_at": start + timedelta(days=days)})


async def comp_plan_in(tx: BaseDBAsyncClient, tenant_id: int, plan_key: str, until: datetime) -> dict[str, list[Any]]:
    """Give the workspace `plan_key` without payment until `until` (at most MAX_COMP ahead), inside
    the caller's transaction; returns what changed.

    The workspace becomes active on that plan, is not billed (no invoice is due while the comp
    runs), and falls back to the free plan when it ends, as a lapsed trial does. Only for
    workspaces without a Stripe subscription (BillingError otherwise); paying later through
    Checkout, or a local plan change, ends the comp.
    """
    try:
        plan = get_plan(plan_key)
    except KeyError as exc:
        raise BillingError(str(exc.args[0])) from None
    if not plan.paid:
        raise BillingError(f"The {plan.name} plan costs nothing; there is nothing to comp.")
    sub = await load_subscription_in(tx, tenant_id, for_update=True)
    _not_stripe(sub, "comped")
    now = now_utc()
    if until <= now:
        raise BillingError("A comp must end in the future.")
    if until > now + MAX_COMP:
        raise BillingError(f"A comp lasts at most {MAX_COMP.days} days; longer belongs in a contract.")
    return await update_in(tx, tenant_id, {
        "plan": plan.key, "status": "active", "trial_ends_at": None, "past_due_since": None,
        "cancelled_at": None, "comped_until": until,
    })
