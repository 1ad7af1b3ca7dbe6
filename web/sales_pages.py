"""Products, orders and sales targets in the browser.

Permission checks happen in the actions and queries (below the web layer); a refusal surfaces
as the 403 page. The order form works without JavaScript (a few empty line rows); with it,
web/static/orders.js adds and removes rows and shows live totals, which the server recomputes.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.tenants.sales import orders, products, queries, targets
from kith.tenants.sales.errors import Conflict, NotFound, SalesError
from kith.tenants.sales.orders import TRANSITIONS
from kith.tenants.sales.schemas import OrderIn, OrderPatch, ProductIn, ProductPatch, TargetIn, TargetPatch
from kith.web.edge import actor_of
from kith.web.errors import validation_fields
from kith.web.forms import form_str, read_form
from kith.web.forms import render as render_page
from kith.web.i18n import gettext_for

LINE_FIELDS = ("product_id", "description", "quantity", "unit_price", "discount_percent")
MIN_LINE_ROWS = 5
PRODUCT_FIELDS = ("sku", "name", "description", "unit_price", "currency")
ORDER_FIELDS = ("number", "company_id", "contact_id", "deal_id", "currency", "order_date", "notes")


def money(value: Decimal | None) -> str:
    """1234.5 -> "1,234.50" (exact: Decimal formatting, never float)."""
    return "" if value is None else f"{Decimal(value):,.2f}"


def quantity(value: Decimal | None) -> str:
    """3.000 -> "3", 2.500 -> "2.5"."""
    return "" if value is None else format(Decimal(value).normalize(), "f")


def render(request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
    return render_page(request, template, {"money": money, "quantity": quantity, **context}, status=status)


def _base(request: Request) -> str:
    return f"/t/{request.state.caller.tenant.slug}"


def _t(request: Request, message: str) -> str:
    return gettext_for(request.state.caller.tenant.locale, message)


def _errors(request: Request, exc: ValidationError) -> dict[str, str]:
    return validation_fields(exc, request.state.caller.tenant.locale)


def _refusal(request: Request, exc: SalesError) -> dict[str, str]:
    """A refusal's messages per field, with the whole message under "" when no field carries it."""
    return {k: _t(request, v) for k, v in exc.fields.items()} or {"": _t(request, exc.message)}


def _status(exc: SalesError) -> int:
    return 409 if isinstance(exc, Conflict) else 422


def _not_found(request: Request, exc: NotFound) -> Response:
    return render(request, "error.html", {"status": 404, "message": exc.message}, status=404)


def _path_id(request: Request, name: str) -> int:
    raw = str(request.path_params[name])
    return int(raw) if raw.isdigit() else 0


# ---- products --------------------------------------------------------------------------------


async def product_list(request: Request) -> Response:
    q = request.query_params.get("q", "")[:200]
    show = request.query_params.get("show", "active")
    active = {"active": True, "inactive": False}.get(show)
    cursor = request.query_params.get("cursor") or None
    page = await products.list_products(actor_of(request), q=q, active=active, limit=25, cursor=cursor)
    return render(request, "sales/products.html", {"page": page, "q": q, "show": show, "cursor": cursor})


def _product_values(form: FormData) -> dict[str, Any]:
    values: dict[str, Any] = {k: form_str(form, k) for k in PRODUCT_FIELDS}
    values["active"] = form.get("active") is not None
    if not values["currency"].strip():
        del values["currency"]  # blank: the workspace's currency (new) or unchanged (edit)
    return values


async def product_new(request: Request) -> Response:
    context: dict[str, Any] = {"product": None, "errors": {}, "values": {
        "active": True, "currency": request.state.caller.tenant.default_currency}}
    if request.method == "GET":
        return render(request, "sales/product_form.html", context)
    values = _product_values(await read_form(request))
    try:
        product = await products.create_product(actor_of(request), ProductIn.model_validate(values),
                                                 default_currency=request.state.caller.tenant.default_currency)
    except ValidationError as exc:
        return render(request, "sales/product_form.html", {**context, "values": values,
                                                            "errors": _errors(request, exc)}, status=422)
    except SalesError as exc:
        return render(request, "sales/product_form.html", {**context, "values": values,
                                                            "errors": _refusal(request, exc)}, status=_status(exc))
    return RedirectResponse(f"{_base(request)}/products?created={product['id']}", status_code=303)


async def product_edit(request: Request) -> Response:
    actor = actor_of(request)
    try:
        product = await products.get_product(actor, _path_id(request, "product_id"))
    except NotFound as exc:
        return _not_found(request, exc)
    context: dict[str, Any] = {"product": product, "errors": {}, "values": product}
    if request.method == "GET":
        return render(request, "sales/product_form.html", context)
    values = _product_values(await read_form(request))
    try:
        await products.update_product(actor, product["id"], ProductPatch.model_validate(values))
    except ValidationError as exc:
        return render(request, "sales/product_form.html", {**context, "values": values,
                                                            "errors": _errors(request, exc)}, status=422)
    except SalesError as exc:
        return render(request, "sales/product_form.html", {**context, "values": values,
                                                            "errors": _refusal(request, exc)}, status=_status(exc))
    except NotFound as exc:
        return _not_found(request, exc)
    return RedirectResponse(f"{_base(request)}/products?updated={product['id']}", status_code=303)


async def product_active(request: Request) -> Response:
    """Deactivate (or reactivate) a product: one button, no form to fill."""
    form = await read_form(request)
    active = form_str(form, "active") == "true"
    try:
        await products.update_product(actor_of(request), _path_id(request, "product_id"),
                                      ProductPatch(active=active))
    except NotFound as exc:
        return _not_found(request, exc)
    return RedirectResponse(f"{_base(request)}/products?{'activated' if active else 'deactivated'}=1", status_code=303)


async def _confirm_delete(request: Request, what: str, load: Any, delete: Any, path: str) -> Response:
    """A deletion behind a confirmation page (sales/<what>_delete.html); a refusal (409) shows there."""
    actor = actor_of(request)
    try:
        record = await load(actor, _path_id(request, f"{what}_id"))
    except NotFound as exc:
        return _not_found(request, exc)
    template = f"sales/{what}_delete.html"
    if request.method == "GET":
        return render(request, template, {what: record, "error": None})
    await read_form(request)
    try:
        await delete(actor, record["id"])
    except Conflict as exc:
        return render(request, template, {what: record, "error": _t(request, exc.message)}, status=409)
    except NotFound:
        pass  # deleted meanwhile: the outcome the person asked for
    return RedirectResponse(f"{_base(request)}/{path}?deleted=1", status_code=303)


async def product_delete(request: Request) -> Response:
    return await _confirm_delete(request, "product", products.get_product, products.delete_product, "products")


# ---- orders ----------------------------------------------------------------------------------


async def order_list(request: Request) -> Response:
    status = request.query_params.get("status") or None
    if status not in (None, *queries.STATUSES):
        status = None
    cursor = request.query_params.get("cursor") or None
    try:
        page = await queries.list_orders(actor_of(request), status=status, limit=25, cursor=cursor)
    except ValueError:
        cursor = None
        page = await queries.list_orders(actor_of(request), status=status, limit=25)
    return render(request, "sales/orders.html", {"page": page, "status": status, "cursor": cursor,
                                                 "statuses": queries.STATUSES})


def _order_values(form: FormData) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The order's fields and its non-empty line rows, as typed."""
    values: dict[str, Any] = {k: form_str(form, k) for k in ORDER_FIELDS}
    indexes = sorted({int(key.split("-")[1]) for key in form if key.startswith("lines-")
                      and key.count("-") == 2 and key.split("-")[1].isdigit()})
    rows = [{f: form_str(form, f"lines-{i}-{f}").strip() for f in LINE_FIELDS} for i in indexes]
    return values, [row for row in rows if any(row.values())]


def _order_input(values: dict[str, Any], rows: list[dict[str, str]] | None, *, new: bool) -> dict[str, Any]:
    """Form text as the body OrderIn / OrderPatch validate: blanks mean "none" (or "default")."""
    data: dict[str, Any] = {k: (v.strip() if isinstance(v, str) else v) for k, v in values.items()}
    for key in ("company_id", "contact_id", "deal_id"):
        data[key] = data[key] or None
    for key in ("number", "currency", "order_date"):
        if not data[key] and new:
            data.pop(key)
    if rows is not None:
        data["lines"] = [{f: v for f, v in row.items() if v or f == "description"} for row in rows]
    return data


def _line_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows the form shows: the given ones, then empty ones up to MIN_LINE_ROWS (at least one)."""
    def text(field: str, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, Decimal) and field in ("quantity", "discount_percent"):
            return quantity(value)
        return str(value)

    shown = [{f: text(f, row.get(f)) for f in LINE_FIELDS} for row in rows]
    return shown + [dict.fromkeys(LINE_FIELDS, "") for _ in range(max(1, MIN_LINE_ROWS - len(shown)))]


async def _order_form(request: Request, context: dict[str, Any], status: int = 200) -> Response:
    actor = actor_of(request)
    values = context["values"]
    selected = {k: int(values[k]) if str(values.get(k) or "").isdigit() else None
                for k in ("company_id", "contact_id", "deal_id")}
    offered = await products.active_products(actor)
    context = {**context, "choices": await queries.link_choices(actor, selected), "products": offered,
               "product_ids": [str(p["id"]) for p in offered]}
    return render(request, "sales/order_form.html", context, status=status)


async def order_new(request: Request) -> Response:
    if request.method == "GET":
        prefill = {k: request.query_params.get(k, "") for k in ("company_id", "contact_id", "deal_id")}
        values = {**dict.fromkeys(ORDER_FIELDS, ""), **prefill,
                  "currency": request.state.caller.tenant.default_currency}
        return await _order_form(request, {"order": None, "values": values, "rows": _line_rows([]), "errors": {}})
    values, rows = _order_values(await read_form(request))
    context: dict[str, Any] = {"order": None, "values": values, "rows": _line_rows(rows), "errors": {}}
    try:
        data = OrderIn.model_validate(_order_input(values, rows, new=True))
        order = await orders.create_order(actor_of(request), data,
                                          default_currency=request.state.caller.tenant.default_currency)
    except ValidationError as exc:
        return await _order_form(request, {**context, "errors": _errors(request, exc)}, 422)
    except SalesError as exc:
        return await _order_form(request, {**context, "errors": _refusal(request, exc)}, _status(exc))
    return RedirectResponse(f"{_base(request)}/orders/{order['id']}?created=1", status_code=303)


async def order_edit(request: Request) -> Response:
    actor = actor_of(request)
    try:
        order = await queries.get_order(actor, _path_id(request, "order_id"))
    except NotFound as exc:
        return _not_found(request, exc)
    draft = order["status"] == "draft"
    if request.method == "GET":
        values = {k: ("" if order.get(k) is None else str(order[k])) for k in ORDER_FIELDS}
        return await _order_form(request, {"order": order, "values": values, "rows": _line_rows(order["lines"]),
                                           "errors": {}})
    values, rows = _order_values(await read_form(request))
    if not draft:  # lines and currency are fixed once confirmed: the form does not offer them
        values["currency"] = order["currency"]
    context: dict[str, Any] = {"order": order, "values": values,
                               "rows": _line_rows(rows if draft else order["lines"]), "errors": {}}
    try:
        patch = OrderPatch.model_validate(_order_input(values, rows if draft else None, new=False))
        await orders.update_order(actor, order["id"], patch)
    except ValidationError as exc:
        return await _order_form(request, {**context, "errors": _errors(request, exc)}, 422)
    except SalesError as exc:
        return await _order_form(request, {**context, "errors": _refusal(request, exc)}, _status(exc))
    except NotFound as exc:
        return _not_found(request, exc)
    return RedirectResponse(f"{_base(request)}/orders/{order['id']}?updated=1", status_code=303)


async def _order_detail(request: Request, order: dict[str, Any], error: str = "", status: int = 200) -> Response:
    return render(request, "sales/order_detail.html",
                  {"order": order, "next_states": TRANSITIONS.get(order["status"], ()), "error": error}, status=status)


async def order_detail(request: Request) -> Response:
    try:
        order = await queries.get_order(actor_of(request), _path_id(request, "order_id"))
    except NotFound as exc:
        return _not_found(request, exc)
    return await _order_detail(request, order)


async def order_status(request: Request) -> Response:
    actor = actor_of(request)
    form = await read_form(request)
    order_id = _path_id(request, "order_id")
    try:
        await orders.change_status(actor, order_id, form_str(form, "status"))
        return RedirectResponse(f"{_base(request)}/orders/{order_id}?status_changed=1", status_code=303)
    except NotFound as exc:
        return _not_found(request, exc)
    except Conflict as exc:
        return await _order_detail(request, await queries.get_order(actor, order_id), _t(request, exc.message), 409)


async def order_delete(request: Request) -> Response:
    return await _confirm_delete(request, "order", queries.get_order, orders.delete_order, "orders")


# ---- sales targets ---------------------------------------------------------------------------


async def _targets_page(request: Request, form: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
                        status: int = 200) -> Response:
    actor = actor_of(request)
    kind = request.query_params.get("kind", "month")
    kind = kind if kind in targets.MONTHS else "month"
    try:
        start = targets.period_containing(kind, date.fromisoformat(request.query_params.get("start", "")))
    except ValueError:
        start = await targets.current_period(actor, kind)
    items = await targets.list_targets(actor, period_kind=kind, period_start=start)
    policy = request.scope.get("state", {}).get("policy")
    can_manage = policy is not None and policy.can_manage(targets.PERMISSION)
    holders = await targets.target_holders(actor) if can_manage else {"members": [], "teams": []}
    values = form or {"period_kind": kind, "period_start": start.isoformat(), "measure": "won_deals",
                      "currency": request.state.caller.tenant.default_currency, "holder": "", "amount": ""}
    return render(request, "sales/targets.html", {
        "kind": kind, "start": start, "end": date.fromordinal(targets.period_end(kind, start).toordinal() - 1),
        "previous": targets.add_months(start, -targets.MONTHS[kind]), "next": targets.period_end(kind, start),
        "items": items, "can_manage": can_manage, "holders": holders, "values": values, "errors": errors or {},
    }, status=status)


async def target_list(request: Request) -> Response:
    if request.method == "GET":
        return await _targets_page(request)
    form = await read_form(request)
    values = {k: form_str(form, k).strip() for k in ("holder", "period_kind", "period_start", "measure", "amount",
                                                    "currency")}
    kind_of, _, holder_id = values["holder"].partition(":")
    data: dict[str, Any] = {k: v for k, v in values.items() if k != "holder" and v}
    if kind_of in ("member", "team") and holder_id.isdigit():
        data["identity_id" if kind_of == "member" else "team_id"] = int(holder_id)
    try:
        await targets.create_target(actor_of(request), TargetIn.model_validate(data),
                                    default_currency=request.state.caller.tenant.default_currency)
    except ValidationError as exc:
        return await _targets_page(request, values, _holder_errors(_errors(request, exc)), 422)
    except SalesError as exc:
        return await _targets_page(request, values, _holder_errors(_refusal(request, exc)), _status(exc))
    kind, start = data.get("period_kind", "month"), data.get("period_start", "")
    return RedirectResponse(f"{_base(request)}/targets?kind={kind}&start={start}&saved=1", status_code=303)


def _holder_errors(errors: dict[str, str]) -> dict[str, str]:
    """identity_id / team_id errors belong to the form's single "holder" choice."""
    for key in ("identity_id", "team_id"):
        if key in errors:
            errors.setdefault("holder", errors.pop(key))
    return errors


async def target_edit(request: Request) -> Response:
    actor = actor_of(request)
    try:
        target = await targets.get_target(actor, _path_id(request, "target_id"))
    except NotFound as exc:
        return _not_found(request, exc)
    back = f"{_base(request)}/targets?kind={target['period_kind']}&start={target['period_start']}"
    context: dict[str, Any] = {"target": target, "errors": {}, "back": back,
                               "values": {k: str(target[k]) for k in ("amount", "currency", "measure")}}
    if request.method == "GET":
        return render(request, "sales/target_form.html", context)
    form = await read_form(request)
    if form_str(form, "delete"):
        try:
            await targets.delete_target(actor, target["id"])
        except NotFound:
            pass
        return RedirectResponse(f"{back}&deleted=1", status_code=303)
    values = {k: form_str(form, k).strip() for k in ("amount", "currency", "measure")}
    try:
        await targets.update_target(actor, target["id"], TargetPatch.model_validate(values))
    except ValidationError as exc:
        return render(request, "sales/target_form.html", {**context, "values": values,
                                                           "errors": _errors(request, exc)}, status=422)
    except SalesError as exc:
        return render(request, "sales/target_form.html", {**context, "values": values,
                                                           "errors": _refusal(request, exc)}, status=_status(exc))
    return RedirectResponse(f"{back}&saved=1", status_code=303)


routes: list[Route] = [
    Route("/t/{slug}/products", product_list),
    Route("/t/{slug}/products/new", product_new, methods=["GET", "POST"]),
    Route("/t/{slug}/products/{product_id}/edit", product_edit, methods=["GET", "POST"]),
    Route("/t/{slug}/products/{product_id}/active", product_active, methods=["POST"]),
    Route("/t/{slug}/products/{product_id}/delete", product_delete, methods=["GET", "POST"]),
    Route("/t/{slug}/orders", order_list),
    Route("/t/{slug}/orders/new", order_new, methods=["GET", "POST"]),
    Route("/t/{slug}/orders/{order_id}", order_detail),
    Route("/t/{slug}/orders/{order_id}/edit", order_edit, methods=["GET", "POST"]),
    Route("/t/{slug}/orders/{order_id}/status", order_status, methods=["POST"]),
    Route("/t/{slug}/orders/{order_id}/delete", order_delete, methods=["GET", "POST"]),
    Route("/t/{slug}/targets", target_list, methods=["GET", "POST"]),
    Route("/t/{slug}/targets/{target_id}/edit", target_edit, methods=["GET", "POST"]),
]
