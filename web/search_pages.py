"""Global search, possible duplicates and the merge screen in the browser.

Permission checks, record scopes and hidden fields are applied by the queries and actions in
kith.tenants.search; a refusal surfaces as the 403 page, a record out of reach as a 404.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.tenants.search import duplicates, merge, search
from kith.tenants.search.records import KINDS, RecordNotFound
from kith.tenants.search.text import clean_query
from kith.web.edge import actor_of
from kith.web.forms import form_str, read_form, render
from kith.web.i18n import gettext_for

NOT_FOUND = {"status": 404, "message": "There is no such page."}
NO_SUCH_RECORD = {"status": 404, "message": "There is no such record."}


def _base(request: Request) -> str:
    return f"/t/{request.state.caller.tenant.slug}"


def _kind(request: Request) -> str | None:
    object_type = str(request.path_params["object_type"])
    return object_type if object_type in KINDS else None


def _ids(request: Request) -> tuple[int, int] | None:
    kept, other = str(request.path_params["kept_id"]), str(request.path_params["other_id"])
    return (int(kept), int(other)) if kept.isdigit() and other.isdigit() else None


async def search_page(request: Request) -> Response:
    q = clean_query(request.query_params.get("q", ""))
    only = request.query_params.get("type", "")
    types = only if only in search.TYPES else None
    results = await search.search(actor_of(request), q, types=types, limit=search.PAGE_LIMIT)
    return render(request, "search/results.html", {"q": q, "results": results, "only": types or ""})


async def duplicates_page(request: Request) -> Response:
    object_type = _kind(request)
    if object_type is None:
        return render(request, "error.html", NOT_FOUND, status=404)
    reason = request.query_params.get("reason") or None
    try:
        page = await duplicates.duplicate_groups(actor_of(request), object_type, reason,
                                                 cursor=request.query_params.get("cursor") or None)
    except duplicates.DuplicateInputError:
        page = await duplicates.duplicate_groups(actor_of(request), object_type)
    return render(request, "search/duplicates.html", {"page": page, "object_type": object_type,
                                                      "summary": KINDS[object_type].summary,
                                                      "cursor": request.query_params.get("cursor")})


async def merge_page(request: Request) -> Response:
    object_type, ids = _kind(request), _ids(request)
    if object_type is None or ids is None:
        return render(request, "error.html", NOT_FOUND, status=404)
    kept_id, other_id = ids
    actor = actor_of(request)
    form = await read_form(request) if request.method == "POST" else None
    try:
        preview = await merge.merge_preview(actor, object_type, kept_id, other_id)
    except RecordNotFound:
        return render(request, "error.html", NO_SUCH_RECORD, status=404)
    except merge.MergeRefused as exc:
        message = gettext_for(request.state.caller.tenant.locale, "A record cannot be merged with itself.")
        return render(request, "error.html", {"status": 422, "message": message or exc.message}, status=422)
    context: dict[str, Any] = {"preview": preview, "object_type": object_type, "error": ""}
    if form is None:
        return render(request, "search/merge.html", context)
    choices = {f: form_str(form, f"field_{f}") or "kept" for f in preview.fields}
    context["preview"].choices = {f: "other" if c == "other" else "kept" for f, c in choices.items()}
    if form_str(form, "confirm") != "yes":
        context["error"] = "confirm"
        return render(request, "search/merge.html", context, status=422)
    try:
        outcome = await merge.merge_records(actor, object_type, kept_id, other_id, choices)
    except RecordNotFound:
        return render(request, "error.html", NO_SUCH_RECORD, status=404)
    except merge.MergeRefused as exc:
        context["error"] = exc.message
        return render(request, "search/merge.html", context, status=422)
    return RedirectResponse(f"{_base(request)}/duplicates/{object_type}?merged={outcome.kept_id}", status_code=303)


routes = [
    Route("/t/{slug}/search", search_page),
    Route("/t/{slug}/duplicates/{object_type}", duplicates_page),
    Route("/t/{slug}/merge/{object_type}/{kept_id}/{other_id}", merge_page, methods=["GET", "POST"]),
]
