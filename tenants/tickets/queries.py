"""Reading tickets through the actor's permissions.

Every read goes through `acting_as(actor)`: the role must grant 'tickets: view'; only tickets in the
role's scope (own, team, all) are found (an unassigned ticket is in no one's scope but "all"); fields
hidden from the role are not returned. Lists go through the list engine with `SPEC`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.activities.links import load_record
from kith.tenants.companies.queries import scope_clause
from kith.tenants.records.listing import ListQuery, RecordPage, list_records
from kith.tenants.tickets.errors import TicketNotFound
from kith.tenants.tickets.schemas import WORKING
from kith.tenants.tickets.spec import SPEC

OBJECT = "tickets"
FIELDS = ("subject", "description", "status", "priority", "channel", "company_id", "contact_id", "tags", "custom")
# shown to every role that may view tickets: ids, assignment, service-level facts, times
ALWAYS = ("id", "owner_id", "first_response_due_at", "resolution_due_at", "first_responded_at", "resolved_at",
          "closed_at", "last_activity_at", "created_at", "updated_at")


def breaches(row: Mapping[str, Any], now: datetime | None = None) -> dict[str, bool]:
    """Whether the ticket missed (or is now missing) its first-response and resolution times."""
    now = now or datetime.now(UTC)
    responded, resolved = row.get("first_responded_at"), row.get("resolved_at") or row.get("closed_at")
    first_due, resolution_due = row["first_response_due_at"], row["resolution_due_at"]
    return {
        "first_response_breached": (responded or now) > first_due,
        "resolution_breached": (resolved or now) > resolution_due,
    }


def visible_row(session: TenantSession, row: Mapping[str, Any]) -> dict[str, Any]:
    """A ticket row as the actor may see it, with its service-level state."""
    values = {k: row[k] for k in (*ALWAYS, *FIELDS) if k in row}
    if "custom" in values:
        custom = values["custom"]
        values["custom"] = (json.loads(custom) if isinstance(custom, str) else custom) or {}
    if "tags" in values:
        values["tags"] = list(values["tags"] or [])
    for name in ("contact_name", "company_name", "contact_email"):
        if name in row:
            values[name] = row[name]
    if "first_response_due_at" in row:
        values.update(breaches(row))
    visible = session.visible(OBJECT, values)
    hidden = session.policy.hidden_fields(OBJECT)
    for name, guard in (("contact_name", "contact_id"), ("contact_email", "contact_id"),
                        ("company_name", "company_id")):
        if guard in hidden:
            visible.pop(name, None)
    return visible


async def load_for_change(session: TenantSession, ticket_id: int, *, lock: bool = False) -> dict[str, Any]:
    """The full row of a ticket in the actor's scope, or TicketNotFound."""
    params: list[Any] = [ticket_id]
    scope = scope_clause(session, OBJECT, "tickets.owner_id", params)
    rows = await session.tx.execute_query_dict(
        "SELECT tickets.* FROM tickets WHERE tickets.id = $1" + (f" AND {scope}" if scope else "")
        + (" FOR UPDATE" if lock else ""), params)
    if not rows:
        raise TicketNotFound()
    row = dict(rows[0])
    custom = row["custom"]
    row["custom"] = (json.loads(custom) if isinstance(custom, str) else custom) or {}
    row["tags"] = list(row["tags"] or [])
    return row


async def _names(session: TenantSession, row: dict[str, Any]) -> dict[str, Any]:
    """The contact's and company's names next to their ids, where the actor may see those records."""
    named = dict(row)
    for field, table, columns in (("contact_id", "contacts", "name AS contact_name, email AS contact_email"),
                                  ("company_id", "companies", "name AS company_name")):
        if row.get(field) is not None and await load_record(session, field, int(row[field])) is not None:
            found = await session.tx.execute_query_dict(
                f"SELECT {columns} FROM {table} WHERE id = $1", [row[field]])  # noqa: S608 - fixed names
            if found:
                named.update(found[0])
    return named


async def read_ticket(session: TenantSession, ticket_id: int) -> dict[str, Any]:
    """One ticket as the actor may see it, with the names of its contact and company."""
    session.require(OBJECT, "view")
    return visible_row(session, await _names(session, await load_for_change(session, ticket_id)))


async def messages_of(session: TenantSession, ticket_id: int) -> list[dict[str, Any]]:
    """The ticket's conversation, oldest first, with each author's name (the ticket was checked)."""
    rows = await session.tx.execute_query_dict(
        "SELECT m.id, m.ticket_id, m.kind, m.body, m.author_id, m.created_at, m.email_to, m.email_status,"
        " m.email_error, m.emailed_at,"
        " coalesce(nullif(i.display_name, ''), i.email) AS author_name FROM ticket_messages m"
        " LEFT JOIN public.identities i ON i.id = m.author_id WHERE m.ticket_id = $1 ORDER BY m.id", [ticket_id])
    return [dict(r) for r in rows]


async def get_thread(actor: Actor, ticket_id: int) -> dict[str, Any]:
    """A ticket and its conversation: {"ticket", "messages"}."""
    async with acting_as(actor) as session:
        ticket = await read_ticket(session, ticket_id)
        return {"ticket": ticket, "messages": await messages_of(session, ticket_id)}


async def list_tickets(actor: Actor, query: ListQuery) -> RecordPage:
    """One page of the tickets in the actor's scope (the list engine: filters, sort, search, keyset)."""
    return await list_records(actor, SPEC, query)


async def queue_counts_in(session: TenantSession) -> dict[str, int]:
    """How many tickets in the actor's scope are new, open, pending, unassigned, overdue and assigned to
    the actor: one statement over the partial index of working tickets."""
    session.require(OBJECT, "view")
    params: list[Any] = [list(WORKING), session.actor.identity_id]
    scope = scope_clause(session, OBJECT, "owner_id", params)
    rows = await session.tx.execute_query_dict(
        "SELECT count(*) FILTER (WHERE status = 'new') AS new, count(*) FILTER (WHERE status = 'open') AS open,"
        " count(*) FILTER (WHERE status = 'pending') AS pending,"
        " count(*) FILTER (WHERE owner_id IS NULL) AS unassigned,"
        " count(*) FILTER (WHERE resolution_due_at < now()"
        "   OR (first_responded_at IS NULL AND first_response_due_at < now())) AS overdue,"
        " count(*) FILTER (WHERE owner_id = $2) AS mine"
        " FROM tickets WHERE status = ANY($1::text[])" + (f" AND {scope}" if scope else ""), params)
    return {k: int(v) for k, v in rows[0].items()}


async def queue_counts(actor: Actor) -> dict[str, int]:
    async with acting_as(actor) as session:
        return await queue_counts_in(session)
