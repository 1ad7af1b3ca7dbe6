"""Who takes the money: Stripe, or (with no STRIPE_SECRET_KEY) a local provider for offline work.

Providers only talk to the outside world; `kith.platform.billing.actions` records what
changed in the database and the audit log. `StripeProvider` uses the real `stripe` SDK
(async methods over httpx, so a slow Stripe never blocks the event loop) with its API
base taken from STRIPE_API_BASE when set (tests point it at a local fake).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import stripe

from kith.platform.billing.plans import Interval, Plan
from kith.platform.billing.subscriptions import Subscription
from kith.platform.config import get_settings

# Network timeouts: a checkout button should fail in seconds, not hang a web worker.
STRIPE_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Customer:
    tenant_id: int
    name: str
    email: str


@dataclass(frozen=True)
class NextInvoice:
    amount_due: int  # smallest currency unit
    currency: str
    at: datetime | None


class _HTTPXClient(stripe.HTTPXClient):
    """The SDK's httpx client, sending the encoded body as `content=`.

    The SDK passes its already-encoded form body as `data=`, which httpx deprecates for raw
    bytes (and will drop); `content=` sends the same bytes.
    """

    def _get_request_args_kwargs(self, method: str, url: str, headers: Any, post_data: Any) -> Any:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        data = kwargs.pop("data", None)
        if data:
            kwargs["content"] = data
        return [args, kwargs]


class BillingProvider(Protocol):
    """What the billing actions need from a payment provider."""

    name: str

    async def ensure_customer(self, sub: Subscription, customer: Customer) -> str | None:
        """The provider's customer id for the workspace (created when missing), or None offline."""

    async def checkout_url(self, sub: Subscription, customer_id: str | None, plan: Plan, interval: Interval,
                           seats: int, *, success_url: str, cancel_url: str) -> str | None:
        """Where to send the buyer to pay for `plan`; None when the plan applies at once (offline)."""

    async def portal_url(self, customer_id: str | None, *, return_url: str) -> str | None:
        """The self-service portal (payment methods, cancellation, invoices); None when there is none."""

    async def set_seats(self, sub: Subscription, quantity: int) -> None:
        """Set the subscription's seat quantity, prorated as the provider does."""

    async def fetch_subscription(self, subscription_id: str) -> dict[str, Any]:
        """The provider's current subscription object."""

    async def fetch_invoice(self, invoice_id: str) -> dict[str, Any]:
        """The provider's current invoice object."""

    async def next_invoice(self, sub: Subscription) -> NextInvoice | None:
        """The amount and date of the next invoice, if one is coming."""


class LocalProvider:
    """No payments: plan changes apply at once, so `make dev` shows every billing screen offline."""

    name = "local"

    async def ensure_customer(self, sub: Subscription, customer: Customer) -> str | None:
        return None

    async def checkout_url(self, sub: Subscription, customer_id: str | None, plan: Plan, interval: Interval,
                           seats: int, *, success_url: str, cancel_url: str) -> str | None:
        return None

    async def portal_url(self, customer_id: str | None, *, return_url: str) -> str | None:
        return None

    async def set_seats(self, sub: Subscription, quantity: int) -> None:
        return None

    async def fetch_subscription(self, subscription_id: str) -> dict[str, Any]:
        raise LookupError("the local billing provider has no remote subscriptions")

    async def fetch_invoice(self, invoice_id: str) -> dict[str, Any]:
        raise LookupError("the local billing provider has no remote invoices")

    async def next_invoice(self, sub: Subscription) -> NextInvoice | None:
        from kith.platform.billing.plans import plan_for

        plan = plan_for(sub.effective_plan)
        if sub.status != "active" or not plan.monthly_usd or sub.comped():
            return None  # a comped plan is not billed
        months = 12 if sub.billing_interval == "yearly" else 1
        return NextInvoice(amount_due=plan.monthly_usd * 100 * months * sub.seats, currency="usd",
                           at=sub.current_period_end)


class StripeProvider:
    """The real Stripe API through the `stripe` SDK."""

    name = "stripe"

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[stripe.StripeClient]:
        settings = get_settings()
        http = _HTTPXClient(timeout=STRIPE_TIMEOUT_S)
        base: Any = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
        try:
            yield stripe.StripeClient(settings.stripe_secret_key.reveal(), base_addresses=base, http_client=http,
                                      max_network_retries=2)
        finally:
            await http.close_async()

    async def ensure_customer(self, sub: Subscription, customer: Customer) -> str | None:
        if sub.stripe_customer_id:
            return sub.stripe_customer_id
        async with self._client() as client:
            created = await client.v1.customers.create_async(
                {"name": customer.name, "email": customer.email,
                 "metadata": {"kith_tenant_id": str(customer.tenant_id)}},
                # a retried click creates one customer, not two
                {"idempotency_key": f"kith-customer-{customer.tenant_id}"},
            )
        return str(created.id)

    async def checkout_url(self, sub: Subscription, customer_id: str | None, plan: Plan, interval: Interval,
                           seats: int, *, success_url: str, cancel_url: str) -> str | None:
        async with self._client() as client:
            session = await client.v1.checkout.sessions.create_async({
                "mode": "subscription",
                "customer": customer_id or "",
                "client_reference_id": str(sub.tenant_id),
                "line_items": [{"price": plan.price_id(interval), "quantity": max(1, seats)}],
                "success_url": success_url,
                "cancel_url": cancel_url,
                "subscription_data": {"metadata": {"kith_tenant_id": str(sub.tenant_id)}},
            })
        return str(session.url)

    async def portal_url(self, customer_id: str | None, *, return_url: str) -> str | None:
        if not customer_id:
            return None
        async with self._client() as client:
            session = await client.v1.billing_portal.sessions.create_async(
                {"customer": customer_id, "return_url": return_url}
            )
        return str(session.url)

    async def set_seats(self, sub: Subscription, quantity: int) -> None:
        if not sub.stripe_item_id:
            return
        async with self._client() as client:
            await client.v1.subscription_items.update_async(
                sub.stripe_item_id,
                {"quantity": max(1, quantity), "proration_behavior": "create_prorations"},
            )

    async def fetch_subscription(self, subscription_id: str) -> dict[str, Any]:
        async with self._client() as client:
            found = await client.v1.subscriptions.retrieve_async(subscription_id)
        return found.to_dict()

    async def fetch_invoice(self, invoice_id: str) -> dict[str, Any]:
        async with self._client() as client:
            found = await client.v1.invoices.retrieve_async(invoice_id)
        return found.to_dict()

    async def next_invoice(self, sub: Subscription) -> NextInvoice | None:
        if not sub.stripe_subscription_id or sub.status == "cancelled" or sub.cancel_at_period_end:
            return None
        async with self._client() as client:
            preview = await client.v1.invoices.create_preview_async({"subscription": sub.stripe_subscription_id})
        at = preview.get("next_payment_attempt") or preview.get("period_end")
        return NextInvoice(amount_due=int(preview.get("amount_due") or 0),
                           currency=str(preview.get("currency") or "usd"),
                           at=datetime.fromtimestamp(int(at), UTC) if at else None)


def get_provider() -> BillingProvider:
    """Stripe when STRIPE_SECRET_KEY is set, else the local provider."""
    return StripeProvider() if get_settings().stripe_secret_key else LocalProvider()
