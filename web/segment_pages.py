"""Segments in the browser: the list with each segment's live count
(/t/<slug>/campaigns/segments) and the editor: rows of contact filters (any field the caller's
role may see, custom fields included, with the operators the lists offer), rows of filters on the
contact's company, a deal stage, and engagement with an earlier campaign (opened, clicked, sent
but not opened, sent).

The editor shows how many contacts match and how many a campaign would reach. Without
JavaScript the "Count" button posts the form and the page comes back with the count; with it, a
small script posts the same form to /campaigns/segments/count (JSON, the page's own session)
whenever a filter changes. Saving goes through kith.tenants.campaigns.segments, which checks
every filter as the lists do (a bad one is named at the top of the form) and the permissions.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from kith.platform.access.rules import PermissionDenied
from kith.platform.access.session import acting_as
from kith.tenants.campaigns import campaigns, segments
from kith.tenants.campaigns.segments import ENGAGEMENT_EVENTS, SegmentDefinition, SegmentIn, SegmentPatch
from kith.tenants.deals.pipelines import list_pipelines
from kith.tenants.records.custom import load_custom_fields
from kith.tenants.records.kinds import record_kind
from kith.tenants.records.listing import ListError, parse_filter
from kith.tenants.records.refusals import RecordsRefusal
from kith.tenants.records.spec import OPERATORS
from kith.web.edge import actor_of
from kith.web.errors import title_for, validation_fields
from kith.web.forms import form_str, read_form, render
from kith.web.i18n import gettext_for
from kith.web.record_pages import ALL_OPERATORS, FieldView, field_views

MAX_ID = 2**63 - 1
NO_VALUE_OPS = ("empty", "notempty")
# the form's row inputs per part of the definition: (field, operator, value)
ROWS = {"filters": ("ff", "fo", "fv"), "company": ("cf", "co", "cv")}


def _base(request: Request) -> str:
    return f"/t/{request.state.caller.tenant.slug}"


def _t(request: Request, message: str) -> str:
    return gettext_for(request.state.caller.tenant.locale, message)


def _error(request: Request, status: int, message: str) -> Response:
    return render(request, "error.html", {"status": status, "title": title_for(status), "message": message},
                  status=status)


def _segment_id(request: Request) -> int | None:
    value = int(request.path_params["segment_id"])
    return value if 0 < value <= MAX_ID else None


def _id(raw: str) -> int | None:
    raw = raw.strip()
    return int(raw) if raw.isdigit() and len(raw) <= 18 else None


def definition_from(form: FormData) -> dict[str, Any]:
    """The definition the editor's rows describe, as plain data for SegmentDefinition: a row
    without an operator, or without a value where one is needed, is left out (as lists do)."""
    found: dict[str, Any] = {}
    for part, (f_name, o_name, v_name) in ROWS.items():
        names, ops, values = (list(map(str, form.getlist(n))) for n in (f_name, o_name, v_name))
        found[part] = [f"{name}:{ops[i]}:{values[i].strip() if i < len(values) else ''}"
                       for i, name in enumerate(names)
                       if name and i < len(ops) and ops[i]
                       and (ops[i] in NO_VALUE_OPS or (i < len(values) and values[i].strip()))]
    found["deal_stage"] = _id(form_str(form, "deal_stage"))
    campaign_id = _id(form_str(form, "engagement_campaign"))
    event = form_str(form, "engagement_event") or "opened"
    found["engagement"] = {"campaign_id": campaign_id, "event": event} if campaign_id is not None else None
    return found


def _rows(items: list[str]) -> list[tuple[str, str, str]]:
    rows = []
    for raw in items:
        try:
            rows.append(parse_filter(raw))
        except ListError:
            continue
    return [*rows, ("", "", "")]  # one empty row to add a filter without a script


async def _fields(request: Request) -> tuple[list[FieldView], list[FieldView]]:
    """The contact and company fields the caller's role may filter on, custom fields last."""
    async with acting_as(actor_of(request)) as session:
        out = []
        for object_type in ("contacts", "companies"):
            kind = record_kind(object_type)
            assert kind is not None, object_type
            custom = await load_custom_fields(session.tx, object_type) if kind.spec.custom_fields else []
            fields = field_views(kind, session.policy.hidden_fields(object_type), custom)
            out.append([f for f in fields if f.filterable])
    return out[0], out[1]


async def _editor_context(request: Request, name: str, definition: dict[str, Any], *,
                          segment: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
                          counts: dict[str, int] | None = None) -> dict[str, Any]:
    actor = actor_of(request)
    contact_fields, company_fields = await _fields(request)
    try:
        pipelines = await list_pipelines(actor)
    except PermissionDenied:  # a role that cannot see deals cannot filter on them
        pipelines = []
    try:
        started = [c for c in await campaigns.list_campaigns(actor, limit=500) if c["started_at"] is not None]
    except PermissionDenied:  # a role that cannot see campaigns cannot filter on them
        started = []
    engagement = definition.get("engagement") or {}
    return {
        "name": name, "segment": segment, "errors": errors or {}, "counts": counts, "base": _base(request),
        "filter_rows": _rows(definition.get("filters") or []), "company_rows": _rows(definition.get("company") or []),
        "contact_fields": contact_fields, "company_fields": company_fields, "pipelines": pipelines,
        "deal_stage": definition.get("deal_stage"), "engagement_campaigns": started,
        "engagement_campaign": engagement.get("campaign_id"), "engagement_event": engagement.get("event") or "opened",
        "events": ENGAGEMENT_EVENTS, "operators": ALL_OPERATORS, "ops_by_kind": OPERATORS,
        "notice": request.query_params.get("done", "")}


def _refusal_errors(request: Request, exc: RecordsRefusal) -> dict[str, str]:
    errors = {k: _t(request, v) for k, v in exc.fields.items()}
    errors["form"] = _t(request, exc.message)
    return errors


async def _count(request: Request, definition: dict[str, Any]) -> tuple[dict[str, int] | None, dict[str, str]]:
    """The counts of a definition, or the errors that stop it from running."""
    try:
        return await segments.count_segment(actor_of(request), SegmentDefinition.model_validate(definition)), {}
    except ValidationError as exc:
        return None, validation_fields(exc, request.state.caller.tenant.locale)
    except RecordsRefusal as exc:
        return None, _refusal_errors(request, exc)


# --- the list --------------------------------------------------------------------------------


async def segments_page(request: Request) -> Response:
    actor = actor_of(request)
    items = await segments.list_segments(actor)
    counts: dict[int, dict[str, int] | str] = {}
    async with acting_as(actor) as session:
        for item in items:
            try:
                counts[item["id"]] = await segments.segment_counts(
                    session, SegmentDefinition.model_validate(item["definition"]))
            except RecordsRefusal as exc:  # e.g. a filter on a custom field deleted since
                counts[item["id"]] = _t(request, exc.message)
    policy = request.state.policy
    return render(request, "campaigns/segments.html", {
        "items": items, "counts": counts, "base": _base(request), "notice": request.query_params.get("done", ""),
        "can_create": policy is None or policy.can("segments", "create")})


# --- the editor ------------------------------------------------------------------------------


async def _save(request: Request, segment: dict[str, Any] | None) -> Response:
    form = await read_form(request)
    name = form_str(form, "name").strip()
    definition = definition_from(form)
    if form_str(form, "action") == "count":
        counts, errors = await _count(request, definition)
        return render(request, "campaigns/segment_edit.html",
                      await _editor_context(request, name, definition, segment=segment, errors=errors,
                                            counts=counts), status=200 if counts is not None else 422)
    actor = actor_of(request)
    try:
        if segment is None:
            saved = await segments.create_segment(actor, SegmentIn(name=name, definition=definition))
        else:
            saved = await segments.update_segment(actor, segment["id"], SegmentPatch(name=name,
                                                                                     definition=definition))
    except ValidationError as exc:
        errors = validation_fields(exc, request.state.caller.tenant.locale)
        return render(request, "campaigns/segment_edit.html",
                      await _editor_context(request, name, definition, segment=segment, errors=errors), status=422)
    except RecordsRefusal as exc:
        if exc.status == 404:
            return _error(request, 404, exc.message)
        return render(request, "campaigns/segment_edit.html",
                      await _editor_context(request, name, definition, segment=segment,
                                            errors=_refusal_errors(request, exc)), status=exc.status)
    return RedirectResponse(f"{_base(request)}/campaigns/segments/{saved['id']}?done=saved", status_code=303)


async def new_segment_page(request: Request) -> Response:
    if request.method == "POST":
        return await _save(request, None)
    definition: dict[str, Any] = {}
    counts, errors = await _count(request, definition)
    return render(request, "campaigns/segment_edit.html",
                  await _editor_context(request, "", definition, errors=errors, counts=counts))


async def segment_page(request: Request) -> Response:
    segment_id = _segment_id(request)
    if segment_id is None:
        return _error(request, 404, "There is no such segment.")
    try:
        segment = await segments.get_segment(actor_of(request), segment_id)
        counts: dict[str, int] | None = segment["counts"]
        errors: dict[str, str] = {}
    except RecordsRefusal as exc:
        if exc.status == 404:
            return _error(request, 404, exc.message)
        # saved, but no longer runs (a field it filters on was deleted): open it to fix it
        segment = next((s for s in await segments.list_segments(actor_of(request)) if s["id"] == segment_id), None)
        if segment is None:
            return _error(request, 404, "There is no such segment.")
        counts, errors = None, _refusal_errors(request, exc)
    if request.method == "POST":
        return await _save(request, segment)
    return render(request, "campaigns/segment_edit.html",
                  await _editor_context(request, segment["name"], segment["definition"], segment=segment,
                                        errors=errors, counts=counts))


async def segment_count(request: Request) -> Response:
    """The live count of the editor's form, as JSON (session-authenticated, CSRF-checked)."""
    form = await read_form(request)
    counts, errors = await _count(request, definition_from(form))
    if counts is None:
        return JSONResponse({"errors": errors}, status_code=422, headers={"Cache-Control": "no-store"})
    return JSONResponse({"counts": counts}, headers={"Cache-Control": "no-store"})


async def delete_segment_page(request: Request) -> Response:
    await read_form(request)
    segment_id = _segment_id(request)
    if segment_id is None:
        return _error(request, 404, "There is no such segment.")
    try:
        await segments.delete_segment(actor_of(request), segment_id)
    except RecordsRefusal as exc:
        return _error(request, exc.status, _t(request, exc.message))
    return RedirectResponse(f"{_base(request)}/campaigns/segments?done=deleted", status_code=303)


routes: list[Route] = [
    Route("/t/{slug}/campaigns/segments", segments_page, methods=["GET"]),
    Route("/t/{slug}/campaigns/segments/new", new_segment_page, methods=["GET", "POST"]),
    Route("/t/{slug}/campaigns/segments/count", segment_count, methods=["POST"]),
    Route("/t/{slug}/campaigns/segments/{segment_id:int}", segment_page, methods=["GET", "POST"]),
    Route("/t/{slug}/campaigns/segments/{segment_id:int}/delete", delete_segment_page, methods=["POST"]),
]
