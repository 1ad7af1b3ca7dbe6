"""Events Kith writes on a record's timeline itself: a deal's stage change, a lead's conversion,
a claim from the pool or a return to it, a merge. Each is an `activities` row of kind 'event'
written in the caller's transaction, so it commits or rolls back with the change it tells of.

Callers pass the session they already act in; the event needs no permission of its own (the
change it records was checked), and the audit log records the change itself separately.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from kith.platform.access.session import TenantSession

LINKS = ("company_id", "contact_id", "lead_id", "deal_id")


async def record_event(
    session: TenantSession,
    name: str,
    facts: dict[str, Any],
    *,
    subject: str = "",
    company_id: int | None = None,
    contact_id: int | None = None,
    lead_id: int | None = None,
    deal_id: int | None = None,
    occurred_at: datetime | None = None,
) -> int:
    """Write an event on the timelines of the records given; returns the activity's id.

    `name` says what happened in a stable, dotted form ("deal.stage_changed", "pool.claimed");
    `facts` are its details (stage names, ids) and are stored as {"name": ..., **facts}.
    `subject` is the line shown on the timeline (already in the workspace's words).
    """
    links = {"company_id": company_id, "contact_id": contact_id, "lead_id": lead_id, "deal_id": deal_id}
    if not any(links.values()):
        raise ValueError("an event belongs on at least one record's timeline")
    rows = await session.tx.execute_query_dict(
        "INSERT INTO activities (kind, subject, event, occurred_at, company_id, contact_id, lead_id, deal_id,"
        " created_by_id) VALUES ('event', $1, $2::jsonb, coalesce($3, now()), $4, $5, $6, $7, $8) RETURNING id",
        [subject[:200], json.dumps({"name": name, **facts}, default=str), occurred_at, *links.values(),
         session.actor.identity_id],
    )
    return int(rows[0]["id"])


async def touch_followed_up(
    session: TenantSession,
    *,
    company_id: int | None = None,
    contact_id: int | None = None,
    lead_id: int | None = None,
    deal_id: int | None = None,
) -> None:
    """Stamp last_activity_at = now() on the records a person just followed up (logged a call, a
    meeting, an email or a note, or completed a task). The pool's reclaim job reads it."""
    for table, record_id in (("companies", company_id), ("contacts", contact_id), ("leads", lead_id),
                             ("deals", deal_id)):
        if record_id is not None:
            await session.tx.execute_query(
                f"UPDATE {table} SET last_activity_at = now() WHERE id = $1", [record_id])  # noqa: S608 - fixed names
