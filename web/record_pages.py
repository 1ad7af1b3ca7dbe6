"""The generic list page of companies, contacts, leads and deals (filters on any field including
custom fields, sort, search, keyset pagination, column choice, saved views, bulk edit / assign /
delete) and the custom fields settings page.

Everything works as plain GET and POST forms; records.js only makes the filter builder and the
bulk bar quicker. Permission checks happen in the actions below the web layer (a refusal is the
403 page); fields hidden from the caller's role are never offered.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError
from starlette.datastructures import FormData, QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.tenants.records import bulk, fields_admin, views
from kith.tenants.records.custom import KINDS
from kith.tenants.records.kinds import RecordKind, record_kind
from kith.tenants.records.listing import CUSTOM_KINDS, CUSTOM_PREFIX, ListError, ListQuery, parse_list_query
from kith.tenants.records.refusals import RecordsRefusal
from kith.tenants.records.spec import OPERATORS
from kith.web.edge import actor_of
from kith.web.errors import title_for, validation_fields
from kith.web.forms import form_str, read_form, render
from kith.web.i18n import gettext_for

OBJECT_TYPES = ("companies", "contacts", "leads", "deals", "tickets")
EDITABLE_KINDS = ("text", "choice", "number", "money", "date", "bool")
ALL_OPERATORS = tuple(dict.fromkeys(op for ops in OPERATORS.values() for op in ops))


@dataclass(frozen=True)
class FieldView:
    """A field as the page offers it: in the filter builder, the column chooser, the bulk edit."""

    name: str
    label: str
    kind: str
    ops: tuple[str, ...]
    choices: tuple[str, ...]
    sortable: bool
    filterable: bool
    custom: bool


@dataclass(frozen=True)
class Cell:
    kind: str
    value: Any
    chips: tuple[str, ...] | None = None


def _base(request: Request) -> str:
    return f"/t/{request.state.caller.tenant.slug}"


def _error(request: Request, status: int, message: str) -> Response:
    return render(request, "error.html", {"status": status, "title": title_for(status), "message": message},
                  status=status)


def list_params(params: QueryParams | FormData) -> QueryParams:
    """The engine's query parameters from a request: f=field:op:value as given, plus the filter
    builder's rows (ff, fo, fv: a row without an operator, or without a value where one is
    needed, is left out) and the column chooser's checkboxes (col)."""
    pairs: list[tuple[str, str]] = [("f", str(v)) for v in params.getlist("f") if str(v).strip()]
    fields, ops, values = (list(map(str, params.getlist(n))) for n in ("ff", "fo", "fv"))
    for i, name in enumerate(fields):
        op = ops[i] if i < len(ops) else ""
        value = values[i] if i < len(values) else ""
        if name and op and (value.strip() or op in ("empty", "notempty")):
            pairs.append(("f", f"{name}:{op}:{value.strip()}"))
    for name in ("sort", "q", "cursor", "limit", "view"):
        value = str(params.get(name) or "")
        if value:
            pairs.append((name, value))
    columns = str(params.get("columns") or "") or ",".join(str(c) for c in params.getlist("col"))
    if columns:
        pairs.append(("columns", columns))
    return QueryParams(pairs)


def query_string(query: ListQuery, **changes: Any) -> str:
    """The canonical query string of a list query (no cursor unless given), for links and forms."""
    filters = changes.get("filters", query.filters)
    sort = changes.get("sort", query.sort)
    columns = changes.get("columns", query.columns)
    pairs = [("f", f"{f}:{o}:{v}") for f, o, v in filters]
    if sort:
        pairs.append(("sort", sort))
    if query.q:
        pairs.append(("q", query.q))
    if columns:
        pairs.append(("columns", ",".join(columns)))
    if changes.get("cursor"):
        pairs.append(("cursor", changes["cursor"]))
    return urlencode(pairs)


def field_views(kind: RecordKind, screen_hidden: frozenset[str], custom: list[Any]) -> list[FieldView]:
    """The fields of a list the caller may see, custom fields last."""
    spec = kind.spec
    out = [FieldView(f.name, f.label, f.kind, OPERATORS[f.kind], f.choices, f.sortable, f.filterable, False)
           for f in spec.fields if f.guarded_by() not in screen_hidden]
    if spec.custom_fields and "custom" not in screen_hidden:
        for c in custom:
            list_kind = CUSTOM_KINDS[c.kind]
            out.append(FieldView(CUSTOM_PREFIX + c.key, c.label, list_kind, OPERATORS[list_kind], c.options,
                                 list_kind != "tags", True, True))
    return out


def _custom_value(row: dict[str, Any], key: str) -> Any:
    custom = row.get("custom") or {}
    return custom.get(key) if isinstance(custom, dict) else None


def _money(value: Any) -> str:
    try:
        return f"{Decimal(str(value)):,.2f}"
    except InvalidOperation:
        return str(value)


def cell(field: FieldView, row: dict[str, Any], members: dict[int, str]) -> Cell:
    """How one value shows: money with its currency, people by email, tags as chips."""
    value = _custom_value(row, field.name[len(CUSTOM_PREFIX):]) if field.custom else row.get(field.name)
    if value is None or value == "" or value == []:
        return Cell("empty", "")
    if field.kind == "tags":
        return Cell("tags", "", tuple(value) if isinstance(value, list | tuple) else (str(value),))
    if field.kind == "money":
        currency = row.get("currency") if not field.custom else None
        return Cell("text", f"{_money(value)} {currency}" if currency else _money(value))
    if field.kind == "ref":
        if field.name.endswith("owner_id") or field.name in ("assignee_id", "created_by_id"):
            return Cell("text", members.get(int(value), f"#{value}"))
        return Cell("text", row.get(field.name.removesuffix("_id") + "_name") or f"#{value}")
    if field.kind == "datetime":
        return Cell("datetime", value)
    if field.kind == "bool":
        return Cell("bool", bool(value))
    return Cell("text", str(value))


def bulk_fields(kind: RecordKind, fields: list[FieldView]) -> list[FieldView]:
    """The simple fields a bulk edit may set: in the kind's patch model, visible, not the owner."""
    patchable = set(kind.patch_model.model_fields)
    return [f for f in fields if f.kind in EDITABLE_KINDS and f.name != "owner_id" and f.name != "id"
            and ((f.custom and "custom" in patchable) or (not f.custom and f.name in patchable))]


async def _screen(request: Request, object_type: str, params: QueryParams, *, error: str = "",
                  status: int = 200) -> Response:
    actor = actor_of(request)
    locale = request.state.caller.tenant.locale
    view_raw = str(params.get("view") or "")
    view_id = int(view_raw) if view_raw.isdigit() else None
    try:
        query = parse_list_query(params)
        screen = await views.open_list(actor, object_type, query, view_id=view_id)
    except (ListError, RecordsRefusal) as exc:
        if isinstance(exc, RecordsRefusal) and exc.status == 404 and view_id is None:
            return _error(request, 404, exc.message)
        error = error or gettext_for(locale, "This list cannot be shown as asked:") + " " + exc.message
        status = status if status != 200 else 422
        screen = await views.open_list(actor, object_type, ListQuery())
    hidden = screen.page.hidden
    fields = field_views(screen.kind, hidden, screen.page.custom_fields)
    by_name = {f.name: f for f in fields}
    columns = [by_name[c] for c in screen.page.columns if c in by_name]
    members = screen.member_emails
    rows = [{"id": item["id"], "cells": [cell(c, item, members) for c in columns],
             "consent": item.get("marketing_consent")} for item in screen.page.items]
    current = query_string(screen.query)
    filters = screen.query.filters
    context = {
        "object_type": object_type, "kind": screen.kind, "screen": screen, "query": screen.query,
        "fields": fields, "columns": columns, "rows": rows, "current_qs": current,
        "list_url": f"{_base(request)}/{screen.kind.path}",
        "filter_rows": [*((f, o, v, query_string(screen.query, filters=[g for j, g in enumerate(filters) if j != i]))
                          for i, (f, o, v) in enumerate(filters)), ("", "", "", None)],
        "sort_links": {c.name: query_string(screen.query, sort=("-" + c.name) if screen.query.sort == c.name
                                            else c.name) for c in columns if c.sortable},
        "next_qs": query_string(screen.query, cursor=screen.page.next_cursor) if screen.page.next_cursor else "",
        "bulk_fields": bulk_fields(screen.kind, fields), "operators": ALL_OPERATORS, "ops_by_kind": OPERATORS,
        "active_members": [m for m in screen.members if m.active], "error": error,
        "flash": request.query_params.get("done", ""), "count": request.query_params.get("count", ""),
    }
    return render(request, "records/list.html", context, status=status)


def _list_page(object_type: str) -> Any:
    async def page(request: Request) -> Response:
        return await _screen(request, object_type, list_params(request.query_params))

    page.__name__ = f"{object_type}_list"
    return page


def _ids(form: FormData) -> list[int]:
    return [int(str(v)) for v in form.getlist("ids") if str(v).isdigit()]


def _back(request: Request, kind: RecordKind, form: FormData, **flash: Any) -> RedirectResponse:
    """Back to the list as it was (the form carries its query string), with a notice."""
    qs = str(form.get("back") or "")
    extra = urlencode({k: v for k, v in flash.items() if v is not None})
    joined = "&".join(p for p in (str(QueryParams(qs)), extra) if p)
    return RedirectResponse(f"{_base(request)}/{kind.path}?{joined}", status_code=303)


def _edit_changes(field: str, raw: str, kind_name: str) -> dict[str, Any]:
    value: Any = raw.strip()
    if value == "" and kind_name != "text":
        value = None
    elif kind_name == "bool":
        value = value.lower() in ("true", "yes", "1", "on")
    if field.startswith(CUSTOM_PREFIX):
        return {"custom": {field[len(CUSTOM_PREFIX):]: value}}
    return {field: value}


def _bulk_page(object_type: str) -> Any:
    async def post(request: Request) -> Response:
        form = await read_form(request)
        kind = record_kind(object_type)
        if kind is None:
            return _error(request, 404, "There is no such page.")
        locale = request.state.caller.tenant.locale
        ids = _ids(form)
        back_params = QueryParams(str(form.get("back") or ""))
        action = form_str(form, "action")
        if not ids:
            return await _screen(request, object_type, back_params, status=422,
                                 error=gettext_for(locale, "Select at least one record first."))
        try:
            if action == "assign":
                owner = form_str(form, "owner_id")
                if not owner.isdigit():
                    return await _screen(request, object_type, back_params, status=422,
                                         error=gettext_for(locale, "Choose the member to assign to."))
                done = await bulk.bulk_assign(actor_of(request), object_type, ids, int(owner))
                return _back(request, kind, form, done="assigned", count=done.count)
            if action == "edit":
                name = form_str(form, "field")
                spec_field = kind.spec.field(name)
                kind_name = spec_field.kind if spec_field else ("text" if name.startswith(CUSTOM_PREFIX) else "")
                if not name or not kind_name:
                    return await _screen(request, object_type, back_params, status=422,
                                         error=gettext_for(locale, "Choose the field to change."))
                changes = _edit_changes(name, form_str(form, "value"), kind_name)
                done = await bulk.bulk_update(actor_of(request), object_type, ids, changes)
                return _back(request, kind, form, done="updated", count=done.count)
            if action == "delete":
                return render(request, "records/confirm_delete.html", {
                    "kind": kind, "object_type": object_type, "ids": ids, "count": len(ids),
                    "back": str(form.get("back") or ""), "list_url": f"{_base(request)}/{kind.path}"})
            if action == "delete-confirmed":
                confirm = form_str(form, "confirm")
                done = await bulk.bulk_delete(actor_of(request), object_type, ids,
                                              int(confirm) if confirm.isdigit() else -1)
                return _back(request, kind, form, done="deleted", count=done.count)
        except ValidationError as exc:
            fields = validation_fields(exc, locale)
            message = "; ".join(f"{k}: {v}" for k, v in fields.items())
            return await _screen(request, object_type, back_params, status=422, error=message)
        except RecordsRefusal as exc:
            return await _screen(request, object_type, back_params, status=exc.status, error=exc.message)
        return await _screen(request, object_type, back_params, status=422,
                             error=gettext_for(locale, "Choose what to do with the selected records."))

    post.__name__ = f"{object_type}_bulk"
    return post


def _view_save(object_type: str) -> Any:
    async def post(request: Request) -> Response:
        form = await read_form(request)
        kind = record_kind(object_type)
        if kind is None:
            return _error(request, 404, "There is no such page.")
        back_params = QueryParams(str(form.get("back") or ""))
        try:
            query = parse_list_query(back_params)
            definition = views.ViewDefinition.model_validate(query.definition())
            data = views.SavedViewIn(object_type=object_type, name=form_str(form, "name"),
                                     shared=form.get("shared") is not None, definition=definition)
            saved = await views.create_view(actor_of(request), data)
        except ValidationError as exc:
            message = "; ".join(f"{k}: {v}" for k, v in
                                validation_fields(exc, request.state.caller.tenant.locale).items())
            return await _screen(request, object_type, back_params, status=422, error=message)
        except (ListError, RecordsRefusal) as exc:
            return await _screen(request, object_type, back_params, status=getattr(exc, "status", 422),
                                 error=exc.message)
        return RedirectResponse(f"{_base(request)}/{kind.path}?view={saved.id}&done=view_saved", status_code=303)

    post.__name__ = f"{object_type}_view_save"
    return post


def _view_delete(object_type: str) -> Any:
    async def post(request: Request) -> Response:
        await read_form(request)
        kind = record_kind(object_type)
        raw = str(request.path_params["view_id"])
        if kind is None or not raw.isdigit():
            return _error(request, 404, "There is no such saved view.")
        try:
            await views.delete_view(actor_of(request), int(raw))
        except RecordsRefusal as exc:
            return _error(request, exc.status, exc.message)
        return RedirectResponse(f"{_base(request)}/{kind.path}?done=view_deleted", status_code=303)

    post.__name__ = f"{object_type}_view_delete"
    return post


# --- custom fields settings ----------------------------------------------------------------


def _options(form: FormData) -> list[str]:
    return [line.strip() for line in form_str(form, "options").splitlines() if line.strip()]


def _settings_url(request: Request, **flash: str) -> str:
    return f"{_base(request)}/settings/custom-fields" + (f"?{urlencode(flash)}" if flash else "")


async def _fields_screen(request: Request, *, values: dict[str, Any] | None = None,
                         errors: dict[str, str] | None = None, status: int = 200) -> Response:
    items = await fields_admin.list_custom_fields(actor_of(request))
    policy = getattr(request.state, "policy", None)
    field_errors: dict[int, list[tuple[str, str]]] = {}
    for key, message in (errors or {}).items():
        head, _, rest = key.partition(".")
        if head.isdigit():
            field_errors.setdefault(int(head), []).append((rest, message))
    return render(request, "records/custom_fields.html", {
        "current": "custom-fields", "groups": [(t, [f for f in items if f.object_type == t]) for t in OBJECT_TYPES],
        "object_types": OBJECT_TYPES, "kinds": KINDS, "values": values or {}, "errors": errors or {},
        "field_errors": field_errors,
        "can_manage": policy is None or policy.can_manage("manage_settings"),
        "flash": request.query_params.get("done", ""),
    }, status=status)


def _refusal_fields(exc: RecordsRefusal, default: str) -> dict[str, str]:
    return exc.fields or {default: exc.message}


async def custom_fields_page(request: Request) -> Response:
    if request.method == "GET":
        return await _fields_screen(request)
    form = await read_form(request)
    values = {"object_type": form_str(form, "object_type"), "label": form_str(form, "label"),
              "kind": form_str(form, "kind"), "key": form_str(form, "key").strip() or None,
              "options": _options(form), "required": form.get("required") is not None}
    shown = {**values, "options": form_str(form, "options"), "key": values["key"] or ""}
    try:
        data = fields_admin.CustomFieldIn.model_validate(values)
        created = await fields_admin.create_custom_field(actor_of(request), data)
    except ValidationError as exc:
        return await _fields_screen(request, values=shown, status=422,
                                    errors=validation_fields(exc, request.state.caller.tenant.locale))
    except RecordsRefusal as exc:
        return await _fields_screen(request, values=shown, errors=_refusal_fields(exc, "label"), status=exc.status)
    return RedirectResponse(_settings_url(request, done="created", key=created.key), status_code=303)


def _field_id(request: Request) -> int | None:
    raw = str(request.path_params["field_id"])
    return int(raw) if raw.isdigit() else None


async def custom_field_update(request: Request) -> Response:
    form = await read_form(request)
    field_id = _field_id(request)
    if field_id is None:
        return _error(request, 404, "There is no such custom field.")
    values: dict[str, Any] = {"label": form_str(form, "label"), "required": form.get("required") is not None}
    if form.get("options") is not None:
        values["options"] = _options(form)
    position = form_str(form, "position")
    if position.strip():
        values["position"] = position.strip()
    try:
        patch = fields_admin.CustomFieldPatch.model_validate(values)
        await fields_admin.update_custom_field(actor_of(request), field_id, patch)
    except ValidationError as exc:
        errors = {f"{field_id}.{k}": v for k, v in
                  validation_fields(exc, request.state.caller.tenant.locale).items()}
        return await _fields_screen(request, errors=errors, status=422)
    except RecordsRefusal as exc:
        if exc.status == 404:
            return _error(request, 404, exc.message)
        errors = {f"{field_id}.{k}": v for k, v in _refusal_fields(exc, "label").items()}
        return await _fields_screen(request, errors=errors, status=exc.status)
    return RedirectResponse(_settings_url(request, done="updated"), status_code=303)


async def custom_field_delete(request: Request) -> Response:
    field_id = _field_id(request)
    form = await read_form(request) if request.method == "POST" else None
    found = next((f for f in await fields_admin.list_custom_fields(actor_of(request)) if f.id == field_id), None)
    if found is None:
        return _error(request, 404, "There is no such custom field.")
    if form is None:
        return render(request, "records/custom_field_delete.html", {"field": found, "current": "custom-fields"})
    try:
        cleared = await fields_admin.delete_custom_field(actor_of(request), found.id)
    except RecordsRefusal as exc:
        return _error(request, exc.status, exc.message)
    return RedirectResponse(_settings_url(request, done="deleted", count=str(cleared)), status_code=303)


routes: list[Route] = [
    route
    for object_type in OBJECT_TYPES
    for route in (
        Route(f"/t/{{slug}}/{object_type}", _list_page(object_type), methods=["GET"]),
        Route(f"/t/{{slug}}/{object_type}/bulk", _bulk_page(object_type), methods=["POST"]),
        Route(f"/t/{{slug}}/{object_type}/views", _view_save(object_type), methods=["POST"]),
        Route(f"/t/{{slug}}/{object_type}/views/{{view_id}}/delete", _view_delete(object_type), methods=["POST"]),
    )
] + [
    Route("/t/{slug}/settings/custom-fields", custom_fields_page, methods=["GET", "POST"]),
    Route("/t/{slug}/settings/custom-fields/{field_id}", custom_field_update, methods=["POST"]),
    Route("/t/{slug}/settings/custom-fields/{field_id}/delete", custom_field_delete, methods=["GET", "POST"]),
]
