"""Pipelines and their ordered stages: read by anyone who may view deals, changed by members
holding the workspace permission manage_settings.

Rules: every pipeline keeps at least one open, one won and one lost stage; the default pipeline
cannot be deleted; a pipeline or stage that still holds deals cannot be deleted (409, move the
deals first). Positions are renumbered 0..n-1 on every reorder, so order is always total.
"""

from __future__ import annotations

from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.deals.errors import DealConflict, DealInvalid, PipelineNotFound, StageNotFound
from kith.tenants.deals.schemas import PipelineIn, PipelinePatch, StageIn, StagePatch

OBJECT = "deals"
DEFAULT_STAGES = (StageIn(name="New", probability=10, kind="open"), StageIn(name="Won", probability=100, kind="won"),
                  StageIn(name="Lost", probability=0, kind="lost"))
KIND_RULE = "A pipeline needs at least one open, one won and one lost stage."


def _check_kinds(kinds: list[str], *, conflict: bool = False) -> None:
    """Refuse a set of stages without an open, a won and a lost one: bad input for a new pipeline,
    a conflict with the pipeline as it is for a change to one stage."""
    if not {"open", "won", "lost"} <= set(kinds):
        raise DealConflict(KIND_RULE) if conflict else DealInvalid(KIND_RULE, field="stages")


async def stages_of(session: TenantSession, pipeline_id: int) -> list[dict[str, Any]]:
    return await session.tx.execute_query_dict(
        "SELECT * FROM stages WHERE pipeline_id = $1 ORDER BY position, id", [pipeline_id])


async def read_pipelines(session: TenantSession, *, counts: bool = False) -> list[dict[str, Any]]:
    """Every pipeline (default first, then by position) with its stages in order; with `counts`,
    how many deals each stage and pipeline holds (all owners: it decides what may be deleted)."""
    pipelines = await session.tx.execute_query_dict("SELECT * FROM pipelines ORDER BY position, id")
    stages = await session.tx.execute_query_dict("SELECT * FROM stages ORDER BY pipeline_id, position, id")
    per_stage: dict[int, int] = {}
    if counts:
        rows = await session.tx.execute_query_dict("SELECT stage_id, count(*) AS n FROM deals GROUP BY stage_id")
        per_stage = {int(r["stage_id"]): int(r["n"]) for r in rows}
    by_pipeline: dict[int, list[dict[str, Any]]] = {}
    for stage in stages:
        if counts:
            stage["deal_count"] = per_stage.get(stage["id"], 0)
        by_pipeline.setdefault(stage["pipeline_id"], []).append(stage)
    for pipeline in pipelines:
        pipeline["stages"] = by_pipeline.get(pipeline["id"], [])
        if counts:
            pipeline["deal_count"] = sum(s["deal_count"] for s in pipeline["stages"])
    return pipelines


async def pipeline_in(session: TenantSession, pipeline_id: int | None) -> dict[str, Any]:
    """One pipeline with its stages; None means the default pipeline."""
    if pipeline_id is None:
        rows = await session.tx.execute_query_dict("SELECT * FROM pipelines ORDER BY is_default DESC, position, id"
                                                   " LIMIT 1")
    else:
        rows = await session.tx.execute_query_dict("SELECT * FROM pipelines WHERE id = $1", [pipeline_id])
    if not rows:
        raise PipelineNotFound()
    pipeline = rows[0]
    pipeline["stages"] = await stages_of(session, pipeline["id"])
    return pipeline


async def list_pipelines(actor: Actor, *, counts: bool = False) -> list[dict[str, Any]]:
    """Every pipeline with its stages (see read_pipelines)."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        return await read_pipelines(session, counts=counts)


async def get_pipeline(actor: Actor, pipeline_id: int | None) -> dict[str, Any]:
    """One pipeline with its stages (None: the default pipeline)."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        return await pipeline_in(session, pipeline_id)


async def _name_taken(session: TenantSession, table: str, name: str, *, pipeline_id: int | None = None,
                      except_id: int | None = None) -> bool:
    sql = f"SELECT 1 FROM {table} WHERE lower(name) = lower($1) AND id <> $2"  # noqa: S608 - fixed names
    params: list[Any] = [name, except_id or 0]
    if pipeline_id is not None:
        sql += " AND pipeline_id = $3"
        params.append(pipeline_id)
    return bool(await session.tx.execute_query_dict(sql, params))


async def _place(session: TenantSession, table: str, ids: list[int], moved: int, position: int | None) -> None:
    """Put `moved` at `position` (clamped; None: last) among `ids` and renumber them 0..n-1."""
    order = [i for i in ids if i != moved]
    order.insert(len(order) if position is None else min(position, len(order)), moved)
    await session.tx.execute_query(
        f"UPDATE {table} t SET position = o.n - 1 FROM unnest($1::bigint[]) WITH ORDINALITY AS o(id, n)"  # noqa: S608
        " WHERE t.id = o.id AND t.position <> o.n - 1", [order])


async def _insert_stage(session: TenantSession, pipeline_id: int, stage: StageIn, position: int) -> dict[str, Any]:
    rows = await session.tx.execute_query_dict(
        "INSERT INTO stages (pipeline_id, name, position, probability, kind) VALUES ($1, $2, $3, $4, $5) RETURNING *",
        [pipeline_id, stage.name, position, stage.probability, stage.kind])
    return rows[0]


async def create_pipeline(actor: Actor, data: PipelineIn) -> dict[str, Any]:
    """Add a pipeline (last in order) with its stages; needs manage_settings."""
    stages = list(data.stages) if data.stages is not None else list(DEFAULT_STAGES)
    _check_kinds([s.kind for s in stages])
    names = [s.name.lower() for s in stages]
    if len(set(names)) != len(names):
        raise DealInvalid("Two stages have the same name.", field="stages")
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        if await _name_taken(session, "pipelines", data.name):
            raise DealInvalid("A pipeline with this name already exists.", field="name")
        rows = await session.tx.execute_query_dict(
            "INSERT INTO pipelines (name, position) SELECT $1, coalesce(max(position) + 1, 0) FROM pipelines"
            " RETURNING *", [data.name])
        pipeline = rows[0]
        ordered = sorted(enumerate(stages), key=lambda p: (p[1].position if p[1].position is not None else p[0], p[0]))
        pipeline["stages"] = [await _insert_stage(session, pipeline["id"], s, n) for n, (_, s) in enumerate(ordered)]
        await session.audit("pipeline.create", "pipelines", pipeline["id"], {
            "name": [None, data.name], "stages": [None, [f"{s['name']} ({s['kind']}, {s['probability']}%)"
                                                         for s in pipeline["stages"]]]})
        return pipeline


async def _lock_pipeline(session: TenantSession, pipeline_id: int) -> dict[str, Any]:
    rows = await session.tx.execute_query_dict("SELECT * FROM pipelines WHERE id = $1 FOR UPDATE", [pipeline_id])
    if not rows:
        raise PipelineNotFound()
    return rows[0]


async def update_pipeline(actor: Actor, pipeline_id: int, changes: PipelinePatch) -> dict[str, Any]:
    """Rename, reorder or make default; needs manage_settings."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        before = await _lock_pipeline(session, pipeline_id)
        diff: dict[str, list[Any]] = {}
        if changes.name is not None and changes.name != before["name"]:
            if await _name_taken(session, "pipelines", changes.name, except_id=pipeline_id):
                raise DealInvalid("A pipeline with this name already exists.", field="name")
            await session.tx.execute_query("UPDATE pipelines SET name = $2 WHERE id = $1", [pipeline_id, changes.name])
            diff["name"] = [before["name"], changes.name]
        if changes.is_default and not before["is_default"]:
            await session.tx.execute_query("UPDATE pipelines SET is_default = false WHERE is_default")
            await session.tx.execute_query("UPDATE pipelines SET is_default = true WHERE id = $1", [pipeline_id])
            diff["is_default"] = [False, True]
        if changes.position is not None:
            ids = [int(r["id"]) for r in await session.tx.execute_query_dict(
                "SELECT id FROM pipelines ORDER BY position, id FOR UPDATE")]
            if ids.index(pipeline_id) != changes.position:
                await _place(session, "pipelines", ids, pipeline_id, changes.position)
                diff["position"] = [ids.index(pipeline_id), min(changes.position, len(ids) - 1)]
        if diff:
            await session.audit("pipeline.update", "pipelines", pipeline_id, diff)
        return await pipeline_in(session, pipeline_id)


async def delete_pipeline(actor: Actor, pipeline_id: int) -> None:
    """Delete a pipeline and its stages: never the default one, never one that holds deals."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        before = await _lock_pipeline(session, pipeline_id)
        if before["is_default"]:
            raise DealConflict("The default pipeline cannot be deleted; make another pipeline the default first.")
        rows = await session.tx.execute_query_dict("SELECT count(*) AS n FROM deals WHERE pipeline_id = $1",
                                                   [pipeline_id])
        count = int(rows[0]["n"])
        if count:
            raise DealConflict(f"This pipeline has {count} deal{'s' if count != 1 else ''}; move or delete "
                               f"{'them' if count != 1 else 'it'} before deleting the pipeline.")
        await session.tx.execute_query("DELETE FROM pipelines WHERE id = $1", [pipeline_id])
        await session.audit("pipeline.delete", "pipelines", pipeline_id, {"name": [before["name"], None]})


async def add_stage(actor: Actor, pipeline_id: int, data: StageIn) -> dict[str, Any]:
    """Add a stage to a pipeline, at `data.position` (default: last); needs manage_settings."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        await _lock_pipeline(session, pipeline_id)
        if await _name_taken(session, "stages", data.name, pipeline_id=pipeline_id):
            raise DealInvalid("This pipeline already has a stage with this name.", field="name")
        ids = [int(s["id"]) for s in await stages_of(session, pipeline_id)]
        stage = await _insert_stage(session, pipeline_id, data, len(ids))
        if data.position is not None and data.position < len(ids):
            await _place(session, "stages", ids, int(stage["id"]), data.position)
        await session.audit("stage.create", "stages", stage["id"], {
            "pipeline_id": [None, pipeline_id], "name": [None, data.name], "kind": [None, data.kind],
            "probability": [None, data.probability]})
        rows = await session.tx.execute_query_dict("SELECT * FROM stages WHERE id = $1", [stage["id"]])
        return rows[0]


async def _lock_stage(session: TenantSession, stage_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The stage and all stages of its pipeline, under the pipeline's row lock."""
    rows = await session.tx.execute_query_dict("SELECT pipeline_id FROM stages WHERE id = $1", [stage_id])
    if not rows:
        raise StageNotFound()
    await _lock_pipeline(session, int(rows[0]["pipeline_id"]))
    stages = await stages_of(session, int(rows[0]["pipeline_id"]))
    found = [s for s in stages if s["id"] == stage_id]
    if not found:  # deleted between the two reads
        raise StageNotFound()
    return found[0], stages


async def _deal_count(session: TenantSession, stage_id: int) -> int:
    rows = await session.tx.execute_query_dict("SELECT count(*) AS n FROM deals WHERE stage_id = $1", [stage_id])
    return int(rows[0]["n"])


async def update_stage(actor: Actor, stage_id: int, changes: StagePatch) -> dict[str, Any]:
    """Rename, reorder, re-weight or change the kind of a stage; needs manage_settings. The kind of a
    stage holding deals stays (its deals' closed state would silently change): move them first."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        before, stages = await _lock_stage(session, stage_id)
        diff: dict[str, list[Any]] = {}
        if changes.name is not None and changes.name != before["name"]:
            if await _name_taken(session, "stages", changes.name, pipeline_id=before["pipeline_id"],
                                 except_id=stage_id):
                raise DealInvalid("This pipeline already has a stage with this name.", field="name")
            diff["name"] = [before["name"], changes.name]
        if changes.probability is not None and changes.probability != before["probability"]:
            diff["probability"] = [before["probability"], changes.probability]
        if changes.kind is not None and changes.kind != before["kind"]:
            _check_kinds([changes.kind if s["id"] == stage_id else s["kind"] for s in stages], conflict=True)
            count = await _deal_count(session, stage_id)
            if count:
                raise DealConflict(f"This stage has {count} deal{'s' if count != 1 else ''}; move "
                                   f"{'them' if count != 1 else 'it'} to another stage before changing its kind.")
            diff["kind"] = [before["kind"], changes.kind]
        if diff:
            assignments = ", ".join(f"{col} = ${n}" for n, col in enumerate(diff, start=2))
            await session.tx.execute_query(f"UPDATE stages SET {assignments} WHERE id = $1",  # noqa: S608
                                           [stage_id, *(new for _, new in diff.values())])
        ids = [int(s["id"]) for s in stages]
        if changes.position is not None and ids.index(stage_id) != changes.position:
            await _place(session, "stages", ids, stage_id, changes.position)
            diff["position"] = [ids.index(stage_id), min(changes.position, len(ids) - 1)]
        if diff:
            await session.audit("stage.update", "stages", stage_id, diff)
        rows = await session.tx.execute_query_dict("SELECT * FROM stages WHERE id = $1", [stage_id])
        return rows[0]


async def delete_stage(actor: Actor, stage_id: int) -> None:
    """Delete a stage that holds no deals, keeping the pipeline's open, won and lost stages."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        before, stages = await _lock_stage(session, stage_id)
        count = await _deal_count(session, stage_id)
        if count:
            raise DealConflict(f"This stage has {count} deal{'s' if count != 1 else ''}; move "
                               f"{'them' if count != 1 else 'it'} to another stage first.")
        _check_kinds([s["kind"] for s in stages if s["id"] != stage_id], conflict=True)
        await session.tx.execute_query("DELETE FROM stages WHERE id = $1", [stage_id])
        await _place_all(session, [int(s["id"]) for s in stages if s["id"] != stage_id])
        await session.audit("stage.delete", "stages", stage_id, {
            "pipeline_id": [before["pipeline_id"], None], "name": [before["name"], None]})


async def _place_all(session: TenantSession, ids: list[int]) -> None:
    if ids:
        await _place(session, "stages", ids[:-1], ids[-1], None)
