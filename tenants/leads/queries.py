"""Reading leads through the actor's permissions.

Every read goes through `acting_as(actor)`: the role must grant 'leads: view'; only leads in the
role's scope (own, team, all) are found, plus the leads in the public pool (nobody owns them, so
every member who may view leads sees them); fields hidden from the role are not returned. A lead is
a person: a read that returns its email or phone is audited in the same transaction, like a
contact's (`audit_disclosed`). Lists go through the list engine with `SPEC` (tenants/leads/spec.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.leads.access import LEADS
from kith.tenants.leads.errors import LeadInPool, LeadNotFound
from kith.tenants.leads.spec import SPEC
from kith.tenants.records.listing import ListQuery, RecordPage, list_records

OBJECT = "leads"
FIELDS = ("name", "company_name", "title", "email", "phone", "status", "source", "notes", "tags", "custom")
# shown to every role that may view leads: ids, ownership, pool and conversion facts, times
ALWAYS = ("id", "owner_id", "pooled_at", "claimed_at", "last_activity_at", "converted_at", "converted_contact_id",
          "converted_company_id", "converted_deal_id", "created_at", "updated_at")

__all__ = ["OBJECT", "FIELDS", "LeadNotFound", "get_lead", "list_leads", "load_for_change", "visible_row"]


def json_value(value: Any) -> Any:
    """A jsonb column as Python: asyncpg returns jsonb as text unless a codec is set."""
    return json.loads(value) if isinstance(value, str) else value


def scope_clause(session: TenantSession, params: list[Any], *, pool: bool = False) -> str | None:
    """The condition limiting leads to the actor's scope (and, with `pool`, to the pool too), its
    parameter appended to `params`; None when the actor reaches every lead."""
    owners = session.policy.owner_ids(OBJECT)
    if owners is None:
        return None
    params.append(sorted(owners))
    mine = f"leads.owner_id = ANY(${len(params)}::bigint[])"
    return f"({mine} OR leads.owner_id IS NULL)" if pool else mine


def visible_row(session: TenantSession, row: Mapping[str, Any]) -> dict[str, Any]:
    """A lead row as the actor may see it."""
    values = {k: row[k] for k in (*ALWAYS, *FIELDS) if k in row}
    if "custom" in values:
        values["custom"] = json_value(values["custom"]) or {}
    if "tags" in values:
        values["tags"] = list(values["tags"] or [])
    return session.visible(OBJECT, values)


def stored_key(row: Mapping[str, Any]) -> tuple[str, str] | None:
    """The (key_id, wrapped_key) that load_for_change read with a lead, if it has a key."""
    return (str(row["_key_id"]), str(row["_wrapped_key"])) if row.get("_key_id") else None


async def audit_disclosed(
    session: TenantSession, rows: Sequence[Mapping[str, Any]], *, listing: bool, supplied: Iterable[str] = ()
) -> None:
    """Audit the sensitive values (email, phone) among `rows`, leads exactly as they go back to the actor.

    Only records and fields that carry a value count; `supplied` names fields whose values the
    actor has just sent (an update's echo), which are not a read.
    """
    skip = set(supplied)
    fields = [f for f in LEADS.sensitive if f not in skip and any(row.get(f) for row in rows)]
    ids = [row["id"] for row in rows if any(row.get(f) for f in fields)]
    await session.audit_read(OBJECT, ids, fields, listing=listing)


async def load_for_change(session: TenantSession, lead_id: int, *, lock: bool = False,
                          pool: bool = False) -> dict[str, Any]:
    """The full row of a lead in the actor's scope (with `pool`, or in the pool), or LeadNotFound.

    The lead's subject key (crypto-shredding of audit diffs) comes with it, so the audit entry of a
    change needs no round trip of its own for the key: see `stored_key`.
    """
    params: list[Any] = [lead_id]
    scope = scope_clause(session, params, pool=pool)
    rows = await session.tx.execute_query_dict(
        "SELECT leads.*, k.key_id AS _key_id, k.wrapped_key AS _wrapped_key FROM leads"
        " LEFT JOIN subject_keys k ON k.subject_type = 'leads' AND k.subject_id = leads.id::text"
        " WHERE leads.id = $1" + (f" AND {scope}" if scope else "") + (" FOR UPDATE OF leads" if lock else ""),
        params)
    if not rows:
        raise LeadNotFound()
    row = dict(rows[0])
    row["custom"] = json_value(row["custom"]) or {}
    row["tags"] = list(row["tags"] or [])
    return row


async def load_owned(session: TenantSession, lead_id: int) -> dict[str, Any]:
    """The lead locked for a change, in the actor's scope: LeadInPool (409) for a pool lead the actor
    sees but must claim first, LeadNotFound otherwise."""
    try:
        return await load_for_change(session, lead_id, lock=True)
    except LeadNotFound:
        await load_for_change(session, lead_id, pool=True)  # LeadNotFound again when not even in the pool
        raise LeadInPool() from None


async def read_lead(session: TenantSession, lead_id: int) -> dict[str, Any]:
    """One lead (in scope or in the pool) as the actor may see it, its sensitive values audited."""
    session.require(OBJECT, "view")
    lead = visible_row(session, await load_for_change(session, lead_id, pool=True))
    await audit_disclosed(session, [lead], listing=False)
    return lead


async def get_lead(actor: Actor, lead_id: int) -> dict[str, Any]:
    """One lead as the actor may see it: one in the actor's scope, or one in the public pool."""
    async with acting_as(actor) as session:
        return await read_lead(session, lead_id)


async def list_leads(actor: Actor, query: ListQuery) -> RecordPage:
    """One page of the leads in the actor's scope (the list engine: filters, sort, search, keyset)."""
    page = await list_records(actor, SPEC, query)
    return page


async def hidden_fields(actor: Actor) -> frozenset[str]:
    """The lead fields the actor's role may not see (for forms)."""
    async with acting_as(actor) as session:
        return session.policy.hidden_fields(OBJECT)


async def member_names(session: TenantSession, ids: Iterable[int | None]) -> dict[int, str]:
    """Display names (or emails) of the given members, for showing owners."""
    wanted = sorted({int(i) for i in ids if i is not None})
    if not wanted:
        return {}
    rows = await session.tx.execute_query_dict(
        "SELECT id, coalesce(nullif(display_name, ''), email) AS name FROM public.identities"
        " WHERE id = ANY($1::bigint[])", [wanted])
    return {int(r["id"]): str(r["name"]) for r in rows}
