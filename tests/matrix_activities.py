"""Role-matrix fixtures of the activities domain (activities, timelines, tasks), and the helper
the activity tests use to make CRM records directly in a tenant's schema."""

from __future__ import annotations

from typing import Any

from kith.platform.db import tenant_scope

from .conftest import Workspace
from .factories import Member

# The record the current role's walk logs its sample activity against: set by path_values,
# which the matrix calls right before walking the endpoints as that role.
_CURRENT: dict[str, int] = {}


async def make_records(ws: Workspace, owner_id: int | None, name: str = "Matrix") -> dict[str, int]:
    """A company, a contact at it, a lead and a deal (with that company and contact), owned by
    `owner_id`; returns their ids as company_id, contact_id, lead_id, deal_id."""
    async with tenant_scope(ws.tenant_id) as tx:
        company = await tx.execute_query_dict(
            "INSERT INTO companies (name, owner_id, created_by_id) VALUES ($1, $2, $2) RETURNING id",
            [f"{name} company", owner_id])
        contact = await tx.execute_query_dict(
            "INSERT INTO contacts (name, company_id, owner_id, created_by_id) VALUES ($1, $2, $3, $3) RETURNING id",
            [f"{name} contact", company[0]["id"], owner_id])
        lead = await tx.execute_query_dict(
            "INSERT INTO leads (name, owner_id, created_by_id) VALUES ($1, $2, $2) RETURNING id",
            [f"{name} lead", owner_id])
        stage = await tx.execute_query_dict(
            "SELECT s.id, s.pipeline_id FROM stages s JOIN pipelines p ON p.id = s.pipeline_id"
            " WHERE p.is_default ORDER BY s.position LIMIT 1")
        deal = await tx.execute_query_dict(
            "INSERT INTO deals (name, amount, currency, pipeline_id, stage_id, company_id, contact_id, owner_id,"
            " created_by_id) VALUES ($1, 1000, 'CNY', $2, $3, $4, $5, $6, $6) RETURNING id",
            [f"{name} deal", stage[0]["pipeline_id"], stage[0]["id"], company[0]["id"], contact[0]["id"], owner_id])
    return {"company_id": int(company[0]["id"]), "contact_id": int(contact[0]["id"]),
            "lead_id": int(lead[0]["id"]), "deal_id": int(deal[0]["id"])}


def _activity() -> dict[str, Any]:
    return {"kind": "call", "subject": "Matrix call", "duration_minutes": 5, "company_id": _CURRENT["company_id"]}


SAMPLE_BODIES = {
    "ActivityIn": _activity,
    "ActivityPatch": lambda: {"subject": "Matrix call, changed"},
    "TaskIn": lambda: {"title": "Matrix task", "due_at": "2030-01-02T09:00:00+08:00"},
    "TaskPatch": lambda: {"notes": "checked by the role matrix"},
}


async def path_values(ws: Workspace, member: Member, owner_headers: dict[str, str]) -> dict[str, str]:
    """An activity logged by `member` and a task assigned to them, on records they own."""
    records = await make_records(ws, member.identity_id)
    _CURRENT["company_id"] = records["company_id"]
    async with tenant_scope(ws.tenant_id) as tx:
        activity = await tx.execute_query_dict(
            "INSERT INTO activities (kind, subject, company_id, created_by_id) VALUES ('note', 'Matrix note', $1, $2)"
            " RETURNING id", [records["company_id"], member.identity_id])
        task = await tx.execute_query_dict(
            "INSERT INTO tasks (title, assignee_id, created_by_id, company_id) VALUES ('Matrix task', $1, $1, $2)"
            " RETURNING id", [member.identity_id, records["company_id"]])
    return {"activity_id": str(activity[0]["id"]), "task_id": str(task[0]["id"]),
            "timeline_company_id": str(records["company_id"])}


# Query strings for endpoints whose subject is a query parameter (filled from path_values), for
# the role matrix: {"METHOD /path": "?name={path value}"}.
QUERY_STRINGS = {"GET /timeline": "?company_id={timeline_company_id}"}
