"""Background exports in the API: queue an export of a big list (POST /exports/jobs/<object type>,
with the query string of GET /exports/<object type>), follow its progress, cancel it, and
download its file once done.

POST is declared once per object type, so each names its own permission ('<object type>:
export'); the routes of one export declare 'contacts: export', as the built-in roles that export
one list export all four, and a call about an export of deals is refused naming 'deals: export'.
An export is reached by the member who asked for it and by owners and admins (the same 404
otherwise). Handlers parse the request and call one action of kith.tenants.exports.jobs.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from kith.tenants.exports import jobs
from kith.tenants.exports.records import ALL_COLUMNS
from kith.tenants.records.listing import ListError, ListQuery, parse_list_query
from kith.tenants.records.refusals import RecordsRefusal
from kith.web.api.exports import EXPORT_QUERY
from kith.web.api.lists import list_error
from kith.web.api.registry import endpoint
from kith.web.edge import actor_of
from kith.web.errors import ApiError
from kith.web.i18n import gettext_for

T = TypeVar("T")
TAG = "exports"
PERMISSION = ("contacts", "export")


class ExportQueryOut(BaseModel):
    filters: list[list[str]] = Field(description="[field, operator, value] triples, as f=field:operator:value.")
    sort: str | None
    q: str
    columns: list[str] | None = Field(description="The columns asked for (every visible field for columns=all); "
                                                  "null: the list's default columns.")


class ExportJobOut(BaseModel):
    id: int
    object_type: Literal["companies", "contacts", "leads", "deals", "tickets"]
    format: Literal["csv", "xlsx"]
    status: Literal["queued", "running", "done", "failed", "cancelled"] = Field(
        description="queued -> running -> done | failed | cancelled.")
    query: ExportQueryOut = Field(description="The list query exported (a saved view's own, when view_id is set).")
    view_id: int | None
    all_columns: bool
    columns: list[str] = Field(description="The file's columns: list fields, custom.<key> for custom fields.")
    labels: list[str] = Field(description="The file's header row, in the workspace's language.")
    rows_done: int = Field(description="Rows written so far (all of them once done).")
    rows_total: int | None = Field(description="An estimate when queued (exact for small lists); the rows written "
                                               "once done.")
    progress_percent: int | None = Field(description="100 once done; while queued or running, when an estimate "
                                                     "is known.")
    stalled: bool = Field(description="Running, but its worker stopped reporting; cancel it and export again.")
    cancel_requested: bool
    file_name: str = Field(description="The name the file downloads as.")
    file_size: int | None = Field(description="Bytes, once done.")
    has_file: bool = Field(description="GET /exports/jobs/{export_id}/file downloads it.")
    error: str = Field(description="Why it failed.")
    created_by_id: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime = Field(description="When the export and its file are deleted (KITH_EXPORT_KEEP_DAYS).")


class ExportJobList(BaseModel):
    items: list[ExportJobOut] = Field(description="Newest first: yours (owners and admins: everyone's), of the "
                                                  "lists you may export.")


async def _run(action: Awaitable[T]) -> T:
    """Await an exports action, turning its refusals into API errors (PermissionDenied is the app's
    403 answer, naming the permission)."""
    try:
        return await action
    except ListError as exc:
        raise list_error(exc) from None
    except RecordsRefusal as exc:
        raise ApiError(exc.status, exc.code, exc.message, fields=exc.fields) from None


def export_out(item: dict[str, Any]) -> ExportJobOut:
    return ExportJobOut.model_validate({k: v for k, v in item.items() if k in ExportJobOut.model_fields})


def _export_id(request: Request) -> int:
    raw = str(request.path_params["export_id"])
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(404, "not_found", jobs.NOT_FOUND)
    return int(raw)


def export_request(params: QueryParams | Any) -> tuple[str, ListQuery, int | None, bool]:
    """The format, list query, saved view and all-columns choice of an export request (the query
    string of GET /exports/<type>, or a page's form). Raises ApiError 422 naming the bad part."""
    fmt = str(params.get("format") or "csv").lower()
    view_raw = str(params.get("view") or "")
    if view_raw and (not view_raw.isdigit() or len(view_raw) > 18):
        raise ApiError(422, "invalid_input", "view must be a saved view's id.",
                       fields={"view": "view must be a saved view's id."})
    try:
        query = parse_list_query(params)
    except ListError as exc:
        raise list_error(exc) from None
    all_columns = query.columns == [ALL_COLUMNS]
    if all_columns:
        query.columns = None
    return fmt, query, int(view_raw) if view_raw else None, all_columns


async def queue_from(request: Request, object_type: str, params: QueryParams | Any) -> dict[str, Any]:
    """Queue the export `params` ask for, as the caller, with headers in the workspace's language."""
    fmt, query, view_id, all_columns = export_request(params)
    tenant = request.state.caller.tenant
    locale = str(tenant.locale)
    return await _run(jobs.queue_export(
        actor_of(request), object_type, query, fmt=fmt, view_id=view_id, all_columns=all_columns,
        label=lambda text: gettext_for(locale, text), time_zone=str(tenant.time_zone or "UTC")))


def _queue_endpoint(object_type: str) -> None:
    async def queue(request: Request, body: None) -> BaseModel:
        return export_out(await queue_from(request, object_type, request.query_params))

    queue.__name__ = f"queue_export_{object_type}"
    endpoint("POST", f"/exports/jobs/{object_type}",
             summary=f"Export {object_type} (a list or a saved view) as CSV or XLSX in the background; follow it "
                     "with GET /exports/jobs/{export_id}", tag=TAG, permission=(object_type, "export"),
             query=EXPORT_QUERY, response=ExportJobOut, status=202, errors=(401, 403, 404, 422))(queue)


for _object_type in jobs.OBJECT_TYPES:
    _queue_endpoint(_object_type)


@endpoint("GET", "/exports/jobs", summary="Your latest background exports (owners and admins: everyone's)",
          tag=TAG, permission=PERMISSION, response=ExportJobList, errors=(401, 403))
async def list_export_jobs(request: Request, body: None) -> BaseModel:
    items = await _run(jobs.list_exports(actor_of(request)))
    return ExportJobList(items=[export_out(i) for i in items])


@endpoint("GET", "/exports/jobs/{export_id}", summary="A background export: its progress, outcome and file",
          tag=TAG, permission=PERMISSION, response=ExportJobOut, errors=(401, 403, 404))
async def get_export_job(request: Request, body: None) -> BaseModel:
    return export_out(await _run(jobs.get_export(actor_of(request), _export_id(request))))


@endpoint("POST", "/exports/jobs/{export_id}/cancel",
          summary="Cancel a queued or running background export; no file is kept",
          tag=TAG, permission=PERMISSION, response=ExportJobOut, errors=(401, 403, 404, 409))
async def cancel_export_job(request: Request, body: None) -> BaseModel:
    return export_out(await _run(jobs.cancel_export(actor_of(request), _export_id(request))))


@endpoint("GET", "/exports/jobs/{export_id}/file",
          summary="Download a finished background export's file (CSV: UTF-8 with BOM; or XLSX)",
          tag=TAG, permission=PERMISSION, errors=(401, 403, 404, 409))
async def export_job_file(request: Request, body: None) -> Response:
    return await file_response(request, _export_id(request))


async def file_response(request: Request, export_id: int) -> Response:
    """The export's file as a download, after checking the caller may have it (pages and API)."""
    found = await _run(jobs.export_download(actor_of(request), export_id))
    return FileResponse(found.path, media_type=found.media_type, filename=found.file_name,
                        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
