"""Monthly recurring revenue, and the history of subscription changes that tracks it.

`monthly_revenue(sub)` is the one MRR rule: the ops console's list, detail and dashboard use
it, and `record_change_in` stores its answer before and after every change of a workspace's
subscription in `public.subscription_changes`, in the transaction that makes the change
(`subscriptions.update_in` and `subscriptions.reconcile_in` call it; every change of the row
goes through one of the two). Trial conversion, churn and MRR lost are read from that history.

Money is Decimal, in the plans' currency (their list prices are US dollars), never float.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from tortoise.backends.base.client import BaseDBAsyncClient

from kith.platform.billing.plans import PLANS, Interval, Plan

if TYPE_CHECKING:  # subscriptions imports this module to record its changes
    from kith.platform.billing.subscriptions import Subscription

CURRENCY = "usd"
CENT = Decimal("0.01")
# A change of any of these columns is a change of the subscription worth a history row.
TRACKED = frozenset({"status", "plan", "billing_interval", "seats", "trial_ends_at", "comped_until",
                     "past_due_since"})


@dataclass(frozen=True)
class Revenue:
    """A workspace's MRR, and why it is what it is when that is worth a word.

    `flag` is "" for an ordinary paying subscription, "past due" when it still counts but the
    last payment failed, and otherwise says why it counts 0: "trial", "comped", "free",
    "cancelled", "suspended", "read-only", "contract" (Enterprise: its price is not in the
    plans) or "unknown plan".
    """

    amount: Decimal
    flag: str = ""

    @property
    def paying(self) -> bool:
        return self.amount > 0


def seat_price(plan: Plan, interval: Interval) -> Decimal:
    """What one seat of `plan` costs for one billing `interval`, in CURRENCY.

    The plans define a monthly list price only: a year is twelve of them (as the local provider
    bills it). Stripe may charge a discounted yearly price; the plans, not Stripe, are the
    figure the console reports.
    """
    monthly = Decimal(plan.monthly_usd)
    return monthly * 12 if interval == "yearly" else monthly


def monthly_revenue(sub: Subscription, now: datetime | None = None) -> Revenue:
    """The monthly recurring revenue of the workspace's current paid subscription at `now`.

    Rule: the plan's price per seat for the subscription's interval (a yearly price divided by
    12) times its billed seats, rounded to the cent, while the subscription is active, or
    past_due within its grace period (still counted, flagged "past due": the money is at risk).
    Counts 0:
    - trialing (our own trial or one Stripe runs), and a trial that lapsed onto the free plan;
    - comped by support (not billed), and a comp that ran out (back on the free plan);
    - cancelled; suspended (Stripe paused it); read-only (past_due beyond the grace period,
      which the dashboard counts as churn for non-payment);
    - the free plan, and a plan priced by contract (Enterprise) or no longer defined.
    A workspace the ops console suspended keeps its MRR: that is not a billing state, and Stripe
    goes on billing it.
    """
    now = now or datetime.now(UTC)
    state = sub.state(now)
    if state in ("cancelled", "suspended"):
        return Revenue(Decimal("0.00"), state)
    if state == "read_only":
        return Revenue(Decimal("0.00"), "read-only")
    if sub.trial_lapsed(now) or sub.comp_lapsed(now):
        return Revenue(Decimal("0.00"), "free")
    if state == "trialing":
        return Revenue(Decimal("0.00"), "trial")
    if sub.comped(now):
        return Revenue(Decimal("0.00"), "comped")
    plan = PLANS.get(sub.plan)
    if plan is None:
        return Revenue(Decimal("0.00"), "unknown plan")
    if not plan.self_serve:
        return Revenue(Decimal("0.00"), "contract")
    if not plan.monthly_usd:
        return Revenue(Decimal("0.00"), "free")
    per_month = seat_price(plan, sub.billing_interval) / (12 if sub.billing_interval == "yearly" else 1)
    amount = (per_month * max(0, sub.seats)).quantize(CENT, rounding=ROUND_HALF_UP)
    return Revenue(amount, "past due" if state == "past_due" else "")


async def record_change_in(tx: BaseDBAsyncClient, before: Subscription, values: dict[str, Any],
                           changes: dict[str, list[Any]]) -> None:
    """Write the history row of a change of the workspace's subscription, inside the caller's
    transaction (the one that updates public.billing_subscriptions).

    `before` is the row as it was, `values` the columns set ({column: new value}), `changes` the
    same as JSON-ready [old, new] pairs (what the audit entry records). A change that touches no
    TRACKED column (a Stripe customer id, cancel_at_period_end) writes nothing.
    """
    if not TRACKED.intersection(changes):
        return
    known = {f.name for f in fields(before)}
    after = replace(before, **{k: v for k, v in values.items() if k in known})
    now = datetime.now(UTC)
    await tx.execute_query(
        "INSERT INTO public.subscription_changes (tenant_id, at, from_status, to_status, from_plan, to_plan,"
        " mrr_before, mrr_after, past_due_since, changes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)",
        [int(before.tenant_id), now, before.status, after.status, before.plan, after.plan,
         monthly_revenue(before, now).amount, monthly_revenue(after, now).amount, after.past_due_since,
         json.dumps(changes, default=str)],
    )


def money(amount: Decimal) -> str:
    """`amount` as the console shows money: "$1,234.50" (CURRENCY is US dollars)."""
    return f"${amount.quantize(CENT, rounding=ROUND_HALF_UP):,}"
