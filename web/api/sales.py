"""The sales API: products, orders (with their lines and statuses) and sales targets.

Handlers validate input and call one action or query with the caller as Actor; permission
checks happen there, below the web layer. Money goes out as Decimal strings ("59.97")."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import date
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request

from kith.tenants.sales import orders, products, queries, targets
from kith.tenants.sales.errors import Conflict, InvalidInput, NotFound
from kith.tenants.sales.schemas import (
    OrderIn,
    OrderOut,
    OrderPage,
    OrderPatch,
    OrderStatusIn,
    ProductIn,
    ProductOut,
    ProductPage,
    ProductPatch,
    TargetIn,
    TargetList,
    TargetOut,
    TargetPatch,
)
from kith.web.api.registry import QueryParam, endpoint
from kith.web.edge import actor_of
from kith.web.errors import ApiError

T = TypeVar("T")
_LIST_QUERY = (QueryParam("limit", "Page size, 1-100 (default 25).", "integer"),
               QueryParam("cursor", "next_cursor of the previous page."))


async def _run(call: Awaitable[T]) -> T:
    """Await an action, turning its refusals into API errors."""
    try:
        return await call
    except NotFound as exc:
        raise ApiError(404, "not_found", exc.message) from None
    except InvalidInput as exc:
        raise ApiError(422, "invalid_input", exc.message, fields=exc.fields) from None
    except Conflict as exc:
        raise ApiError(409, "conflict", exc.message, fields=exc.fields) from None


def _id(request: Request, name: str, what: str) -> int:
    raw = str(request.path_params[name])
    if not raw.isdigit():
        raise ApiError(404, "not_found", f"There is no such {what}.")
    return int(raw)


def _int_param(request: Request, name: str, *, low: int = 1, high: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or int(raw) < low or (high is not None and int(raw) > high):
        bound = f" from {low} to {high}" if high is not None else ""
        raise ApiError(422, "invalid_input", f"{name} must be a whole number{bound}.",
                       fields={name: f"Must be a whole number{bound}."})
    return int(raw)


def _limit(request: Request) -> int:
    return _int_param(request, "limit", high=100) or 25


def _currency(request: Request) -> str:
    return str(request.state.caller.tenant.default_currency)


def _order_out(row: dict[str, Any]) -> OrderOut:
    return OrderOut(**row)


# ---- products --------------------------------------------------------------------------------


@endpoint(
    "GET", "/products", summary="List products by SKU, with search and keyset pagination",
    permission=("products", "view"), response=ProductPage, errors=(401, 403, 422), tag="sales",
    query=(QueryParam("q", "Text to find in the SKU or name (any script, e.g. 云服务器)."),
           QueryParam("active", "true or false: only active or only deactivated products."), *_LIST_QUERY),
)
async def list_products(request: Request, body: None) -> BaseModel:
    active_raw = request.query_params.get("active", "")
    if active_raw not in ("", "true", "false"):
        raise ApiError(422, "invalid_input", "active must be true or false.",
                       fields={"active": "Must be true or false."})
    page = await products.list_products(
        actor_of(request), q=request.query_params.get("q", "")[:200],
        active=None if not active_raw else active_raw == "true", limit=_limit(request),
        cursor=request.query_params.get("cursor") or None)
    return ProductPage(items=[ProductOut(**row) for row in page.items], next_cursor=page.next_cursor)


@endpoint("POST", "/products", summary="Add a product to the catalogue", permission=("products", "create"),
          body=ProductIn, response=ProductOut, status=201, errors=(400, 401, 403, 409, 422), tag="sales")
async def create_product(request: Request, body: ProductIn) -> BaseModel:
    return ProductOut(**await _run(products.create_product(actor_of(request), body,
                                                           default_currency=_currency(request))))


@endpoint("GET", "/products/{product_id}", summary="Get one product", permission=("products", "view"),
          response=ProductOut, errors=(401, 403, 404), tag="sales")
async def get_product(request: Request, body: None) -> BaseModel:
    return ProductOut(**await _run(products.get_product(actor_of(request), _id(request, "product_id", "product"))))


@endpoint("PATCH", "/products/{product_id}", summary="Change a product (active=false deactivates it)",
          permission=("products", "edit"), body=ProductPatch, response=ProductOut,
          errors=(400, 401, 403, 404, 409, 422), tag="sales")
async def update_product(request: Request, body: ProductPatch) -> BaseModel:
    return ProductOut(**await _run(products.update_product(actor_of(request), _id(request, "product_id", "product"),
                                                           body)))


@endpoint("DELETE", "/products/{product_id}", summary="Delete a product no order uses (409 otherwise: deactivate it)",
          permission=("products", "delete"), status=204, errors=(401, 403, 404, 409), tag="sales")
async def delete_product(request: Request, body: None) -> None:
    await _run(products.delete_product(actor_of(request), _id(request, "product_id", "product")))


# ---- orders ----------------------------------------------------------------------------------


@endpoint(
    "GET", "/orders", summary="List orders, newest first; a customer's purchase history with company_id or contact_id",
    permission=("orders", "view"), response=OrderPage, errors=(401, 403, 422), tag="sales",
    query=(QueryParam("status", "draft, confirmed, fulfilled or cancelled."),
           QueryParam("company_id", "Only this company's orders.", "integer"),
           QueryParam("contact_id", "Only this contact's orders.", "integer"), *_LIST_QUERY),
)
async def list_orders(request: Request, body: None) -> BaseModel:
    status = request.query_params.get("status") or None
    if status is not None and status not in queries.STATUSES:
        message = f"status must be one of {', '.join(queries.STATUSES)}."
        raise ApiError(422, "invalid_input", message, fields={"status": message})
    try:
        page = await queries.list_orders(
            actor_of(request), status=status, company_id=_int_param(request, "company_id"),
            contact_id=_int_param(request, "contact_id"), limit=_limit(request),
            cursor=request.query_params.get("cursor") or None)
    except ValueError as exc:
        raise ApiError(422, "invalid_input", str(exc), fields={"cursor": str(exc)}) from None
    return OrderPage(items=[_order_out(row) for row in page.items], next_cursor=page.next_cursor)


@endpoint("POST", "/orders", summary="Create a draft order with its lines (totals computed by Kith)",
          permission=("orders", "create"), body=OrderIn, response=OrderOut, status=201,
          errors=(400, 401, 403, 409, 422), tag="sales")
async def create_order(request: Request, body: OrderIn) -> BaseModel:
    return _order_out(await _run(orders.create_order(actor_of(request), body, default_currency=_currency(request))))


@endpoint("GET", "/orders/{order_id}", summary="Get one order with its lines", permission=("orders", "view"),
          response=OrderOut, errors=(401, 403, 404), tag="sales")
async def get_order(request: Request, body: None) -> BaseModel:
    return _order_out(await _run(queries.get_order(actor_of(request), _id(request, "order_id", "order"))))


@endpoint("PATCH", "/orders/{order_id}", summary="Change an order; lines and currency only while it is a draft",
          permission=("orders", "edit"), body=OrderPatch, response=OrderOut,
          errors=(400, 401, 403, 404, 409, 422), tag="sales")
async def update_order(request: Request, body: OrderPatch) -> BaseModel:
    return _order_out(await _run(orders.update_order(actor_of(request), _id(request, "order_id", "order"), body)))


@endpoint("POST", "/orders/{order_id}/status",
          summary="Move an order: draft -> confirmed -> fulfilled, draft or confirmed -> cancelled",
          permission=("orders", "edit"), body=OrderStatusIn, response=OrderOut,
          errors=(400, 401, 403, 404, 409, 422), tag="sales")
async def change_order_status(request: Request, body: OrderStatusIn) -> BaseModel:
    return _order_out(await _run(orders.change_status(actor_of(request), _id(request, "order_id", "order"),
                                                      body.status)))


@endpoint("DELETE", "/orders/{order_id}", summary="Delete a draft or cancelled order",
          permission=("orders", "delete"), status=204, errors=(401, 403, 404, 409), tag="sales")
async def delete_order(request: Request, body: None) -> None:
    await _run(orders.delete_order(actor_of(request), _id(request, "order_id", "order")))


# ---- sales targets ---------------------------------------------------------------------------


def _period(request: Request) -> tuple[str, date | None]:
    kind = request.query_params.get("period_kind") or "month"
    if kind not in targets.MONTHS:
        raise ApiError(422, "invalid_input", "period_kind must be month or quarter.",
                       fields={"period_kind": "Must be month or quarter."})
    raw = request.query_params.get("period_start")
    if not raw:
        return kind, None
    try:
        return kind, date.fromisoformat(raw)
    except ValueError:
        raise ApiError(422, "invalid_input", "period_start must be a date (YYYY-MM-DD).",
                       fields={"period_start": "Must be a date (YYYY-MM-DD)."}) from None


@endpoint(
    "GET", "/targets", summary="The sales targets of one period the caller may see, with attainment",
    permission=None, response=TargetList, errors=(401, 422), tag="sales",
    query=(QueryParam("period_kind", "month (default) or quarter."),
           QueryParam("period_start", "First day of the period (default: the current one).")),
)
async def list_targets(request: Request, body: None) -> BaseModel:
    actor = actor_of(request)
    kind, start = _period(request)
    start = start or await targets.current_period(actor, kind)
    items = await _run(targets.list_targets(actor, period_kind=kind, period_start=start))
    return TargetList(period_kind=kind, period_start=start,  # type: ignore[arg-type]
                      period_end=date.fromordinal(targets.period_end(kind, start).toordinal() - 1),
                      items=[TargetOut(**item) for item in items])


@endpoint("POST", "/targets", summary="Set a sales target for a member or a team",
          permission=("workspace", "manage_targets"), body=TargetIn, response=TargetOut, status=201,
          errors=(400, 401, 403, 409, 422), tag="sales")
async def create_target(request: Request, body: TargetIn) -> BaseModel:
    return TargetOut(**await _run(targets.create_target(actor_of(request), body, default_currency=_currency(request))))


@endpoint("GET", "/targets/{target_id}", summary="One sales target with its attainment", permission=None,
          response=TargetOut, errors=(401, 404), tag="sales")
async def get_target(request: Request, body: None) -> BaseModel:
    return TargetOut(**await _run(targets.get_target(actor_of(request), _id(request, "target_id", "sales target"))))


@endpoint("PATCH", "/targets/{target_id}", summary="Change a sales target's amount, currency or measure",
          permission=("workspace", "manage_targets"), body=TargetPatch, response=TargetOut,
          errors=(400, 401, 403, 404, 409, 422), tag="sales")
async def update_target(request: Request, body: TargetPatch) -> BaseModel:
    return TargetOut(**await _run(targets.update_target(actor_of(request), _id(request, "target_id", "sales target"),
                                                        body)))


@endpoint("DELETE", "/targets/{target_id}", summary="Remove a sales target",
          permission=("workspace", "manage_targets"), status=204, errors=(401, 403, 404), tag="sales")
async def delete_target(request: Request, body: None) -> None:
    await _run(targets.delete_target(actor_of(request), _id(request, "target_id", "sales target")))
