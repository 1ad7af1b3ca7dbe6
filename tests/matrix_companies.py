"""Role-matrix samples for the companies endpoints (see tests/test_role_matrix.py)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from kith.platform.db import tenant_scope

from .conftest import Workspace
from .factories import Member

_n = itertools.count(1)

SAMPLE_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "CompanyIn": lambda: {"name": f"Matrix company {next(_n)}", "domain": "matrix.example.com"},
    "CompanyPatch": lambda: {"notes": "checked by the role matrix"},
}


async def path_values(ws: Workspace, member: Member, owner_headers: dict[str, str]) -> dict[str, str]:
    """A fresh company without contacts, deals or orders, owned by `member`."""
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "INSERT INTO companies (name, owner_id, created_by_id) VALUES ('Matrix company', $1, $1) RETURNING id",
            [member.identity_id])
    return {"company_id": str(rows[0]["id"])}
