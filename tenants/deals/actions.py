"""Changing deals. Each action checks the actor's permissions, changes data and writes its audit
entry in one transaction inside the tenant's scope; the `*_in` forms do the same inside a session
the caller already holds (bulk changes, lead conversion).

Every stage change goes through `move_in`: it records a deal_stage_changes row (from, to, who,
when), an event on the timelines of the deal, its company and its contact, stamps closed_at on
entering a won or lost stage (and clears it when the deal reopens), and needs a loss reason for a
lost stage.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.activities.events import record_event
from kith.tenants.deals.errors import DealInvalid, PipelineNotFound
from kith.tenants.deals.pipelines import pipeline_in
from kith.tenants.deals.queries import DEAL_SELECT, OBJECT, decoded, load_for_change, scope_clause, visible_row
from kith.tenants.deals.schemas import DealIn, DealPatch, money_text
from kith.tenants.records.custom import CustomFieldError, clean_custom_values, load_custom_fields

# columns a create or an update writes directly (the stage and pipeline go through move_in)
PLAIN = ("name", "amount", "currency", "expected_close", "probability", "company_id", "contact_id", "owner_id",
         "notes", "tags", "custom")
LOST_NEEDS_REASON = "A deal in a lost stage needs a loss reason."
_CASTS = {"custom": "::jsonb", "tags": "::text[]"}


def _param(column: str, value: Any) -> Any:
    return json.dumps(value) if column == "custom" else value


def _checked(names: Iterable[str]) -> list[str]:
    """The object type's fields behind the given input names (pipeline and stage are 'stage';
    the owner is no field a role hides)."""
    mapped = {"stage_id": "stage", "pipeline_id": "stage", "owner_id": None}
    return [f for f in (mapped.get(n, n) for n in names) if f]


def _audit_value(value: Any) -> Any:
    return money_text(value) if isinstance(value, Decimal) else value


async def _row(session: TenantSession, deal_id: int) -> dict[str, Any]:
    rows = await session.tx.execute_query_dict(DEAL_SELECT + " WHERE deals.id = $1", [deal_id])
    return decoded(rows[0])


async def _check_refs(session: TenantSession, values: dict[str, Any]) -> None:
    """company_id and contact_id must name records the actor may see; owner_id an active member the
    actor may hand deals to (within the actor's scope of deals)."""
    errors: dict[str, str] = {}
    for name, table, noun in (("company_id", "companies", "company"), ("contact_id", "contacts", "contact")):
        record_id = values.get(name)
        if record_id is None:
            continue
        params: list[Any] = [record_id]
        scope = scope_clause(session, params, "owner_id", table)
        found = session.policy.can(table, "view") and await session.tx.execute_query_dict(
            f"SELECT 1 FROM {table} WHERE id = $1" + (f" AND {scope}" if scope else ""), params)  # noqa: S608
        if not found:
            errors[name] = f"There is no such {noun}."
    owner = values.get("owner_id")
    if owner is not None:
        found = await session.tx.execute_query_dict(
            "SELECT 1 FROM public.memberships WHERE tenant_id = $1 AND identity_id = $2 AND is_active",
            [session.actor.tenant_id, owner])
        reachable = session.policy.owner_ids(OBJECT)
        if not found:
            errors["owner_id"] = "The owner must be an active member of this workspace."
        elif reachable is not None and owner not in reachable:
            errors["owner_id"] = "You may only give deals to people whose deals you can see."
    if errors:
        raise DealInvalid(next(iter(errors.values())), fields=errors)


async def _custom(session: TenantSession, values: dict[str, Any] | None, *, partial: bool,
                  current: dict[str, Any] | None = None) -> dict[str, Any]:
    definitions = await load_custom_fields(session.tx, OBJECT)
    try:
        return clean_custom_values(definitions, values, partial=partial, current=current)
    except CustomFieldError as exc:
        raise DealInvalid(next(iter(exc.errors.values())), fields=exc.errors) from None


async def _target_stage(session: TenantSession, pipeline_id: int | None, stage_id: int | None) -> dict[str, Any]:
    """The stage a deal goes to: `stage_id` (which must belong to `pipeline_id` when both are given),
    else the first open stage of `pipeline_id` (None: the default pipeline). The row carries the pipeline."""
    if stage_id is not None:
        rows = await session.tx.execute_query_dict("SELECT * FROM stages WHERE id = $1", [stage_id])
        if not rows:
            raise DealInvalid("There is no such stage.", field="stage_id")
        if pipeline_id is not None and rows[0]["pipeline_id"] != pipeline_id:
            raise DealInvalid("This stage belongs to another pipeline.", field="stage_id")
        return rows[0]
    try:
        pipeline = await pipeline_in(session, pipeline_id)
    except PipelineNotFound:
        raise DealInvalid("There is no such pipeline.", field="pipeline_id") from None
    open_stages = [s for s in pipeline["stages"] if s["kind"] == "open"]
    if not open_stages:
        raise DealInvalid("This pipeline has no open stage.", field="pipeline_id")
    return open_stages[0]


async def _default_currency(session: TenantSession) -> str:
    rows = await session.tx.execute_query_dict("SELECT default_currency FROM public.tenants WHERE id = $1",
                                               [session.actor.tenant_id])
    return str(rows[0]["default_currency"]) if rows else "USD"


async def create_in(session: TenantSession, data: DealIn) -> dict[str, Any]:
    """create_deal inside the caller's session (lead conversion uses it)."""
    session.require(OBJECT, "create")
    session.require_fields(OBJECT, _checked(data.model_fields_set))
    stage = await _target_stage(session, data.pipeline_id, data.stage_id)
    reason = data.loss_reason.strip()
    if stage["kind"] == "lost" and not reason:
        raise DealInvalid(LOST_NEEDS_REASON, field="loss_reason")
    values = data.model_dump(include=set(PLAIN))
    values["currency"] = data.currency or await _default_currency(session)
    if values["owner_id"] is None:
        values["owner_id"] = session.actor.identity_id
    await _check_refs(session, values)
    values["custom"] = await _custom(session, data.custom, partial=False)
    values["loss_reason"] = reason if stage["kind"] == "lost" else ""
    columns = [*values, "pipeline_id", "stage_id", "created_by_id"]
    placeholders = ", ".join(f"${n}{_CASTS.get(c, '')}" for n, c in enumerate(columns, start=1))
    rows = await session.tx.execute_query_dict(
        f"INSERT INTO deals ({', '.join(columns)}, closed_at) VALUES ({placeholders},"  # noqa: S608 - fixed names
        f" CASE WHEN ${len(columns) + 1}::boolean THEN now() END) RETURNING id",
        [*(_param(c, v) for c, v in values.items()), stage["pipeline_id"], stage["id"], session.actor.identity_id,
         stage["kind"] != "open"])
    deal_id = int(rows[0]["id"])
    await session.tx.execute_query(
        "INSERT INTO deal_stage_changes (deal_id, from_stage_id, to_stage_id, changed_by_id) VALUES ($1, NULL, $2, $3)",
        [deal_id, stage["id"], session.actor.identity_id])
    diff = {k: [None, _audit_value(v)] for k, v in values.items() if v not in (None, "", [], {})}
    diff.update({"pipeline_id": [None, stage["pipeline_id"]], "stage_id": [None, stage["id"]]})
    await session.audit("deal.create", OBJECT, deal_id, diff)
    return visible_row(session, await _row(session, deal_id))


async def create_deal(actor: Actor, data: DealIn) -> dict[str, Any]:
    """Add a deal, owned by the actor unless `data.owner_id` names another member."""
    async with acting_as(actor) as session:
        return await create_in(session, data)


async def _move(session: TenantSession, before: dict[str, Any], stage: dict[str, Any],
                loss_reason: str | None) -> None:
    """Move the locked deal `before` to `stage`: history row, timeline event, closed_at, audit."""
    reason = (loss_reason or "").strip()
    if stage["kind"] == "lost" and not reason:
        raise DealInvalid(LOST_NEEDS_REASON, field="loss_reason")
    if stage["kind"] != "lost":
        reason = ""
    if stage["kind"] == "open":
        closed = "NULL"
    elif stage["kind"] == before["stage_kind"]:
        closed = "closed_at"  # from one won stage to another: still won since then
    else:
        closed = "now()"
    rows = await session.tx.execute_query_dict(
        f"UPDATE deals SET stage_id = $2, pipeline_id = $3, loss_reason = $4, closed_at = {closed},"  # noqa: S608
        " updated_at = now() WHERE id = $1 RETURNING closed_at",
        [before["id"], stage["id"], stage["pipeline_id"], reason])
    await session.tx.execute_query(
        "INSERT INTO deal_stage_changes (deal_id, from_stage_id, to_stage_id, changed_by_id) VALUES ($1, $2, $3, $4)",
        [before["id"], before["stage_id"], stage["id"], session.actor.identity_id])
    await record_event(session, "deal.stage_changed", {"from": before["stage_name"], "to": stage["name"]},
                       subject=f"{before['stage_name']} → {stage['name']}", deal_id=before["id"],
                       company_id=before["company_id"], contact_id=before["contact_id"])
    diff: dict[str, list[Any]] = {"stage_id": [before["stage_id"], stage["id"]],
                                  "stage": [before["stage_name"], stage["name"]]}
    if stage["pipeline_id"] != before["pipeline_id"]:
        diff["pipeline_id"] = [before["pipeline_id"], stage["pipeline_id"]]
    if rows[0]["closed_at"] != before["closed_at"]:
        diff["closed_at"] = [before["closed_at"], rows[0]["closed_at"]]
    if reason != before["loss_reason"]:
        diff["loss_reason"] = [before["loss_reason"], reason]
    await session.audit("deal.move", OBJECT, before["id"], diff)


async def move_in(session: TenantSession, deal_id: int, stage_id: int, loss_reason: str | None = None
                  ) -> dict[str, Any]:
    """move_deal_to_stage inside the caller's session."""
    session.require(OBJECT, "edit")
    session.require_fields(OBJECT, ["stage"])
    before = await load_for_change(session, deal_id, lock=True)
    stage = await _target_stage(session, before["pipeline_id"], stage_id)
    if stage["id"] != before["stage_id"]:
        await _move(session, before, stage, loss_reason)
    elif stage["kind"] == "lost" and loss_reason is not None and loss_reason.strip() != before["loss_reason"]:
        if not loss_reason.strip():
            raise DealInvalid(LOST_NEEDS_REASON, field="loss_reason")
        await session.tx.execute_query("UPDATE deals SET loss_reason = $2, updated_at = now() WHERE id = $1",
                                       [deal_id, loss_reason.strip()])
        await session.audit("deal.update", OBJECT, deal_id, {"loss_reason": [before["loss_reason"],
                                                                            loss_reason.strip()]})
    return visible_row(session, await _row(session, deal_id))


async def move_deal_to_stage(actor: Actor, deal_id: int, stage_id: int, loss_reason: str | None = None
                             ) -> dict[str, Any]:
    """Move a deal to another stage of its pipeline (a lost stage needs `loss_reason`)."""
    async with acting_as(actor) as session:
        return await move_in(session, deal_id, stage_id, loss_reason)


async def update_in(session: TenantSession, deal_id: int, patch: DealPatch) -> dict[str, Any]:
    """update_deal inside the caller's session (bulk edit and bulk assign use it)."""
    session.require(OBJECT, "edit")
    given = patch.model_dump(exclude_unset=True)
    session.require_fields(OBJECT, _checked(given))
    before = await load_for_change(session, deal_id, lock=True)
    stage: dict[str, Any] | None = None
    if given.get("stage_id") is not None:
        stage = await _target_stage(session, given.get("pipeline_id"), given["stage_id"])
    elif given.get("pipeline_id") is not None and given["pipeline_id"] != before["pipeline_id"]:
        stage = await _target_stage(session, given["pipeline_id"], None)
    loss_reason = given.pop("loss_reason", None)
    changes = {k: v for k, v in given.items() if k in PLAIN}
    await _check_refs(session, {k: v for k, v in changes.items() if v != before[k]})
    if "custom" in changes:
        changes["custom"] = await _custom(session, changes["custom"], partial=True, current=before["custom"])
    diff = {k: [before[k], v] for k, v in changes.items() if before[k] != v}
    if diff:
        assignments = ", ".join(f"{col} = ${n}{_CASTS.get(col, '')}" for n, col in enumerate(diff, start=2))
        await session.tx.execute_query(
            f"UPDATE deals SET {assignments}, updated_at = now() WHERE id = $1",  # noqa: S608 - fixed names
            [deal_id, *(_param(col, new) for col, (_, new) in diff.items())])
        await session.audit("deal.update", OBJECT, deal_id,
                            {k: [_audit_value(old), _audit_value(new)] for k, (old, new) in diff.items()})
        before = {**before, **{k: new for k, (_, new) in diff.items()}}
    if stage is not None and stage["id"] != before["stage_id"]:
        await _move(session, before, stage, loss_reason)
    elif loss_reason is not None and before["stage_kind"] == "lost" and loss_reason.strip() != before["loss_reason"]:
        await move_in(session, deal_id, before["stage_id"], loss_reason)
    return visible_row(session, await _row(session, deal_id))


async def update_deal(actor: Actor, deal_id: int, changes: DealPatch) -> dict[str, Any]:
    """Change the fields given in `changes`; a new stage goes through the same rules as a move."""
    async with acting_as(actor) as session:
        return await update_in(session, deal_id, changes)


async def delete_in(session: TenantSession, deal_id: int) -> None:
    """delete_deal inside the caller's session (bulk delete uses it)."""
    session.require(OBJECT, "delete")
    before = await load_for_change(session, deal_id, lock=True)
    await session.tx.execute_query("DELETE FROM deals WHERE id = $1", [deal_id])
    gone = {k: [_audit_value(before[k]), None] for k in (*PLAIN, "stage_id", "pipeline_id")
            if before[k] not in (None, "", [], {})}
    await session.audit("deal.delete", OBJECT, deal_id, gone)


async def delete_deal(actor: Actor, deal_id: int) -> None:
    """Delete a deal; a missing one (or one out of the actor's scope) is reported, not ignored."""
    async with acting_as(actor) as session:
        await delete_in(session, deal_id)
