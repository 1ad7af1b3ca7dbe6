"""Role-matrix inputs of background exports (see tests/test_role_matrix.py).

Each role's walk gets two fresh exports of contacts that the member may reach: made by the member
when their role exports (an export is reached by the member who asked for it, or by an owner or
admin), else by the owner, whose exports such a role is refused with 403 before anything is
looked up. `export_id` stays queued, for the walk's cancel (the endpoints are declared in the
order get, cancel, file); `done_export_id` is written by the job's own code in this process
(`execute`), for the file download (PATHS)."""

from __future__ import annotations

from kith.tenants.exports.jobs import execute

from .conftest import Workspace
from .factories import Member
from .web_helpers import client

PATHS = {
    "GET /exports/jobs/{export_id}/file": "/exports/jobs/{done_export_id}/file",
}


async def path_values(ws: Workspace, member: Member, owner_headers: dict[str, str]) -> dict[str, str]:
    ids = []
    for _ in range(2):
        async with client(headers=member.headers) as c:
            made = await c.post("/api/v1/exports/jobs/contacts", params={"columns": "name"})
        if made.status_code == 403:  # a role without 'contacts: export': the owner's export
            async with client(headers=owner_headers) as c:
                made = await c.post("/api/v1/exports/jobs/contacts", params={"columns": "name"})
        assert made.status_code == 202, made.text
        ids.append(made.json()["id"])
    outcome = await execute(ws.tenant_id, ids[1])
    assert outcome.status == "done", outcome
    return {"export_id": str(ids[0]), "done_export_id": str(ids[1])}
