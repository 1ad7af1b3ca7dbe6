"""Changing tickets. Each action checks the actor's permissions, changes data, writes its audit entry
and tells the contact's and company's timelines, in one transaction inside the tenant's scope. The
`*_in` forms run inside an existing session (the generic bulk changes use them)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.platform.observability import get_logger
from kith.tenants.activities.events import record_event
from kith.tenants.activities.links import load_record
from kith.tenants.records.checks import custom_checked, owner_checked
from kith.tenants.records.kinds import RecordKind, register_kind
from kith.tenants.tickets.errors import TicketClosed, TicketInvalid
from kith.tenants.tickets.queries import OBJECT, load_for_change, messages_of, read_ticket
from kith.tenants.tickets.schemas import WORKING, MessageIn, TicketIn, TicketPatch
from kith.tenants.tickets.sla import due_times, load_levels
from kith.tenants.tickets.spec import SPEC

log = get_logger("kith.tickets")

# the columns a person writes (owner_id is handled apart: it is checked against the members)
COLUMNS = ("subject", "description", "status", "priority", "channel", "contact_id", "company_id", "tags", "custom")
_EVENTS = {"resolved": "ticket.resolved", "closed": "ticket.closed"}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


async def _links(session: TenantSession, contact_id: int | None,
                 company_id: int | None) -> tuple[int | None, int | None]:
    """The contact and company checked (each must exist and be visible to the actor: the same words
    for missing and not yours); a contact brings its company when none is given."""
    errors: dict[str, str] = {}
    if contact_id is not None:
        contact = await load_record(session, "contact_id", contact_id)
        if contact is None:
            errors["contact_id"] = "There is no such contact."
        elif company_id is None and contact.get("company_id") is not None:
            company_id = int(contact["company_id"])
            if await load_record(session, "company_id", company_id) is None:
                company_id = None  # the contact's company is not the actor's to see: left out
    if company_id is not None and "company_id" not in errors and await load_record(
            session, "company_id", company_id) is None:
        errors["company_id"] = "There is no such company."
    if errors:
        raise TicketInvalid.of(errors)
    return contact_id, company_id


def _person(*rows: Mapping[str, Any]) -> tuple[str, int] | None:
    """The contact a ticket's audit entries are about: what a customer wrote is personal data, so the
    diff is encrypted with the contact's key (erasing the contact makes it read "[erased]")."""
    for row in rows:
        if row.get("contact_id") is not None:
            return ("contacts", int(row["contact_id"]))
    return None


async def _event(session: TenantSession, name: str, row: Mapping[str, Any], line: str) -> None:
    """Tell the ticket's contact and company timelines (a ticket linked to neither has only its own)."""
    if row.get("contact_id") is None and row.get("company_id") is None:
        return
    await record_event(session, name, {"ticket_id": row["id"], "subject": row["subject"]},
                       subject=f"{line} #{row['id']}: {row['subject']}",
                       contact_id=row.get("contact_id"), company_id=row.get("company_id"))


async def create_in(session: TenantSession, data: TicketIn) -> dict[str, Any]:
    """Open a ticket inside `session`: assigned to the actor, to `owner_id` when given, or to nobody when
    owner_id is given as null. Its due times follow the workspace's service levels."""
    session.require(OBJECT, "create")
    given = data.model_fields_set
    session.require_fields(OBJECT, [f for f in given if f != "owner_id"])
    owner = data.owner_id if "owner_id" in given else session.actor.identity_id
    if "owner_id" in given:
        await owner_checked(session, OBJECT, owner, TicketInvalid)
    contact_id, company_id = await _links(session, data.contact_id, data.company_id)
    custom = await custom_checked(session, OBJECT, data.custom, None, TicketInvalid)
    now = datetime.now(UTC)
    first_due, resolution_due = due_times(await load_levels(session), data.priority, now)
    values: dict[str, Any] = {**data.model_dump(include=set(COLUMNS)), "status": "new", "contact_id": contact_id,
                              "company_id": company_id, "custom": custom}
    rows = await session.tx.execute_query_dict(
        "INSERT INTO tickets (subject, description, status, priority, channel, contact_id, company_id, tags, custom,"
        " owner_id, first_response_due_at, resolution_due_at, created_by_id, created_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text[], $9::jsonb, $10, $11, $12, $13, $14, $14) RETURNING *",
        [*(values[c] for c in COLUMNS[:-1]), _json(custom), owner, first_due, resolution_due,
         session.actor.identity_id, now])
    row = dict(rows[0])
    diff = {c: [None, v] for c, v in values.items() if v not in (None, "", [], {})}
    diff["owner_id"] = [None, owner]
    await session.audit("ticket.create", OBJECT, row["id"], diff, subject=_person(row))
    await _event(session, "ticket.opened", row, "Ticket opened")
    return await read_ticket(session, int(row["id"]))


async def create_ticket(actor: Actor, data: TicketIn) -> dict[str, Any]:
    """Open a ticket (see create_in)."""
    async with acting_as(actor) as session:
        return await create_in(session, data)


def _status_stamps(before: Mapping[str, Any], status: str, now: datetime) -> dict[str, Any]:
    """The times a status change sets or clears: resolved and closed are stamped once, reopening
    clears both."""
    stamps: dict[str, Any] = {}
    if status in ("resolved", "closed") and before["resolved_at"] is None:
        stamps["resolved_at"] = now
    if status == "closed" and before["closed_at"] is None:
        stamps["closed_at"] = now
    if status in WORKING:
        stamps.update({"resolved_at": None, "closed_at": None})
    return {k: v for k, v in stamps.items() if before[k] != v}


async def _apply(session: TenantSession, before: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Write the changes `given` to the ticket `before` (locked), with their stamps, audit and timeline
    events; returns the diff written ({} when nothing changed)."""
    if given.get("status") == "new" and before["status"] != "new":
        raise TicketInvalid.of({"status": "A ticket is new only until someone works on it; choose open or pending."})
    if "custom" in given:
        given["custom"] = await custom_checked(session, OBJECT, given["custom"], before["custom"], TicketInvalid)
    if "contact_id" in given or "company_id" in given:
        contact_id, company_id = await _links(session, given.get("contact_id", before["contact_id"]),
                                              given.get("company_id", before["company_id"]))
        given.update({"contact_id": contact_id, "company_id": company_id})
    diff = {k: [before[k], v] for k, v in given.items() if before[k] != v}
    if "owner_id" in diff:
        await owner_checked(session, OBJECT, diff["owner_id"][1], TicketInvalid)
    now = datetime.now(UTC)
    if "status" in diff:
        diff.update({k: [before[k], v] for k, v in _status_stamps(before, diff["status"][1], now).items()})
    if "priority" in diff:
        first_due, resolution_due = due_times(await load_levels(session), diff["priority"][1], before["created_at"])
        diff.update({k: [before[k], v] for k, v in (("first_response_due_at", first_due),
                                                     ("resolution_due_at", resolution_due)) if before[k] != v})
    if not diff:
        return {}
    casts = {"tags": "::text[]", "custom": "::jsonb"}
    assignments = ", ".join(f"{col} = ${i}{casts.get(col, '')}" for i, col in enumerate(diff, start=2))
    await session.tx.execute_query(
        f"UPDATE tickets SET {assignments}, updated_at = now() WHERE id = $1",  # noqa: S608 - known columns
        [before["id"], *(_json(new) if col == "custom" else new for col, (_, new) in diff.items())])
    after = {**before, **{k: v for k, (_, v) in diff.items()}}
    await session.audit("ticket.update", OBJECT, before["id"], diff, subject=_person(before, after))
    if "status" in diff:
        new_status = diff["status"][1]
        if new_status in _EVENTS:
            await _event(session, _EVENTS[new_status], after, f"Ticket {new_status}")
        elif before["status"] in ("resolved", "closed"):
            await _event(session, "ticket.reopened", after, "Ticket reopened")
    return diff


async def update_in(session: TenantSession, ticket_id: int, patch: TicketPatch | Mapping[str, Any]) -> dict[str, Any]:
    """Change the fields given in `patch` inside `session`; others keep their values. owner_id null
    unassigns the ticket (a role whose scope is its own or its team's records cannot)."""
    if not isinstance(patch, TicketPatch):
        patch = TicketPatch.model_validate(patch)
    nullable = ("owner_id", "contact_id", "company_id")
    given = {k: v for k, v in patch.model_dump(exclude_unset=True).items() if v is not None or k in nullable}
    session.require(OBJECT, "edit")
    session.require_fields(OBJECT, [f for f in given if f != "owner_id"])
    before = await load_for_change(session, ticket_id, lock=True)
    await _apply(session, before, given)
    return await read_ticket(session, ticket_id)


async def update_ticket(actor: Actor, ticket_id: int, patch: TicketPatch) -> dict[str, Any]:
    """Change some fields of a ticket (see update_in)."""
    async with acting_as(actor) as session:
        return await update_in(session, ticket_id, patch)


async def _email_to(session: TenantSession, ticket: Mapping[str, Any], data: MessageIn) -> str:
    """The address a reply goes to: the ticket's contact's, when the actor may see that contact and its
    email ('' when the reply is not to be emailed). `email` true demands one; a note is never emailed."""
    if data.kind == "note" or data.email is False:
        if data.email:
            raise TicketInvalid.of({"email": "An internal note is never emailed; send a reply instead."})
        return ""
    address = ""
    contact_id = ticket.get("contact_id")
    if contact_id is not None and "email" not in session.policy.hidden_fields("contacts") and await load_record(
            session, "contact_id", int(contact_id)) is not None:
        rows = await session.tx.execute_query_dict("SELECT email FROM contacts WHERE id = $1", [contact_id])
        address = str(rows[0]["email"]) if rows else ""
    if not address and data.email:
        raise TicketInvalid.of({"email": "This ticket has no contact with an email address you may see."})
    return address


async def add_message(actor: Actor, ticket_id: int, data: MessageIn) -> dict[str, Any]:
    """Add a reply or an internal note to a ticket the actor may edit. The first reply stamps
    first_responded_at and moves a new ticket to open; `status` changes the status with it. A closed
    ticket takes notes but no replies (TicketClosed). A reply to a ticket whose contact has an email is
    emailed to them (unless `email` is false): its delivery job is queued after the commit (a lost job
    is queued again by the sweep, kith.jobs.ticket_replies). Returns {"ticket", "messages", "message_id"}."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "edit")
        before = await load_for_change(session, ticket_id, lock=True)
        status = data.status
        if data.kind == "reply":
            if before["status"] == "closed" and status in (None, "closed"):
                raise TicketClosed()
            if status is None and before["status"] == "new":
                status = "open"
        email_to = await _email_to(session, before, data)
        rows = await session.tx.execute_query_dict(
            "INSERT INTO ticket_messages (ticket_id, kind, body, author_id, email_to, email_status)"
            " VALUES ($1, $2, $3, $4, $5, CASE WHEN $5 = '' THEN '' ELSE 'pending' END) RETURNING id",
            [ticket_id, data.kind, data.body, actor.identity_id, email_to])
        message_id = int(rows[0]["id"])
        diff: dict[str, Any] = {"message_id": [None, message_id], "body": [None, data.body]}
        if email_to:
            diff["email_to"] = [None, email_to]
        await session.audit(f"ticket.{data.kind}", OBJECT, ticket_id, diff, subject=_person(before))
        stamps = "last_activity_at = now()"
        if data.kind == "reply" and before["first_responded_at"] is None:
            stamps += ", first_responded_at = now()"
        await session.tx.execute_query(f"UPDATE tickets SET {stamps} WHERE id = $1", [ticket_id])
        if status is not None:
            await _apply(session, await load_for_change(session, ticket_id), {"status": status})
        thread = {"ticket": await read_ticket(session, ticket_id), "messages": await messages_of(session, ticket_id),
                  "message_id": message_id}
    if email_to:
        await _queue_email(actor.tenant_id, message_id)
    return thread


async def _queue_email(tenant_id: int, message_id: int) -> None:
    """Queue the reply's delivery (after the commit); with Redis down it waits for the sweep."""
    from kith.jobs.ticket_replies import enqueue_reply_email  # jobs is above tenants; imported when used

    try:
        await enqueue_reply_email(tenant_id, message_id)
    except (OSError, RedisError) as exc:
        log.warning("ticket_reply_not_queued", message_id=message_id, error=str(exc))


async def delete_in(session: TenantSession, ticket_id: int) -> None:
    """Delete a ticket and its conversation inside `session` (the timeline events about it stay)."""
    session.require(OBJECT, "delete")
    before = await load_for_change(session, ticket_id, lock=True)
    await session.tx.execute_query("DELETE FROM tickets WHERE id = $1", [ticket_id])
    diff = {c: [before[c], None] for c in (*COLUMNS, "owner_id") if before[c] not in (None, "", [], {})}
    await session.audit("ticket.delete", OBJECT, ticket_id, diff, subject=_person(before))


async def delete_ticket(actor: Actor, ticket_id: int) -> None:
    """Delete a ticket; a missing one (or one out of the actor's scope) is reported, not ignored."""
    async with acting_as(actor) as session:
        await delete_in(session, ticket_id)


KIND = register_kind(RecordKind(object_type=OBJECT, spec=SPEC, label="Tickets", path="tickets",
                                patch_model=TicketPatch, update_in=update_in, delete_in=delete_in))

__all__ = ["KIND", "add_message", "create_ticket", "delete_ticket", "update_ticket"]
