"""The two kinds of record that can be deduplicated and merged (contacts, companies): how a row
is read in the actor's scope and shown as the actor may see it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kith.platform.access.session import TenantSession
from kith.tenants.companies import queries as company_queries
from kith.tenants.contacts import queries as contact_queries


class RecordNotFound(LookupError):
    """No such record in this workspace, or not one the actor may reach (the same answer)."""


@dataclass(frozen=True)
class MergeKind:
    object_type: str
    action: str  # the audit actions' prefix: contact.merge, company.merge
    # fields whose value the person chooses (the kept record's or the other's)
    fields: tuple[str, ...]
    # the shown row's label fields on the duplicates and merge pages
    summary: tuple[str, ...]
    link: str  # the foreign-key column of timeline entries (activities.<link>)


KINDS: dict[str, MergeKind] = {
    "contacts": MergeKind(
        "contacts", "contact",
        ("name", "email", "phone", "company_name", "company_id", "title", "lifecycle_stage", "source", "notes",
         "marketing_consent"),
        ("name", "email", "phone", "company_name"), "contact_id"),
    "companies": MergeKind(
        "companies", "company",
        ("name", "domain", "industry", "size", "phone", "address", "city", "country", "notes"),
        ("name", "domain", "phone", "city"), "company_id"),
}
# marketing consent comes with its source and times (one registered field)
CONSENT_COLUMNS = ("marketing_consent", "consent_source", "consent_at", "unsubscribed_at")
INTERNAL = ("_key_id", "_wrapped_key")


def kind_of(object_type: str) -> MergeKind:
    """The merge rules of `object_type`, or RecordNotFound for kinds that cannot be merged."""
    kind = KINDS.get(object_type)
    if kind is None:
        raise RecordNotFound(f"records of type {object_type!r} cannot be deduplicated")
    return kind


def json_value(value: Any) -> Any:
    """A jsonb column as Python (asyncpg returns jsonb as text without a codec)."""
    return json.loads(value) if isinstance(value, str) else value


def scope_sql(session: TenantSession, object_type: str, params: list[Any], column: str = "owner_id") -> str | None:
    """The condition keeping `column` within the actor's record scope, or None for every record."""
    owners = session.policy.owner_ids(object_type)
    if owners is None:
        return None
    params.append(sorted(owners))
    return f"{column} = ANY(${len(params)}::bigint[])"


async def load_rows(session: TenantSession, object_type: str, ids: list[int], *, lock: bool = False
                    ) -> dict[int, dict[str, Any]]:
    """Full rows of `ids` within the actor's scope, by id (locked in id order with `lock`).
    Contacts come with their subject key columns (for the audit of a change)."""
    params: list[Any] = [sorted(set(ids))]
    scope = scope_sql(session, object_type, params, f"{object_type}.owner_id")
    keys = join = ""
    if object_type == "contacts":
        keys = ", k.key_id AS _key_id, k.wrapped_key AS _wrapped_key"
        join = " LEFT JOIN subject_keys k ON k.subject_type = 'contacts' AND k.subject_id = contacts.id::text"
    rows = await session.tx.execute_query_dict(
        f"SELECT {object_type}.*{keys} FROM {object_type}{join} WHERE {object_type}.id = ANY($1::bigint[])"
        + (f" AND {scope}" if scope else "") + f" ORDER BY {object_type}.id"
        + (f" FOR UPDATE OF {object_type}" if lock else ""), params)  # noqa: S608 - fixed names
    return {int(r["id"]): r for r in rows}


async def load_one(session: TenantSession, object_type: str, record_id: int) -> dict[str, Any]:
    """One full row in the actor's scope, or RecordNotFound."""
    row = (await load_rows(session, object_type, [record_id])).get(record_id)
    if row is None:
        raise RecordNotFound(f"{object_type} {record_id} not found")
    return row


def shown(session: TenantSession, object_type: str, row: dict[str, Any]) -> dict[str, Any]:
    """A row as the actor may see it."""
    clean = {k: v for k, v in row.items() if k not in INTERNAL}
    if object_type == "contacts":
        values = contact_queries.visible_row(session, clean)
        for extra in ("company_id", "title", "lifecycle_stage", "source", "tags", "custom", "last_activity_at"):
            if extra in clean:
                values[extra] = json_value(clean[extra]) if extra == "custom" else clean[extra]
        return session.visible("contacts", values)
    return company_queries.visible_row(session, clean)
