"""The billing API: GET /billing, POST /billing/checkout, /billing/portal and /billing/plan.

Every endpoint needs the workspace permission "manage_billing"; the check runs below the
web layer (kith.platform.billing.actions), in the transaction that reads the subscription.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from starlette.requests import Request

from kith.platform.billing.actions import (
    BillingError,
    Overview,
    billing_overview,
    change_plan_locally,
    open_portal,
    start_checkout,
)
from kith.platform.config import get_settings
from kith.web.api.registry import endpoint
from kith.web.edge import actor_of
from kith.web.errors import ApiError

PERMISSION = ("workspace", "manage_billing")


class LimitOut(BaseModel):
    used: float
    limit: int | None = Field(description="null = unlimited")


class InvoiceOut(BaseModel):
    number: str
    status: str
    amount_due: int = Field(description="In the currency's smallest unit (cents).")
    amount_paid: int
    currency: str
    created: datetime
    url: str


class BillingOut(BaseModel):
    plan: str
    plan_name: str
    interval: str
    state: str = Field(description="trialing, active, past_due, read_only, suspended or cancelled.")
    provider: str = Field(description="stripe, or local (no payments: plans change at once).")
    trial_ends_at: datetime | None
    grace_ends_at: datetime | None
    comped_until: datetime | None = Field(
        description="Set while the plan is complimentary (given by Kith support, not billed) until this time.")
    seats: LimitOut
    contacts: LimitOut
    emails_this_month: LimitOut
    storage_mb: LimitOut
    next_invoice_amount: int | None
    next_invoice_at: datetime | None
    invoices: list[InvoiceOut]


class CheckoutIn(BaseModel):
    plan: Literal["free", "starter", "pro", "enterprise"]
    interval: Literal["monthly", "yearly"] = "monthly"


class RedirectOut(BaseModel):
    url: str | None = Field(description="Where to send the person; null when the change applied at once.")


def billing_out(o: Overview) -> BillingOut:
    sub, plan, usage = o.subscription, o.plan, o.usage
    return BillingOut(
        plan=plan.key, plan_name=plan.name, interval=sub.billing_interval, state=o.state, provider=o.provider,
        trial_ends_at=sub.trial_ends_at if sub.status == "trialing" else None, grace_ends_at=sub.grace_ends_at(),
        comped_until=sub.comped_until if sub.comped() else None,
        seats=LimitOut(used=usage.seats, limit=plan.seats),
        contacts=LimitOut(used=usage.contacts, limit=plan.contacts),
        emails_this_month=LimitOut(used=usage.emails_this_month, limit=plan.emails_per_month),
        storage_mb=LimitOut(used=usage.storage_mb, limit=plan.storage_mb),
        next_invoice_amount=o.next_invoice.amount_due if o.next_invoice else None,
        next_invoice_at=o.next_invoice.at if o.next_invoice else None,
        invoices=[InvoiceOut(number=i.number, status=i.status, amount_due=i.amount_due, amount_paid=i.amount_paid,
                             currency=i.currency, created=i.created, url=i.url) for i in o.invoices],
    )


def billing_page_url(request: Request) -> str:
    return f"{get_settings().base_url}/t/{request.state.caller.tenant.slug}/settings/billing"


@endpoint("GET", "/billing", summary="The workspace's plan, usage against its limits and invoices",
          permission=PERMISSION, response=BillingOut, errors=(401, 403), tag="billing")
async def get_billing(request: Request, body: None) -> BillingOut:
    return billing_out(await billing_overview(actor_of(request)))


@endpoint("POST", "/billing/checkout", summary="Start paying for a plan (a Stripe Checkout URL)",
          permission=PERMISSION, body=CheckoutIn, response=RedirectOut, errors=(401, 403, 422), tag="billing")
async def post_checkout(request: Request, body: CheckoutIn) -> RedirectOut:
    page = billing_page_url(request)
    try:
        url = await start_checkout(actor_of(request), request.state.caller.tenant, body.plan, body.interval,
                                   success_url=f"{page}?checkout=done", cancel_url=f"{page}?checkout=cancelled")
    except BillingError as exc:
        raise ApiError(422, "invalid_plan", str(exc)) from None
    return RedirectOut(url=url)


@endpoint("POST", "/billing/portal", summary="Open the Stripe customer portal (payment methods, cancel, invoices)",
          permission=PERMISSION, response=RedirectOut, errors=(401, 403), tag="billing")
async def post_portal(request: Request, body: None) -> RedirectOut:
    return RedirectOut(url=await open_portal(actor_of(request), return_url=billing_page_url(request)))


@endpoint("POST", "/billing/plan", summary="Change plan at once (local billing provider only, no payment)",
          permission=PERMISSION, body=CheckoutIn, response=BillingOut, errors=(401, 403, 422), tag="billing")
async def post_plan(request: Request, body: CheckoutIn) -> BillingOut:
    actor = actor_of(request)
    try:
        await change_plan_locally(actor, body.plan, body.interval)
    except BillingError as exc:
        raise ApiError(422, "invalid_plan", str(exc)) from None
    return billing_out(await billing_overview(actor))
