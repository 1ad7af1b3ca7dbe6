"""Plans and entitlements, defined in one place.

A plan says what a workspace may use (seats, contacts, campaign emails a month, storage)
and which features it has. Stripe price ids are not part of the code: they come from
STRIPE_PRICES (`starter_monthly=price_...,starter_yearly=price_...`), read when asked, so
the same build serves test mode, live mode and the offline local provider.

`current_plan(tenant_id)` is what code that enforces a limit calls; `plan_for(x)` maps an
object that already carries a plan key (a subscription row, a plan key string) to its Plan
without touching the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from kith.platform.config import get_settings

Interval = Literal["monthly", "yearly"]
INTERVALS: tuple[Interval, ...] = ("monthly", "yearly")
LimitName = Literal["seats", "contacts", "emails_per_month", "storage_mb"]

# What the upgrade hint points people at (relative to the workspace: /t/<slug>/...).
BILLING_PATH = "settings/billing"


@dataclass(frozen=True)
class Features:
    daily_backups: bool
    ml_scoring: bool
    api_requests_per_minute: int
    custom_roles: bool


@dataclass(frozen=True)
class Plan:
    """A plan's limits (None = unlimited) and features. Prices live in Stripe, named by id."""

    key: str
    name: str
    rank: int  # order of plans from smallest to largest, for "upgrade to" hints
    seats: int | None
    contacts: int | None
    emails_per_month: int | None
    storage_mb: int | None
    features: Features
    monthly_usd: int  # the list price shown on the billing page; Stripe's price is what is charged
    self_serve: bool = True  # Enterprise is sold by people, not through Checkout

    def price_id(self, interval: Interval) -> str:
        """The Stripe price id of this plan for `interval` (STRIPE_PRICES, or a stable local id)."""
        return price_ids().get(f"{self.key}_{interval}", f"price_kith_{self.key}_{interval}")

    def limit(self, name: LimitName) -> int | None:
        """The plan's limit called `name` (None = unlimited)."""
        value: int | None = getattr(self, name)
        return value

    @property
    def paid(self) -> bool:
        return self.monthly_usd > 0 or not self.self_serve


FREE = Plan(
    key="free", name="Free", rank=0, seats=2, contacts=500, emails_per_month=200, storage_mb=200,
    features=Features(daily_backups=False, ml_scoring=False, api_requests_per_minute=60, custom_roles=False),
    monthly_usd=0,
)
STARTER = Plan(
    key="starter", name="Starter", rank=1, seats=5, contacts=5_000, emails_per_month=5_000, storage_mb=2_048,
    features=Features(daily_backups=False, ml_scoring=False, api_requests_per_minute=120, custom_roles=False),
    monthly_usd=15,
)
PRO = Plan(
    key="pro", name="Pro", rank=2, seats=25, contacts=50_000, emails_per_month=50_000, storage_mb=20_480,
    features=Features(daily_backups=True, ml_scoring=True, api_requests_per_minute=600, custom_roles=True),
    monthly_usd=49,
)
ENTERPRISE = Plan(
    key="enterprise", name="Enterprise", rank=3, seats=None, contacts=None, emails_per_month=500_000,
    storage_mb=512_000,
    features=Features(daily_backups=True, ml_scoring=True, api_requests_per_minute=3_000, custom_roles=True),
    monthly_usd=0, self_serve=False,
)

PLANS: dict[str, Plan] = {plan.key: plan for plan in (FREE, STARTER, PRO, ENTERPRISE)}
# A trial without a chosen plan tries the largest self-serve plan, so people see everything.
DEFAULT_TRIAL_PLAN = "pro"
# Where a workspace lands when a trial ends unpaid or a subscription is cancelled.
FALLBACK_PLAN = "free"

LIMIT_WORDS: dict[str, tuple[str, str]] = {
    # limit -> (what it is called, what else frees room besides upgrading)
    "seats": ("user seats", "deactivate a user you no longer need"),
    "contacts": ("contacts", "delete contacts you no longer need"),
    "emails_per_month": ("campaign emails this month", "wait for next month's allowance"),
    "storage_mb": ("MB of storage", "delete attachments you no longer need"),
}


def trial_plans() -> list[Plan]:
    """The plans a new workspace may try at signup: self-serve and paid, smallest first.

    Free is left out (a trial of it would be no trial: every unpaid trial ends there anyway),
    and so is Enterprise, which is arranged with sales.
    """
    return sorted((p for p in PLANS.values() if p.self_serve and p.monthly_usd > 0), key=lambda p: p.rank)


def price_ids() -> dict[str, str]:
    """`<plan>_<interval>` -> Stripe price id, parsed from STRIPE_PRICES."""
    result: dict[str, str] = {}
    for part in get_settings().stripe_prices.split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() and value.strip():
            result[name.strip()] = value.strip()
    return result


def plan_for_price(price_id: str) -> tuple[Plan, Interval] | None:
    """The plan and interval a Stripe price id belongs to, or None for a price we do not sell."""
    for plan in PLANS.values():
        for interval in INTERVALS:
            if plan.price_id(interval) == price_id:
                return plan, interval
    return None


def get_plan(key: str) -> Plan:
    """The plan called `key`; KeyError names the plans there are."""
    try:
        return PLANS[key]
    except KeyError:
        raise KeyError(f"unknown plan {key!r}; plans are {', '.join(PLANS)}") from None


@runtime_checkable
class HasPlan(Protocol):
    plan: str


def plan_for(tenant: HasPlan | str) -> Plan:
    """The Plan of an object that carries a plan key (`.plan`, e.g. a Subscription), or of a key.

    A Tenant row does not carry its plan (the subscription does): for a tenant id use
    `await current_plan(tenant_id)`, or `plans_of(ids)` for a list.
    """
    if isinstance(tenant, str):
        return get_plan(tenant)
    if isinstance(tenant, HasPlan):
        return get_plan(tenant.plan)
    raise TypeError(f"{type(tenant).__name__} carries no plan; use `await current_plan(tenant_id)`")


async def current_plan(tenant_id: int) -> Plan:
    """The plan whose limits apply to the tenant now (a lapsed trial counts as the free plan)."""
    from kith.platform.billing.subscriptions import current_subscription  # subscriptions imports plans

    return plan_for((await current_subscription(tenant_id)).effective_plan)


async def plans_of(tenant_ids: list[int]) -> dict[int, Plan]:
    """Tenant id -> the plan that applies now, for many tenants in one query (ops lists, usage)."""
    from kith.platform.billing.subscriptions import subscriptions_of

    return {tid: plan_for(sub.effective_plan) for tid, sub in (await subscriptions_of(tenant_ids)).items()}


class LimitExceeded(Exception):
    """Work would go over the plan's limit. The message says which limit and how to raise it."""

    def __init__(self, *, limit: LimitName, plan: Plan, used: int, adding: int, allowed: int) -> None:
        what, otherwise = LIMIT_WORDS[limit]
        bigger = next((p for p in sorted(PLANS.values(), key=lambda p: p.rank)
                       if p.rank > plan.rank and (p.limit(limit) is None or (p.limit(limit) or 0) > allowed)), None)
        upgrade = (f"upgrade to {bigger.name} on the Billing settings page ({BILLING_PATH})" if bigger
                   else "contact us to raise it")
        super().__init__(
            f"The {plan.name} plan includes {allowed:,} {what}; {used:,} are used and this would add "
            f"{adding:,}. To go further, {upgrade}, or {otherwise}."
        )
        self.limit = limit
        self.plan = plan
        self.used = used
        self.adding = adding
        self.allowed = allowed


def check_limit(plan: Plan, limit: LimitName, *, used: int, adding: int) -> None:
    """Raise LimitExceeded if `used + adding` would go over the plan's `limit`."""
    allowed = plan.limit(limit)
    if allowed is not None and adding > 0 and used + adding > allowed:
        raise LimitExceeded(limit=limit, plan=plan, used=used, adding=adding, allowed=allowed)
