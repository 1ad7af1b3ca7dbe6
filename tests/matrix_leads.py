"""Role-matrix inputs of the leads and pool domain (see tests/test_role_matrix.py): sample bodies and
a fresh lead for lead_id. company_id (the company claim and return endpoints) comes from the companies
domain's matrix module; without one, a company owned by the member is made here."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kith.platform.db import tenant_scope

from .conftest import Workspace
from .factories import Member

_n = itertools.count(1)

SAMPLE_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "LeadIn": lambda: {"name": f"Matrix lead {next(_n)}", "email": "matrix.lead@example.com"},
    "LeadPatch": lambda: {"status": "contacted"},
    "ConvertIn": lambda: {"create_deal": True, "deal_amount": "250.00"},
    "ReleaseIn": lambda: {"reason": "checked by the role matrix"},
    "PoolRulesIn": lambda: {"reclaim_days": None, "claim_limits": {}},
}


async def path_values(ws: Workspace, member: Member, owner_headers: dict[str, str]) -> dict[str, str]:
    """A lead owned by `member` (with a company name, so converting makes a company too)."""
    async with tenant_scope(ws.tenant_id) as tx:
        lead = await tx.execute_query_dict(
            "INSERT INTO leads (name, company_name, email, owner_id, created_by_id)"
            " VALUES ($1, 'Matrix Trading', 'matrix@example.com', $2, $2) RETURNING id",
            [f"Matrix lead {next(_n)}", member.identity_id])
        values = {"lead_id": str(lead[0]["id"])}
        if not Path(__file__).with_name("matrix_companies.py").exists():
            company = await tx.execute_query_dict(
                "INSERT INTO companies (name, owner_id, created_by_id) VALUES ('Matrix company', $1, $1) RETURNING id",
                [member.identity_id])
            values["company_id"] = str(company[0]["id"])
    return values
