"""Changing sales orders: create, update, move through their statuses, delete.

Each action checks the actor's permissions, validates what the order names against the
workspace's data (the company, contact and deal must be visible to the actor; every line's
product must be priced in the order's currency), computes the totals with
`kith.tenants.sales.pricing` and stores them, and writes its audit entry
("order.create|update|status|delete"), all in one transaction.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.sales.errors import Conflict, InvalidInput, NotFound
from kith.tenants.sales.pricing import LineAmounts, line_amounts, order_totals
from kith.tenants.sales.queries import OBJECT, get_order_in, load_order, order_lines, scope_clause, workspace_today
from kith.tenants.sales.schemas import OrderIn, OrderLineIn, OrderPatch

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("confirmed", "cancelled"),
    "confirmed": ("fulfilled", "cancelled"),
    "fulfilled": (),
    "cancelled": (),
}
# pg_advisory_xact_lock(key, tenant id): one order number handed out at a time per tenant
_NUMBER_LOCK = 0x4B534F  # "KSO"
_LINKS = (("company_id", "companies", "company"), ("contact_id", "contacts", "contact"), ("deal_id", "deals", "deal"))
_FIELDS = ("number", "company_id", "contact_id", "deal_id", "owner_id", "currency", "order_date", "notes")


async def _visible_record(session: TenantSession, table: str, record_id: int) -> dict[str, Any] | None:
    """A company, contact or deal the actor may see (role grants view, record in scope), or None."""
    if not session.policy.can(table, "view"):
        return None
    params: list[Any] = [record_id]
    scope = scope_clause(session, table, f"{table}.owner_id", params)
    rows = await session.tx.execute_query_dict(
        f"SELECT * FROM {table} WHERE id = $1" + (f" AND {scope}" if scope else ""), params)  # noqa: S608 - fixed names
    return rows[0] if rows else None


async def _resolve_links(
    session: TenantSession, values: dict[str, Any], *, check: set[str], company_given: bool
) -> None:
    """Check the linked records named in `check` and, unless the company was given, fill it from
    the contact's (in place)."""
    errors: dict[str, str] = {}
    found: dict[str, dict[str, Any]] = {}
    for field, table, label in _LINKS:
        if field not in check or values.get(field) is None:
            continue
        row = await _visible_record(session, table, values[field])
        if row is None:
            errors[field] = f"There is no {label} {values[field]} that you can see."
        else:
            found[field] = row
    contact = found.get("contact_id")
    if contact is not None and contact.get("company_id") is not None:
        if not company_given:
            values["company_id"] = contact["company_id"]
        elif values.get("company_id") != contact["company_id"] and "company_id" not in errors:
            errors["contact_id"] = "This contact belongs to another company than the order's."
    if errors:
        raise InvalidInput(errors)


async def _check_owner(session: TenantSession, owner_id: int) -> None:
    """The owner must be an active member whose orders the actor may reach (else the order would vanish)."""
    owners = session.policy.owner_ids(OBJECT)
    rows = await session.tx.execute_query_dict(
        "SELECT 1 FROM public.memberships WHERE tenant_id = $1 AND identity_id = $2 AND is_active",
        [session.actor.tenant_id, owner_id])
    if not rows:
        raise InvalidInput({"owner_id": f"There is no active member {owner_id} in this workspace."})
    if owners is not None and owner_id not in owners:
        raise InvalidInput({"owner_id": "You may only give orders to yourself or to members of your teams."})


async def _check_number(session: TenantSession, number: str, order_id: int | None = None) -> None:
    rows = await session.tx.execute_query_dict(
        "SELECT id FROM orders WHERE lower(number) = lower($1) AND id IS DISTINCT FROM $2", [number, order_id])
    if rows:
        message = f"The order number '{number}' is already used by another order."
        raise Conflict(message, {"number": message})


async def _next_number(session: TenantSession) -> str:
    """The next "SO-000123" of this tenant: one more than the highest such number."""
    await session.tx.execute_query("SELECT pg_advisory_xact_lock($1, $2::int)", [_NUMBER_LOCK, session.actor.tenant_id])
    rows = await session.tx.execute_query_dict(
        "SELECT coalesce(max(substring(upper(number) FROM '^SO-([0-9]{1,15})$')::bigint), 0) + 1 AS n"
        " FROM orders WHERE number ~* '^SO-[0-9]{1,15}$'")
    return f"SO-{int(rows[0]['n']):06d}"


async def _priced_lines(
    session: TenantSession, lines: list[OrderLineIn], currency: str, *, kept_products: frozenset[int] = frozenset()
) -> list[tuple[dict[str, Any], LineAmounts]]:
    """Each line's stored values and amounts. A product fills description and unit price when they
    are not given; it must exist, be active (unless the order already had it) and be priced in
    `currency`. Every wrong line is reported at once."""
    wanted = sorted({line.product_id for line in lines if line.product_id is not None})
    products: dict[int, dict[str, Any]] = {}
    if wanted:
        rows = await session.tx.execute_query_dict(
            "SELECT id, sku, name, unit_price, currency, active FROM products WHERE id = ANY($1::bigint[])", [wanted])
        products = {int(r["id"]): r for r in rows}
    errors: dict[str, str] = {}
    priced: list[tuple[dict[str, Any], LineAmounts]] = []
    for i, line in enumerate(lines):
        at = f"lines.{i}"
        product = products.get(line.product_id) if line.product_id is not None else None
        if line.product_id is not None:
            if product is None:
                errors[f"{at}.product_id"] = f"There is no product {line.product_id}."
            elif not product["active"] and line.product_id not in kept_products:
                errors[f"{at}.product_id"] = f"The product '{product['sku']}' is deactivated."
            elif product["currency"] != currency:
                errors[f"{at}.product_id"] = (f"The product '{product['sku']}' is priced in {product['currency']}, "
                                              f"the order in {currency}.")
        description = line.description or (str(product["name"]) if product else "")
        unit_price = line.unit_price if line.unit_price is not None else (product["unit_price"] if product else None)
        if not description:
            errors[f"{at}.description"] = "A line without a product needs a description."
        if unit_price is None:
            errors[f"{at}.unit_price"] = "A line without a product needs a unit price."
        if errors:
            continue
        assert unit_price is not None
        amounts = line_amounts(line.quantity, Decimal(unit_price), line.discount_percent)
        priced.append(({"position": i, "product_id": line.product_id, "description": description,
                        "quantity": line.quantity, "unit_price": Decimal(unit_price),
                        "discount_percent": line.discount_percent, "line_total": amounts.total}, amounts))
    if errors:
        raise InvalidInput(errors)
    return priced


async def _write_lines(session: TenantSession, order_id: int, priced: list[tuple[dict[str, Any], LineAmounts]]) -> None:
    await session.tx.execute_query("DELETE FROM order_lines WHERE order_id = $1", [order_id])
    if not priced:
        return
    columns = ("position", "product_id", "description", "quantity", "unit_price", "discount_percent", "line_total")
    await session.tx.execute_query(
        "INSERT INTO order_lines (order_id, " + ", ".join(columns) + ")"
        " SELECT $1, * FROM unnest($2::int[], $3::bigint[], $4::text[], $5::numeric[], $6::numeric[],"
        " $7::numeric[], $8::numeric[])",
        [order_id, *([values[c] for values, _ in priced] for c in columns)])


def _num(value: Decimal) -> str:
    return format(Decimal(value).normalize(), "f")


def _line_summary(values: dict[str, Any]) -> str:
    """A line as one readable text, for audit diffs and to tell whether lines changed."""
    return (f"{_num(values['quantity'])} x {_num(values['unit_price'])} -{_num(values['discount_percent'])}%"
            f" {values['description']}" + (f" (product {values['product_id']})" if values.get("product_id") else ""))


async def create_order(actor: Actor, data: OrderIn, *, default_currency: str) -> dict[str, Any]:
    """Add a draft order owned by the actor (or `owner_id`), numbered "SO-000123" unless `number`
    is given, in the workspace's currency unless `currency` is given."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "create")
        session.require_fields(OBJECT, [f for f in ("number", "notes") if f in data.model_fields_set])
        values: dict[str, Any] = data.model_dump(exclude={"lines"})
        values["currency"] = data.currency or default_currency
        values["order_date"] = data.order_date or await workspace_today(session)
        if values["owner_id"] is None:
            values["owner_id"] = actor.identity_id
        else:
            await _check_owner(session, values["owner_id"])
        await _resolve_links(session, values, check={f for f, _, _ in _LINKS},
                             company_given=data.company_id is not None)
        priced = await _priced_lines(session, data.lines, values["currency"])
        if data.number:
            await _check_number(session, data.number)
        else:
            values["number"] = await _next_number(session)
        totals = order_totals(amounts for _, amounts in priced)
        rows = await session.tx.execute_query_dict(
            "INSERT INTO orders (number, company_id, contact_id, deal_id, owner_id, currency, order_date, notes,"
            " subtotal, discount_total, total, created_by_id)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
            [*(values[f] for f in _FIELDS), totals.subtotal, totals.discount_total, totals.total, actor.identity_id])
        order_id = int(rows[0]["id"])
        await _write_lines(session, order_id, priced)
        diff: dict[str, Any] = {f: [None, values[f]] for f in _FIELDS if values[f] not in (None, "")}
        diff.update({"status": [None, "draft"], "total": [None, totals.total],
                     "lines": [None, [_line_summary(v) for v, _ in priced]]})
        await session.audit("order.create", OBJECT, order_id, diff)
        return await get_order_in(session, order_id)


async def update_order(actor: Actor, order_id: int, changes: OrderPatch) -> dict[str, Any]:
    """Change the fields given; `lines` replaces every line. Lines and currency change only while
    the order is a draft (Conflict otherwise)."""
    given = changes.model_dump(exclude_unset=True)
    given_lines = changes.lines if "lines" in given else None
    given.pop("lines", None)
    for name in ("number", "currency", "order_date"):
        if name in given and given[name] is None:
            raise InvalidInput({name: "This field cannot be empty."})
    async with acting_as(actor) as session:
        session.require(OBJECT, "edit")
        session.require_fields(OBJECT, [f for f in ("number", "notes") if f in given])
        before = await load_order(session, order_id, lock=True)
        if given.get("notes") is None:
            given.pop("notes", None)
        diff = {k: [before[k], v] for k, v in given.items() if before[k] != v}
        currency = given.get("currency", before["currency"])
        if (given_lines is not None or "currency" in diff) and before["status"] != "draft":
            raise Conflict(f"The order {before['number']} is {before['status']}: only draft orders can change their "
                           "lines or currency.")
        if "owner_id" in diff:
            if diff["owner_id"][1] is None:
                raise InvalidInput({"owner_id": "An order needs an owner."})
            await _check_owner(session, diff["owner_id"][1])
        changed_links = {f for f, _, _ in _LINKS if f in diff}
        if changed_links:
            links = {f: given.get(f, before[f]) for f, _, _ in _LINKS}
            await _resolve_links(session, links, check=changed_links, company_given="company_id" in given)
            for field, _, _ in _LINKS:
                if links[field] != before[field]:
                    diff[field] = [before[field], links[field]]
        if "number" in diff:
            await _check_number(session, diff["number"][1], order_id)
        old_lines = await order_lines(session, order_id)
        if given_lines is not None or "currency" in diff:
            line_input = given_lines if given_lines is not None else [
                OrderLineIn(product_id=line["product_id"], description=line["description"],
                            quantity=line["quantity"], unit_price=line["unit_price"],
                            discount_percent=line["discount_percent"]) for line in old_lines]
            kept = frozenset(int(line["product_id"]) for line in old_lines if line["product_id"] is not None)
            priced = await _priced_lines(session, line_input, currency, kept_products=kept)
            old_summary = [_line_summary(line) for line in old_lines]
            new_summary = [_line_summary(values) for values, _ in priced]
            if old_summary != new_summary or "currency" in diff:
                await _write_lines(session, order_id, priced)
                totals = order_totals(amounts for _, amounts in priced)
                diff["lines"] = [old_summary, new_summary]
                for name in ("subtotal", "discount_total", "total"):
                    if before[name] != getattr(totals, name):
                        diff[name] = [before[name], getattr(totals, name)]
        if not diff:
            return await get_order_in(session, order_id)
        columns = [k for k in diff if k != "lines"]
        if columns:
            assignments = ", ".join(f"{col} = ${i}" for i, col in enumerate(columns, start=2))
            await session.tx.execute_query(
                f"UPDATE orders SET {assignments}, updated_at = now() WHERE id = $1",
                [order_id, *(diff[c][1] for c in columns)])
        else:
            await session.tx.execute_query("UPDATE orders SET updated_at = now() WHERE id = $1", [order_id])
        await session.audit("order.update", OBJECT, order_id, diff)
        return await get_order_in(session, order_id)


async def change_status(actor: Actor, order_id: int, status: str) -> dict[str, Any]:
    """Move an order to `status`: draft -> confirmed -> fulfilled, draft or confirmed -> cancelled.
    Any other move is a Conflict naming both states."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "edit")
        before = await load_order(session, order_id, lock=True)
        current = str(before["status"])
        if status not in TRANSITIONS.get(current, ()):
            allowed = TRANSITIONS.get(current, ())
            hint = f" (from {current} it can go to {' or '.join(allowed)})" if allowed else ""
            raise Conflict(f"The order {before['number']} cannot go from {current} to {status}{hint}.",
                           {"status": f"cannot go from {current} to {status}"})
        if status == "confirmed":
            count = await session.tx.execute_query_dict(
                "SELECT count(*) AS n FROM order_lines WHERE order_id = $1", [order_id])
            if not count[0]["n"]:
                raise Conflict(f"The order {before['number']} has no lines: add one before confirming it.",
                               {"status": "an order without lines cannot be confirmed"})
        await session.tx.execute_query(
            "UPDATE orders SET status = $2, updated_at = now() WHERE id = $1", [order_id, status])
        await session.audit("order.status", OBJECT, order_id, {"status": [current, status]})
        return await get_order_in(session, order_id)


async def delete_order(actor: Actor, order_id: int) -> None:
    """Delete a draft or cancelled order; confirmed and fulfilled orders are kept (Conflict):
    they are sales that happened (cancel a confirmed one first)."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "delete")
        before = await load_order(session, order_id, lock=True)
        if before["status"] in ("confirmed", "fulfilled"):
            raise Conflict(f"The order {before['number']} is {before['status']} and cannot be deleted"
                           + ("; cancel it first." if before["status"] == "confirmed" else "."))
        await session.tx.execute_query("DELETE FROM orders WHERE id = $1", [order_id])
        await session.audit("order.delete", OBJECT, order_id,
                            {f: [before[f], None] for f in (*_FIELDS, "status", "total")
                             if before[f] not in (None, "")})


__all__ = ["TRANSITIONS", "NotFound", "change_status", "create_order", "delete_order", "update_order"]
