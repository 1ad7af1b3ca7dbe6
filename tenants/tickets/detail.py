"""What the service pages show, each read in one transaction: a ticket's page (the ticket, its
conversation, who works on it and what the actor may do), the form's choices, and the service home
(the queue's counts and the actor's working tickets, soonest due first)."""

from __future__ import annotations

from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.companies.queries import companies_for_select, members_for_select, scope_clause
from kith.tenants.leads.queries import member_names
from kith.tenants.records.custom import load_custom_fields
from kith.tenants.tickets.queries import OBJECT, messages_of, queue_counts_in, read_ticket, visible_row
from kith.tenants.tickets.schemas import WORKING
from kith.tenants.tickets.sla import load_levels


async def ticket_page(actor: Actor, ticket_id: int) -> dict[str, Any]:
    """The context of a ticket's page (TicketNotFound when the actor may not see it)."""
    async with acting_as(actor) as session:
        ticket = await read_ticket(session, ticket_id)
        messages = await messages_of(session, ticket_id)
        policy = session.policy
        can_edit = policy.can(OBJECT, "edit")
        people = await member_names(session, [ticket["owner_id"], *(m["author_id"] for m in messages)])
        return {
            "ticket": ticket,
            "messages": messages,
            "people": people,
            "members": await members_for_select(session, OBJECT) if can_edit else [],
            "hidden": policy.hidden_fields(OBJECT),
            "can": {"edit": can_edit, "delete": policy.can(OBJECT, "delete"),
                    "take": can_edit and ticket["owner_id"] != actor.identity_id,
                    "contacts": policy.can("contacts", "view"), "companies": policy.can("companies", "view")},
            "custom_fields": await load_custom_fields(session.tx, OBJECT),
            "role_name": policy.role.name,
        }


async def contact_for_email(session: TenantSession, email: str) -> int | None:
    """The id of the contact with this email the actor may see (the newest if several), or None."""
    if not session.policy.can("contacts", "view") or "email" in session.policy.hidden_fields("contacts"):
        return None
    params: list[Any] = [email.strip()]
    scope = scope_clause(session, "contacts", "owner_id", params)
    rows = await session.tx.execute_query_dict(
        "SELECT id FROM contacts WHERE lower(email) = lower($1)" + (f" AND {scope}" if scope else "")
        + " ORDER BY id DESC LIMIT 1", params)
    return int(rows[0]["id"]) if rows else None


async def find_contact(actor: Actor, email: str) -> int | None:
    async with acting_as(actor) as session:
        return await contact_for_email(session, email)


async def contact_label(actor: Actor, contact_id: int) -> dict[str, Any] | None:
    """{"id", "name", "email"} of a contact the actor may see, for a form opened from its page."""
    async with acting_as(actor) as session:
        if not session.policy.can("contacts", "view"):
            return None
        params: list[Any] = [contact_id]
        scope = scope_clause(session, "contacts", "owner_id", params)
        rows = await session.tx.execute_query_dict(
            "SELECT id, name, email FROM contacts WHERE id = $1" + (f" AND {scope}" if scope else ""), params)
        return dict(rows[0]) if rows else None


async def form_choices(actor: Actor) -> dict[str, Any]:
    """What a ticket form offers: hidden fields, custom fields, assignees and companies to link."""
    async with acting_as(actor) as session:
        return {
            "hidden": session.policy.hidden_fields(OBJECT),
            "custom_fields": await load_custom_fields(session.tx, OBJECT),
            "members": await members_for_select(session, OBJECT),
            "companies": await companies_for_select(session),
        }


async def service_home(actor: Actor, limit: int = 50) -> dict[str, Any]:
    """The queue's counts and the working tickets assigned to the actor, soonest resolution due first."""
    async with acting_as(actor) as session:
        counts = await queue_counts_in(session)
        rows = await session.tx.execute_query_dict(
            "SELECT tickets.*, contacts.name AS contact_name FROM tickets"
            " LEFT JOIN contacts ON contacts.id = tickets.contact_id"
            " WHERE tickets.owner_id = $1 AND tickets.status = ANY($2::text[])"
            " ORDER BY tickets.resolution_due_at, tickets.id LIMIT $3",
            [actor.identity_id, list(WORKING), limit])
        return {"counts": counts, "mine": [visible_row(session, r) for r in rows],
                "levels": await load_levels(session),
                "can_create": session.policy.can(OBJECT, "create"),
                "can_settings": session.policy.can_manage("manage_settings")}
