"""Bulk changes to many records of one kind: edit the same fields, assign to a member, delete.

Each runs in ONE transaction through the kind's own single-record change (`update_in`,
`delete_in`), so every record gets the checks and the audit entry it would get alone, and the
whole change is all or nothing: when one record is refused nothing changes and the refusal
names that record. Records outside the actor's scope (or of another workspace, or missing) are
refused up front, named, with the same 404 for each of those cases.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import BaseModel
from tortoise.exceptions import BaseORMException

from kith.platform.access.actor import Actor
from kith.platform.access.rules import PermissionDenied
from kith.platform.access.session import TenantSession, acting_as
from kith.platform.billing.plans import LimitExceeded
from kith.platform.billing.subscriptions import WorkspaceReadOnly
from kith.tenants.contacts.schemas import phone_context
from kith.tenants.records.kinds import RecordKind, record_kind
from kith.tenants.records.refusals import RecordsRefusal, invalid

MAX_IDS = 500
# refusals that are about the actor or the workspace, not one record: passed on as they are
_PASSED_ON = (PermissionDenied, WorkspaceReadOnly, LimitExceeded, asyncpg.PostgresError, BaseORMException)


@dataclass(frozen=True)
class BulkResult:
    object_type: str
    ids: list[int]

    @property
    def count(self) -> int:
        return len(self.ids)


def _kind(object_type: str) -> RecordKind:
    kind = record_kind(object_type)
    if kind is None:
        raise RecordsRefusal(404, "not_found", f"There is no list of '{object_type}'.")
    return kind


def _unique_ids(ids: Sequence[int]) -> list[int]:
    if len(ids) > MAX_IDS:
        raise invalid("ids", f"At most {MAX_IDS} records at a time; {len(ids)} were selected.")
    seen: dict[int, None] = {}
    for record_id in ids:
        if isinstance(record_id, bool) or not isinstance(record_id, int) or record_id <= 0:
            raise invalid("ids", f"Not a record id: {record_id!r}.")
        seen.setdefault(record_id, None)
    return list(seen)


async def _reachable(session: TenantSession, kind: RecordKind, ids: list[int]) -> None:
    """Lock the records (in id order, so two bulk changes never deadlock) or refuse, naming every
    id that is missing or outside the actor's scope."""
    if not ids:
        return
    table, owner_field = kind.spec.table, kind.spec.owner_field
    params: list[Any] = [ids]
    sql = f"SELECT id FROM {table} WHERE id = ANY($1::bigint[])"  # noqa: S608 - names from the spec, not input
    owners = session.policy.owner_ids(kind.object_type)
    if owners is not None:
        params.append(sorted(owners))
        sql += f" AND {table}.{owner_field} = ANY($2::bigint[])"
    rows = await session.tx.execute_query_dict(sql + " ORDER BY id FOR UPDATE", params)
    found = {int(r["id"]) for r in rows}
    missing = [i for i in ids if i not in found]
    if missing:
        named = ", ".join(str(i) for i in missing[:20]) + (" …" if len(missing) > 20 else "")
        raise RecordsRefusal(404, "not_found", f"There are no such {kind.object_type}: {named}.",
                             fields={"ids": f"Not found: {named}."}, record_id=missing[0])


def _refused(kind: RecordKind, record_id: int, exc: Exception) -> RecordsRefusal:
    fields = {str(k): str(v) for k, v in (getattr(exc, "fields", None) or {}).items()}
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if isinstance(exc, LookupError):
        status, code = 404, "not_found"
    elif isinstance(exc, ValueError):
        status, code = 422, "invalid_input"
    else:
        status, code = int(getattr(exc, "status", 409)), str(getattr(exc, "code", "refused"))
    return RecordsRefusal(status, code, f"Nothing was changed: {kind.object_type} {record_id} was refused: {message}",
                          fields=fields or {"ids": f"{record_id}: {message}"}, record_id=record_id)


async def _each(kind: RecordKind, ids: list[int], change: Callable[[int], Awaitable[Any]]) -> None:
    for record_id in ids:
        try:
            await change(record_id)
        except _PASSED_ON:
            raise
        except RecordsRefusal as exc:
            raise _refused(kind, record_id, exc) from exc
        except Exception as exc:  # noqa: BLE001 - a domain's refusal of this record, named with its id
            raise _refused(kind, record_id, exc) from exc


async def _phone_region(session: TenantSession) -> str | None:
    rows = await session.tx.execute_query_dict(
        "SELECT default_phone_region FROM public.tenants WHERE id = $1", [session.actor.tenant_id])
    return rows[0]["default_phone_region"] if rows else None


def validate_changes(kind: RecordKind, changes: dict[str, Any], phone_region: str | None) -> BaseModel:
    """`changes` as the kind's partial update; pydantic's ValidationError names each bad field."""
    if not changes:
        raise invalid("changes", "Choose at least one field to change.")
    if "owner_id" in changes:
        raise invalid("changes.owner_id", "Use bulk assign to change the owner.")
    return kind.patch_model.model_validate(changes, context=phone_context(phone_region))


async def bulk_update(actor: Actor, object_type: str, ids: Sequence[int], changes: dict[str, Any]) -> BulkResult:
    """Apply the same `changes` (the kind's patch fields) to every record of `ids`, all or nothing.
    Raises pydantic's ValidationError for changes that do not fit the kind."""
    kind = _kind(object_type)
    async with acting_as(actor) as session:
        session.require(object_type, "edit")
        unique = _unique_ids(ids)
        patch = validate_changes(kind, changes, await _phone_region(session))
        await _reachable(session, kind, unique)
        await _each(kind, unique, lambda record_id: kind.update_in(session, record_id, patch))
        return BulkResult(object_type, unique)


async def _active_member(session: TenantSession, identity_id: int) -> None:
    rows = await session.tx.execute_query_dict(
        "SELECT 1 FROM public.memberships WHERE tenant_id = $1 AND identity_id = $2 AND is_active",
        [session.actor.tenant_id, identity_id])
    if not rows:
        raise invalid("owner_id", "The new owner must be an active member of this workspace.")


async def _assign_one(session: TenantSession, kind: RecordKind, record_id: int, owner_id: int) -> None:
    """The generic assignment, for kinds whose patch has no owner_id: an audited UPDATE, within scope
    (the record is locked and in scope: checked by _reachable)."""
    table, column = kind.spec.table, kind.spec.owner_field
    rows = await session.tx.execute_query_dict(
        f"SELECT {column} AS owner FROM {table} WHERE id = $1", [record_id])  # noqa: S608 - names from the spec
    before = rows[0]["owner"]
    if before == owner_id:
        return
    await session.tx.execute_query(
        f"UPDATE {table} SET {column} = $2, updated_at = now() WHERE id = $1",  # noqa: S608
        [record_id, owner_id])
    singular = kind.object_type.removesuffix("s")
    await session.audit(f"{singular}.update", kind.object_type, record_id, {column: [before, owner_id]})


async def bulk_assign(actor: Actor, object_type: str, ids: Sequence[int], owner_id: int) -> BulkResult:
    """Give every record of `ids` to the member `owner_id` (an active member), all or nothing."""
    kind = _kind(object_type)
    async with acting_as(actor) as session:
        session.require(object_type, "edit")
        unique = _unique_ids(ids)
        await _active_member(session, owner_id)
        await _reachable(session, kind, unique)
        if "owner_id" in kind.patch_model.model_fields:
            patch = kind.patch_model.model_validate({"owner_id": owner_id})
            await _each(kind, unique, lambda record_id: kind.update_in(session, record_id, patch))
        else:
            await _each(kind, unique, lambda record_id: _assign_one(session, kind, record_id, owner_id))
        return BulkResult(object_type, unique)


async def bulk_delete(actor: Actor, object_type: str, ids: Sequence[int], confirm: int) -> BulkResult:
    """Delete every record of `ids`, all or nothing; `confirm` must be the number of records."""
    kind = _kind(object_type)
    async with acting_as(actor) as session:
        session.require(object_type, "delete")
        unique = _unique_ids(ids)
        if confirm != len(unique):
            raise invalid("confirm", f"confirm must be {len(unique)}, the number of records to delete.")
        await _reachable(session, kind, unique)
        await _each(kind, unique, lambda record_id: kind.delete_in(session, record_id))
        return BulkResult(object_type, unique)
