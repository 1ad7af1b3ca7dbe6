"""Reading companies through the actor's permissions, and the rules other records check
against them (a company reference, an owner, custom field values).

Every read goes through `acting_as(actor)`: the role must grant 'companies: view', only records
in the role's scope (own, team, all) are found, and fields hidden from the role are not returned.
Lists go through the list engine with `SPEC` (tenants/companies/spec.py).
"""

from __future__ import annotations

import json
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.companies.errors import CompanyNotFound, InvalidFields
from kith.tenants.records.custom import CustomFieldError, clean_custom_values, load_custom_fields

OBJECT = "companies"
FIELDS = ("name", "domain", "industry", "size", "phone", "address", "city", "country", "notes", "tags", "custom")
_ALWAYS = ("id", "owner_id", "last_activity_at", "created_at", "updated_at")
SELECT_LIMIT = 200  # companies offered by a form's select

__all__ = ["CompanyNotFound", "InvalidFields", "OBJECT", "FIELDS"]


def json_value(value: Any) -> Any:
    """A jsonb column as Python: asyncpg returns jsonb as text unless a codec is set."""
    return json.loads(value) if isinstance(value, str) else value


def scope_clause(session: TenantSession, object_type: str, column: str, params: list[Any]) -> str | None:
    """The WHERE condition limiting `column` (an owner column) to the actor's record scope of
    `object_type`, its parameter appended to `params`; None when the actor reaches every record."""
    owners = session.policy.owner_ids(object_type)
    if owners is None:
        return None
    params.append(sorted(owners))
    return f"{column} = ANY(${len(params)}::bigint[])"


def visible_row(session: TenantSession, row: dict[str, Any]) -> dict[str, Any]:
    """A company row as the actor may see it."""
    values = {k: row[k] for k in (*_ALWAYS, *FIELDS) if k in row}
    if "custom" in values:
        values["custom"] = json_value(values["custom"]) or {}
    if "tags" in values:
        values["tags"] = list(values["tags"] or [])
    return session.visible(OBJECT, values)


async def load_for_change(session: TenantSession, company_id: int, *, lock: bool = False) -> dict[str, Any]:
    """The full row of a company in the actor's scope, or CompanyNotFound."""
    params: list[Any] = [company_id]
    scope = scope_clause(session, OBJECT, "owner_id", params)
    rows = await session.tx.execute_query_dict(
        "SELECT * FROM companies WHERE id = $1" + (f" AND {scope}" if scope else "")
        + (" FOR UPDATE" if lock else ""), params)
    if not rows:
        raise CompanyNotFound(f"company {company_id} not found")
    row = dict(rows[0])
    row["custom"] = json_value(row["custom"]) or {}
    return row


async def get_company(actor: Actor, company_id: int) -> dict[str, Any]:
    """One company as the actor may see it."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        return visible_row(session, await load_for_change(session, company_id))


async def hidden_fields(actor: Actor) -> frozenset[str]:
    """The company fields the actor's role may not see (for forms)."""
    async with acting_as(actor) as session:
        return session.policy.hidden_fields(OBJECT)


async def companies_for_select(session: TenantSession, limit: int = SELECT_LIMIT) -> list[dict[str, Any]]:
    """The first `limit` companies the actor may see, by name (for a form's select); [] when the
    role may not view companies."""
    if not session.policy.can(OBJECT, "view") or "name" in session.policy.hidden_fields(OBJECT):
        return []
    params: list[Any] = []
    scope = scope_clause(session, OBJECT, "owner_id", params)
    params.append(limit)
    rows = await session.tx.execute_query_dict(
        "SELECT id, name FROM companies" + (f" WHERE {scope}" if scope else "")
        + f" ORDER BY lower(name), id LIMIT ${len(params)}", params)
    return [dict(r) for r in rows]


async def visible_company(session: TenantSession, company_id: int, *, field: str = "company_id") -> dict[str, Any]:
    """The company `company_id` if the actor may see it (for a record that links to it), else
    InvalidFields naming `field`: a company outside the actor's reach is answered like a missing one."""
    if session.policy.can(OBJECT, "view"):
        try:
            return await load_for_change(session, company_id)
        except CompanyNotFound:
            pass
    raise InvalidFields({field: f"There is no company {company_id}."})


async def check_owner(session: TenantSession, object_type: str, owner_id: int | None, *,
                      field: str = "owner_id") -> None:
    """Refuse an owner who is not an active member of the workspace, or (for a role whose scope of
    `object_type` is own or team) one outside that scope, which would hide the record from its giver.
    None (nobody) is refused for such a role too."""
    reachable = session.policy.owner_ids(object_type)
    if owner_id is None:
        if reachable is not None:
            raise InvalidFields({field: "Your role may only give records to yourself or your team."})
        return
    rows = await session.tx.execute_query_dict(
        "SELECT 1 FROM public.memberships WHERE tenant_id = $1 AND identity_id = $2 AND is_active",
        [session.actor.tenant_id, owner_id])
    if not rows:
        raise InvalidFields({field: f"{owner_id} is not an active member of this workspace."})
    if reachable is not None and owner_id not in reachable:
        raise InvalidFields({field: "Your role may only give records to yourself or your team."})


async def clean_custom(session: TenantSession, object_type: str, values: dict[str, Any],
                       existing: dict[str, Any] | None = None) -> dict[str, Any]:
    """Custom field values checked against the workspace's definitions of `object_type`: a whole
    set for a new record, or (with `existing`) the changes merged into the stored values."""
    definitions = await load_custom_fields(session.tx, object_type)
    try:
        return clean_custom_values(definitions, values, partial=existing is not None, current=existing)
    except CustomFieldError as exc:
        raise InvalidFields(dict(exc.errors)) from None


async def members_for_select(session: TenantSession, object_type: str) -> list[dict[str, Any]]:
    """The workspace's active members a record of `object_type` may be given to by this actor (an
    own or team scope reaches only those people), by name: [{"id", "label"}]."""
    reachable = session.policy.owner_ids(object_type)
    rows = await session.tx.execute_query_dict(
        "SELECT i.id, coalesce(nullif(i.display_name, ''), i.email) AS label FROM public.memberships m"
        " JOIN public.identities i ON i.id = m.identity_id WHERE m.tenant_id = $1 AND m.is_active"
        " ORDER BY lower(coalesce(nullif(i.display_name, ''), i.email)), i.id", [session.actor.tenant_id])
    return [dict(r) for r in rows if reachable is None or r["id"] in reachable]


async def form_choices(actor: Actor, object_type: str) -> dict[str, Any]:
    """What a company or contact form offers, read in one transaction: the fields hidden from the
    actor ("hidden"), the custom fields ("custom_fields"), the members a record may be given to
    ("members") and, for contacts, the companies to link ("companies", at most 200 by name)."""
    async with acting_as(actor) as session:
        return {
            "hidden": session.policy.hidden_fields(object_type),
            "custom_fields": await load_custom_fields(session.tx, object_type),
            "members": await members_for_select(session, object_type),
            "companies": await companies_for_select(session) if object_type == "contacts" else [],
        }
