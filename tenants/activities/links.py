"""The records an activity or a task belongs to, checked through the actor's permissions.

Each linked record must exist and be visible to the actor under its own object type's rules
(the role grants 'view', and the record's owner is within the role's scope), or the change is
refused naming the field, with the same words for "missing" and "not yours". A contact brings
its company along, a deal its company and contact, so their timelines show the entry too.
"""

from __future__ import annotations

from typing import Any

from kith.platform.access.session import TenantSession

LINK_FIELDS: tuple[str, ...] = ("company_id", "contact_id", "lead_id", "deal_id")
# link field -> (object type and table, what a person calls one)
LINK_TYPES: dict[str, tuple[str, str]] = {
    "company_id": ("companies", "company"),
    "contact_id": ("contacts", "contact"),
    "lead_id": ("leads", "lead"),
    "deal_id": ("deals", "deal"),
}
RECORD_TYPES: dict[str, str] = {object_type: field for field, (object_type, _) in LINK_TYPES.items()}
# the columns a linked record brings along (its own links)
_CARRIED = {"contacts": ("company_id",), "deals": ("company_id", "contact_id")}


class InvalidInput(ValueError):
    """Input that breaks a rule of this domain; `fields` says which field and why."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


class RecordNotFound(LookupError):
    """Named records do not exist in this workspace, or the actor may not see them; `fields`
    gives each link field that failed with its message, `field` and `noun` the first."""

    def __init__(self, *fields: str) -> None:
        self.field = fields[0]
        self.noun = LINK_TYPES[self.field][1]
        self.fields = {f: f"There is no such {LINK_TYPES[f][1]}." for f in fields}
        super().__init__(self.fields[self.field])


async def load_record(session: TenantSession, field: str, record_id: int) -> dict[str, Any] | None:
    """The record a link field names, if it exists and the actor may view it; else None."""
    object_type, _ = LINK_TYPES[field]
    if not session.policy.can(object_type, "view"):
        return None
    columns = ", ".join(("id", "owner_id", *_CARRIED.get(object_type, ())))
    rows = await session.tx.execute_query_dict(
        f"SELECT {columns} FROM {object_type} WHERE id = $1", [record_id])  # noqa: S608 - fixed names
    if not rows:
        return None
    owners = session.policy.owner_ids(object_type)
    # a company or lead in the public pool (nobody owns it) is open to everyone who may view
    # its type: reps look at its history before they claim it
    in_pool = object_type in ("companies", "leads") and rows[0]["owner_id"] is None
    if owners is not None and rows[0]["owner_id"] not in owners and not in_pool:
        return None
    return rows[0]


async def require_record(session: TenantSession, field: str, record_id: int) -> dict[str, Any]:
    """`load_record`, raising RecordNotFound(field) when there is no such record for the actor."""
    record = await load_record(session, field, record_id)
    if record is None:
        raise RecordNotFound(field)
    return record


async def resolve_links(session: TenantSession, given: dict[str, int | None]) -> dict[str, int | None]:
    """The full links of a new entry from those given: each checked (RecordNotFound names every
    one that fails), plus the company and contact a contact or deal brings (when not given)."""
    links: dict[str, int | None] = {f: given.get(f) for f in LINK_FIELDS}
    if not any(links.values()):
        raise InvalidInput({"links": "Link it to at least one record: company_id, contact_id, lead_id or deal_id."})
    carried: dict[str, int] = {}
    missing: list[str] = []
    for field in LINK_FIELDS:
        record_id = links[field]
        if record_id is None:
            continue
        record = await load_record(session, field, record_id)
        if record is None:
            missing.append(field)
            continue
        for column in _CARRIED.get(LINK_TYPES[field][0], ()):
            if record.get(column) is not None:
                carried.setdefault(column, int(record[column]))
    if missing:
        raise RecordNotFound(*missing)
    if links["contact_id"] is None and "contact_id" in carried:
        links["contact_id"] = carried["contact_id"]
        if "company_id" not in carried:  # a deal without a company: its contact's company
            rows = await session.tx.execute_query_dict(
                "SELECT company_id FROM contacts WHERE id = $1", [carried["contact_id"]])
            if rows and rows[0]["company_id"] is not None:
                carried["company_id"] = int(rows[0]["company_id"])
    if links["company_id"] is None and "company_id" in carried:
        links["company_id"] = carried["company_id"]
    return links


def links_of(row: dict[str, Any]) -> dict[str, int | None]:
    """The link fields of a stored activity or task."""
    return {f: row.get(f) for f in LINK_FIELDS}
