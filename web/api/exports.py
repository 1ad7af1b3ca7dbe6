"""Exports of the big lists (companies, contacts, leads, deals) as CSV or XLSX files.

GET /exports/<object type>?format=csv|xlsx takes the list's query string (f, sort, q, columns;
columns=all for every field the caller may see, custom fields included) or a saved view
(view=<id>), and streams the file. Declared once per object type, so each endpoint names its
own permission ('<object type>: export') for the OpenAPI document and the role matrix. The
paths start with /exports/ so they never meet /<object type>/{id} routes.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from kith.tenants.exports.records import ALL_COLUMNS
from kith.tenants.exports.stream import open_export
from kith.tenants.records.listing import ListError, parse_list_query
from kith.tenants.records.refusals import RecordsRefusal
from kith.web.api.lists import list_error
from kith.web.api.registry import QueryParam, endpoint
from kith.web.edge import actor_of
from kith.web.errors import ApiError
from kith.web.i18n import gettext_for

EXPORT_TYPES = ("companies", "contacts", "leads", "deals", "tickets")
EXPORT_QUERY = (
    QueryParam("format", "csv (UTF-8 with BOM, the default) or xlsx."),
    QueryParam("view", "A saved view's id: its filters, sort, search and columns.", "integer"),
    QueryParam("q", "Text to find, as on the list."),
    QueryParam("f", "A filter field:operator:value, repeatable, as on the list."),
    QueryParam("sort", "A field to sort on, - for descending."),
    QueryParam("columns", "Fields to export, comma-separated; all for every field you may see."),
)


async def export_response(request: Request, object_type: str) -> Response:
    """The export of `object_type` the request's query string asks for, as a streamed attachment.
    Raises ApiError (404, 422) and PermissionDenied (403) before anything streams."""
    params = request.query_params
    fmt = (params.get("format") or "csv").lower()
    view_raw = params.get("view") or ""
    if view_raw and not view_raw.isdigit():
        raise ApiError(422, "invalid_input", "view must be a saved view's id.",
                       fields={"view": "view must be a saved view's id."})
    try:
        query = parse_list_query(params)
    except ListError as exc:
        raise list_error(exc) from None
    all_columns = query.columns == [ALL_COLUMNS]
    if all_columns:
        query.columns = None
    caller = request.state.caller
    locale = str(caller.tenant.locale)
    try:
        export = await open_export(actor_of(request), object_type, query, fmt=fmt,
                                   view_id=int(view_raw) if view_raw else None, all_columns=all_columns,
                                   label=lambda text: gettext_for(locale, text),
                                   time_zone=str(caller.tenant.time_zone or "UTC"))
    except ListError as exc:
        raise list_error(exc) from None
    except RecordsRefusal as exc:
        raise ApiError(exc.status, exc.code, exc.message, fields=exc.fields) from None
    return StreamingResponse(export.chunks, media_type=export.media_type, headers={
        "Content-Disposition": f'attachment; filename="{export.filename}"',
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    })


def _export_endpoint(object_type: str) -> None:
    async def export(request: Request, body: None) -> Response:
        return await export_response(request, object_type)

    export.__name__ = f"export_{object_type}"
    endpoint("GET", f"/exports/{object_type}", summary=f"Export {object_type} (a list or a saved view) as CSV or XLSX",
             tag=object_type, permission=(object_type, "export"), query=EXPORT_QUERY,
             errors=(401, 403, 404, 422))(export)


for _object_type in EXPORT_TYPES:
    _export_endpoint(_object_type)
