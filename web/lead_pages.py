"""Leads and the public customer pool in the browser: a lead's page (with its timeline and the convert
form), create, edit and delete; the pool of leads and of companies with claim buttons; returning a
record to the pool; the pool rules in the settings. The leads list is the generic record list
(web/record_pages.py).

Permission checks happen in the actions and queries (below the web layer); a refusal surfaces as the
403 page. Fields hidden from the caller's role are not shown or asked for.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.platform.access.rules import PermissionDenied, permission_label
from kith.tenants.companies.queries import form_choices
from kith.tenants.leads import actions, convert, detail
from kith.tenants.leads.errors import LeadError
from kith.tenants.leads.schemas import OPEN_STATUSES, ConvertIn, LeadIn, LeadPatch
from kith.tenants.pool import claims, rules
from kith.tenants.pool.errors import PoolError
from kith.tenants.pool.listing import pool_page
from kith.tenants.pool.schemas import PoolRulesIn
from kith.tenants.records.listing import ListError, ListQuery, parse_list_query
from kith.web.company_pages import errors_of, form_display, shared_values, shown_values, validate
from kith.web.edge import actor_of
from kith.web.forms import form_str, read_form, render

TEXT_FIELDS = ("name", "company_name", "title", "email", "phone", "status", "source", "notes")
NO_SUCH_LEAD = {"status": 404, "message": "There is no such lead."}
POOL_COLUMNS = {"leads": ("name", "company_name", "email", "phone", "status", "source"),
                "companies": ("name", "industry", "city", "phone", "domain")}


def _base(request: Request) -> str:
    return f"/t/{request.state.caller.tenant.slug}"


def _path_id(request: Request, name: str) -> int | None:
    raw = str(request.path_params[name])
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


def _form_values(form: FormData, choices: dict[str, Any]) -> dict[str, Any]:
    hidden = choices["hidden"]
    values: dict[str, Any] = {k: form_str(form, k) for k in TEXT_FIELDS if k not in hidden}
    if not values.get("status"):
        values.pop("status", None)
    values.update(shared_values(form, hidden, choices["custom_fields"]))
    return values


def _form_context(choices: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"errors": {}, "values": {"custom": {}}, "lead": None, "statuses": OPEN_STATUSES,
            "object_type": "leads", **choices, **extra}


async def lead_new(request: Request) -> Response:
    actor = actor_of(request)
    choices = await form_choices(actor, "leads")
    context = _form_context(choices, values={"owner_id": actor.identity_id, "status": "new", "custom": {}})
    if request.method == "GET":
        return render(request, "leads/form.html", context)
    values = _form_values(await read_form(request), choices)
    try:
        lead = await actions.create_lead(actor, validate(request, LeadIn, values))
    except ValidationError as exc:
        return render(request, "leads/form.html",
                      {**context, "values": form_display(values), "errors": errors_of(request, exc)}, status=422)
    except LeadError as exc:
        return render(request, "leads/form.html", {**context, "values": form_display(values), "errors": exc.fields},
                      status=exc.status)
    return RedirectResponse(f"{_base(request)}/leads/{lead['id']}?created=1", status_code=303)


async def _page(request: Request, lead_id: int, *, status: int = 200, **extra: Any) -> Response:
    try:
        context = await detail.lead_page(actor_of(request), lead_id)
    except LeadError:
        return render(request, "error.html", NO_SUCH_LEAD, status=404)
    return render(request, "leads/detail.html",
                  {**context, "record": {"type": "leads", "id": lead_id}, "convert_errors": {},
                   "convert_values": {"company_mode": "new" if context["lead"].get("company_name") else "none"},
                   "statuses": OPEN_STATUSES, **extra}, status=status)


async def lead_detail(request: Request) -> Response:
    lead_id = _path_id(request, "lead_id")
    if lead_id is None:
        return render(request, "error.html", NO_SUCH_LEAD, status=404)
    return await _page(request, lead_id)


def _require(found: dict[str, Any], action: str) -> None:
    """PermissionDenied unless the page's lead may be changed (`action`: edit or delete) by the caller."""
    if found["can"][action]:
        return
    # the role may change leads, but not this one: it sits in the pool (claim it first)
    in_pool = found["lead"]["owner_id"] is None and found["role_edits"]
    raise PermissionDenied(found["role_name"], permission_label("leads", action),
                           "Claim this lead from the pool before changing it." if in_pool else None)


async def lead_edit(request: Request) -> Response:
    actor = actor_of(request)
    lead_id = _path_id(request, "lead_id")
    try:
        found = await detail.lead_page(actor, lead_id) if lead_id is not None else None
    except LeadError:
        found = None
    if found is None or lead_id is None:
        return render(request, "error.html", NO_SUCH_LEAD, status=404)
    _require(found, "edit")
    lead = found["lead"]
    choices = await form_choices(actor, "leads")
    context = _form_context(choices, lead=lead, values=shown_values(lead, TEXT_FIELDS))
    if request.method == "GET":
        return render(request, "leads/form.html", context)
    values = _form_values(await read_form(request), choices)
    if lead["status"] == "converted":
        values.pop("status", None)
    try:
        await actions.update_lead(actor, lead_id, validate(request, LeadPatch, values))
    except ValidationError as exc:
        return render(request, "leads/form.html",
                      {**context, "values": form_display(values), "errors": errors_of(request, exc)}, status=422)
    except LeadError as exc:
        if exc.status == 404:
            return render(request, "error.html", NO_SUCH_LEAD, status=404)
        return render(request, "leads/form.html", {**context, "values": form_display(values), "errors": exc.fields},
                      status=exc.status)
    return RedirectResponse(f"{_base(request)}/leads/{lead_id}?updated=1", status_code=303)


async def lead_delete(request: Request) -> Response:
    actor = actor_of(request)
    lead_id = _path_id(request, "lead_id")
    try:
        found = await detail.lead_page(actor, lead_id) if lead_id is not None else None
    except LeadError:
        found = None
    if found is None or lead_id is None:
        return render(request, "error.html", NO_SUCH_LEAD, status=404)
    _require(found, "delete")
    if request.method == "GET":
        return render(request, "leads/delete.html", {"lead": found["lead"]})
    await read_form(request)
    try:
        await actions.delete_lead(actor, lead_id)
    except LeadError as exc:
        # deleted meanwhile (404), or claimed back into the pool meanwhile (409)
        return render(request, "error.html", {"status": exc.status, "message": exc.message}, status=exc.status)
    return RedirectResponse(f"{_base(request)}/leads?deleted=1", status_code=303)


def _convert_values(form: FormData) -> dict[str, Any]:
    """The convert form as ConvertIn values: company_mode new / existing / none picks the company."""
    mode = form_str(form, "company_mode") or "none"
    values: dict[str, Any] = {"create_company": mode == "new", "create_deal": form.get("create_deal") == "1",
                              "deal_name": form_str(form, "deal_name"), "deal_amount": form_str(form, "deal_amount"),
                              "deal_expected_close": form_str(form, "deal_expected_close") or None}
    if mode == "existing":
        raw = form_str(form, "company_id").strip()
        values["company_id"] = int(raw) if raw.isdigit() and len(raw) < 19 else raw or None
    return values


async def lead_convert(request: Request) -> Response:
    lead_id = _path_id(request, "lead_id")
    if lead_id is None:
        return render(request, "error.html", NO_SUCH_LEAD, status=404)
    form = await read_form(request)
    values = _convert_values(form)
    shown = {k: form_str(form, k) for k in ("company_mode", "company_id", "deal_name", "deal_amount",
                                            "deal_expected_close", "create_deal")}
    if values.get("company_id", "") is None and shown["company_mode"] == "existing":
        return await _page(request, lead_id, status=422, convert_values=shown,
                           convert_errors={"company_id": "Choose a company."})
    try:
        await convert.convert_lead(actor_of(request), lead_id, ConvertIn.model_validate(values))
    except ValidationError as exc:
        return await _page(request, lead_id, status=422, convert_values=shown, convert_errors=errors_of(request, exc))
    except LeadError as exc:
        if exc.status == 404:
            return render(request, "error.html", NO_SUCH_LEAD, status=404)
        return await _page(request, lead_id, status=exc.status, convert_values=shown,
                           convert_errors=exc.fields or {"form": exc.message})
    return RedirectResponse(f"{_base(request)}/leads/{lead_id}?converted=1", status_code=303)


def _return_to(request: Request, form: FormData, default: str) -> str:
    """Where a claim or a return sends the person back to: a path in this workspace, else `default`."""
    wanted = form_str(form, "return")
    return wanted if wanted.startswith(_base(request) + "/") and "//" not in wanted[1:] else default


def _pool_action(object_type: str, action: str) -> Any:
    key = "lead_id" if object_type == "leads" else "company_id"

    async def handle(request: Request) -> Response:
        record_id = _path_id(request, key)
        form = await read_form(request)
        if record_id is None:
            return render(request, "error.html", {"status": 404, "message": "There is no such record."}, status=404)
        actor = actor_of(request)
        try:
            if action == "claim":
                await claims.claim(actor, object_type, record_id)
            else:
                await claims.release(actor, object_type, record_id, form_str(form, "reason")[:200])
        except PoolError as exc:
            if exc.status == 404:
                return render(request, "error.html", {"status": 404, "message": exc.message}, status=404)
            return await _pool_screen(request, object_type, parse_list_query({}), error=exc.message, status=exc.status)
        done = "claimed" if action == "claim" else "released"
        default = (f"{_base(request)}/leads/{record_id}?{done}=1" if object_type == "leads"
                   else f"{_base(request)}/pool/companies?{done}={record_id}")
        return RedirectResponse(_return_to(request, form, default), status_code=303)

    handle.__name__ = f"{action}_{object_type}"
    return handle


async def _pool_screen(request: Request, object_type: str, query: ListQuery, *, error: str = "",
                       status: int = 200) -> Response:
    listing = await pool_page(actor_of(request), object_type, query)
    hidden = listing.page.hidden
    columns = [c for c in POOL_COLUMNS[object_type] if c not in hidden]
    return render(request, "pool/list.html", {"listing": listing, "object_type": object_type, "columns": columns,
                                              "q": query.q, "cursor": query.cursor, "error": error,
                                              "statuses": OPEN_STATUSES}, status=status)


def _pool_list(object_type: str) -> Any:
    async def handle(request: Request) -> Response:
        try:
            query = parse_list_query(request.query_params)
        except ListError as exc:
            return await _pool_screen(request, object_type, ListQuery(), error=exc.message, status=422)
        try:
            return await _pool_screen(request, object_type, query)
        except ListError as exc:
            return await _pool_screen(request, object_type, ListQuery(), error=exc.message, status=422)

    handle.__name__ = f"pool_{object_type}"
    return handle


async def pool_home(request: Request) -> Response:
    return RedirectResponse(f"{_base(request)}/pool/leads", status_code=303)


def _rules_values(form: FormData, roles: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    """The rules form as PoolRulesIn values (empty = off / no limit), and errors of inputs that are not numbers."""
    errors: dict[str, str] = {}
    raw_days = form_str(form, "reclaim_days").strip()
    values: dict[str, Any] = {"reclaim_days": raw_days or None, "claim_limits": {}}
    for role in roles:
        raw = form_str(form, f"limit.{role['key']}").strip()
        if not raw:
            continue
        if not raw.isdigit() or len(raw) > 6:
            errors[f"claim_limits.{role['key']}"] = "Enter a whole number from 0 to 100000, or leave it empty."
        else:
            values["claim_limits"][role["key"]] = int(raw)
    return values, errors


async def pool_settings(request: Request) -> Response:
    actor = actor_of(request)
    current = await rules.rules_for_settings(actor)
    context: dict[str, Any] = {"rules": current, "errors": {}, "saved": bool(request.query_params.get("saved")),
                               "values": {"reclaim_days": current["reclaim_days"] or "",
                                          **{f"limit.{r['key']}": "" if r["limit"] is None else r["limit"]
                                             for r in current["roles"]}}}
    if request.method == "GET":
        return render(request, "pool/settings.html", context)
    form = await read_form(request)
    values, errors = _rules_values(form, current["roles"])
    shown = {k: form_str(form, k) for k in context["values"]}
    try:
        data = PoolRulesIn.model_validate(values)
    except ValidationError as exc:
        errors = {**errors_of(request, exc), **errors}
    if errors:
        return render(request, "pool/settings.html", {**context, "values": shown, "errors": errors}, status=422)
    try:
        await rules.set_rules(actor, data)
    except PoolError as exc:
        return render(request, "pool/settings.html", {**context, "values": shown, "errors": exc.fields},
                      status=exc.status)
    return RedirectResponse(f"{_base(request)}/settings/pool?saved=1", status_code=303)


routes = [
    Route("/t/{slug}/leads/new", lead_new, methods=["GET", "POST"]),
    Route("/t/{slug}/leads/{lead_id:int}", lead_detail),
    Route("/t/{slug}/leads/{lead_id:int}/edit", lead_edit, methods=["GET", "POST"]),
    Route("/t/{slug}/leads/{lead_id:int}/delete", lead_delete, methods=["GET", "POST"]),
    Route("/t/{slug}/leads/{lead_id:int}/convert", lead_convert, methods=["POST"]),
    Route("/t/{slug}/pool", pool_home),
    Route("/t/{slug}/pool/leads", _pool_list("leads")),
    Route("/t/{slug}/pool/companies", _pool_list("companies")),
    Route("/t/{slug}/pool/leads/{lead_id:int}/claim", _pool_action("leads", "claim"), methods=["POST"]),
    Route("/t/{slug}/pool/leads/{lead_id:int}/release", _pool_action("leads", "release"), methods=["POST"]),
    Route("/t/{slug}/pool/companies/{company_id:int}/claim", _pool_action("companies", "claim"), methods=["POST"]),
    Route("/t/{slug}/pool/companies/{company_id:int}/release", _pool_action("companies", "release"),
          methods=["POST"]),
    Route("/t/{slug}/settings/pool", pool_settings, methods=["GET", "POST"]),
]
