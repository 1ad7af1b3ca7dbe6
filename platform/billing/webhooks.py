"""Stripe webhooks: verify, store once, reconcile.

- The signature is verified by the SDK (`stripe.Webhook.construct_event`) with
  STRIPE_WEBHOOK_SECRET; a signature older than the tolerance is refused like a bad one.
- Each event is inserted into `public.billing_events` (UNIQUE event id) inside the same
  tenant transaction as its effect: a duplicate delivery conflicts on the id and applies
  nothing, and a failed effect rolls the row back so Stripe's retry applies it later.
- Effects never trust the order events arrive in: every handled event re-reads the
  subscription (and invoice) from the Stripe API and reconciles the row to that answer,
  under a row lock, so concurrent events of one workspace apply one after the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe

from kith.platform.access.actor import Actor
from kith.platform.audit.log import EntryFields, append_entry, append_platform_entry
from kith.platform.billing.provider import StripeProvider
from kith.platform.billing.subscriptions import load_subscription_in, reconcile_in
from kith.platform.config import get_settings
from kith.platform.db import TenantUnavailable, platform_tx, tenant_scope
from kith.platform.observability import get_logger

log = get_logger("kith.billing")

# Seconds a signature stays valid (Stripe's own default); older deliveries are replays.
SIGNATURE_TOLERANCE_S = 300

SUBSCRIPTION_EVENTS = frozenset({
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.trial_will_end",
    "invoice.paid",
    "invoice.payment_failed",
})
INVOICE_EVENTS = frozenset({"invoice.paid", "invoice.payment_failed"})


class WebhookRejected(ValueError):
    """The request is not a genuine, fresh Stripe event (bad or old signature, bad body)."""


@dataclass(frozen=True)
class WebhookOutcome:
    event_id: str
    outcome: str  # applied | duplicate | ignored
    tenant_id: int | None = None


def verify(payload: bytes, signature: str | None) -> dict[str, Any]:
    """The event in `payload` if its Stripe-Signature is valid and fresh; else WebhookRejected."""
    secret = get_settings().stripe_webhook_secret.reveal()
    if not secret:
        raise WebhookRejected("STRIPE_WEBHOOK_SECRET is not set")
    try:
        event = stripe.Webhook.construct_event(payload, signature, secret, tolerance=SIGNATURE_TOLERANCE_S)
    except stripe.SignatureVerificationError as exc:
        raise WebhookRejected(f"signature: {exc.user_message or exc}") from None
    except ValueError as exc:
        raise WebhookRejected(f"payload: {exc}") from None
    result: dict[str, Any] = event.to_dict()
    return result


async def receive(payload: bytes, signature: str | None) -> WebhookOutcome:
    """Verify and process one webhook delivery."""
    return await process_event(verify(payload, signature))


def _subscription_id(event_type: str, obj: dict[str, Any]) -> str | None:
    if event_type.startswith("customer.subscription."):
        return str(obj["id"])
    if event_type == "checkout.session.completed":
        return str(obj["subscription"]) if obj.get("subscription") else None
    # invoices: newer API versions name the subscription under parent.subscription_details
    parent = (obj.get("parent") or {}).get("subscription_details") or {}
    found = parent.get("subscription") or obj.get("subscription")
    return str(found) if found else None


def _claimed_tenant(obj: dict[str, Any]) -> int | None:
    raw = (obj.get("metadata") or {}).get("kith_tenant_id") or obj.get("client_reference_id")
    if raw is None:
        parent = (obj.get("parent") or {}).get("subscription_details") or {}
        raw = (parent.get("metadata") or {}).get("kith_tenant_id")
    return int(raw) if raw is not None and str(raw).isdigit() else None


async def _tenant_for(obj: dict[str, Any]) -> int | None:
    """The workspace an event is about: by Stripe customer id, else by the id our metadata carries.

    The metadata's tenant only counts when no other workspace owns the customer and the claimed
    workspace follows no other customer, so a forged metadata value cannot reach into another
    tenant (and a genuine event is signed by Stripe anyway).
    """
    customer = obj.get("customer")
    claimed = _claimed_tenant(obj)
    async with platform_tx() as tx:
        if customer:
            rows = await tx.execute_query_dict(
                "SELECT tenant_id FROM public.billing_subscriptions WHERE stripe_customer_id = $1", [str(customer)]
            )
            if rows:
                return int(rows[0]["tenant_id"])
        if claimed is None:
            return None
        rows = await tx.execute_query_dict(
            "SELECT t.id, s.stripe_customer_id FROM public.tenants t LEFT JOIN public.billing_subscriptions s"
            " ON s.tenant_id = t.id WHERE t.id = $1 AND t.status <> 'deleted'", [claimed]
        )
    if not rows or rows[0]["stripe_customer_id"] not in (None, customer):
        return None
    return claimed


async def _store_ignored(event: dict[str, Any], tenant_id: int | None, detail: str) -> WebhookOutcome:
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "INSERT INTO public.billing_events (event_id, event_type, tenant_id, created, outcome, detail)"
            " VALUES ($1, $2, $3, $4, 'ignored', $5) ON CONFLICT (event_id) DO NOTHING RETURNING id",
            [event["id"], event["type"], tenant_id, _created(event), detail],
        )
        if rows and event["type"] in SUBSCRIPTION_EVENTS:
            # A billing event we could not place is worth an operator's look.
            await append_platform_entry(tx, EntryFields(
                actor_kind="system", actor_id="", token_id=None, actor_label="stripe", ip="", user_agent="",
                request_id="", object_type="billing_event", object_id=str(event["id"]),
                action="billing.event_unmatched", diff={"type": event["type"], "detail": detail},
            ))
    return WebhookOutcome(str(event["id"]), "ignored" if rows else "duplicate", tenant_id)


def _created(event: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(int(event.get("created") or 0), UTC)


async def process_event(event: dict[str, Any]) -> WebhookOutcome:
    """Store a verified event once and apply its effect in the same transaction."""
    event_id, event_type = str(event["id"]), str(event["type"])
    obj: dict[str, Any] = dict((event.get("data") or {}).get("object") or {})
    if event_type not in SUBSCRIPTION_EVENTS:
        return await _store_ignored(event, None, "event type not handled")
    tenant_id = await _tenant_for(obj)
    subscription_id = _subscription_id(event_type, obj)
    if tenant_id is None or subscription_id is None:
        return await _store_ignored(event, tenant_id, "no workspace or subscription found")
    provider = StripeProvider()
    try:
        async with tenant_scope(tenant_id) as tx:
            inserted = await tx.execute_query_dict(
                "INSERT INTO public.billing_events (event_id, event_type, tenant_id, created, outcome)"
                " VALUES ($1, $2, $3, $4, 'applied') ON CONFLICT (event_id) DO NOTHING RETURNING id",
                [event_id, event_type, tenant_id, _created(event)],
            )
            if not inserted:
                return WebhookOutcome(event_id, "duplicate", tenant_id)
            # Lock first, then ask Stripe: the answer read under the lock is the newest any
            # transaction of this workspace applies, whatever order deliveries come in.
            await load_subscription_in(tx, tenant_id, for_update=True)
            changes = await reconcile_in(tx, tenant_id, await provider.fetch_subscription(subscription_id))
            invoice = None
            if event_type in INVOICE_EVENTS:
                invoice = await provider.fetch_invoice(str(obj["id"]))
                await _store_invoice(tx, tenant_id, invoice)
            actor = Actor(kind="system", tenant_id=tenant_id, role="owner", label="stripe")
            await append_entry(tx, actor, action=f"billing.{event_type}", object_type="billing_subscription",
                               object_id=tenant_id, diff={"event": event_id, "changes": changes,
                                                          **({"invoice": invoice["id"]} if invoice else {})})
    except TenantUnavailable:
        return await _store_ignored(event, None, "workspace deleted")
    log.info("stripe_event", event_id=event_id, type=event_type, tenant_id=tenant_id, changed=sorted(changes))
    return WebhookOutcome(event_id, "applied", tenant_id)


async def _store_invoice(tx: Any, tenant_id: int, invoice: dict[str, Any]) -> None:
    await tx.execute_query(
        "INSERT INTO public.billing_invoices (stripe_invoice_id, tenant_id, number, status, currency, amount_due,"
        " amount_paid, hosted_invoice_url, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (stripe_invoice_id) DO UPDATE SET number = EXCLUDED.number, status = EXCLUDED.status,"
        " amount_due = EXCLUDED.amount_due, amount_paid = EXCLUDED.amount_paid,"
        " hosted_invoice_url = EXCLUDED.hosted_invoice_url, updated_at = now()",
        [str(invoice["id"]), tenant_id, str(invoice.get("number") or ""), str(invoice.get("status") or "open"),
         str(invoice.get("currency") or "usd"), int(invoice.get("amount_due") or 0),
         int(invoice.get("amount_paid") or 0), str(invoice.get("hosted_invoice_url") or ""),
         datetime.fromtimestamp(int(invoice.get("created") or 0), UTC)],
    )
