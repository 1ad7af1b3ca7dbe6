"""Role-matrix fixtures for the generic record endpoints (custom fields, saved views, bulk changes)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from .conftest import Workspace
from .factories import Member
from .web_helpers import client

_n = itertools.count(1)
# the member whose walk is running: bulk-assign gives (no) records to them
_current: dict[str, int] = {}

SAMPLE_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "CustomFieldIn": lambda: {"object_type": "companies", "label": f"Matrix field {next(_n)}", "kind": "text"},
    "CustomFieldPatch": lambda: {"label": f"Matrix field renamed {next(_n)}"},
    "SavedViewIn": lambda: {"object_type": "contacts", "name": f"Matrix view {next(_n)}",
                            "definition": {"filters": [["name", "contains", "a"]], "sort": "name"}},
    "SavedViewPatch": lambda: {"name": f"Matrix view renamed {next(_n)}"},
    # an empty selection: the permission is checked, nothing changes
    "BulkUpdateIn": lambda: {"ids": [], "changes": {"name": "Matrix bulk"}},
    "BulkAssignIn": lambda: {"ids": [], "owner_id": _current["identity_id"]},
    "BulkDeleteIn": lambda: {"ids": [], "confirm": 0},
}


async def path_values(ws: Workspace, member: Member, owner_headers: dict[str, str]) -> dict[str, str]:
    _current["identity_id"] = member.identity_id
    async with client(headers=owner_headers) as c:
        field = await c.post("/api/v1/custom-fields",
                             json={"object_type": "deals", "label": f"Matrix fixture {next(_n)}", "kind": "number"})
        assert field.status_code == 201, field.text
    async with client(headers=member.headers) as c:
        view = await c.post("/api/v1/views", json={"object_type": "contacts", "name": f"Matrix fixture {next(_n)}"})
        assert view.status_code == 201, view.text
    return {"field_id": str(field.json()["id"]), "view_id": str(view.json()["id"])}
