"""Merging two duplicate records (contacts or companies) into one.

One transaction: the kept record takes the values chosen field by field, the union of both
records' tags and the other's custom values for keys it lacks; every record that referred to
the other (deals, activities and the timeline, tasks, orders, consent history, a company's
contacts, converted leads, earlier merges) is re-pointed to the kept one; the merge is recorded
in `record_merges` with the other's full row and the counts moved, told on the kept record's
timeline and audited ("<kind>.merge" on the kept record with the field diff, "<kind>.delete"
for the other); then the other record is deleted. Anything failing rolls all of it back.

The referring columns are read from the catalog (every foreign key to the table), so a table a
later migration adds with a reference to contacts or companies is carried along too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.activities.events import record_event
from kith.tenants.contacts.privacy import record_consent_event
from kith.tenants.contacts.queries import stored_key
from kith.tenants.search.records import (
    CONSENT_COLUMNS,
    INTERNAL,
    MergeKind,
    RecordNotFound,
    json_value,
    kind_of,
    load_rows,
    shown,
)

Choice = Literal["kept", "other"]


class MergeRefused(ValueError):
    """A merge that cannot be done as asked; `field` names what to change."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


@dataclass
class MergeOutcome:
    merge_id: int
    object_type: str
    kept_id: int
    merged_id: int
    kept: dict[str, Any]
    changed: list[str]
    moved: dict[str, int] = field(default_factory=dict)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def default_choices(kind: MergeKind, kept: dict[str, Any], other: dict[str, Any]) -> dict[str, Choice]:
    """What the merge screen proposes: the kept record's values, except where it has none and the other has."""
    return {f: "other" if _empty(kept.get(f)) and not _empty(other.get(f)) else "kept"
            for f in kind.fields if f in kept}


async def referring_columns(session: TenantSession, table: str) -> list[tuple[str, str]]:
    """(table, column) of every single-column foreign key to `table` in the tenant's schema."""
    rows = await session.tx.execute_query_dict(
        "SELECT cl.relname AS tbl, a.attname AS col FROM pg_constraint c"
        " JOIN pg_class cl ON cl.oid = c.conrelid"
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
        " WHERE c.contype = 'f' AND c.confrelid = $1::regclass AND cardinality(c.conkey) = 1"
        " ORDER BY 1, 2", [table])
    return [(str(r["tbl"]), str(r["col"])) for r in rows]


async def _move_related(session: TenantSession, object_type: str, kept_id: int, other_id: int) -> dict[str, int]:
    moved: dict[str, int] = {}
    for table, column in await referring_columns(session, object_type):
        rows = await session.tx.execute_query_dict(
            f"WITH moved AS (UPDATE {_quoted(table)} SET {_quoted(column)} = $1 WHERE {_quoted(column)} = $2"
            " RETURNING 1) SELECT count(*) AS n FROM moved", [kept_id, other_id])  # noqa: S608 - catalog names
        moved[table] = moved.get(table, 0) + int(rows[0]["n"])
    rows = await session.tx.execute_query_dict(
        "WITH moved AS (UPDATE record_merges SET kept_id = $1 WHERE object_type = $3 AND kept_id = $2 RETURNING 1)"
        " SELECT count(*) AS n FROM moved", [kept_id, other_id, object_type])
    moved["record_merges"] = int(rows[0]["n"])
    return moved


def _merged_values(kind: MergeKind, kept: dict[str, Any], other: dict[str, Any],
                   choices: dict[str, Choice]) -> dict[str, Any]:
    """The kept record's columns that change: chosen fields, tags, custom values, last activity."""
    changes: dict[str, Any] = {}
    for name, choice in choices.items():
        if choice == "other" and name in other and other[name] != kept[name]:
            if name == "marketing_consent":
                changes.update({c: other[c] for c in CONSENT_COLUMNS if other[c] != kept[c]})
            else:
                changes[name] = other[name]
    if "tags" in kept:
        kept_tags = list(kept["tags"] or [])
        tags = kept_tags + [t for t in other.get("tags") or [] if t not in kept_tags]
        if tags != kept_tags:
            changes["tags"] = tags
    if "custom" in kept:
        kept_custom = dict(json_value(kept["custom"]) or {})
        custom = dict(kept_custom)
        for key, value in (json_value(other.get("custom")) or {}).items():
            if _empty(custom.get(key)) and not _empty(value):
                custom[key] = value
        if custom != kept_custom:
            changes["custom"] = custom
    later = other.get("last_activity_at")
    if later is not None and (kept.get("last_activity_at") is None or later > kept["last_activity_at"]):
        changes["last_activity_at"] = later
    return changes


def check_choices(kind: MergeKind, choices: dict[str, str]) -> dict[str, Choice]:
    """The per-field choices, refusing unknown fields and values with the field named."""
    clean: dict[str, Choice] = {}
    for name, choice in choices.items():
        if name not in kind.fields:
            raise MergeRefused(f"fields.{name}", f"'{name}' is not a field you can choose when merging "
                               f"{kind.object_type}; choose among {', '.join(kind.fields)}")
        if choice not in ("kept", "other"):
            raise MergeRefused(f"fields.{name}", "choose 'kept' or 'other'")
        clean[name] = "kept" if choice == "kept" else "other"
    return clean


async def merge_in(session: TenantSession, object_type: str, kept_id: int, other_id: int,
                   choices: dict[str, str]) -> MergeOutcome:
    """Merge `other_id` into `kept_id` inside an existing session (see `merge_records`)."""
    kind = kind_of(object_type)
    session.require(object_type, "delete")  # the other record disappears
    session.require(object_type, "edit")  # the kept one changes
    if kept_id == other_id:
        raise MergeRefused("other_id", "a record cannot be merged with itself; choose another record")
    wanted = check_choices(kind, choices)
    session.require_fields(object_type, [f for f, c in wanted.items() if c == "other"])
    rows = await load_rows(session, object_type, [kept_id, other_id], lock=True)
    if kept_id not in rows or other_id not in rows:
        raise RecordNotFound(f"{object_type} {kept_id if kept_id not in rows else other_id} not found")
    kept, other = rows[kept_id], rows[other_id]
    changes = _merged_values(kind, kept, other, wanted)
    snapshot = await session.tx.execute_query_dict(
        f"SELECT to_jsonb(t) AS row FROM {object_type} t WHERE id = $1", [other_id])  # noqa: S608 - fixed names
    moved = await _move_related(session, object_type, kept_id, other_id)
    merge = await session.tx.execute_query_dict(
        "INSERT INTO record_merges (object_type, kept_id, merged_id, merged_values, moved, merged_by_id)"
        " VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6) RETURNING id",
        [object_type, kept_id, other_id, json.dumps(json_value(snapshot[0]["row"]), ensure_ascii=False),
         json.dumps(moved), session.actor.identity_id])
    # the other goes first: a value it gives up (an email, a domain) is then free for the kept one
    await session.tx.execute_query(f"DELETE FROM {object_type} WHERE id = $1", [other_id])  # noqa: S608
    updated = kept
    if changes:
        sets = ", ".join(f"{_quoted(c)} = ${i}" + ("::jsonb" if c == "custom" else "")
                         for i, c in enumerate(changes, start=2))
        values = [json.dumps(v, ensure_ascii=False) if c == "custom" else v for c, v in changes.items()]
        result = await session.tx.execute_query_dict(
            f"UPDATE {object_type} SET {sets}, updated_at = now() WHERE id = $1 RETURNING *",  # noqa: S608
            [kept_id, *values])
        updated = {**result[0], **{k: kept[k] for k in INTERNAL if k in kept}}
    if object_type == "contacts" and "marketing_consent" in changes:
        await record_consent_event(session, kept_id, changes["marketing_consent"], "merge",
                                   changes.get("consent_at") or datetime.now(UTC))
    await record_event(session, "record.merged",
                       {"object_type": object_type, "merged_id": other_id, "merged_name": other["name"],
                        "moved": moved}, subject=f"Merged {other['name']}"[:200], **{kind.link: kept_id})
    diff: dict[str, Any] = {c: [json_value(kept[c]) if c == "custom" else kept[c], v] for c, v in changes.items()}
    diff["merged_id"] = [None, other_id]
    subject = (object_type, kept_id) if object_type == "contacts" else None
    await session.audit(f"{kind.action}.merge", object_type, kept_id, diff, subject=subject,
                        stored_key=stored_key(kept) if subject else None)
    gone = {f: [other[f], None] for f in kind.fields if not _empty(other.get(f))}
    await session.audit(f"{kind.action}.delete", object_type, other_id, gone,
                        subject=(object_type, other_id) if subject else None,
                        stored_key=stored_key(other) if subject else None)
    kept_shown = shown(session, object_type, updated)
    if object_type == "contacts":
        fields = [f for f in ("email", "phone") if kept_shown.get(f)]
        await session.audit_read("contacts", [kept_id], fields)
    return MergeOutcome(int(merge[0]["id"]), object_type, kept_id, other_id, kept_shown, sorted(changes), moved)


async def merge_records(actor: Actor, object_type: str, kept_id: int, other_id: int,
                        choices: dict[str, str] | None = None) -> MergeOutcome:
    """Merge the record `other_id` into `kept_id` ("contacts" or "companies") and delete it.

    `choices` says per field whose value stays: "kept" (the default) or "other". Needs edit on
    the kept record and delete on the other, both within the actor's scope; RecordNotFound when
    either is missing or out of reach (a record of another workspace is simply not there),
    MergeRefused for a record merged with itself or an unknown field."""
    async with acting_as(actor) as session:
        return await merge_in(session, object_type, kept_id, other_id, choices or {})


@dataclass
class MergePreview:
    object_type: str
    kept: dict[str, Any]
    other: dict[str, Any]
    fields: list[str]  # the fields the actor may choose (visible ones)
    choices: dict[str, Choice]
    related: dict[str, int]  # how many records refer to the other one, per table


async def merge_preview(actor: Actor, object_type: str, kept_id: int, other_id: int) -> MergePreview:
    """Both records side by side as the actor may see them, the proposed choices and what would move."""
    kind = kind_of(object_type)
    async with acting_as(actor) as session:
        session.require(object_type, "view")
        if kept_id == other_id:
            raise MergeRefused("other_id", "a record cannot be merged with itself; choose another record")
        rows = await load_rows(session, object_type, [kept_id, other_id])
        if kept_id not in rows or other_id not in rows:
            raise RecordNotFound(f"{object_type} {kept_id if kept_id not in rows else other_id} not found")
        kept, other = shown(session, object_type, rows[kept_id]), shown(session, object_type, rows[other_id])
        fields = [f for f in kind.fields if f in kept]
        related: dict[str, int] = {}
        for table, column in await referring_columns(session, object_type):
            counted = await session.tx.execute_query_dict(
                f"SELECT count(*) AS n FROM {_quoted(table)} WHERE {_quoted(column)} = $1", [other_id])  # noqa: S608
            if counted[0]["n"]:
                related[table] = related.get(table, 0) + int(counted[0]["n"])
        if object_type == "contacts":
            await session.audit_read("contacts", [kept_id, other_id],
                                     [f for f in ("email", "phone") if kept.get(f) or other.get(f)], listing=True)
        return MergePreview(object_type, kept, other, fields, default_choices(kind, kept, other), related)
