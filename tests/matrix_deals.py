"""Role-matrix inputs of the deals domain (see tests/test_role_matrix.py): sample bodies and fresh
records for the path parameters deal_id, pipeline_id and stage_id."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from kith.platform.db import tenant_scope

from .conftest import Workspace
from .factories import Member

_n = itertools.count(1)
# the open stage the sample move goes to: set by path_values for each role's walk
_latest: dict[str, int] = {}

SAMPLE_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "DealIn": lambda: {"name": f"Matrix deal {next(_n)}", "amount": "1200.50"},
    "DealPatch": lambda: {"notes": "checked by the role matrix"},
    "MoveIn": lambda: {"stage_id": _latest["move_to"]},
    "PipelineIn": lambda: {"name": f"Matrix pipeline {next(_n)}"},
    "PipelinePatch": lambda: {"name": f"Matrix pipeline renamed {next(_n)}"},
    "StageIn": lambda: {"name": f"Matrix stage {next(_n)}", "probability": 40},
    "StagePatch": lambda: {"name": f"Matrix stage renamed {next(_n)}", "probability": 45},
}


async def path_values(ws: Workspace, member: Member, owner_headers: dict[str, str]) -> dict[str, str]:
    """A deal owned by `member` in the default pipeline; a pipeline without deals (deletable); a spare
    open stage without deals in another pipeline (deletable without breaking the kind rule)."""
    async with tenant_scope(ws.tenant_id) as tx:
        stages = await tx.execute_query_dict(
            "SELECT s.id, s.kind FROM stages s JOIN pipelines p ON p.id = s.pipeline_id WHERE p.is_default"
            " ORDER BY s.position, s.id")
        open_ids = [int(s["id"]) for s in stages if s["kind"] == "open"]
        deal = await tx.execute_query_dict(
            "INSERT INTO deals (name, amount, currency, pipeline_id, stage_id, owner_id, created_by_id)"
            " SELECT 'Matrix deal', 10, 'USD', pipeline_id, id, $2, $2 FROM stages WHERE id = $1 RETURNING id",
            [open_ids[0], member.identity_id])
        pipelines = []
        for _ in range(2):
            rows = await tx.execute_query_dict(
                "INSERT INTO pipelines (name, position) VALUES ($1, 99) RETURNING id", [f"Matrix fixture {next(_n)}"])
            pipeline_id = int(rows[0]["id"])
            await tx.execute_query(
                "INSERT INTO stages (pipeline_id, name, position, probability, kind) VALUES"
                " ($1, 'Open', 0, 10, 'open'), ($1, 'Spare', 1, 20, 'open'), ($1, 'Won', 2, 100, 'won'),"
                " ($1, 'Lost', 3, 0, 'lost')", [pipeline_id])
            pipelines.append(pipeline_id)
        spare = await tx.execute_query_dict(
            "SELECT id FROM stages WHERE pipeline_id = $1 AND name = 'Spare'", [pipelines[1]])
    _latest["move_to"] = open_ids[1]
    return {"deal_id": str(deal[0]["id"]), "pipeline_id": str(pipelines[0]), "stage_id": str(spare[0]["id"])}
