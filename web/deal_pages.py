"""Deals in the browser: the pipeline board (drag and drop, with a stage select that works without
JavaScript), the forecast, a deal's page with its stage history and timeline, the new/edit/delete
forms, and the pipelines settings page.

Permission checks happen in the actions and queries (below the web layer); a refusal surfaces as
the 403 page. The list of deals is the generic list page (web/record_pages.py) at /t/<slug>/deals.
"""

from __future__ import annotations

from collections.abc import Awaitable
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.activities.queries import timeline
from kith.tenants.companies.queries import SELECT_LIMIT, companies_for_select, scope_clause
from kith.tenants.deals import actions, board, pipelines, queries
from kith.tenants.deals.errors import DealError
from kith.tenants.deals.schemas import (
    DealIn,
    DealPatch,
    PipelineIn,
    PipelinePatch,
    StageIn,
    StagePatch,
    currency_context,
)
from kith.tenants.records.custom import CustomField, load_custom_fields
from kith.web.api.deals import workspace_today
from kith.web.company_pages import shared_values
from kith.web.edge import actor_of
from kith.web.errors import title_for, validation_fields
from kith.web.forms import form_str, read_form, render

T = TypeVar("T")
Model = TypeVar("Model", bound=BaseModel)
OBJECT = "deals"
FORM_FIELDS = ("name", "amount", "currency", "expected_close", "probability", "stage_id", "company_id",
               "contact_id", "owner_id", "loss_reason", "notes", "tags")
# empty means "none" for these (a cleared date, no override, no company)
NULLABLE = ("expected_close", "probability", "company_id", "contact_id")


def _base(request: Request) -> str:
    return f"/t/{request.state.caller.tenant.slug}"


def money(amount: Any, currency: str | None = None) -> str:
    """1234567.5 -> "1,234,567.50 USD" (amounts are Decimal strings; never floats)."""
    try:
        text = f"{Decimal(str(amount)):,.2f}"
    except (InvalidOperation, ValueError):
        text = str(amount)
    return f"{text} {currency}" if currency else text


def _error(request: Request, status: int, message: str) -> Response:
    return render(request, "error.html", {"status": status, "title": title_for(status), "message": message},
                  status=status)


def _deal_id(request: Request) -> int | None:
    raw = str(request.path_params.get("deal_id", ""))
    return int(raw) if raw.isdigit() else None


async def _attempt(request: Request, action: Awaitable[T]) -> T | Response:
    """Run an action; a refusal of the deals domain becomes the error page with its status."""
    try:
        return await action
    except DealError as exc:
        return _error(request, exc.status, exc.message)


# --- board and forecast ------------------------------------------------------------------

async def deal_board(request: Request) -> Response:
    raw = request.query_params.get("pipeline", "")
    actor = actor_of(request)
    result = await _attempt(request, board.board(actor, int(raw) if raw.isdigit() else None))
    if isinstance(result, Response):
        return result
    all_pipelines = await pipelines.list_pipelines(actor)
    policy = request.scope.get("state", {}).get("policy")
    return render(request, "deals/board.html", {
        "board": result, "pipelines": all_pipelines, "money": money,
        "can_move": policy is None or policy.can("deals", "edit"),
        "can_create": policy is None or policy.can("deals", "create"),
        "error": request.query_params.get("error", ""),
    })


async def deal_forecast(request: Request) -> Response:
    now, zone = workspace_today(request)
    raw = request.query_params.get("pipeline", "")
    pipeline_id = int(raw) if raw.isdigit() else None
    actor = actor_of(request)
    result = await board.forecast(actor, today=now.date(), time_zone=zone, pipeline_id=pipeline_id)
    currencies = sorted({t["currency"] for b in [*result["open"], *result["won"]] for t in b["totals"]})
    return render(request, "deals/forecast.html", {
        "forecast": result, "currencies": currencies, "money": money, "pipeline_id": pipeline_id,
        "pipelines": await pipelines.list_pipelines(actor)})


async def deal_move(request: Request) -> Response:
    """The board's move: a form post (redirects back) or the board script's fetch (answers JSON)."""
    form = await read_form(request)
    wants_json = request.headers.get("x-requested-with") == "board"
    deal_id = _deal_id(request)
    stage = form_str(form, "stage_id")
    reason = form_str(form, "loss_reason")
    back = form_str(form, "return")
    if not back.startswith(f"{_base(request)}/deals"):
        back = f"{_base(request)}/deals/board"
    try:
        if deal_id is None or not stage.isdigit():
            raise DealError("Choose a stage to move the deal to.", field="stage_id")
        await actions.move_deal_to_stage(actor_of(request), deal_id, int(stage), reason or None)
    except DealError as exc:
        if wants_json:
            return JSONResponse({"error": {"message": exc.message, "fields": exc.fields}}, status_code=exc.status)
        if exc.status != 422 or deal_id is None:
            return _error(request, exc.status, exc.message)
        deal = await queries.get_deal(actor_of(request), deal_id)
        pipeline = await pipelines.get_pipeline(actor_of(request), deal.get("pipeline_id"))
        return render(request, "deals/move.html", {"deal": deal, "pipeline": pipeline, "stage_id": stage,
                                                   "errors": exc.fields, "back": back, "loss_reason": reason},
                      status=422)
    if wants_json:
        return JSONResponse({"ok": True})
    return RedirectResponse(back, status_code=303)


# --- one deal ----------------------------------------------------------------------------

async def deal_detail(request: Request) -> Response:
    deal_id = _deal_id(request)
    if deal_id is None:
        return _error(request, 404, "There is no such deal.")
    actor = actor_of(request)
    page = await _attempt(request, queries.deal_for_page(actor, deal_id))
    if isinstance(page, Response):
        return page
    async with acting_as(actor) as session:
        entries = await timeline(session, deal_id=deal_id)
    pipeline = await pipelines.get_pipeline(actor, page["deal"].get("pipeline_id"))
    return render(request, "deals/detail.html", {**page, "pipeline": pipeline, "money": money,
                                                 "timeline": entries, "record": {"type": "deals", "id": deal_id}})


def _form_values(form: FormData) -> dict[str, str]:
    return {k: form_str(form, k).strip() for k in FORM_FIELDS}


def _to_input(values: dict[str, str], *, patch: bool) -> dict[str, Any]:
    """Form text as schema input: empty optional fields are None (or left out), tags split on commas."""
    data: dict[str, Any] = {}
    for key, value in values.items():
        if key == "tags":
            data[key] = [t for t in value.replace("，", ",").split(",") if t.strip()]
        elif value == "" and key in NULLABLE:
            data[key] = None
        elif value == "" and key in ("owner_id", "stage_id", "currency", "amount"):
            if key == "amount" and not patch:
                data[key] = "0"
            continue
        else:
            data[key] = value
    return data


def _validate(request: Request, model: type[Model], data: dict[str, Any]) -> Model:
    return model.model_validate(data, context=currency_context(request.state.caller.tenant.default_currency))


def _as_id(value: Any) -> int | None:
    text = str(value if value is not None else "").strip()
    return int(text) if text.isdigit() and len(text) < 19 else None


async def _linked(session: TenantSession, table: str, record_id: int, fallback: str) -> dict[str, Any]:
    """The record a deal links to as a select option: its name when the actor may see it, else `fallback`."""
    params: list[Any] = [record_id]
    scope = scope_clause(session, table, "owner_id", params)
    rows = await session.tx.execute_query_dict(
        f"SELECT id, name FROM {table} WHERE id = $1" + (f" AND {scope}" if scope else ""), params)  # noqa: S608
    return dict(rows[0]) if rows else {"id": record_id, "name": fallback}


async def _contacts_for_select(session: TenantSession, company_id: int | None) -> list[dict[str, Any]]:
    """The newest contacts the actor may see (at most SELECT_LIMIT); those of `company_id` first."""
    params: list[Any] = [company_id]
    scope = scope_clause(session, "contacts", "owner_id", params)
    params.append(SELECT_LIMIT)
    rows = await session.tx.execute_query_dict(
        "SELECT id, name FROM contacts" + (f" WHERE {scope}" if scope else "")
        + " ORDER BY coalesce(company_id = $1::bigint, false) DESC, created_at DESC, id DESC"
        + f" LIMIT ${len(params)}", params)
    return [dict(r) for r in rows]


def _may_list(session: TenantSession, object_type: str) -> bool:
    return session.policy.can(object_type, "view") and "name" not in session.policy.hidden_fields(object_type)


async def _link_choices(request: Request, deal: dict[str, Any] | None, values: dict[str, Any]) -> dict[str, Any]:
    """In one transaction: the companies and contacts the form's selects offer (None when the role may
    not list them: the form then asks for the id), the chosen ones always among them, and the deals'
    custom fields."""
    company_id, contact_id = _as_id(values.get("company_id")), _as_id(values.get("contact_id"))
    async with acting_as(actor_of(request)) as session:
        companies: list[dict[str, Any]] | None = None
        if _may_list(session, "companies"):
            companies = await companies_for_select(session)
            if company_id is not None and all(c["id"] != company_id for c in companies):
                known = deal.get("company_name") if deal and deal.get("company_id") == company_id else None
                companies.append(await _linked(session, "companies", company_id, known or f"#{company_id}"))
        contacts: list[dict[str, Any]] | None = None
        if _may_list(session, "contacts"):
            contacts = await _contacts_for_select(session, company_id)
            if contact_id is not None and all(c["id"] != contact_id for c in contacts):
                contacts.append(await _linked(session, "contacts", contact_id, f"#{contact_id}"))
        custom_fields = await load_custom_fields(session.tx, OBJECT)
    return {"companies": companies, "contacts": contacts, "custom_fields": custom_fields}


async def _form_context(request: Request, deal: dict[str, Any] | None, values: dict[str, Any],
                        errors: dict[str, str]) -> dict[str, Any]:
    choices = await queries.form_choices(actor_of(request))
    links = await _link_choices(request, deal, values)
    values.setdefault("custom", {})
    return {"deal": deal, "values": values, "errors": errors, "object_type": OBJECT, **choices, **links}


def _custom_input(form: FormData, hidden: frozenset[str], custom_fields: list[CustomField]) -> dict[str, Any] | None:
    """The posted custom field values ("custom.<key>" inputs), or None when there are none to send."""
    if "custom" in hidden or not custom_fields:
        return None
    return dict(shared_values(form, hidden, custom_fields).get("custom", {}))


async def _save(request: Request, deal: dict[str, Any] | None, form: FormData) -> Response:
    """Validate the posted form and create or update; the form again with messages on bad input."""
    actor = actor_of(request)
    values = _form_values(form)
    policy = request.scope.get("state", {}).get("policy")
    hidden = policy.hidden_fields("deals") if policy is not None else frozenset()
    shown = {k: v for k, v in values.items()
             if ("stage" if k == "stage_id" else k) not in hidden}  # a hidden field is neither shown nor sent
    locale = request.state.caller.tenant.locale
    async with acting_as(actor) as session:
        custom_fields = await load_custom_fields(session.tx, OBJECT)
    custom = _custom_input(form, hidden, custom_fields)
    errors: dict[str, str] = {}
    status = 422
    try:
        data = _to_input(shown, patch=deal is not None)
        if custom is not None:
            data["custom"] = custom
        if deal is None:
            saved = await actions.create_deal(actor, _validate(request, DealIn, data))
        else:
            saved = await actions.update_deal(actor, deal["id"], _validate(request, DealPatch, data))
    except ValidationError as exc:
        errors = validation_fields(exc, locale)
    except DealError as exc:
        if exc.status == 404:
            return _error(request, 404, exc.message)
        errors, status = exc.fields or {"name": exc.message}, exc.status
    if errors:
        context = await _form_context(request, deal, {**values, "custom": custom or {}}, errors)
        return render(request, "deals/form.html", context, status=status)
    flag = "created" if deal is None else "updated"
    return RedirectResponse(f"{_base(request)}/deals/{saved['id']}?{flag}=1", status_code=303)


async def deal_new(request: Request) -> Response:
    if request.method == "POST":
        return await _save(request, None, await read_form(request))
    values = {k: request.query_params.get(k, "") for k in ("company_id", "contact_id", "stage_id")}
    values["currency"] = request.state.caller.tenant.default_currency
    return render(request, "deals/form.html", await _form_context(request, None, values, {}))


async def deal_edit(request: Request) -> Response:
    form = await read_form(request) if request.method == "POST" else None  # the CSRF check comes first
    deal_id = _deal_id(request)
    deal = await _attempt(request, queries.get_deal(actor_of(request), deal_id or 0))
    if isinstance(deal, Response):
        return deal
    if form is not None:
        return await _save(request, deal, form)
    values = {k: ("" if deal.get(k) is None else deal.get(k)) for k in FORM_FIELDS}
    values["tags"] = ", ".join(deal.get("tags") or [])
    values["custom"] = deal.get("custom") or {}
    return render(request, "deals/form.html", await _form_context(request, deal, values, {}))


async def deal_delete(request: Request) -> Response:
    if request.method == "POST":
        await read_form(request)  # the CSRF check comes first
    deal_id = _deal_id(request)
    deal = await _attempt(request, queries.get_deal(actor_of(request), deal_id or 0))
    if isinstance(deal, Response):
        return deal
    if request.method == "GET":
        return render(request, "deals/delete.html", {"deal": deal, "money": money})
    done = await _attempt(request, actions.delete_deal(actor_of(request), deal["id"]))
    if isinstance(done, Response):
        return done
    return RedirectResponse(f"{_base(request)}/deals/board?deleted=1", status_code=303)


# --- pipelines settings ------------------------------------------------------------------

def _settings_url(request: Request, **flags: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in flags.items())
    return f"{_base(request)}/settings/pipelines" + (f"?{query}" if query else "")


async def _settings_page(request: Request, *, status: int = 200, errors: dict[str, str] | None = None,
                         message: str = "", target: str = "") -> Response:
    actor = actor_of(request)
    items = await pipelines.list_pipelines(actor, counts=True)
    return render(request, "deals/pipelines.html", {
        "pipelines": items, "errors": errors or {}, "message": message, "target": target,
        "saved": request.query_params.get("saved", "")}, status=status)


async def _settings_change(request: Request, target: str, action: Awaitable[Any]) -> Response:
    try:
        await action
    except DealError as exc:
        return await _settings_page(request, status=exc.status, errors=exc.fields, message=exc.message,
                                    target=target)
    return RedirectResponse(_settings_url(request, saved="1"), status_code=303)


def _invalid(request: Request, target: str, exc: ValidationError) -> Awaitable[Response]:
    errors = validation_fields(exc, request.state.caller.tenant.locale)
    return _settings_page(request, status=422, errors=errors, message=next(iter(errors.values())), target=target)


def _path_int(request: Request, name: str) -> int:
    raw = str(request.path_params.get(name, ""))
    return int(raw) if raw.isdigit() else 0


async def pipelines_settings(request: Request) -> Response:
    """GET: the pipelines and their stages; POST: a new pipeline (default stages New, Won, Lost)."""
    if request.method == "GET":
        actor = actor_of(request)
        policy = request.scope.get("state", {}).get("policy")
        if policy is not None:
            policy.require_manage("manage_settings")
        else:  # pages always carry the policy; without it, ask the action layer
            await pipelines.list_pipelines(actor)
        return await _settings_page(request)
    form = await read_form(request)
    try:
        data = PipelineIn(name=form_str(form, "name"))
    except ValidationError as exc:
        return await _invalid(request, "new", exc)
    return await _settings_change(request, "new", pipelines.create_pipeline(actor_of(request), data))


async def pipeline_change(request: Request) -> Response:
    """One pipeline: rename, move up/down, make default (op), or delete (op=delete)."""
    form = await read_form(request)
    pipeline_id = _path_int(request, "pipeline_id")
    op = form_str(form, "op")
    target = f"pipeline-{pipeline_id}"
    actor = actor_of(request)
    if op == "delete":
        return await _settings_change(request, target, pipelines.delete_pipeline(actor, pipeline_id))
    try:
        if op == "default":
            patch = PipelinePatch(is_default=True)
        elif op in ("up", "down"):
            position = max(0, int(form_str(form, "position") or 0) + (-1 if op == "up" else 1))
            patch = PipelinePatch(position=position)
        else:
            patch = PipelinePatch(name=form_str(form, "name"))
    except (ValidationError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            return await _invalid(request, target, exc)
        return await _settings_page(request, status=422, message=str(exc), target=target)
    return await _settings_change(request, target, pipelines.update_pipeline(actor, pipeline_id, patch))


def _stage_values(form: FormData) -> dict[str, Any]:
    values: dict[str, Any] = {"name": form_str(form, "name"), "kind": form_str(form, "kind") or "open"}
    probability = form_str(form, "probability").strip()
    values["probability"] = probability if probability else "0"
    return values


async def stage_add(request: Request) -> Response:
    form = await read_form(request)
    pipeline_id = _path_int(request, "pipeline_id")
    target = f"pipeline-{pipeline_id}"
    try:
        data = StageIn.model_validate(_stage_values(form))
    except ValidationError as exc:
        return await _invalid(request, target, exc)
    return await _settings_change(request, target, pipelines.add_stage(actor_of(request), pipeline_id, data))


async def stage_change(request: Request) -> Response:
    """One stage: save name/probability/kind, move up/down (op), or delete (op=delete)."""
    form = await read_form(request)
    stage_id = _path_int(request, "stage_id")
    op = form_str(form, "op")
    target = f"stage-{stage_id}"
    actor = actor_of(request)
    if op == "delete":
        return await _settings_change(request, target, pipelines.delete_stage(actor, stage_id))
    try:
        if op in ("up", "down"):
            current = int(form_str(form, "position") or 0)
            patch = StagePatch(position=max(0, current + (-1 if op == "up" else 1)))
        else:
            patch = StagePatch.model_validate(_stage_values(form))
    except ValidationError as exc:
        return await _invalid(request, target, exc)
    except ValueError:
        return await _settings_page(request, status=422, message="Position must be a whole number.", target=target)
    return await _settings_change(request, target, pipelines.update_stage(actor, stage_id, patch))


routes = [
    Route("/t/{slug}/deals/board", deal_board),
    Route("/t/{slug}/deals/forecast", deal_forecast),
    Route("/t/{slug}/deals/new", deal_new, methods=["GET", "POST"]),
    Route("/t/{slug}/deals/{deal_id:int}", deal_detail),
    Route("/t/{slug}/deals/{deal_id:int}/edit", deal_edit, methods=["GET", "POST"]),
    Route("/t/{slug}/deals/{deal_id:int}/delete", deal_delete, methods=["GET", "POST"]),
    Route("/t/{slug}/deals/{deal_id:int}/move", deal_move, methods=["POST"]),
    Route("/t/{slug}/settings/pipelines", pipelines_settings, methods=["GET", "POST"]),
    Route("/t/{slug}/settings/pipelines/{pipeline_id:int}", pipeline_change, methods=["POST"]),
    Route("/t/{slug}/settings/pipelines/{pipeline_id:int}/stages", stage_add, methods=["POST"]),
    Route("/t/{slug}/settings/stages/{stage_id:int}", stage_change, methods=["POST"]),
]
