"""Changing contacts. Each action checks the actor's permissions, changes data and writes
its audit entry in one transaction inside the tenant's scope."""

from __future__ import annotations

from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import acting_as
from kith.tenants.contacts.queries import OBJECT, load_for_change, visible_row
from kith.tenants.contacts.schemas import ContactIn, ContactPatch

_COLUMNS = ("name", "email", "phone", "company_name", "notes")


async def create_contact(actor: Actor, data: ContactIn) -> dict[str, Any]:
    """Add a contact, owned by the actor."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "create")
        session.require_fields(OBJECT, data.model_fields_set)
        values = data.model_dump()
        rows = await session.tx.execute_query_dict(
            "INSERT INTO contacts (name, email, phone, company_name, notes, created_by_id, owner_id)"
            " VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING *",
            [*(values[c] for c in _COLUMNS), actor.identity_id],
        )
        row = rows[0]
        await session.audit("contact.create", OBJECT, row["id"], {c: [None, values[c]] for c in _COLUMNS if values[c]})
        return visible_row(session, row)


async def update_contact(actor: Actor, contact_id: int, changes: ContactPatch) -> dict[str, Any]:
    """Change the fields given in `changes`; others keep their values."""
    given = changes.model_dump(exclude_unset=True)
    if "name" in given and not given["name"]:
        raise ValueError("name cannot be empty")
    async with acting_as(actor) as session:
        session.require(OBJECT, "edit")
        session.require_fields(OBJECT, given)
        before = await load_for_change(session, contact_id, lock=True)
        diff = {k: [before[k], v] for k, v in given.items() if v is not None and before[k] != v}
        if not diff:
            return visible_row(session, before)
        assignments = ", ".join(f"{col} = ${i}" for i, col in enumerate(diff, start=2))
        rows = await session.tx.execute_query_dict(
            f"UPDATE contacts SET {assignments}, updated_at = now() WHERE id = $1 RETURNING *",
            [contact_id, *(new for _, new in diff.values())],
        )
        await session.audit("contact.update", OBJECT, contact_id, diff)
        return visible_row(session, rows[0])


async def delete_contact(actor: Actor, contact_id: int) -> None:
    """Delete a contact; a missing one (or one out of the actor's scope) is reported, not ignored."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "delete")
        before = await load_for_change(session, contact_id, lock=True)
        await session.tx.execute_query("DELETE FROM contacts WHERE id = $1", [contact_id])
        await session.audit("contact.delete", OBJECT, contact_id, {c: [before[c], None] for c in _COLUMNS if before[c]})
