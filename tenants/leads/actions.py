"""Changing leads. Each action checks the actor's permissions, changes data and writes its audit entry
(values encrypted with the lead's own key: a lead is a person) in one transaction inside the tenant's
scope. The `*_in` forms run inside an existing session (the generic bulk changes use them); the
actions are thin wrappers around them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.leads.errors import LeadInvalid
from kith.tenants.leads.queries import OBJECT, audit_disclosed, load_owned, stored_key, visible_row
from kith.tenants.leads.schemas import LeadIn, LeadPatch
from kith.tenants.leads.spec import SPEC
from kith.tenants.records.checks import custom_checked, owner_checked
from kith.tenants.records.kinds import RecordKind, register_kind


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# the columns a person writes (owner_id is handled apart: it moves a lead in or out of the pool)
COLUMNS = ("name", "company_name", "title", "email", "phone", "status", "source", "notes", "tags", "custom")


async def create_in(session: TenantSession, data: LeadIn) -> dict[str, Any]:
    """Add a lead inside `session`: owned by the actor, by `owner_id` when given, or by nobody (the pool)
    when owner_id is given as null."""
    session.require(OBJECT, "create")
    given = data.model_fields_set
    session.require_fields(OBJECT, [f for f in given if f != "owner_id"])
    owner = data.owner_id if "owner_id" in given else session.actor.identity_id
    if "owner_id" in given:
        await owner_checked(session, OBJECT, owner, LeadInvalid)
    custom = await custom_checked(session, OBJECT, data.custom, None, LeadInvalid)
    values: dict[str, Any] = {**data.model_dump(include=set(COLUMNS)), "custom": custom}
    rows = await session.tx.execute_query_dict(
        "INSERT INTO leads (name, company_name, title, email, phone, status, source, notes, tags, custom,"
        " owner_id, pooled_at, created_by_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text[], $10::jsonb, $11,"
        " CASE WHEN $11::bigint IS NULL THEN now() END, $12) RETURNING *",
        [*(values[c] for c in COLUMNS[:-1]), _json(custom), owner, session.actor.identity_id])
    row = dict(rows[0])
    diff = {c: [None, v] for c, v in values.items() if v not in (None, "", [], {})}
    diff["owner_id"] = [None, owner]
    await session.audit("lead.create", OBJECT, row["id"], diff, subject=(OBJECT, row["id"]))
    row["custom"], row["tags"] = custom, list(row["tags"] or [])
    return visible_row(session, row)


async def create_lead(actor: Actor, data: LeadIn) -> dict[str, Any]:
    """Add a lead (see create_in)."""
    async with acting_as(actor) as session:
        return await create_in(session, data)


async def update_in(session: TenantSession, lead_id: int, patch: LeadPatch | Mapping[str, Any]) -> dict[str, Any]:
    """Change the fields given in `patch` inside `session`; others keep their values.

    Giving owner_id moves the lead: to another member (an assignment, not a claim from the pool, so
    claimed_at is cleared) or, as null, into the public pool. A converted lead keeps its status.
    """
    if not isinstance(patch, LeadPatch):
        patch = LeadPatch.model_validate(patch)
    given = {k: v for k, v in patch.model_dump(exclude_unset=True).items() if v is not None or k == "owner_id"}
    session.require(OBJECT, "edit")
    session.require_fields(OBJECT, [f for f in given if f != "owner_id"])
    before = await load_owned(session, lead_id)
    if "status" in given and before["status"] == "converted" and given["status"] != "converted":
        raise LeadInvalid.of({"status": "This lead was converted; its status stays converted."})
    if "custom" in given:
        given["custom"] = await custom_checked(session, OBJECT, given["custom"], before["custom"], LeadInvalid)
    diff = {k: [before[k], v] for k, v in given.items() if before[k] != v}
    if "owner_id" in diff:
        await owner_checked(session, OBJECT, diff["owner_id"][1], LeadInvalid)
        now = datetime.now(UTC)
        for column, value in (("claimed_at", None), ("pooled_at", now if diff["owner_id"][1] is None else None)):
            if before[column] != value:
                diff[column] = [before[column], value]
    if not diff:
        unchanged = visible_row(session, before)
        await audit_disclosed(session, [unchanged], listing=False, supplied=given)
        return unchanged
    casts = {"tags": "::text[]", "custom": "::jsonb"}
    assignments = ", ".join(f"{col} = ${i}{casts.get(col, '')}" for i, col in enumerate(diff, start=2))
    rows = await session.tx.execute_query_dict(
        f"UPDATE leads SET {assignments}, updated_at = now() WHERE id = $1 RETURNING *",
        [lead_id, *(_json(new) if col == "custom" else new for col, (_, new) in diff.items())])
    await session.audit("lead.update", OBJECT, lead_id, diff, subject=(OBJECT, lead_id), stored_key=stored_key(before))
    updated = visible_row(session, rows[0])
    await audit_disclosed(session, [updated], listing=False, supplied=given)
    return updated


async def update_lead(actor: Actor, lead_id: int, patch: LeadPatch) -> dict[str, Any]:
    """Change some fields of a lead (see update_in)."""
    async with acting_as(actor) as session:
        return await update_in(session, lead_id, patch)


async def delete_in(session: TenantSession, lead_id: int) -> None:
    """Delete a lead inside `session`. Its timeline entries and tasks stay (their link becomes empty), and
    the records a conversion made stay too."""
    session.require(OBJECT, "delete")
    before = await load_owned(session, lead_id)
    await session.tx.execute_query("DELETE FROM leads WHERE id = $1", [lead_id])
    diff = {c: [before[c], None] for c in (*COLUMNS, "owner_id") if before[c] not in (None, "", [], {})}
    await session.audit("lead.delete", OBJECT, lead_id, diff, subject=(OBJECT, lead_id), stored_key=stored_key(before))


async def delete_lead(actor: Actor, lead_id: int) -> None:
    """Delete a lead; a missing one (or one out of the actor's scope) is reported, not ignored."""
    async with acting_as(actor) as session:
        await delete_in(session, lead_id)


KIND = register_kind(RecordKind(object_type=OBJECT, spec=SPEC, label="Leads", path="leads", patch_model=LeadPatch,
                                update_in=update_in, delete_in=delete_in))
