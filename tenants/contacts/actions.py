"""Changing contacts. Each action checks the actor's permissions, changes data and writes
its audit entry in one transaction inside the tenant's scope."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import acting_as
from kith.platform.billing.limits import check_contact_capacity
from kith.tenants.contacts.privacy import default_consent_source, record_consent_event
from kith.tenants.contacts.queries import OBJECT, audit_disclosed, load_for_change, stored_key, visible_row
from kith.tenants.contacts.schemas import ContactIn, ContactPatch

_COLUMNS = ("name", "email", "phone", "company_name", "notes")


def _checked_fields(names: Iterable[str]) -> list[str]:
    # consent_source belongs to the registered field marketing_consent: hidden together
    return ["marketing_consent" if n == "consent_source" else n for n in names]


def _consent_columns(actor: Actor, state: str, source: str | None) -> dict[str, Any]:
    """The consent columns after a change to `state`, stamped now (UTC)."""
    now = datetime.now(UTC)
    return {"marketing_consent": state, "consent_source": source or default_consent_source(actor),
            "consent_at": now, "unsubscribed_at": now if state == "withdrawn" else None}


async def create_contact(actor: Actor, data: ContactIn) -> dict[str, Any]:
    """Add a contact, owned by the actor."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "create")
        session.require_fields(OBJECT, _checked_fields(data.model_fields_set))
        await check_contact_capacity(actor.tenant_id, 1, session.tx)  # the plan's contact limit
        values = data.model_dump()
        state, source = values.pop("marketing_consent"), values.pop("consent_source")
        consent: dict[str, Any] = (
            _consent_columns(actor, state, source) if state != "unknown" else
            {"marketing_consent": "unknown", "consent_source": "", "consent_at": None, "unsubscribed_at": None})
        rows = await session.tx.execute_query_dict(
            "INSERT INTO contacts (name, email, phone, company_name, notes, created_by_id, owner_id,"
            " marketing_consent, consent_source, consent_at, unsubscribed_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10) RETURNING *",
            [*(values[c] for c in _COLUMNS), actor.identity_id, *consent.values()],
        )
        row = rows[0]
        if state != "unknown":
            await record_consent_event(session, row["id"], state, consent["consent_source"], consent["consent_at"])
        diff = {c: [None, v] for c, v in {**values, **consent}.items() if v not in (None, "", "unknown")}
        await session.audit("contact.create", OBJECT, row["id"], diff, subject=(OBJECT, row["id"]))
        return visible_row(session, row)


async def update_contact(actor: Actor, contact_id: int, changes: ContactPatch) -> dict[str, Any]:
    """Change the fields given in `changes`; others keep their values."""
    given = changes.model_dump(exclude_unset=True)
    # a source alone changes nothing: it describes a change of marketing_consent
    source = given.pop("consent_source", None)
    if "name" in given and not given["name"]:
        raise ValueError("name cannot be empty")
    async with acting_as(actor) as session:
        session.require(OBJECT, "edit")
        session.require_fields(OBJECT, _checked_fields([*given, *(["consent_source"] if source is not None else [])]))
        before = await load_for_change(session, contact_id, lock=True)
        diff = {k: [before[k], v] for k, v in given.items() if v is not None and before[k] != v}
        if "marketing_consent" in diff:
            for column, value in _consent_columns(actor, diff["marketing_consent"][1], source).items():
                if column not in diff and before[column] != value:
                    diff[column] = [before[column], value]
        if not diff:
            unchanged = visible_row(session, before)
            await audit_disclosed(session, [unchanged], listing=False, supplied=given)
            return unchanged
        assignments = ", ".join(f"{col} = ${i}" for i, col in enumerate(diff, start=2))
        rows = await session.tx.execute_query_dict(
            f"UPDATE contacts SET {assignments}, updated_at = now() WHERE id = $1 RETURNING *",
            [contact_id, *(new for _, new in diff.values())],
        )
        if "marketing_consent" in diff:
            await record_consent_event(session, contact_id, diff["marketing_consent"][1],
                                       rows[0]["consent_source"], rows[0]["consent_at"])
        await session.audit("contact.update", OBJECT, contact_id, diff, subject=(OBJECT, contact_id),
                            stored_key=stored_key(before))
        updated = visible_row(session, rows[0])
        # the answer also carries the sensitive values the actor did not send: that part is a read
        await audit_disclosed(session, [updated], listing=False, supplied=given)
        return updated


async def delete_contact(actor: Actor, contact_id: int) -> None:
    """Delete a contact; a missing one (or one out of the actor's scope) is reported, not ignored."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "delete")
        before = await load_for_change(session, contact_id, lock=True)
        await session.tx.execute_query("DELETE FROM contacts WHERE id = $1", [contact_id])
        await session.audit("contact.delete", OBJECT, contact_id, {c: [before[c], None] for c in _COLUMNS if before[c]},
                            subject=(OBJECT, contact_id), stored_key=stored_key(before))
