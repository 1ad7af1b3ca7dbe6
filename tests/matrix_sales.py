"""Role-matrix fixtures for the sales endpoints: products, orders and sales targets."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import date
from typing import Any

from kith.platform.db import tenant_scope

from .conftest import Workspace
from .factories import Member
from .web_helpers import client

_n = itertools.count(1)
# the member whose walk is running: a new target is set for them
_current: dict[str, int] = {}


def _month(n: int) -> str:
    index = 2100 * 12 + n  # far from any real period, one month per call
    return date(index // 12, index % 12 + 1, 1).isoformat()


SAMPLE_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "ProductIn": lambda: {"sku": f"MATRIX-{next(_n)}", "name": "矩阵产品", "unit_price": "9.99"},
    "ProductPatch": lambda: {"description": "checked by the role matrix"},
    "OrderIn": lambda: {"lines": [{"description": "Matrix line", "quantity": "2", "unit_price": "5.00"}]},
    "OrderPatch": lambda: {"notes": "checked by the role matrix"},
    # cancelled rather than confirmed: the walk deletes the order afterwards, which a confirmed order refuses
    "OrderStatusIn": lambda: {"status": "cancelled"},
    "TargetIn": lambda: {"identity_id": _current["identity_id"], "period_kind": "month",
                         "period_start": _month(next(_n)), "amount": "1000.00"},
    "TargetPatch": lambda: {"amount": "1500.00"},
}


async def path_values(ws: Workspace, member: Member, owner_headers: dict[str, str]) -> dict[str, str]:
    _current["identity_id"] = member.identity_id
    async with client(headers=owner_headers) as c:
        product = await c.post("/api/v1/products", json={"sku": f"MATRIX-FIX-{next(_n)}", "name": "Matrix fixture",
                                                         "unit_price": "1.00"})
        assert product.status_code == 201, product.text
        target = await c.post("/api/v1/targets", json={"identity_id": member.identity_id, "period_kind": "quarter",
                                                       "period_start": _month(3 * next(_n)), "amount": "10"})
        assert target.status_code == 201, target.text
    # owned by the member, so own, team and all scopes all reach it; a line without a product, so the
    # product stays deletable
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "INSERT INTO orders (number, owner_id, created_by_id, currency) VALUES ($1, $2, $2, 'USD') RETURNING id",
            [f"MATRIX-{next(_n)}", member.identity_id])
        await tx.execute_query(
            "INSERT INTO order_lines (order_id, description, quantity, unit_price, line_total)"
            " VALUES ($1, 'Matrix line', 1, 1, 1)", [rows[0]["id"]])
    return {"product_id": str(product.json()["id"]), "order_id": str(rows[0]["id"]),
            "target_id": str(target.json()["id"])}
