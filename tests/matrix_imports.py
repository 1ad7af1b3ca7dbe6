"""Role-matrix inputs of the imports domain (see tests/test_role_matrix.py).

Each role's walk gets two fresh imports of contacts, both uploaded by the owner through the API
(an import is reached through '<kind>: import', not through record ownership): `import_id`, just
uploaded, which the walk maps, runs, cancels and checks in that order (the order the endpoints
are declared in web/api/imports.py, so each allowed call finds the import in a state it accepts);
and `imported_import_id`, really imported by the pipeline (runner.execute, in this process) with
one rejected row, for undo and the rejected-rows download (PATHS). POST /imports takes a
multipart upload, which REQUESTS supplies."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from kith.platform.tenancy.models import Tenant
from kith.tenants.imports.runner import execute

from .conftest import Workspace
from .factories import Member
from .web_helpers import client

_n = itertools.count(1)


def sample_csv() -> bytes:
    """A small contacts file with one row the pipeline rejects (its email)."""
    k = next(_n)
    return (f"Name,Email\nMatrix import {k},matrix-import-{k}@example.com\nBad row {k},not-an-email\n").encode()


SAMPLE_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "MappingIn": lambda: {"mapping": {"0": "name", "1": "email"}, "match_key": "email", "on_duplicate": "skip"},
}
REQUESTS: dict[str, Callable[[], dict[str, Any]]] = {
    "POST /imports": lambda: {"files": {"file": ("matrix.csv", sample_csv(), "text/csv")},
                              "data": {"object_type": "contacts"}},
}
PATHS = {
    "POST /imports/{import_id}/undo": "/imports/{imported_import_id}/undo",
    "GET /imports/{import_id}/rejected.csv": "/imports/{imported_import_id}/rejected.csv",
}


async def path_values(ws: Workspace, member: Member, owner_headers: dict[str, str]) -> dict[str, str]:
    tenant = await Tenant.get(id=ws.tenant_id)
    async with client(headers=owner_headers) as c:
        ids = []
        for _ in range(2):
            made = await c.post("/api/v1/imports", **REQUESTS["POST /imports"]())
            assert made.status_code == 201, made.text
            ids.append(made.json()["id"])
        mapped = await c.put(f"/api/v1/imports/{ids[1]}/mapping", json=SAMPLE_BODIES["MappingIn"]())
        assert mapped.status_code == 200, mapped.text
        started = await c.post(f"/api/v1/imports/{ids[1]}/run")
        assert started.status_code == 202, started.text
    outcome = await execute(ws.tenant_id, tenant.default_phone_region, ids[1], "import")
    assert outcome.status == "imported", outcome
    return {"import_id": str(ids[0]), "imported_import_id": str(ids[1]), "object_type": "contacts"}
