"""Role-matrix samples for global search, duplicates and merges (see tests/test_role_matrix.py).

A merge body names the record merged away, so each role's walk gets fresh ones: `path_values`
makes them (owned by the member) just before that role's calls, and the sample bodies read them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kith.platform.db import tenant_scope

from .conftest import Workspace
from .factories import Member

# the records the current role's merge calls fold into the path's contact and company
_OTHER: dict[str, int] = {}

SAMPLE_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "ContactMergeIn": lambda: {"other_id": _OTHER["contacts"], "fields": {"notes": "other"}},
    "CompanyMergeIn": lambda: {"other_id": _OTHER["companies"], "fields": {}},
}


async def path_values(ws: Workspace, member: Member, owner_headers: dict[str, str]) -> dict[str, str]:
    """No path parameters of its own (contact_id and company_id come from their domains): a fresh
    contact and company owned by `member`, for the merge bodies."""
    async with tenant_scope(ws.tenant_id) as tx:
        contact = await tx.execute_query_dict(
            "INSERT INTO contacts (name, notes, created_by_id, owner_id) VALUES ('Matrix duplicate', 'merged', $1, $1)"
            " RETURNING id", [member.identity_id])
        company = await tx.execute_query_dict(
            "INSERT INTO companies (name, owner_id, created_by_id) VALUES ('Matrix duplicate company', $1, $1)"
            " RETURNING id", [member.identity_id])
    _OTHER["contacts"] = int(contact[0]["id"])
    _OTHER["companies"] = int(company[0]["id"])
    return {}
