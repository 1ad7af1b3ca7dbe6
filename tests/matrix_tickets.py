"""Role-matrix inputs of the service domain (see tests/test_role_matrix.py): sample bodies and a fresh
ticket owned by the member for ticket_id."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from kith.platform.db import tenant_scope

from .conftest import Workspace
from .factories import Member

_n = itertools.count(1)
_HOURS = {"first_response_hours": 4, "resolution_hours": 24}

SAMPLE_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "TicketIn": lambda: {"subject": f"Matrix ticket {next(_n)}", "priority": "high"},
    "TicketPatch": lambda: {"status": "pending"},
    "MessageIn": lambda: {"kind": "note", "body": "checked by the role matrix"},
    "SlaIn": lambda: {p: dict(_HOURS) for p in ("urgent", "high", "normal", "low")},
}

# tickets have no name: the generic bulk edit's sample changes their tags instead
REQUESTS: dict[str, Callable[[], dict[str, Any]]] = {
    "POST /tickets/bulk-update": lambda: {"json": {"ids": [], "changes": {"tags": ["matrix"]}}},
}


async def path_values(ws: Workspace, member: Member, owner_headers: dict[str, str]) -> dict[str, str]:
    """A ticket assigned to `member`."""
    async with tenant_scope(ws.tenant_id) as tx:
        ticket = await tx.execute_query_dict(
            "INSERT INTO tickets (subject, owner_id, created_by_id, first_response_due_at, resolution_due_at)"
            " VALUES ($1, $2, $2, now() + interval '8 hours', now() + interval '72 hours') RETURNING id",
            [f"Matrix ticket {next(_n)}", member.identity_id])
    return {"ticket_id": str(ticket[0]["id"])}
