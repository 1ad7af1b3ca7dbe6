"""The arithmetic of an order, in one place: every amount is a Decimal, rounded to cents half up.

A line's total is quantity x unit price less its discount, rounded once at the end; the
order's subtotal is the sum of each line's undiscounted amount (each rounded to cents), its
total the sum of the line totals, and the discount total the difference, so the three always
agree to the cent. The browser's live totals (web/static/orders.js) repeat this arithmetic in
integers; the server recomputes and stores what it computes here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext

CENT = Decimal("0.01")
HUNDRED = Decimal(100)
# quantity (12 digits) x unit price (18 digits) x a discount factor needs more than the default 28
_PRECISION = 60


@dataclass(frozen=True)
class LineAmounts:
    gross: Decimal  # quantity x unit price, rounded to cents
    discount: Decimal  # gross - total
    total: Decimal  # quantity x unit price x (1 - discount / 100), rounded to cents


@dataclass(frozen=True)
class OrderTotals:
    subtotal: Decimal
    discount_total: Decimal
    total: Decimal


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def line_amounts(quantity: Decimal, unit_price: Decimal, discount_percent: Decimal = Decimal(0)) -> LineAmounts:
    """The amounts of one order line."""
    with localcontext(Context(prec=_PRECISION)):
        raw = quantity * unit_price
        gross = _cents(raw)
        total = _cents(raw * (1 - discount_percent / HUNDRED))
    return LineAmounts(gross=gross, discount=gross - total, total=total)


def order_totals(lines: Iterable[LineAmounts]) -> OrderTotals:
    """The order's subtotal, discount total and total from its lines' amounts."""
    subtotal = Decimal("0.00")
    total = Decimal("0.00")
    for line in lines:
        subtotal += line.gross
        total += line.total
    return OrderTotals(subtotal=subtotal, discount_total=subtotal - total, total=total)


def percent_of(achieved: Decimal, target: Decimal) -> Decimal:
    """`achieved` as a percentage of `target`, to one decimal place (half up); 0 for no target."""
    if target <= 0:
        return Decimal("0.0")
    with localcontext(Context(prec=_PRECISION)):
        return (achieved * HUNDRED / target).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
