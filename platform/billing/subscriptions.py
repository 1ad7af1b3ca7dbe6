"""A workspace's subscription and the states it moves through.

    trialing --paid--> active --payment fails--> past_due --grace ends--> read_only
        |                 ^                          |                        |
        |                 +------ invoice paid ------+------------------------+
        +-- trial ends unpaid --> active on the free plan
    any --cancelled--> cancelled (read-only, deleted after the retention period)
    any --paused/ops--> suspended
    trialing/active without Stripe --ops comps a plan--> active, not billed, until comped_until

Every change of the row goes through `reconcile_in` or `update_in`, which also write its history
row (public.subscription_changes, kith.platform.billing.changes) in the same transaction.

Stripe is the record of what is paid: `reconcile_in` sets the row from a Stripe subscription
object, so whichever order events arrive in, the last reconciliation wins with Stripe's
current answer. `read_only` and a lapsed trial are computed from timestamps on read
(`Subscription.state`), so they hold from the exact moment without a job flipping them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from tortoise.backends.base.client import BaseDBAsyncClient

from kith.platform.audit.log import EntryFields, append_platform_entry
from kith.platform.billing.changes import record_change_in
from kith.platform.billing.plans import DEFAULT_TRIAL_PLAN, FALLBACK_PLAN, PLANS, Interval, get_plan, plan_for_price
from kith.platform.config import get_settings
from kith.platform.db import entry_facts, forget_entry_facts, platform_tx

StoredStatus = Literal["trialing", "active", "past_due", "suspended", "cancelled"]
State = Literal["trialing", "active", "past_due", "read_only", "suspended", "cancelled"]
WRITABLE_STATES: frozenset[str] = frozenset({"trialing", "active", "past_due"})

# Stripe subscription status -> ours. 'incomplete' (first payment still pending) keeps the
# workspace where it was; 'incomplete_expired' never started, so it changes nothing either.
STRIPE_STATUS: dict[str, StoredStatus] = {
    "trialing": "trialing", "active": "active", "past_due": "past_due", "unpaid": "past_due",
    "canceled": "cancelled", "paused": "suspended",
}

_COLUMNS = (
    "tenant_id, plan, billing_interval, status, provider, trial_ends_at, past_due_since, cancelled_at,"
    " current_period_end, cancel_at_period_end, seats, stripe_customer_id, stripe_subscription_id,"
    " stripe_item_id, deleted_at, comped_until"
)


class WorkspaceReadOnly(PermissionError):
    """The workspace's billing state allows reading and exporting only."""

    def __init__(self, state: str) -> None:
        why = {
            "read_only": "payment is overdue past the grace period",
            "cancelled": "its subscription was cancelled",
            "suspended": "its subscription is suspended",
        }.get(state, state)
        super().__init__(
            f"This workspace is read-only because {why}. Data stays visible and exportable; an owner or admin "
            "can restore full access on the Billing settings page (settings/billing)."
        )
        self.state = state


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Subscription:
    """One row of public.billing_subscriptions."""

    tenant_id: int
    plan: str
    billing_interval: Interval
    status: StoredStatus
    provider: str
    trial_ends_at: datetime | None
    past_due_since: datetime | None
    cancelled_at: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    seats: int
    stripe_customer_id: str | None
    stripe_subscription_id: str | None
    stripe_item_id: str | None
    deleted_at: datetime | None
    comped_until: datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Subscription:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})

    def trial_lapsed(self, now: datetime | None = None) -> bool:
        """Our own trial (no Stripe subscription behind it) ended without a payment."""
        now = now or now_utc()
        return (self.status == "trialing" and self.stripe_subscription_id is None
                and self.trial_ends_at is not None and self.trial_ends_at <= now)

    def comped(self, now: datetime | None = None) -> bool:
        """Support gave the plan without payment, and the comp still runs. A Stripe subscription
        ends a comp: from then on Stripe's record of what is paid decides."""
        now = now or now_utc()
        return (self.comped_until is not None and self.stripe_subscription_id is None
                and self.comped_until > now)

    def comp_lapsed(self, now: datetime | None = None) -> bool:
        """A comp ran out (the workspace falls back to the free plan, like a lapsed trial)."""
        now = now or now_utc()
        return (self.comped_until is not None and self.stripe_subscription_id is None
                and self.comped_until <= now)

    def grace_ends_at(self) -> datetime | None:
        if self.status != "past_due" or self.past_due_since is None:
            return None
        return self.past_due_since + timedelta(days=get_settings().billing_grace_days)

    def state(self, now: datetime | None = None) -> State:
        """The state that applies now: a stored status, or read_only once the grace period is over."""
        return state_of(self.status, self.trial_ends_at, self.past_due_since, self.stripe_subscription_id, now)

    @property
    def effective_plan(self) -> str:
        """The plan whose limits apply: the free plan once a trial lapsed or a subscription ended."""
        if self.trial_lapsed() or self.status == "cancelled" or self.comp_lapsed():
            return FALLBACK_PLAN
        return self.plan

    def writable(self, now: datetime | None = None) -> bool:
        return self.state(now) in WRITABLE_STATES

    def days_left_in_trial(self, now: datetime | None = None) -> int | None:
        if self.status != "trialing" or self.trial_ends_at is None:
            return None
        return max(0, (self.trial_ends_at - (now or now_utc())).days)


def _trial_end(now: datetime) -> datetime:
    return now + timedelta(days=get_settings().trial_days)


async def start_trial_in(tx: BaseDBAsyncClient, tenant_id: int, plan: str = "") -> Subscription:
    """Start the workspace's trial on `plan` inside the caller's (signup) transaction.

    A workspace that already has a subscription keeps it. Audited in the platform log,
    because at signup the tenant's own log is not in this transaction's search path.
    """
    plan_key = plan or DEFAULT_TRIAL_PLAN
    chosen = get_plan(plan_key)
    if not chosen.self_serve:
        raise ValueError(f"the {chosen.name} plan cannot be chosen at signup; contact sales")
    rows = await tx.execute_query_dict(
        "INSERT INTO public.billing_subscriptions (tenant_id, plan, status, provider, trial_ends_at, seats)"
        " VALUES ($1, $2, 'trialing', $3, $4, (SELECT count(*) FROM public.memberships"
        "  WHERE tenant_id = $1 AND is_active)) ON CONFLICT (tenant_id) DO NOTHING RETURNING tenant_id",
        [int(tenant_id), plan_key, provider_name(), _trial_end(now_utc())],
    )
    if rows:
        await append_platform_entry(tx, EntryFields(
            actor_kind="system", actor_id="", token_id=None, actor_label="billing", ip="", user_agent="",
            request_id="", object_type="billing_subscription", object_id=str(int(tenant_id)),
            action="billing.trial_started", diff={"plan": plan_key, "trial_days": get_settings().trial_days},
        ))
    return await load_subscription_in(tx, tenant_id)


def provider_name() -> str:
    """'stripe' when STRIPE_SECRET_KEY is set, else 'local'."""
    return "stripe" if get_settings().stripe_secret_key else "local"


async def load_subscription_in(tx: BaseDBAsyncClient, tenant_id: int, *, for_update: bool = False) -> Subscription:
    """The tenant's subscription in `tx`, created as a trial on first read.

    Workspaces made before billing existed (or by the CLI) get their row here, so every
    reader sees one; the trial then starts at this first read.
    """
    lock = " FOR UPDATE" if for_update else ""
    rows = await tx.execute_query_dict(
        f"SELECT {_COLUMNS} FROM public.billing_subscriptions WHERE tenant_id = $1{lock}", [int(tenant_id)]
    )
    if not rows:
        await tx.execute_query(
            "INSERT INTO public.billing_subscriptions (tenant_id, plan, status, provider, trial_ends_at, seats)"
            " VALUES ($1, $2, 'trialing', $3, $4, (SELECT count(*) FROM public.memberships"
            "  WHERE tenant_id = $1 AND is_active)) ON CONFLICT (tenant_id) DO NOTHING",
            [int(tenant_id), DEFAULT_TRIAL_PLAN, provider_name(), _trial_end(now_utc())],
        )
        rows = await tx.execute_query_dict(
            f"SELECT {_COLUMNS} FROM public.billing_subscriptions WHERE tenant_id = $1{lock}", [int(tenant_id)]
        )
    return Subscription.from_row(rows[0])


async def current_subscription(tenant_id: int, tx: BaseDBAsyncClient | None = None) -> Subscription:
    """The tenant's subscription (in `tx` when given, which may be a tenant scope)."""
    async with platform_tx(tx) as conn:  # type: ignore[arg-type]
        return await load_subscription_in(conn, tenant_id)


async def subscriptions_of(tenant_ids: list[int]) -> dict[int, Subscription]:
    """Subscriptions of many tenants in one query; tenants without a row yet get one."""
    ids = sorted({int(t) for t in tenant_ids})
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            f"SELECT {_COLUMNS} FROM public.billing_subscriptions WHERE tenant_id = ANY($1::bigint[])", [ids]
        )
        found = {int(r["tenant_id"]): Subscription.from_row(r) for r in rows}
        for tid in ids:
            if tid not in found:
                found[tid] = await load_subscription_in(tx, tid)
    return found


async def assert_writable(tx: BaseDBAsyncClient, tenant_id: int, action: str) -> None:
    """Raise WorkspaceReadOnly if the workspace's billing state forbids the change `action`.

    Called where every change is recorded (the audit entry of `TenantSession.audit`), so one
    check covers pages, API, imports and jobs. Reads, exports, erasure requests (a legal duty)
    and billing itself (paying is how a workspace gets out of read-only) stay allowed.
    """
    if action_allowed_when_read_only(action):
        return
    facts = entry_facts(tx)
    if facts is not None:
        # handed over by the tenant scope's entry query: no round trip of its own
        if not facts["e_has_billing"]:
            return  # no row yet: a fresh trial, writable
        state = state_of(facts["e_status"], facts["e_trial_ends_at"], facts["e_past_due_since"],
                         facts["e_stripe_subscription_id"])
        if state not in WRITABLE_STATES:
            raise WorkspaceReadOnly(state)
        return
    rows = await tx.execute_query_dict(
        f"SELECT {_COLUMNS} FROM public.billing_subscriptions WHERE tenant_id = $1", [int(tenant_id)]
    )
    if not rows:
        return  # no row yet: a fresh trial, writable
    state = Subscription.from_row(rows[0]).state()
    if state not in WRITABLE_STATES:
        raise WorkspaceReadOnly(state)


def state_of(status: str, trial_ends_at: datetime | None, past_due_since: datetime | None,
             stripe_subscription_id: str | None, now: datetime | None = None) -> State:
    """The billing state that applies now, from the four columns that decide it."""
    now = now or now_utc()
    if status == "trialing" and stripe_subscription_id is None and trial_ends_at is not None and trial_ends_at <= now:
        return "active"  # a lapsed trial of our own: on the free plan (see Subscription.effective_plan)
    if status == "past_due" and past_due_since is not None:
        if past_due_since + timedelta(days=get_settings().billing_grace_days) <= now:
            return "read_only"
    return status  # type: ignore[return-value]


def action_allowed_when_read_only(action: str) -> bool:
    """Audited actions a read-only workspace still performs."""
    return (action.endswith((".read_sensitive", ".export", ".exported", ".erase", ".erased"))
            or action.startswith(("billing.", "privacy.", "identity.", "session.", "membership.deactivat")))


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


def _first_item(stripe_sub: dict[str, Any]) -> dict[str, Any]:
    items = (stripe_sub.get("items") or {}).get("data") or []
    return dict(items[0]) if items else {}


async def reconcile_in(tx: BaseDBAsyncClient, tenant_id: int, stripe_sub: dict[str, Any]) -> dict[str, list[Any]]:
    """Set the tenant's row from a Stripe subscription object; return what changed ({field: [old, new]}).

    The object is Stripe's current answer (fetched from the API), so applying it is the same
    whatever event asked for it and in whatever order. A subscription other than the one the
    row follows changes nothing once the row follows a live one (an old subscription's
    late `deleted` event cannot cancel its replacement).
    """
    current = await load_subscription_in(tx, tenant_id, for_update=True)
    sub_id = str(stripe_sub["id"])
    stripe_status = str(stripe_sub.get("status", ""))
    if (current.stripe_subscription_id not in (None, sub_id) and current.status != "cancelled"
            and stripe_status in ("canceled", "incomplete_expired")):
        return {}
    status = STRIPE_STATUS.get(stripe_status)
    if status is None:
        return {}
    item = _first_item(stripe_sub)
    price = item.get("price") or {}
    price_id = price.get("id") if isinstance(price, dict) else str(price)
    found = plan_for_price(str(price_id)) if price_id else None
    plan, interval = (found[0].key, found[1]) if found else (current.plan, current.billing_interval)
    now = now_utc()
    new: dict[str, Any] = {
        "plan": plan,
        "billing_interval": interval,
        "status": status,
        "provider": "stripe",
        "stripe_customer_id": str(stripe_sub.get("customer") or current.stripe_customer_id or "") or None,
        "stripe_subscription_id": sub_id,
        "stripe_item_id": str(item["id"]) if item.get("id") else current.stripe_item_id,
        "seats": int(item.get("quantity") or current.seats),
        "cancel_at_period_end": bool(stripe_sub.get("cancel_at_period_end")),
        "current_period_end": _ts(item.get("current_period_end") or stripe_sub.get("current_period_end")),
        "trial_ends_at": _ts(stripe_sub.get("trial_end")) if status == "trialing" else current.trial_ends_at,
        # The grace period starts when we first learn of the failure and survives repeated
        # past_due reconciliations; paying clears it.
        "past_due_since": (current.past_due_since or now) if status == "past_due" else None,
        "cancelled_at": (_ts(stripe_sub.get("ended_at") or stripe_sub.get("canceled_at")) or current.cancelled_at
                         or now) if status == "cancelled" else None,
    }
    changes = {k: [getattr(current, k), v] for k, v in new.items() if getattr(current, k) != v}
    shown = {k: [_jsonable(a), _jsonable(b)] for k, (a, b) in changes.items()}
    if changes:
        await _update(tx, tenant_id, {k: v[1] for k, v in changes.items()})
        await record_change_in(tx, current, {k: v[1] for k, v in changes.items()}, shown)
    return shown


async def _update(tx: BaseDBAsyncClient, tenant_id: int, values: dict[str, Any]) -> None:
    forget_entry_facts(tx)  # the billing facts the tenant scope began with no longer hold
    allowed = set(Subscription.__dataclass_fields__) - {"tenant_id"}
    names = [k for k in values if k in allowed]
    sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2))
    await tx.execute_query(
        f"UPDATE public.billing_subscriptions SET {sets}, updated_at = now() WHERE tenant_id = $1",
        [int(tenant_id), *(values[n] for n in names)],
    )


async def update_in(tx: BaseDBAsyncClient, tenant_id: int, values: dict[str, Any]) -> dict[str, list[Any]]:
    """Change columns of the tenant's row; return what changed ({field: [old, new]}) for the audit entry."""
    current = await load_subscription_in(tx, tenant_id, for_update=True)
    changes = {k: [getattr(current, k), v] for k, v in values.items() if getattr(current, k) != v}
    shown = {k: [_jsonable(a), _jsonable(b)] for k, (a, b) in changes.items()}
    if changes:
        await _update(tx, tenant_id, {k: v[1] for k, v in changes.items()})
        await record_change_in(tx, current, {k: v[1] for k, v in changes.items()}, shown)
    return shown


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def known_plan(key: str) -> bool:
    return key in PLANS
