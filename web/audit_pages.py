"""The audit viewer at /t/<slug>/settings/audit: filters, keyset pages, CSV / JSON-lines
exports (each export is itself audited) and the retention setting. Only roles with the
workspace permission "manage_settings" (owners and admins) get in; the check runs below
the web layer, in the same transaction that reads the log."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from kith.platform.access.session import acting_as
from kith.platform.audit.entries import AuditFilter, read_entries
from kith.platform.audit.export import FORMATS, start_export, stream_export
from kith.platform.audit.retention import (
    MAX_RETENTION_DAYS,
    MIN_RETENTION_DAYS,
    RetentionError,
    retention_days,
    set_retention_days,
)
from kith.web.edge import actor_of
from kith.web.forms import form_str, read_form, render

PAGE_SIZE = 50
FILTER_FIELDS = ("actor", "object_type", "object_id", "action", "since", "until")


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip()) if text.strip() else None
    except ValueError:
        return None


def filter_from(values: Mapping[str, str]) -> tuple[AuditFilter, dict[str, str], dict[str, str]]:
    """The filter in a query string or form, the raw values to show again, and errors per field.

    Dates are whole days in UTC; `until` includes its day.
    """
    raw = {k: str(values.get(k, ""))[:200].strip() for k in FILTER_FIELDS}
    errors: dict[str, str] = {}
    since, until = _day(raw["since"]), _day(raw["until"])
    for name, parsed in (("since", since), ("until", until)):
        if raw[name] and parsed is None:
            errors[name] = "Use a date such as 2026-01-31."
    f = AuditFilter(
        actor=raw["actor"], object_type=raw["object_type"], object_id=raw["object_id"], action=raw["action"],
        since=datetime.combine(since, time(), UTC) if since else None,
        until=datetime.combine(until + timedelta(days=1), time(), UTC) if until else None,
    )
    return f, raw, errors


def _before(request: Request) -> int | None:
    text = request.query_params.get("before", "")
    return int(text) if text.isdigit() else None


async def _page(request: Request, *, status: int = 200, retention_error: str = "",
                retention_value: str = "") -> Response:
    actor = actor_of(request)
    f, raw, errors = filter_from(request.query_params)
    async with acting_as(actor) as session:
        page = await read_entries(session, f, before_seq=_before(request), limit=PAGE_SIZE)
        days = await retention_days(session.tx)
    query = {k: v for k, v in raw.items() if v}
    context: dict[str, Any] = {
        "page": page, "filters": raw, "errors": errors, "query": query, "formats": list(FORMATS),
        "retention_days": retention_value or days, "retention_error": retention_error,
        "min_days": MIN_RETENTION_DAYS, "max_days": MAX_RETENTION_DAYS,
        "saved": request.query_params.get("saved") == "1",
    }
    return render(request, "audit/list.html", context, status=status)


async def audit_log(request: Request) -> Response:
    return await _page(request)


async def audit_export(request: Request) -> Response:
    form = await read_form(request)
    fmt = form_str(form, "format")
    f, _, errors = filter_from({k: form_str(form, k) for k in FILTER_FIELDS})
    if fmt not in FORMATS or errors:
        return await _page(request, status=422)
    actor = actor_of(request)
    through = await start_export(actor, f, fmt)
    slug = request.state.caller.tenant.slug
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        stream_export(actor, f, fmt, through),
        media_type=FORMATS[fmt],
        headers={"Content-Disposition": f'attachment; filename="audit-{slug}-{stamp}.{fmt}"',
                 "Cache-Control": "no-store"},
    )


async def audit_retention(request: Request) -> Response:
    form = await read_form(request)
    text = form_str(form, "retention_days").strip()
    actor = actor_of(request)
    error = ""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        try:
            await set_retention_days(session.tx, actor, int(text) if text.isdigit() else -1)
        except RetentionError as exc:
            error = str(exc)
    if error:
        return await _page(request, status=422, retention_error=error, retention_value=text)
    return RedirectResponse(f"/t/{request.state.caller.tenant.slug}/settings/audit?saved=1", status_code=303)


routes = [
    Route("/t/{slug}/settings/audit", audit_log, methods=["GET"]),
    Route("/t/{slug}/settings/audit/export", audit_export, methods=["POST"]),
    Route("/t/{slug}/settings/audit/retention", audit_retention, methods=["POST"]),
]
