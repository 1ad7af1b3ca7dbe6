"""Reading contacts through the actor's permissions (lists go through the list engine:
kith.tenants.records.listing with tenants/contacts/spec.py).

Every read goes through `acting_as(actor)`: the role must grant 'contacts: view', only
records in the role's scope (own, team, all) are found, and fields hidden from the
role are neither returned nor searched. A read that returns sensitive values (email,
phone: see access.py) is audited in the same transaction, by `audit_disclosed`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.contacts.access import CONTACTS

OBJECT = "contacts"
FIELDS = ("name", "email", "phone", "company_name", "notes")
# Marketing consent: one registered field ("marketing_consent") for the role rules; hiding it
# hides its source and times too.
CONSENT_FIELDS = ("marketing_consent", "consent_source", "consent_at", "unsubscribed_at")
# The CRM fields of tenant migration 0007 (company link, person fields, tags, custom fields)
CRM_FIELDS = ("company_id", "title", "lifecycle_stage", "source", "tags", "custom", "last_activity_at")


class ContactNotFound(LookupError):
    """No such contact in this workspace, or not one the actor may see (the same answer)."""


def _scope_clause(session: TenantSession, params: list[Any]) -> str | None:
    owners = session.policy.owner_ids(OBJECT)
    if owners is None:
        return None
    params.append(sorted(owners))
    return f"contacts.owner_id = ANY(${len(params)}::bigint[])"


def visible_row(session: TenantSession, row: dict[str, Any]) -> dict[str, Any]:
    """A contact row as the actor may see it."""
    keep = {"id", "created_at", "updated_at", "owner_id", "erased_at", *FIELDS, *CONSENT_FIELDS, *CRM_FIELDS}
    if "marketing_consent" in session.policy.hidden_fields(OBJECT):
        keep -= set(CONSENT_FIELDS)
    values = {k: v for k, v in row.items() if k in keep}
    if "custom" in values:
        values["custom"] = json.loads(values["custom"]) if isinstance(values["custom"], str) else values["custom"] or {}
    if "tags" in values:
        values["tags"] = list(values["tags"] or [])
    return session.visible(OBJECT, values)


async def audit_disclosed(
    session: TenantSession, rows: Sequence[Mapping[str, Any]], *, listing: bool, supplied: Iterable[str] = ()
) -> None:
    """Audit the sensitive values among `rows`, contacts exactly as they go back to the actor.

    Only records and fields that carry a value count: an empty phone discloses nothing.
    `supplied` names fields whose values the actor has just sent (an update's echo), which
    are not a read. Hidden fields are already absent from `rows`.
    """
    skip = set(supplied)
    fields = [f for f in CONTACTS.sensitive if f not in skip and any(row.get(f) for row in rows)]
    ids = [row["id"] for row in rows if any(row.get(f) for f in fields)]
    await session.audit_read(OBJECT, ids, fields, listing=listing)


async def load_for_change(session: TenantSession, contact_id: int, *, lock: bool = False) -> dict[str, Any]:
    """The full row of a contact in the actor's scope, or ContactNotFound.

    The contact's subject key (crypto-shredding) comes with it, so the audit entry of a change
    needs no round trip of its own for the key: see `stored_key`.
    """
    params: list[Any] = [contact_id]
    scope = _scope_clause(session, params)
    sql = (
        "SELECT contacts.*, k.key_id AS _key_id, k.wrapped_key AS _wrapped_key FROM contacts"
        " LEFT JOIN subject_keys k ON k.subject_type = 'contacts' AND k.subject_id = contacts.id::text"
        " WHERE contacts.id = $1" + (f" AND {scope}" if scope else "") + (" FOR UPDATE OF contacts" if lock else "")
    )
    rows = await session.tx.execute_query_dict(sql, params)
    if not rows:
        raise ContactNotFound(f"contact {contact_id} not found")
    return rows[0]


def stored_key(row: dict[str, Any]) -> tuple[str, str] | None:
    """The (key_id, wrapped_key) that load_for_change read with a contact, if it has a key."""
    return (str(row["_key_id"]), str(row["_wrapped_key"])) if row.get("_key_id") else None


async def get_contact(actor: Actor, contact_id: int) -> dict[str, Any]:
    """One contact as the actor may see it."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        contact = visible_row(session, await load_for_change(session, contact_id))
        await audit_disclosed(session, [contact], listing=False)
        return contact


async def hidden_fields(actor: Actor) -> frozenset[str]:
    """The contact fields the actor's role may not see (for forms and column choices)."""
    async with acting_as(actor) as session:
        return session.policy.hidden_fields(OBJECT)
