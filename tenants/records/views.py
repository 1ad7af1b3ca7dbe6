"""Saved list views: a list's filters, sort, search and columns under a name, private to their
owner or shared with every member who may view that kind of record.

Only the owner changes or deletes a private view (others never see it: 404); a shared view is
changed or deleted by its owner or by a holder of the workspace permission manage_settings.
A definition is checked against the list's spec (fields, operators, values) when saved, so a
saved view always opens; a field deleted later (a custom field) is reported when it is opened.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from tortoise.exceptions import IntegrityError

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.records.custom import OBJECT_TYPES, load_custom_fields
from kith.tenants.records.kinds import RecordKind, record_kind
from kith.tenants.records.listing import ListError, ListQuery, RecordPage, query_records, validate_query
from kith.tenants.records.refusals import RecordsRefusal, invalid

AUDIT_OBJECT = "saved_views"
MAX_FILTERS = 20

ViewName = Annotated[str, Field(min_length=1, max_length=80, description="Any script (e.g. 本月重点客户).")]


class ViewDefinition(BaseModel):
    """What a view shows: filters as [field, operator, value] (custom fields as custom.<key>),
    a sort ("name", "-amount"), a search text and the columns (None: the list's default)."""

    model_config = ConfigDict(extra="forbid")

    filters: Annotated[list[tuple[str, str, str]], Field(max_length=MAX_FILTERS)] = []
    sort: str | None = None
    q: Annotated[str, Field(max_length=200)] = ""
    columns: list[str] | None = None


class SavedViewIn(BaseModel):
    """A new saved view of a list (companies, contacts, leads or deals)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    object_type: str
    name: ViewName
    shared: bool = False
    definition: ViewDefinition = ViewDefinition()


class SavedViewPatch(BaseModel):
    """A change to a saved view: only the parts given change."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: ViewName | None = None
    shared: bool | None = None
    definition: ViewDefinition | None = None


class SavedViewOut(BaseModel):
    id: int
    object_type: str
    name: str
    shared: bool
    owner_id: int | None
    mine: bool = Field(description="Whether the caller owns the view.")
    definition: ViewDefinition
    created_at: datetime
    updated_at: datetime


class SavedViewList(BaseModel):
    items: list[SavedViewOut]


def list_query_of(definition: ViewDefinition, *, limit: int = 25) -> ListQuery:
    """The list query a view's definition makes (first page)."""
    return ListQuery(filters=[(f[0], f[1], f[2]) for f in definition.filters], sort=definition.sort, q=definition.q,
                     cursor=None, limit=limit, columns=list(definition.columns) if definition.columns else None)


def _definition(raw: Any) -> ViewDefinition:
    data = json.loads(raw) if isinstance(raw, str) else raw
    return ViewDefinition.model_validate(data or {})


def _out(row: Mapping[str, Any], actor: Actor) -> SavedViewOut:
    owner = row["owner_id"]
    return SavedViewOut(id=int(row["id"]), object_type=row["object_type"], name=row["name"], shared=row["shared"],
                        owner_id=owner, mine=owner is not None and owner == actor.identity_id,
                        definition=_definition(row["definition"]), created_at=row["created_at"],
                        updated_at=row["updated_at"])


def _require_list(session: TenantSession, object_type: str) -> None:
    kind = record_kind(object_type)
    if kind is None:
        raise invalid("object_type", f"There is no list of '{object_type}' to save a view of.")
    session.require(object_type, "view")


async def _check_definition(session: TenantSession, object_type: str, definition: ViewDefinition) -> None:
    kind = record_kind(object_type)
    assert kind is not None
    custom = await load_custom_fields(session.tx, object_type) if kind.spec.custom_fields else []
    try:
        validate_query(kind.spec, list_query_of(definition), custom)
    except ListError as exc:
        raise RecordsRefusal(422, "invalid_input", f"The view's definition is not valid: {exc.message}",
                             fields={f"definition.{exc.field}": exc.message}) from None


def _duplicate(name: str) -> RecordsRefusal:
    return RecordsRefusal(409, "duplicate_name", f"You already have a view called '{name}' of this list.",
                          fields={"name": "You already have a view with this name."})


async def list_views(actor: Actor, object_type: str | None = None) -> list[SavedViewOut]:
    """The views the actor may use (their own and the shared ones) of one list, or of every list
    the actor may view when `object_type` is None; by name."""
    async with acting_as(actor) as session:
        if object_type is not None:
            _require_list(session, object_type)
            types = [object_type]
        else:
            types = [t for t in OBJECT_TYPES if record_kind(t) is not None and session.policy.can(t, "view")]
        rows = await session.tx.execute_query_dict(
            "SELECT * FROM saved_views WHERE object_type = ANY($1::text[]) AND (owner_id = $2 OR shared)"
            " ORDER BY object_type, lower(name), id", [types, actor.identity_id])
        return [_out(r, actor) for r in rows]


async def get_view(actor: Actor, view_id: int) -> SavedViewOut:
    """One view the actor may use (own or shared); 404 otherwise."""
    async with acting_as(actor) as session:
        row = await visible_view(session, view_id)
        return _out(row, actor)


async def visible_view(session: TenantSession, view_id: int, *, lock: bool = False) -> Mapping[str, Any]:
    """A saved view the actor may use (their own, or a shared one), or a 404 RecordsRefusal."""
    rows = await session.tx.execute_query_dict(
        "SELECT * FROM saved_views WHERE id = $1 AND (owner_id = $2 OR shared)" + (" FOR UPDATE" if lock else ""),
        [view_id, session.actor.identity_id])
    if not rows or record_kind(rows[0]["object_type"]) is None \
            or not session.policy.can(rows[0]["object_type"], "view"):
        raise RecordsRefusal(404, "not_found", "There is no such saved view.")
    return rows[0]


async def create_view(actor: Actor, data: SavedViewIn) -> SavedViewOut:
    """Save a view of a list, owned by the actor (private unless `shared`)."""
    async with acting_as(actor) as session:
        _require_list(session, data.object_type)
        if actor.identity_id is None:
            raise invalid("owner_id", "Only a person can own a saved view.")
        await _check_definition(session, data.object_type, data.definition)
        definition = data.definition.model_dump()
        try:
            rows = await session.tx.execute_query_dict(
                "INSERT INTO saved_views (object_type, name, owner_id, shared, definition)"
                " VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING *",
                [data.object_type, data.name, actor.identity_id, data.shared,
                 json.dumps(definition, ensure_ascii=False)])
        except IntegrityError:
            raise _duplicate(data.name) from None
        row = rows[0]
        await session.audit("saved_view.create", AUDIT_OBJECT, row["id"], {
            "object_type": [None, data.object_type], "name": [None, data.name], "shared": [None, data.shared],
            "definition": [None, definition]})
        return _out(row, actor)


def _require_change(session: TenantSession, row: Mapping[str, Any]) -> None:
    if row["owner_id"] != session.actor.identity_id:
        # only a shared view of someone else is visible here; changing it takes manage_settings
        session.policy.require_manage("manage_settings")


async def update_view(actor: Actor, view_id: int, changes: SavedViewPatch) -> SavedViewOut:
    """Rename, share or unshare a view or change its definition (owner, or manage_settings for a shared one)."""
    given = {k: v for k, v in changes.model_dump(exclude_unset=True).items() if v is not None}
    async with acting_as(actor) as session:
        row = await visible_view(session, view_id, lock=True)
        _require_change(session, row)
        current = {"name": row["name"], "shared": row["shared"],
                   "definition": _definition(row["definition"]).model_dump()}
        if "definition" in given:
            await _check_definition(session, row["object_type"], changes.definition or ViewDefinition())
        diff = {k: [current[k], v] for k, v in given.items() if current[k] != v}
        if not diff:
            return _out(row, actor)
        values = {**current, **{k: new for k, (_, new) in diff.items()}}
        try:
            rows = await session.tx.execute_query_dict(
                "UPDATE saved_views SET name = $2, shared = $3, definition = $4::jsonb, updated_at = now()"
                " WHERE id = $1 RETURNING *",
                [view_id, values["name"], values["shared"], json.dumps(values["definition"], ensure_ascii=False)])
        except IntegrityError:
            raise _duplicate(values["name"]) from None
        await session.audit("saved_view.update", AUDIT_OBJECT, view_id, diff)
        return _out(rows[0], actor)


async def delete_view(actor: Actor, view_id: int) -> None:
    """Delete a view (owner, or manage_settings for a shared one)."""
    async with acting_as(actor) as session:
        row = await visible_view(session, view_id, lock=True)
        _require_change(session, row)
        await session.tx.execute_query("DELETE FROM saved_views WHERE id = $1", [view_id])
        await session.audit("saved_view.delete", AUDIT_OBJECT, view_id, {
            "object_type": [row["object_type"], None], "name": [row["name"], None], "shared": [row["shared"], None]})


# --- the list screen: one transaction for a list page -------------------------------------


@dataclass
class Member:
    identity_id: int
    email: str
    name: str
    active: bool


@dataclass
class ListScreen:
    """What a list page shows: a page of records, the members (owner names, bulk assign), the
    saved views of the list and the one opened (if any), in one transaction."""

    kind: RecordKind
    query: ListQuery
    page: RecordPage
    members: list[Member]
    views: list[SavedViewOut]
    view: SavedViewOut | None
    can_edit: bool
    can_delete: bool
    can_create: bool

    @property
    def member_emails(self) -> dict[int, str]:
        return {m.identity_id: m.email for m in self.members}


async def load_members(session: TenantSession) -> list[Member]:
    """The workspace's members with their emails (one query)."""
    rows = await session.tx.execute_query_dict(
        "SELECT m.identity_id, i.email, coalesce(i.display_name, '') AS name, m.is_active"
        " FROM public.memberships m JOIN public.identities i ON i.id = m.identity_id"
        " WHERE m.tenant_id = $1 ORDER BY lower(i.email)", [session.actor.tenant_id])
    return [Member(int(r["identity_id"]), r["email"], r["name"], bool(r["is_active"])) for r in rows]


async def open_list(actor: Actor, object_type: str, query: ListQuery, *, view_id: int | None = None) -> ListScreen:
    """A list page of `object_type` for the actor. With `view_id` (a view the actor may use) the
    view's filters, sort, search and columns replace the query's (its cursor and limit stay).
    Raises ListError for a query the engine refuses and RecordsRefusal(404) for an unknown view."""
    kind = record_kind(object_type)
    if kind is None:
        raise RecordsRefusal(404, "not_found", f"There is no list of '{object_type}'.")
    async with acting_as(actor) as session:
        session.require(object_type, "view")
        view = None
        if view_id is not None:
            row = await visible_view(session, view_id)
            if row["object_type"] != object_type:
                raise RecordsRefusal(404, "not_found", "There is no such saved view.")
            view = _out(row, actor)
            opened = list_query_of(view.definition, limit=query.limit)
            opened.cursor = query.cursor
            query = opened
        page = await query_records(session, kind.spec, query, with_custom_fields=True)
        rows = await session.tx.execute_query_dict(
            "SELECT * FROM saved_views WHERE object_type = $1 AND (owner_id = $2 OR shared)"
            " ORDER BY lower(name), id", [object_type, actor.identity_id])
        policy = session.policy
        return ListScreen(kind=kind, query=query, page=page, members=await load_members(session),
                          views=[_out(r, actor) for r in rows], view=view,
                          can_edit=policy.can(object_type, "edit"), can_delete=policy.can(object_type, "delete"),
                          can_create=policy.can(object_type, "create"))
