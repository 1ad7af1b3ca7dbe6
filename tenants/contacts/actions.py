"""Changing contacts. Each action checks the actor's permissions, changes data and writes
its audit entry in one transaction inside the tenant's scope.

`update_in` and `delete_in` do the same inside a session the caller already holds (bulk edit,
bulk delete, a company's deletion); the actions are thin wrappers around them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.platform.billing.limits import check_contact_capacity
from kith.tenants.companies.errors import InvalidFields
from kith.tenants.companies.queries import check_owner, clean_custom, json_value, visible_company
from kith.tenants.contacts.privacy import default_consent_source, record_consent_event
from kith.tenants.contacts.queries import OBJECT, audit_disclosed, load_for_change, stored_key, visible_row
from kith.tenants.contacts.schemas import ContactIn, ContactPatch
from kith.tenants.contacts.spec import SPEC
from kith.tenants.records.kinds import RecordKind, register_kind

_COLUMNS = ("name", "email", "phone", "company_name", "notes")
# fields whose null is a value (no company, no owner), not "unchanged"
_NULLABLE = ("company_id", "owner_id")
_CASTS = {"custom": "::jsonb", "tags": "::text[]"}


def _checked_fields(names: Iterable[str]) -> list[str]:
    # consent_source belongs to the registered field marketing_consent: hidden together
    return ["marketing_consent" if n == "consent_source" else n for n in names]


def _consent_columns(actor: Actor, state: str, source: str | None) -> dict[str, Any]:
    """The consent columns after a change to `state`, stamped now (UTC)."""
    now = datetime.now(UTC)
    return {"marketing_consent": state, "consent_source": source or default_consent_source(actor),
            "consent_at": now, "unsubscribed_at": now if state == "withdrawn" else None}


async def create_contact(actor: Actor, data: ContactIn) -> dict[str, Any]:
    """Add a contact, owned by the actor unless `owner_id` names another member; a company given by
    `company_id` must be one the actor may see, and sets the contact's company_name."""
    async with acting_as(actor) as session:
        return await create_in(session, data)


async def create_in(session: TenantSession, data: ContactIn) -> dict[str, Any]:
    """create_contact inside the caller's session."""
    actor = session.actor
    session.require(OBJECT, "create")
    session.require_fields(OBJECT, _checked_fields(data.model_fields_set))
    await check_contact_capacity(actor.tenant_id, 1, session.tx)  # the plan's contact limit
    values = data.model_dump()
    state, source = values.pop("marketing_consent"), values.pop("consent_source")
    if data.company_id is not None:
        values["company_name"] = (await visible_company(session, data.company_id))["name"]
    owner_id = actor.identity_id
    if "owner_id" in data.model_fields_set:
        await check_owner(session, OBJECT, data.owner_id)
        owner_id = data.owner_id
    values.pop("owner_id")
    values["custom"] = await clean_custom(session, OBJECT, data.custom)
    consent: dict[str, Any] = (
        _consent_columns(actor, state, source) if state != "unknown" else
        {"marketing_consent": "unknown", "consent_source": "", "consent_at": None, "unsubscribed_at": None})
    rows = await session.tx.execute_query_dict(
        "INSERT INTO contacts (name, email, phone, company_name, notes, created_by_id, owner_id,"
        " marketing_consent, consent_source, consent_at, unsubscribed_at,"
        " company_id, title, lifecycle_stage, source, tags, custom)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16::text[], $17::jsonb)"
        " RETURNING *",
        [*(values[c] for c in _COLUMNS), actor.identity_id, owner_id, *consent.values(),
         values["company_id"], values["title"], values["lifecycle_stage"], values["source"], values["tags"],
         json.dumps(values["custom"])],
    )
    row = rows[0]
    if state != "unknown":
        await record_consent_event(session, row["id"], state, consent["consent_source"], consent["consent_at"])
    # the values that differ from a new contact's defaults (owner: the actor; stage: lead)
    given_owner = {"owner_id": owner_id} if "owner_id" in data.model_fields_set else {}
    diff = {c: [None, v] for c, v in {**values, **consent, **given_owner}.items()
            if v not in (None, "", "unknown", [], {}) and not (c == "lifecycle_stage" and v == "lead")}
    await session.audit("contact.create", OBJECT, row["id"], diff, subject=(OBJECT, row["id"]))
    return visible_row(session, row)


async def update_contact(actor: Actor, contact_id: int, changes: ContactPatch) -> dict[str, Any]:
    """Change the fields given in `changes`; others keep their values."""
    async with acting_as(actor) as session:
        return await update_in(session, contact_id, changes)


async def _company_name(session: TenantSession, before: dict[str, Any], given: dict[str, Any]) -> str | None:
    """The company_name a change leaves on a contact linked to a company (its company's name), or
    None when the contact ends up with no company (company_name is then free text)."""
    target = given["company_id"] if "company_id" in given else before["company_id"]
    if target is None or ("company_id" not in given and "company_name" not in given):
        return None
    if target != before["company_id"]:
        return str((await visible_company(session, target))["name"])
    rows = await session.tx.execute_query_dict("SELECT name FROM companies WHERE id = $1", [target])
    return str(rows[0]["name"]) if rows else None


async def update_in(session: TenantSession, contact_id: int, changes: ContactPatch) -> dict[str, Any]:
    """update_contact inside the caller's session (bulk edit and assign use it too)."""
    actor = session.actor
    given = changes.model_dump(exclude_unset=True)
    # a source alone changes nothing: it describes a change of marketing_consent
    source = given.pop("consent_source", None)
    given = {k: v for k, v in given.items() if v is not None or k in _NULLABLE}
    if "name" in given and not given["name"]:
        raise InvalidFields({"name": "This field cannot be empty."})
    session.require(OBJECT, "edit")
    session.require_fields(OBJECT, _checked_fields([*given, *(["consent_source"] if source is not None else [])]))
    before = await load_for_change(session, contact_id, lock=True)
    before["custom"] = json_value(before["custom"]) or {}
    before["tags"] = list(before["tags"] or [])
    company_name = await _company_name(session, before, given)
    if company_name is not None:
        given["company_name"] = company_name
    if "owner_id" in given and given["owner_id"] != before["owner_id"]:
        await check_owner(session, OBJECT, given["owner_id"])
    if "custom" in given:
        given["custom"] = await clean_custom(session, OBJECT, given["custom"], existing=before["custom"])
    diff = {k: [before[k], v] for k, v in given.items() if before[k] != v}
    if "marketing_consent" in diff:
        for column, value in _consent_columns(actor, diff["marketing_consent"][1], source).items():
            if column not in diff and before[column] != value:
                diff[column] = [before[column], value]
    if not diff:
        unchanged = visible_row(session, before)
        await audit_disclosed(session, [unchanged], listing=False, supplied=given)
        return unchanged
    assignments = ", ".join(f"{col} = ${i}{_CASTS.get(col, '')}" for i, col in enumerate(diff, start=2))
    rows = await session.tx.execute_query_dict(
        f"UPDATE contacts SET {assignments}, updated_at = now() WHERE id = $1 RETURNING *",  # noqa: S608
        [contact_id, *(json.dumps(new) if col == "custom" else new for col, (_, new) in diff.items())],
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
        await delete_in(session, contact_id)


async def delete_in(session: TenantSession, contact_id: int) -> None:
    """delete_contact inside the caller's session (bulk delete and a company's deletion use it)."""
    session.require(OBJECT, "delete")
    before = await load_for_change(session, contact_id, lock=True)
    await session.tx.execute_query("DELETE FROM contacts WHERE id = $1", [contact_id])
    gone = {c: [before[c], None] for c in (*_COLUMNS, "company_id", "title", "source") if before[c]}
    await session.audit("contact.delete", OBJECT, contact_id, gone, subject=(OBJECT, contact_id),
                        stored_key=stored_key(before))


register_kind(RecordKind(object_type=OBJECT, spec=SPEC, label="Contacts", path="contacts", patch_model=ContactPatch,
                         update_in=update_in, delete_in=delete_in))
