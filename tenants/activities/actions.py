"""Logging, changing and deleting calls, meetings, emails and notes. Each action checks the
actor's permissions, changes data and writes its audit entry in one transaction.

Logging an activity stamps last_activity_at on every record it belongs to (the pool's reclaim
job reads it). Entries of kind 'event' are history: nobody edits or deletes them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.activities.events import touch_followed_up
from kith.tenants.activities.links import LINK_FIELDS, InvalidInput, resolve_links
from kith.tenants.activities.queries import OBJECT, EventIsHistory, entry, load_activity
from kith.tenants.activities.schemas import TIMED_KINDS, ActivityIn, ActivityPatch

_AUDITED = ("kind", "subject", "body", "occurred_at", "duration_minutes")


def _check_content(kind: str, subject: str, body: str, duration: int | None) -> None:
    errors: dict[str, str] = {}
    if not subject and not body:
        errors["subject"] = "Write a subject or a body."
    if duration is not None and kind not in TIMED_KINDS:
        errors["duration_minutes"] = "Only calls and meetings have a duration."
    if errors:
        raise InvalidInput(errors)


def _audit_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


async def log_activity_in(session: TenantSession, data: ActivityIn) -> dict[str, Any]:
    """Log an activity inside an existing session (see log_activity)."""
    session.require(OBJECT, "create")
    session.require_fields(OBJECT, [f for f in ("subject", "body") if getattr(data, f)])
    _check_content(data.kind, data.subject, data.body, data.duration_minutes)
    links = await resolve_links(session, {f: getattr(data, f) for f in LINK_FIELDS})
    occurred_at = (data.occurred_at or datetime.now(UTC)).astimezone(UTC)
    rows = await session.tx.execute_query_dict(
        "WITH a AS (INSERT INTO activities (kind, subject, body, occurred_at, duration_minutes, company_id, contact_id,"
        " lead_id, deal_id, created_by_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *)"
        " SELECT a.*, i.email AS author_email FROM a LEFT JOIN public.identities i ON i.id = a.created_by_id",
        [data.kind, data.subject, data.body, occurred_at, data.duration_minutes, *links.values(),
         session.actor.identity_id],
    )
    activity_id = int(rows[0]["id"])
    await touch_followed_up(session, **links)
    diff = {k: [None, _audit_value(v)] for k, v in (
        ("kind", data.kind), ("subject", data.subject), ("occurred_at", occurred_at),
        ("duration_minutes", data.duration_minutes), *links.items()) if v not in (None, "")}
    if data.body:
        diff["body"] = [None, f"({len(data.body)} characters)"]  # the content stays out of the log
    await session.audit("activity.create", OBJECT, activity_id, diff)
    return entry(session, rows[0])


async def log_activity(actor: Actor, data: ActivityIn) -> dict[str, Any]:
    """Log a call, meeting, email or note against the records `data` links (at least one, each
    visible to the actor; a contact brings its company, a deal its company and contact), and
    stamp those records as followed up."""
    async with acting_as(actor) as session:
        return await log_activity_in(session, data)


async def _load_changeable(session: TenantSession, activity_id: int, action: str) -> dict[str, Any]:
    session.require(OBJECT, action)
    row = await load_activity(session, activity_id, lock=True)
    if row["kind"] == "event":
        raise EventIsHistory("This entry is part of the record's history and cannot be changed.")
    return row


async def update_activity(actor: Actor, activity_id: int, changes: ActivityPatch) -> dict[str, Any]:
    """Change the fields given in `changes` of an activity in the actor's scope."""
    given = changes.model_dump(exclude_unset=True)
    for name in ("kind", "occurred_at", "subject", "body"):
        if name in given and given[name] is None:
            raise InvalidInput({name: "This field cannot be empty." if name in ("kind", "occurred_at")
                                else "Send an empty text instead of null."})
    async with acting_as(actor) as session:
        before = await _load_changeable(session, activity_id, "edit")
        session.require_fields(OBJECT, [f for f in ("subject", "body") if f in given])
        after = {k: given.get(k, before[k]) for k in _AUDITED}
        if after["kind"] not in TIMED_KINDS and "duration_minutes" not in given:
            after["duration_minutes"] = None  # a call turned into a note loses its duration
        _check_content(after["kind"], after["subject"], after["body"], after["duration_minutes"])
        if isinstance(after["occurred_at"], datetime):
            after["occurred_at"] = after["occurred_at"].astimezone(UTC)
        diff = {k: [before[k], after[k]] for k in _AUDITED if before[k] != after[k]}
        if diff:
            assignments = ", ".join(f"{col} = ${i}" for i, col in enumerate(diff, start=2))
            await session.tx.execute_query(
                f"UPDATE activities SET {assignments} WHERE id = $1",  # noqa: S608 - known columns
                [activity_id, *(new for _, new in diff.values())])
            if "body" in diff:
                diff["body"] = [f"({len(before['body'])} characters)", f"({len(after['body'])} characters)"]
            await session.audit("activity.update", OBJECT, activity_id,
                                {k: [_audit_value(o), _audit_value(n)] for k, (o, n) in diff.items()})
        return entry(session, await load_activity(session, activity_id))


async def delete_activity(actor: Actor, activity_id: int) -> None:
    """Delete an activity in the actor's scope (never an event)."""
    async with acting_as(actor) as session:
        before = await _load_changeable(session, activity_id, "delete")
        await session.tx.execute_query("DELETE FROM activities WHERE id = $1", [activity_id])
        await session.audit("activity.delete", OBJECT, activity_id,
                            {k: [_audit_value(before[k]), None] for k in ("kind", "subject", "occurred_at",
                                                                           *LINK_FIELDS) if before[k]})
