"""Background exports in the browser: "Export in the background" on a list page leads to
/t/<slug>/exports/new (the list's query carried along; choose CSV or XLSX and the columns), whose
POST queues the export and goes to its page, /exports/<id>: a progress bar while it is queued or
running (with Cancel), then the download link. /exports lists the member's exports (owners and
admins: everyone's) with status, rows, size, expiry and download.

Everything works as plain GET and POST forms. While an export is queued or running, a small
script on its page polls /exports/<id>/progress (JSON, the page's own session; the /api/v1 routes
take API tokens only) to move the bar, and reloads the page when it is done; without JavaScript
a <meta refresh> inside <noscript> reloads the page instead. Permission checks happen in
kith.tenants.exports.jobs (a refusal is the 403 page).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData, QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from kith.platform.access.rules import PermissionDenied, permission_label
from kith.platform.access.session import acting_as
from kith.tenants.exports import jobs
from kith.tenants.records.kinds import record_kind
from kith.tenants.records.refusals import RecordsRefusal
from kith.tenants.records.views import load_members, visible_view
from kith.web.api.export_jobs import file_response, queue_from
from kith.web.backup_pages import size_text
from kith.web.edge import actor_of
from kith.web.errors import ApiError, title_for
from kith.web.forms import form_str, read_form, render

POLL_MS = 1500
NOSCRIPT_REFRESH_SECONDS = 3
LIST_PARAMS = ("f", "sort", "q", "columns", "view")


def _base(request: Request) -> str:
    return f"/t/{request.state.caller.tenant.slug}"


def _export_id(request: Request) -> int | None:
    raw = str(request.path_params["export_id"])
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


def _error(request: Request, status: int, message: str) -> Response:
    return render(request, "error.html", {"status": status, "title": title_for(status), "message": message},
                  status=status)


def _exportable(request: Request) -> list[str]:
    """The lists the caller's role may export (the pages offer these; the actions check)."""
    policy = request.state.policy
    return [t for t in jobs.OBJECT_TYPES if policy is None or policy.can(t, "export")]


async def _member_emails(request: Request) -> dict[int, str]:
    async with acting_as(actor_of(request)) as session:
        return {m.identity_id: m.email for m in await load_members(session)}


# --- the list ------------------------------------------------------------------------------


async def exports_page(request: Request) -> Response:
    items = await jobs.list_exports(actor_of(request))
    everyone = actor_of(request).role in jobs.KEEPERS
    return render(request, "exports/list.html", {
        "items": items, "base": _base(request), "size_text": size_text, "everyone": everyone,
        "members": await _member_emails(request) if items and everyone else {}})


# --- a new export --------------------------------------------------------------------------


def _list_pairs(params: QueryParams | FormData) -> list[tuple[str, str]]:
    """The list's own query (filters, sort, search, columns, saved view), as given."""
    return [(name, str(value)) for name in LIST_PARAMS for value in params.getlist(name) if str(value)]


async def _new_context(request: Request, object_type: str, pairs: list[tuple[str, str]], **extra: Any
                       ) -> dict[str, Any]:
    kind = record_kind(object_type)
    view_name = ""
    view_raw = next((v for k, v in pairs if k == "view"), "")
    if view_raw.isdigit() and len(view_raw) < 19:
        async with acting_as(actor_of(request)) as session:
            try:
                view_name = str((await visible_view(session, int(view_raw)))["name"])
            except RecordsRefusal:
                view_name = ""
    return {"object_type": object_type, "kind": kind, "pairs": pairs, "view_name": view_name,
            "filters": [v for k, v in pairs if k == "f"], "search": next((v for k, v in pairs if k == "q"), ""),
            "list_url": f"{_base(request)}/{kind.path if kind else object_type}"
                        + ("?" + urlencode(pairs) if pairs else ""),
            "base": _base(request), "format": "csv", "all_columns": False, "errors": {}, **extra}


def _object_type(value: str) -> str | None:
    return value if value in jobs.OBJECT_TYPES and record_kind(value) is not None else None


async def new_export_page(request: Request) -> Response:
    if request.method == "GET":
        object_type = _object_type(request.query_params.get("type", ""))
        if object_type is None:
            return _error(request, 404, "There is no such list to export.")
        if object_type not in _exportable(request):
            raise PermissionDenied(request.state.policy.role.name, permission_label(object_type, "export"))
        return render(request, "exports/new.html",
                      await _new_context(request, object_type, _list_pairs(request.query_params)))
    form = await read_form(request)
    object_type = _object_type(form_str(form, "object_type"))
    if object_type is None:
        return _error(request, 404, "There is no such list to export.")
    all_columns = form_str(form, "columns_choice") == "all"
    pairs = [(k, v) for k, v in _list_pairs(form) if not (all_columns and k == "columns")]
    fmt = form_str(form, "format") or "csv"
    asked = [*pairs, ("format", fmt), *([("columns", "all")] if all_columns else [])]
    try:
        item = await queue_from(request, object_type, QueryParams(asked))
    except ApiError as exc:  # PermissionDenied goes to the app's 403 page
        if exc.status == 404:
            return _error(request, 404, exc.message)
        context = await _new_context(request, object_type, _list_pairs(form), format=fmt, all_columns=all_columns,
                                     errors={"form": exc.message})
        return render(request, "exports/new.html", context, status=exc.status)
    return RedirectResponse(f"{_base(request)}/exports/{item['id']}", status_code=303)


# --- one export ----------------------------------------------------------------------------


async def export_page(request: Request) -> Response:
    export_id = _export_id(request)
    if export_id is None:
        return _error(request, 404, jobs.NOT_FOUND)
    try:
        item = await jobs.get_export(actor_of(request), export_id)
    except RecordsRefusal as exc:
        return _error(request, exc.status, exc.message)
    return _detail(request, item)


def _detail(request: Request, item: dict[str, Any], *, errors: dict[str, str] | None = None,
            status: int = 200) -> Response:
    return render(request, "exports/detail.html", {
        "item": item, "base": _base(request), "size_text": size_text, "active": item["status"] in jobs.ACTIVE,
        "kind": record_kind(item["object_type"]), "notice": request.query_params.get("done", ""),
        "errors": errors or {}, "poll_ms": POLL_MS, "refresh_seconds": NOSCRIPT_REFRESH_SECONDS}, status=status)


async def export_progress(request: Request) -> Response:
    """Where the export stands, as JSON, for the page's progress script (session-authenticated)."""
    export_id = _export_id(request)
    if export_id is None:
        return JSONResponse({"error": jobs.NOT_FOUND}, status_code=404)
    try:
        item = await jobs.get_export(actor_of(request), export_id)
    except RecordsRefusal as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    return JSONResponse({k: item[k] for k in ("id", "status", "rows_done", "rows_total", "progress_percent",
                                              "stalled", "cancel_requested")},
                        headers={"Cache-Control": "no-store"})


async def cancel_page(request: Request) -> Response:
    await read_form(request)
    export_id = _export_id(request)
    if export_id is None:
        return _error(request, 404, jobs.NOT_FOUND)
    try:
        await jobs.cancel_export(actor_of(request), export_id)
    except RecordsRefusal as exc:
        if exc.status == 404:
            return _error(request, 404, exc.message)
        item = await jobs.get_export(actor_of(request), export_id)
        return _detail(request, item, errors={"form": exc.message}, status=exc.status)
    return RedirectResponse(f"{_base(request)}/exports/{export_id}?done=cancel", status_code=303)


async def download(request: Request) -> Response:
    export_id = _export_id(request)
    if export_id is None:
        return _error(request, 404, jobs.NOT_FOUND)
    try:
        return await file_response(request, export_id)
    except ApiError as exc:
        return _error(request, exc.status, exc.message)


routes: list[Route] = [
    Route("/t/{slug}/exports", exports_page, methods=["GET"]),
    Route("/t/{slug}/exports/new", new_export_page, methods=["GET", "POST"]),
    Route("/t/{slug}/exports/{export_id}", export_page, methods=["GET"]),
    Route("/t/{slug}/exports/{export_id}/progress", export_progress, methods=["GET"]),
    Route("/t/{slug}/exports/{export_id}/cancel", cancel_page, methods=["POST"]),
    Route("/t/{slug}/exports/{export_id}/file", download, methods=["GET"]),
]
