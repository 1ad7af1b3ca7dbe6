"""The product catalogue: list and search, create, change, deactivate and delete.

Products belong to the whole workspace: the role grants the actions, but no record scope
ever narrows the catalogue (object type "products" has no owner). Every change is audited
("product.create|update|delete") in its transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.sales.errors import Conflict, InvalidInput, NotFound
from kith.tenants.sales.schemas import ProductIn, ProductPatch

OBJECT = "products"
MAX_PAGE = 100
_COLUMNS = ("sku", "name", "description", "unit_price", "currency", "active")


@dataclass
class ProductPage:
    items: list[dict[str, Any]]
    next_cursor: str | None


def like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _visible(session: TenantSession, row: dict[str, Any]) -> dict[str, Any]:
    return session.visible(OBJECT, row)


async def list_products(
    actor: Actor, *, q: str = "", active: bool | None = None, limit: int = 25, cursor: str | None = None
) -> ProductPage:
    """Products by SKU (case-insensitive); `q` matches any part of the SKU or name, any script.
    `cursor` is the lower-cased SKU of the previous page's last product."""
    limit = max(1, min(limit, MAX_PAGE))
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        hidden = session.policy.hidden_fields(OBJECT)
        where: list[str] = []
        params: list[Any] = []
        if q.strip():
            params.append(like_pattern(q.strip()))
            searched = [f for f in ("sku", "name") if f not in hidden]
            if len(searched) == 2:  # the expression of products_search_idx
                where.append(f"(sku || ' ' || name) ILIKE ${len(params)}")
            elif searched:  # a hidden field must not be matched, or search would reveal it
                where.append(f"{searched[0]} ILIKE ${len(params)}")
            else:
                where.append("false")
        if active is not None:
            params.append(active)
            where.append(f"active = ${len(params)}")
        if cursor:
            params.append(cursor)
            where.append(f"lower(sku) > ${len(params)}")
        params.append(limit + 1)
        rows = await session.tx.execute_query_dict(
            "SELECT * FROM products" + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY lower(sku) LIMIT ${len(params)}", params)
        items = [_visible(session, row) for row in rows[:limit]]
    next_cursor = str(rows[limit - 1]["sku"]).lower() if len(rows) > limit else None
    return ProductPage(items=items, next_cursor=next_cursor)


async def active_products(actor: Actor, *, limit: int = 500) -> list[dict[str, Any]]:
    """Active products by SKU, for the order form's product choice."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        rows = await session.tx.execute_query_dict(
            "SELECT id, sku, name, unit_price, currency FROM products WHERE active ORDER BY lower(sku) LIMIT $1",
            [limit])
        return [_visible(session, row) for row in rows]


async def _load(session: TenantSession, product_id: int, *, lock: bool = False) -> dict[str, Any]:
    rows = await session.tx.execute_query_dict(
        "SELECT * FROM products WHERE id = $1" + (" FOR UPDATE" if lock else ""), [product_id])
    if not rows:
        raise NotFound("product")
    return rows[0]


async def get_product(actor: Actor, product_id: int) -> dict[str, Any]:
    """One product as the actor may see it, with `used_on_orders` (lines that name it)."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        row = await _load(session, product_id)
        used = await session.tx.execute_query_dict(
            "SELECT count(*) AS n FROM order_lines WHERE product_id = $1", [product_id])
        return {**_visible(session, row), "used_on_orders": int(used[0]["n"])}


async def _check_sku(session: TenantSession, sku: str, product_id: int | None = None) -> None:
    rows = await session.tx.execute_query_dict(
        "SELECT id FROM products WHERE lower(sku) = lower($1) AND id IS DISTINCT FROM $2", [sku, product_id])
    if rows:
        raise Conflict(f"The SKU '{sku}' is already used by another product.",
                       {"sku": f"The SKU '{sku}' is already used by another product."})


async def create_product(actor: Actor, data: ProductIn, *, default_currency: str) -> dict[str, Any]:
    """Add a product to the catalogue; its currency defaults to the workspace's."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "create")
        session.require_fields(OBJECT, [f for f in data.model_fields_set if f != "currency"])
        await _check_sku(session, data.sku)
        values = {**data.model_dump(), "currency": data.currency or default_currency}
        rows = await session.tx.execute_query_dict(
            "INSERT INTO products (sku, name, description, unit_price, currency, active)"
            " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *", [values[c] for c in _COLUMNS])
        row = rows[0]
        diff = {c: [None, _plain(values[c])] for c in _COLUMNS if values[c] not in ("", None)}
        await session.audit("product.create", OBJECT, row["id"], diff)
        return _visible(session, row)


def _plain(value: Any) -> Any:
    """A value as the audit diff stores it (JSON): Decimals as their exact text."""
    return str(value) if not isinstance(value, str | bool | int | type(None)) else value


async def update_in(session: TenantSession, product_id: int, changes: ProductPatch) -> dict[str, Any]:
    """Change the fields given in `changes` inside an existing session (audited)."""
    given = {k: v for k, v in changes.model_dump(exclude_unset=True).items() if v is not None}
    session.require(OBJECT, "edit")
    session.require_fields(OBJECT, [f for f in given if f != "currency"])
    before = await _load(session, product_id, lock=True)
    diff = {k: [before[k], v] for k, v in given.items() if before[k] != v}
    if not diff:
        return _visible(session, before)
    if "sku" in diff:
        await _check_sku(session, given["sku"], product_id)
    if "currency" in diff:
        used = await session.tx.execute_query_dict(
            "SELECT o.number FROM order_lines l JOIN orders o ON o.id = l.order_id"
            " WHERE l.product_id = $1 AND o.status = 'draft' LIMIT 1", [product_id])
        if used:
            raise InvalidInput({"currency": f"The product is on the draft order {used[0]['number']}; its currency "
                                            "cannot change while a draft order uses it."})
    assignments = ", ".join(f"{col} = ${i}" for i, col in enumerate(diff, start=2))
    rows = await session.tx.execute_query_dict(
        f"UPDATE products SET {assignments}, updated_at = now() WHERE id = $1 RETURNING *",
        [product_id, *(new for _, new in diff.values())])
    await session.audit("product.update", OBJECT, product_id,
                        {k: [_plain(old), _plain(new)] for k, (old, new) in diff.items()})
    return _visible(session, rows[0])


async def update_product(actor: Actor, product_id: int, changes: ProductPatch) -> dict[str, Any]:
    """Change some fields of a product (deactivate it with active=false)."""
    async with acting_as(actor) as session:
        return await update_in(session, product_id, changes)


async def delete_product(actor: Actor, product_id: int) -> None:
    """Delete a product no order line names; one in use is refused (Conflict): deactivate it instead."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "delete")
        before = await _load(session, product_id, lock=True)
        used = await session.tx.execute_query_dict(
            "SELECT count(DISTINCT order_id) AS n FROM order_lines WHERE product_id = $1", [product_id])
        if used[0]["n"]:
            raise Conflict(f"The product '{before['sku']}' is on {used[0]['n']} order(s) and cannot be deleted; "
                           "deactivate it instead.")
        await session.tx.execute_query("DELETE FROM products WHERE id = $1", [product_id])
        await session.audit("product.delete", OBJECT, product_id,
                            {c: [_plain(before[c]), None] for c in _COLUMNS if before[c] not in ("", None)})
