"""Administering custom fields: tenant admins add, rename, reorder and delete the typed fields of
companies, contacts, leads and deals (workspace permission manage_settings; any member reads them).

A field's kind never changes (stored values would no longer fit it): delete and re-create it.
Removing an option still used by records is refused with how many use it, and deleting a field
removes its values from every record in the same transaction as the definition, audited.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from tortoise.exceptions import IntegrityError

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.records.custom import KINDS, OBJECT_TYPES, CustomField, field_from_row, load_custom_fields
from kith.tenants.records.refusals import RecordsRefusal, invalid

AUDIT_OBJECT = "custom_fields"
MANAGE = "manage_settings"
CHOICE_KINDS = ("select", "multi_select")
MAX_OPTIONS = 100
KEY_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"

ObjectTypeName = Literal["companies", "contacts", "leads", "deals", "tickets"]
KindName = Literal["text", "long_text", "number", "currency", "date", "select", "multi_select", "boolean", "url"]
Label = Annotated[str, Field(min_length=1, max_length=80, description="What people read, any script (e.g. 预算).")]
Option = Annotated[str, Field(max_length=100)]

assert set(KINDS) == set(KindName.__args__)  # type: ignore[attr-defined]  # one list of kinds
assert set(OBJECT_TYPES) == set(ObjectTypeName.__args__)  # type: ignore[attr-defined]


def _clean_options(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    cleaned = [v.strip() for v in value]
    if any(not v for v in cleaned):
        raise ValueError("an option cannot be empty")
    repeated = sorted({v for v in cleaned if cleaned.count(v) > 1})
    if repeated:
        raise ValueError(f"options must be distinct; repeated: {', '.join(repeated)}")
    if len(cleaned) > MAX_OPTIONS:
        raise ValueError(f"at most {MAX_OPTIONS} options")
    return cleaned


class CustomFieldIn(BaseModel):
    """A new custom field. `key` (how the API and filters name it: custom.<key>) is derived from
    the label when not given; `options` are required for select and multi_select, refused otherwise."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    object_type: ObjectTypeName
    label: Label
    kind: KindName
    key: Annotated[str, Field(pattern=KEY_PATTERN, description="Lowercase letters, digits and _.")] | None = None
    options: list[Option] = []
    required: bool = False
    position: Annotated[int, Field(ge=0, le=10000)] | None = None

    @field_validator("options")
    @classmethod
    def _options(cls, value: list[str]) -> list[str]:
        return _clean_options(value) or []


class CustomFieldPatch(BaseModel):
    """A change to a custom field: only the parts given change. `kind` cannot change."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    label: Label | None = None
    options: list[Option] | None = None
    required: bool | None = None
    position: Annotated[int, Field(ge=0, le=10000)] | None = None
    kind: KindName | None = Field(default=None, description="Refused unless unchanged: delete and re-create.")

    @field_validator("options")
    @classmethod
    def _options(cls, value: list[str] | None) -> list[str] | None:
        return _clean_options(value)


class CustomFieldOut(BaseModel):
    """A custom field's definition."""

    id: int
    object_type: str
    key: str
    label: str
    kind: str
    options: list[str]
    required: bool
    position: int


class CustomFieldList(BaseModel):
    items: list[CustomFieldOut]


def field_out(field: CustomField) -> CustomFieldOut:
    return CustomFieldOut(id=field.id, object_type=field.object_type, key=field.key, label=field.label,
                          kind=field.kind, options=list(field.options), required=field.required,
                          position=field.position)


def slug_key(label: str) -> str:
    """The key a label suggests: lowercase ascii letters, digits and _ ("" when nothing is left,
    e.g. for a Chinese label)."""
    text = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"[^a-z0-9]+", "_", text).strip("_")
    if text and not text[0].isalpha():
        text = f"f_{text}"
    return text[:40].rstrip("_")


async def _taken_keys(session: TenantSession, object_type: str) -> set[str]:
    rows = await session.tx.execute_query_dict("SELECT key FROM custom_fields WHERE object_type = $1", [object_type])
    return {r["key"] for r in rows}


def _free_key(base: str, taken: set[str]) -> str:
    if base and base not in taken:
        return base
    if not base:
        n = 1
        while f"field_{n}" in taken:
            n += 1
        return f"field_{n}"
    n = 2
    while f"{base[:36]}_{n}" in taken:
        n += 1
    return f"{base[:36]}_{n}"


def _check_options(kind: str, options: list[str]) -> None:
    if kind in CHOICE_KINDS and not options:
        raise invalid("options", f"A {kind} field needs 1 to {MAX_OPTIONS} options.")
    if kind not in CHOICE_KINDS and options:
        raise invalid("options", f"Only select and multi_select fields have options, not a {kind} field.")


async def _check_label(session: TenantSession, object_type: str, label: str, field_id: int = 0) -> None:
    rows = await session.tx.execute_query_dict(
        "SELECT 1 FROM custom_fields WHERE object_type = $1 AND lower(label) = lower($2) AND id <> $3",
        [object_type, label, field_id])
    if rows:
        raise RecordsRefusal(409, "duplicate_label", f"{object_type} already has a custom field labelled '{label}'.",
                             fields={"label": "Another field has this label."})


async def list_custom_fields(actor: Actor, object_type: str | None = None) -> list[CustomFieldOut]:
    """The custom fields of `object_type` (or of every type), in display order; any member may read them."""
    if object_type is not None and object_type not in OBJECT_TYPES:
        raise invalid("object_type", f"object_type must be one of: {', '.join(OBJECT_TYPES)}.")
    async with acting_as(actor) as session:
        if object_type is not None:
            return [field_out(f) for f in await load_custom_fields(session.tx, object_type)]
        rows = await session.tx.execute_query_dict(
            "SELECT * FROM custom_fields ORDER BY object_type, position, id")
        return [field_out(field_from_row(r)) for r in rows]


async def create_custom_field(actor: Actor, data: CustomFieldIn) -> CustomFieldOut:
    """Add a custom field (manage_settings), at the end unless a position is given."""
    _check_options(data.kind, data.options)
    async with acting_as(actor) as session:
        session.policy.require_manage(MANAGE)
        await _check_label(session, data.object_type, data.label)
        taken = await _taken_keys(session, data.object_type)
        if data.key is not None and data.key in taken:
            raise RecordsRefusal(409, "duplicate_key", f"{data.object_type} already has a custom field '{data.key}'.",
                                 fields={"key": "Another field has this key."})
        key = data.key or _free_key(slug_key(data.label), taken)
        position = data.position
        if position is None:
            rows = await session.tx.execute_query_dict(
                "SELECT coalesce(max(position) + 1, 0) AS next FROM custom_fields WHERE object_type = $1",
                [data.object_type])
            position = int(rows[0]["next"])
        try:
            rows = await session.tx.execute_query_dict(
                "INSERT INTO custom_fields (object_type, key, label, kind, options, required, position)"
                " VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7) RETURNING *",
                [data.object_type, key, data.label, data.kind, json.dumps(data.options, ensure_ascii=False),
                 data.required, position])
        except IntegrityError:  # a concurrent creation took the key or the label
            raise RecordsRefusal(409, "duplicate_field", "A custom field with this key or label was just added.",
                                 fields={"label": "Another field has this label or key."}) from None
        field = field_from_row(rows[0])
        diff = {"object_type": [None, field.object_type], "key": [None, key], "label": [None, field.label],
                "kind": [None, field.kind], "required": [None, field.required], "position": [None, position]}
        if field.options:
            diff["options"] = [None, list(field.options)]
        await session.audit("custom_field.create", AUDIT_OBJECT, field.id, diff)
        return field_out(field)


async def _locked_field(session: TenantSession, field_id: int) -> CustomField:
    rows = await session.tx.execute_query_dict("SELECT * FROM custom_fields WHERE id = $1 FOR UPDATE", [field_id])
    if not rows:
        raise RecordsRefusal(404, "not_found", "There is no such custom field.")
    return field_from_row(rows[0])


async def option_usage(session: TenantSession, field: CustomField, option: str) -> int:
    """How many records of the field's type hold `option` in the field."""
    if field.kind == "multi_select":
        sql = f"SELECT count(*) AS n FROM {field.object_type} WHERE custom -> $1 ? $2"  # noqa: S608 - fixed names
    else:
        sql = f"SELECT count(*) AS n FROM {field.object_type} WHERE custom ->> $1 = $2"  # noqa: S608
    rows = await session.tx.execute_query_dict(sql, [field.key, option])
    return int(rows[0]["n"])


async def update_custom_field(actor: Actor, field_id: int, changes: CustomFieldPatch) -> CustomFieldOut:
    """Rename, reorder, make required or change the options of a custom field (manage_settings)."""
    given = changes.model_dump(exclude_unset=True)
    async with acting_as(actor) as session:
        session.policy.require_manage(MANAGE)
        field = await _locked_field(session, field_id)
        kind = given.pop("kind", None)
        if kind is not None and kind != field.kind:
            raise RecordsRefusal(
                422, "kind_fixed", "The kind of a custom field cannot change: delete and re-create the field.",
                fields={"kind": "The kind cannot change: delete and re-create the field."})
        given = {k: v for k, v in given.items() if v is not None}
        if "label" in given:
            await _check_label(session, field.object_type, given["label"], field.id)
        if "options" in given:
            _check_options(field.kind, given["options"])
            for option in [o for o in field.options if o not in given["options"]]:
                used = await option_usage(session, field, option)
                if used:
                    noun = "record uses" if used == 1 else "records use"
                    message = (f"The option '{option}' cannot be removed: {used} {noun} it. "
                               "Change those records first.")
                    raise RecordsRefusal(409, "option_in_use", message, fields={"options": message})
        current = {"label": field.label, "options": list(field.options), "required": field.required,
                   "position": field.position}
        diff = {k: [current[k], v] for k, v in given.items() if current[k] != v}
        if diff:
            values = {**current, **{k: new for k, (_, new) in diff.items()}}
            rows = await session.tx.execute_query_dict(
                "UPDATE custom_fields SET label = $2, options = $3::jsonb, required = $4, position = $5"
                " WHERE id = $1 RETURNING *",
                [field.id, values["label"], json.dumps(values["options"], ensure_ascii=False), values["required"],
                 values["position"]])
            field = field_from_row(rows[0])
            await session.audit("custom_field.update", AUDIT_OBJECT, field.id, {"key": [field.key, field.key], **diff})
        return field_out(field)


async def delete_custom_field(actor: Actor, field_id: int) -> int:
    """Delete a custom field and its value in every record (one transaction, audited, manage_settings).
    Returns how many records held a value."""
    async with acting_as(actor) as session:
        session.policy.require_manage(MANAGE)
        field = await _locked_field(session, field_id)
        await session.tx.execute_query("DELETE FROM custom_fields WHERE id = $1", [field.id])
        rows = await session.tx.execute_query_dict(
            f"WITH cleared AS (UPDATE {field.object_type} SET custom = custom - $1"  # noqa: S608 - fixed names
            " WHERE custom ? $1 RETURNING 1) SELECT count(*) AS n FROM cleared", [field.key])
        cleared = int(rows[0]["n"])
        await session.audit("custom_field.delete", AUDIT_OBJECT, field.id, {
            "object_type": [field.object_type, None], "key": [field.key, None], "label": [field.label, None],
            "kind": [field.kind, None], "values_removed": [cleared, None]})
        return cleared
