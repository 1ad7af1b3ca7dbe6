"""The audit API: GET /api/v1/audit, filtered, newest first, keyset-paginated.

Needs the workspace permission "manage_settings" (owners and admins); the check runs below
the web layer, in the transaction that reads the log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from starlette.requests import Request

from kith.platform.access.session import acting_as
from kith.platform.audit.entries import MAX_PAGE, read_entries
from kith.web.api.registry import QueryParam, endpoint
from kith.web.audit_pages import filter_from
from kith.web.edge import actor_of
from kith.web.errors import ApiError


class AuditEntryOut(BaseModel):
    """One audit entry: who did what to which object, when, from where, and the chain's hashes."""

    seq: int = Field(description="Position in the workspace's chain, gapless from 1.")
    at: datetime
    actor_kind: str = Field(description="user, token, job, operator, system, or anonymous.")
    actor_id: str = Field(description="The person's identity id, when there is one.")
    token_id: int | None = None
    actor_label: str = Field(description="What an auditor reads: an email, a job name.")
    ip: str
    user_agent: str
    request_id: str
    object_type: str
    object_id: str
    action: str = Field(description="e.g. contact.update, login.success, audit.export.")
    diff: Any = Field(default=None, description='Changes as {"field": [before, after]}, or event details.')
    prev_hash: str
    hash: str
    key_id: str


class AuditPageOut(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next, older page; null at the end.")


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name, str(default))
    if not raw.isdigit() or not low <= int(raw) <= high:
        message = f"{name} must be a whole number from {low} to {high}."
        raise ApiError(422, "invalid_input", message, fields={name: message})
    return int(raw)


@endpoint(
    "GET", "/audit", summary="List audit entries, newest first, with filters and keyset pagination",
    permission=("workspace", "manage_settings"), response=AuditPageOut, errors=(401, 403, 422), tag="audit",
    query=(
        QueryParam("actor", "Email (or part of one) or identity id of who acted."),
        QueryParam("action", "An action, or its start: 'contact' matches 'contact.update'."),
        QueryParam("object_type", "e.g. contacts."),
        QueryParam("object_id", "The object's id."),
        QueryParam("since", "First day included, YYYY-MM-DD (UTC)."),
        QueryParam("until", "Last day included, YYYY-MM-DD (UTC)."),
        QueryParam("limit", f"Page size, 1-{MAX_PAGE} (default 50).", "integer"),
        QueryParam("cursor", "next_cursor of the previous page."),
    ),
)
async def list_audit_entries(request: Request, body: None) -> BaseModel:
    f, _, errors = filter_from(request.query_params)
    if errors:
        raise ApiError(422, "invalid_input", "Some filters are not valid.", fields=errors)
    limit = _int_param(request, "limit", 50, 1, MAX_PAGE)
    cursor = request.query_params.get("cursor")
    if cursor is not None and not cursor.isdigit():
        raise ApiError(422, "invalid_input", "cursor is not valid.", fields={"cursor": "Not a cursor from this API."})
    async with acting_as(actor_of(request)) as session:
        page = await read_entries(session, f, before_seq=int(cursor) if cursor else None, limit=limit)
    return AuditPageOut(
        items=[AuditEntryOut(**e.as_json()) for e in page.items],
        next_cursor=str(page.next_before) if page.next_before is not None else None,
    )
