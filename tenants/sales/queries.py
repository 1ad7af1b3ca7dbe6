"""Reading orders through the actor's permissions: lists with keyset pagination, one order with
its lines, and a customer's purchase history for the company and contact pages.

Orders are scoped by owner_id (own, team or all records, as the role says); an order out of
scope is "not found", like a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.sales.errors import NotFound

OBJECT = "orders"
MAX_PAGE = 100
STATUSES = ("draft", "confirmed", "fulfilled", "cancelled")
MONEY = ("subtotal", "discount_total", "total")
LINE_MONEY = ("unit_price", "line_total")
# what the lists select: the order and its company's name
_SELECT = "SELECT o.*, c.name AS company_name FROM orders o LEFT JOIN companies c ON c.id = o.company_id"


@dataclass
class OrderPage:
    items: list[dict[str, Any]]
    next_cursor: str | None


def scope_clause(session: TenantSession, object_type: str, column: str, params: list[Any]) -> str | None:
    """`column = ANY(owners)` for the actor's record scope of `object_type`, or None (all records)."""
    owners = session.policy.owner_ids(object_type)
    if owners is None:
        return None
    params.append(sorted(owners))
    return f"{column} = ANY(${len(params)}::bigint[])"


def parse_cursor(cursor: str | None) -> tuple[date, int] | None:
    """An order list's cursor: "<order_date>_<id>" of the previous page's last order."""
    if not cursor:
        return None
    day, _, ident = cursor.partition("_")
    try:
        return date.fromisoformat(day), int(ident)
    except ValueError:
        raise ValueError("cursor must be the next_cursor value of a previous page") from None


async def workspace_today(session: TenantSession) -> date:
    """Today's date in the workspace's time zone."""
    rows = await session.tx.execute_query_dict(
        "SELECT (now() AT TIME ZONE time_zone)::date AS today FROM public.tenants WHERE id = $1",
        [session.actor.tenant_id])
    return rows[0]["today"]  # type: ignore[no-any-return]


def visible_order(session: TenantSession, row: dict[str, Any]) -> dict[str, Any]:
    """An order row as the actor may see it (hidden fields and the company name it may not see left out)."""
    out = session.visible(OBJECT, row)
    if "name" in session.policy.hidden_fields("companies"):
        out.pop("company_name", None)
    if "total" in session.policy.hidden_fields(OBJECT):  # the total's parts would reveal it
        for name in MONEY:
            out.pop(name, None)
    return out


async def query_orders(
    session: TenantSession, *, status: str | None = None, company_id: int | None = None,
    contact_id: int | None = None, limit: int = 25, cursor: str | None = None,
) -> OrderPage:
    """Orders in the actor's scope, newest order_date first, inside an existing session."""
    after = parse_cursor(cursor)
    where: list[str] = []
    params: list[Any] = []
    scope = scope_clause(session, OBJECT, "o.owner_id", params)
    if scope:
        where.append(scope)
    for column, value in (("o.status", status), ("o.company_id", company_id), ("o.contact_id", contact_id)):
        if value is not None:
            params.append(value)
            where.append(f"{column} = ${len(params)}")
    if after is not None:
        params.extend(after)
        where.append(f"(o.order_date, o.id) < (${len(params) - 1}::date, ${len(params)}::bigint)")
    params.append(limit + 1)
    rows = await session.tx.execute_query_dict(
        _SELECT + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY o.order_date DESC, o.id DESC LIMIT ${len(params)}", params)
    items = [visible_order(session, row) for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return OrderPage(items=items, next_cursor=f"{last['order_date'].isoformat()}_{last['id']}" if last else None)


async def list_orders(
    actor: Actor, *, status: str | None = None, company_id: int | None = None, contact_id: int | None = None,
    limit: int = 25, cursor: str | None = None,
) -> OrderPage:
    """Orders the actor may see, newest first, filtered by status, company or contact."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        return await query_orders(session, status=status, company_id=company_id, contact_id=contact_id,
                                  limit=max(1, min(limit, MAX_PAGE)), cursor=cursor)


async def orders_for(
    session: TenantSession, *, company_id: int | None = None, contact_id: int | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    """A customer's purchase history (newest first) for the company and contact pages, inside the
    page's session: only orders in the actor's scope, and none when the role may not view orders
    (the page shows its other sections rather than refusing)."""
    if company_id is None and contact_id is None:
        raise ValueError("orders_for needs a company_id or a contact_id")
    if not session.policy.can(OBJECT, "view"):
        return []
    page = await query_orders(session, company_id=company_id, contact_id=contact_id,
                              limit=max(1, min(limit, MAX_PAGE)))
    return page.items


async def load_order(session: TenantSession, order_id: int, *, lock: bool = False) -> dict[str, Any]:
    """The full row of an order in the actor's scope, or NotFound."""
    params: list[Any] = [order_id]
    scope = scope_clause(session, OBJECT, "o.owner_id", params)
    rows = await session.tx.execute_query_dict(
        _SELECT + " WHERE o.id = $1" + (f" AND {scope}" if scope else "") + (" FOR UPDATE OF o" if lock else ""),
        params)
    if not rows:
        raise NotFound("order")
    return rows[0]


async def order_lines(session: TenantSession, order_id: int) -> list[dict[str, Any]]:
    """An order's lines in order, with the SKU of their product (if it still exists)."""
    return await session.tx.execute_query_dict(
        "SELECT l.*, p.sku AS product_sku FROM order_lines l LEFT JOIN products p ON p.id = l.product_id"
        " WHERE l.order_id = $1 ORDER BY l.position, l.id", [order_id])


async def get_order_in(session: TenantSession, order_id: int) -> dict[str, Any]:
    """One order with its lines, inside an existing session."""
    session.require(OBJECT, "view")
    row = visible_order(session, await load_order(session, order_id))
    lines = await order_lines(session, order_id)
    if "total" in session.policy.hidden_fields(OBJECT):
        lines = [{k: v for k, v in line.items() if k not in LINE_MONEY} for line in lines]
    return {**row, "lines": lines}


async def get_order(actor: Actor, order_id: int) -> dict[str, Any]:
    """One order with its lines, as the actor may see it."""
    async with acting_as(actor) as session:
        return await get_order_in(session, order_id)


LINK_TABLES = (("company_id", "companies"), ("contact_id", "contacts"), ("deal_id", "deals"))


async def link_choices(
    actor: Actor, selected: dict[str, int | None], *, limit: int = 200
) -> dict[str, list[dict[str, Any]]]:
    """For the order form: the newest companies, contacts and deals the actor may see (up to `limit`
    each), plus the ones already `selected` if visible; an empty list where the role may not view them."""
    choices: dict[str, list[dict[str, Any]]] = {}
    async with acting_as(actor) as session:
        for field, table in LINK_TABLES:
            if not session.policy.can(table, "view") or "name" in session.policy.hidden_fields(table):
                choices[field] = []
                continue
            params: list[Any] = [limit, selected.get(field)]
            scope = scope_clause(session, table, f"{table}.owner_id", params)
            rows = await session.tx.execute_query_dict(
                f"(SELECT id, name FROM {table}" + (f" WHERE {scope}" if scope else "")  # noqa: S608 - fixed names
                + f" ORDER BY id DESC LIMIT $1) UNION (SELECT id, name FROM {table} WHERE id = $2::bigint"
                + (f" AND {scope}" if scope else "") + ") ORDER BY name, id", params)
            choices[field] = rows
    return choices
