"""Email campaigns in the browser: the list (/t/<slug>/campaigns), the new/edit form of drafts and
scheduled campaigns, and a campaign's page: what stops it from starting (every problem at once,
as the service refuses it), Start now, Schedule (a local date and time in the workspace's time
zone), Unschedule, Pause, Resume and Cancel (confirmed first), the progress while it sends, and
the report (counts, rates, a chart) once it has started.

Everything works as plain GET and POST forms. While a campaign sends, a small script on its page
polls /campaigns/<id>/progress (JSON, the page's own session; /api/v1 takes API tokens only) and
reloads the page when the status changes; without JavaScript a <meta refresh> inside <noscript>
reloads it. The template select copies a template's subject and bodies into the form with the
"Copy from template" button (the script presses it when the select changes), so what is saved is
what the form shows. Permission checks happen in kith.tenants.campaigns (a refusal is the 403
page); the pages only leave out buttons the caller's role cannot use.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from kith.platform.access.rules import PermissionDenied
from kith.platform.access.session import acting_as
from kith.tenants.campaigns import campaigns, segments, template_service
from kith.tenants.campaigns.campaigns import CampaignIn, CampaignPatch
from kith.tenants.campaigns.report import campaign_report, report_chart_svg
from kith.tenants.records.refusals import RecordsRefusal
from kith.web.edge import actor_of
from kith.web.errors import title_for, validation_fields
from kith.web.forms import form_str, read_form, render
from kith.web.i18n import gettext_for

POLL_MS = 2000
NOSCRIPT_REFRESH_SECONDS = 5
FORM_FIELDS = ("name", "subject", "html_body", "text_body", "from_name", "from_email", "reply_to")
ID_FIELDS = ("segment_id", "template_id")
STARTED = ("sending", "paused", "sent")
MAX_ID = 2**63 - 1
LOCAL_INPUT = "%Y-%m-%dT%H:%M"  # <input type="datetime-local">


def _base(request: Request) -> str:
    return f"/t/{request.state.caller.tenant.slug}"


def _t(request: Request, message: str) -> str:
    return gettext_for(request.state.caller.tenant.locale, message)


def _error(request: Request, status: int, message: str) -> Response:
    return render(request, "error.html", {"status": status, "title": title_for(status), "message": message},
                  status=status)


def _campaign_id(request: Request) -> int | None:
    value = int(request.path_params["campaign_id"])
    return value if 0 < value <= MAX_ID else None


def workspace_zone(request: Request) -> ZoneInfo:
    try:
        return ZoneInfo(str(request.state.caller.tenant.time_zone or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_input(value: datetime, zone: ZoneInfo) -> str:
    """An aware time as a datetime-local input shows it, in the workspace's zone."""
    return value.astimezone(zone).strftime(LOCAL_INPUT)


def parse_local(raw: str, zone: ZoneInfo) -> datetime | None:
    """A datetime-local input's value, read in the workspace's zone, as an aware UTC time."""
    try:
        naive = datetime.strptime(raw.strip()[:16], LOCAL_INPUT)  # noqa: DTZ007 - the zone is set next
    except ValueError:
        return None
    return naive.replace(tzinfo=zone).astimezone(UTC)


def can_send(request: Request) -> bool:
    """Whether the caller's role may start, schedule, pause and cancel (the actions check again)."""
    policy = request.state.policy
    return policy is None or (policy.can("campaigns", "edit") and policy.can_manage("manage_campaigns"))


def can_edit(request: Request) -> bool:
    policy = request.state.policy
    return policy is None or policy.can("campaigns", "edit")


def can_delete(request: Request) -> bool:
    policy = request.state.policy
    return policy is None or policy.can("campaigns", "delete")


# --- the list --------------------------------------------------------------------------------


async def campaigns_page(request: Request) -> Response:
    actor = actor_of(request)
    items = await campaigns.list_campaigns(actor)
    opened: dict[int, float | None] = {}
    started = [c for c in items if c["started_at"] is not None]
    if started:
        async with acting_as(actor) as session:
            for item in started:
                opened[item["id"]] = (await campaign_report(session, item["id"]))["rates"]["opened"]
    policy = request.state.policy
    return render(request, "campaigns/list.html", {
        "items": items, "opened": opened, "base": _base(request),
        "can_create": policy is None or policy.can("campaigns", "create"),
        "notice": request.query_params.get("done", "")})


# --- new and edit ----------------------------------------------------------------------------


def _form_values(form: FormData) -> dict[str, Any]:
    values: dict[str, Any] = {name: form_str(form, name).strip() for name in FORM_FIELDS}
    for name in ID_FIELDS:
        raw = form_str(form, name).strip()
        values[name] = int(raw) if raw.isdigit() and len(raw) <= 18 else None
    return values


async def _form_context(request: Request, values: dict[str, Any], *, campaign: dict[str, Any] | None = None,
                        errors: dict[str, str] | None = None, notice: str = "") -> dict[str, Any]:
    actor = actor_of(request)
    try:
        templates = await template_service.list_templates(actor, limit=500)
    except PermissionDenied:  # a custom role without templates still writes its own content
        templates = []
    try:
        segment_choices = await segments.list_segments(actor)
    except PermissionDenied:  # a role without segments still writes the draft; the start names the gap
        segment_choices = []
    return {"values": values, "campaign": campaign, "segments": segment_choices, "templates": templates,
            "errors": errors or {}, "notice": notice, "base": _base(request)}


def _refusal_errors(request: Request, exc: RecordsRefusal) -> dict[str, str]:
    """The refusal's messages per field, in the page's language where the catalog has them."""
    return {k: _t(request, v) for k, v in exc.fields.items()} or {"form": _t(request, exc.message)}


async def _copy_template(request: Request, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], str]:
    """The form with the chosen template's subject and bodies in it (not saved yet)."""
    if values["template_id"] is None:
        return values, {"template_id": _t(request, "Choose a template to copy.")}, ""
    try:
        template = await template_service.get_template(actor_of(request), values["template_id"])
    except RecordsRefusal as exc:
        return values, {"template_id": _t(request, exc.message)}, ""
    copied = {**values, **{k: template.get(k, values[k]) for k in ("subject", "html_body", "text_body")}}
    return copied, {}, _t(request, "Copied from the template. Save to keep it.")


async def new_campaign_page(request: Request) -> Response:
    if request.method == "GET":
        values: dict[str, Any] = {name: "" for name in FORM_FIELDS} | {name: None for name in ID_FIELDS}
        raw_segment = request.query_params.get("segment_id", "")
        if raw_segment.isdigit() and len(raw_segment) <= 18:
            values["segment_id"] = int(raw_segment)
        return render(request, "campaigns/edit.html", await _form_context(request, values))
    form = await read_form(request)
    values = _form_values(form)
    if form_str(form, "action") == "use_template":
        values, errors, notice = await _copy_template(request, values)
        return render(request, "campaigns/edit.html", await _form_context(request, values, errors=errors,
                                                                           notice=notice))
    try:
        made = await campaigns.create_campaign(actor_of(request), CampaignIn(**values))
    except ValidationError as exc:
        errors = validation_fields(exc, request.state.caller.tenant.locale)
        return render(request, "campaigns/edit.html", await _form_context(request, values, errors=errors),
                      status=422)
    except RecordsRefusal as exc:
        return render(request, "campaigns/edit.html",
                      await _form_context(request, values, errors=_refusal_errors(request, exc)), status=exc.status)
    return RedirectResponse(f"{_base(request)}/campaigns/{made['id']}?done=created", status_code=303)


async def edit_campaign_page(request: Request) -> Response:
    campaign_id = _campaign_id(request)
    if campaign_id is None:
        return _error(request, 404, "There is no such campaign.")
    actor = actor_of(request)
    try:
        campaign = await campaigns.get_campaign(actor, campaign_id)
    except RecordsRefusal as exc:
        return _error(request, exc.status, exc.message)
    if campaign["status"] not in campaigns.EDITABLE:
        return RedirectResponse(f"{_base(request)}/campaigns/{campaign_id}", status_code=303)
    if request.method == "GET":
        values = {name: campaign[name] or "" for name in FORM_FIELDS} | {name: campaign[name] for name in ID_FIELDS}
        return render(request, "campaigns/edit.html", await _form_context(request, values, campaign=campaign))
    form = await read_form(request)
    values = _form_values(form)
    if form_str(form, "action") == "use_template":
        values, errors, notice = await _copy_template(request, values)
        return render(request, "campaigns/edit.html",
                      await _form_context(request, values, campaign=campaign, errors=errors, notice=notice))
    try:
        await campaigns.update_campaign(actor, campaign_id, CampaignPatch(**values))
    except ValidationError as exc:
        errors = validation_fields(exc, request.state.caller.tenant.locale)
        return render(request, "campaigns/edit.html",
                      await _form_context(request, values, campaign=campaign, errors=errors), status=422)
    except RecordsRefusal as exc:
        if exc.status == 404:
            return _error(request, 404, exc.message)
        return render(request, "campaigns/edit.html",
                      await _form_context(request, values, campaign=campaign, errors=_refusal_errors(request, exc)),
                      status=exc.status)
    return RedirectResponse(f"{_base(request)}/campaigns/{campaign_id}?done=saved", status_code=303)


# --- one campaign ----------------------------------------------------------------------------


def _chart_labels(request: Request) -> dict[str, str]:
    return {"sent": _t(request, "Sent"), "opened": _t(request, "Opened"), "clicked": _t(request, "Clicked"),
            "title": _t(request, "Sent, opened and clicked over time"), "empty": _t(request, "Nothing sent yet.")}


async def _detail(request: Request, campaign_id: int, *, problems: dict[str, str] | None = None,
                  problem_status: int = 0, schedule_value: str = "", status: int = 200) -> Response:
    actor = actor_of(request)
    try:
        campaign = await campaigns.get_campaign(actor, campaign_id)
    except RecordsRefusal as exc:
        return _error(request, exc.status, exc.message)
    segment: dict[str, Any] | None = None
    if campaign["segment_id"] is not None:
        try:
            segment = await segments.get_segment(actor, campaign["segment_id"])
        except (RecordsRefusal, PermissionDenied):  # a definition that no longer runs, a role without segments
            segment = None
    report: dict[str, Any] | None = None
    chart = ""
    if campaign["started_at"] is not None:
        async with acting_as(actor) as session:
            try:
                report = await campaign_report(session, campaign_id)
            except RecordsRefusal:  # deleted between the two reads
                report = None
        if report is not None:
            chart = report_chart_svg(report["series"], labels=_chart_labels(request), chart_id=f"chart-{campaign_id}")
    zone = workspace_zone(request)
    soon = (datetime.now(UTC) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    return render(request, "campaigns/detail.html", {
        "campaign": campaign, "segment": segment, "report": report, "chart": chart, "base": _base(request),
        "problems": problems or {}, "problem_status": problem_status,
        "schedule_value": schedule_value or local_input(campaign["scheduled_at"] or soon, zone),
        "schedule_min": local_input(datetime.now(UTC), zone), "zone_name": zone.key,
        "can_send": can_send(request), "can_edit": can_edit(request), "can_delete": can_delete(request),
        "polling": campaign["status"] == "sending", "poll_ms": POLL_MS, "refresh_seconds": NOSCRIPT_REFRESH_SECONDS,
        "notice": request.query_params.get("done", "")}, status=status)


async def campaign_page(request: Request) -> Response:
    campaign_id = _campaign_id(request)
    if campaign_id is None:
        return _error(request, 404, "There is no such campaign.")
    return await _detail(request, campaign_id)


async def campaign_progress(request: Request) -> Response:
    """Where the sending stands, as JSON, for the page's progress script (session-authenticated)."""
    campaign_id = _campaign_id(request)
    if campaign_id is None:
        return JSONResponse({"error": "There is no such campaign."}, status_code=404)
    try:
        campaign = await campaigns.get_campaign(actor_of(request), campaign_id)
    except RecordsRefusal as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    return JSONResponse({"id": campaign["id"], "status": campaign["status"],
                         "recipients_total": campaign["recipients_total"], "progress": campaign["progress"],
                         "paused_reason": campaign["paused_reason"]}, headers={"Cache-Control": "no-store"})


def _action_page(name: str) -> Any:
    """The POST of one button on a campaign's page: start, unschedule, pause, resume, cancel or delete."""
    actions = {"start": campaigns.start_campaign, "unschedule": campaigns.unschedule_campaign,
               "pause": campaigns.pause_campaign, "resume": campaigns.resume_campaign,
               "cancel": campaigns.cancel_campaign, "delete": campaigns.delete_campaign}

    async def post(request: Request) -> Response:
        await read_form(request)
        campaign_id = _campaign_id(request)
        if campaign_id is None:
            return _error(request, 404, "There is no such campaign.")
        try:
            await actions[name](actor_of(request), campaign_id)
        except RecordsRefusal as exc:
            if exc.status == 404:
                return _error(request, 404, exc.message)
            return await _detail(request, campaign_id, problems=_refusal_errors(request, exc),
                                 problem_status=exc.status, status=exc.status)
        if name == "delete":
            return RedirectResponse(f"{_base(request)}/campaigns?done=deleted", status_code=303)
        return RedirectResponse(f"{_base(request)}/campaigns/{campaign_id}?done={name}", status_code=303)

    post.__name__ = f"campaign_{name}"
    return post


async def schedule_page(request: Request) -> Response:
    form = await read_form(request)
    campaign_id = _campaign_id(request)
    if campaign_id is None:
        return _error(request, 404, "There is no such campaign.")
    raw = form_str(form, "at")
    at = parse_local(raw, workspace_zone(request))
    if at is None:
        return await _detail(request, campaign_id, problems={"at": _t(request, "Choose a date and time.")},
                             problem_status=422, schedule_value=raw, status=422)
    try:
        await campaigns.schedule_campaign(actor_of(request), campaign_id, at)
    except RecordsRefusal as exc:
        if exc.status == 404:
            return _error(request, 404, exc.message)
        # the time's own refusal says what to do ("choose a time in the future"), its field only where
        problems = {"at": _t(request, exc.message)} if "at" in exc.fields else _refusal_errors(request, exc)
        return await _detail(request, campaign_id, problems=problems, problem_status=exc.status,
                             schedule_value=raw, status=exc.status)
    return RedirectResponse(f"{_base(request)}/campaigns/{campaign_id}?done=schedule", status_code=303)


_ONE = "/t/{slug}/campaigns/{campaign_id:int}"
routes: list[Route] = [
    Route("/t/{slug}/campaigns", campaigns_page, methods=["GET"]),
    Route("/t/{slug}/campaigns/new", new_campaign_page, methods=["GET", "POST"]),
    Route(_ONE, campaign_page, methods=["GET"]),
    Route(_ONE + "/edit", edit_campaign_page, methods=["GET", "POST"]),
    Route(_ONE + "/progress", campaign_progress, methods=["GET"]),
    Route(_ONE + "/schedule", schedule_page, methods=["POST"]),
    *(Route(f"{_ONE}/{name}", _action_page(name), methods=["POST"])
      for name in ("start", "unschedule", "pause", "resume", "cancel", "delete")),
]
