"""Reading activities and timelines through the actor's permissions.

A record's timeline is every entry linked to it, newest first by (occurred_at, id), read with
a keyset cursor on the index of that link. Calls, meetings, emails and notes show when the
actor's 'activities' scope reaches their author; entries of kind 'event' (the record's history,
written by Kith) show to anyone who may view the record.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.activities.links import LINK_FIELDS, LINK_TYPES, RecordNotFound, load_record

OBJECT = "activities"
MAX_PAGE = 100
CONTENT_FIELDS = ("subject", "body")
_CURSOR = re.compile(r"^(-?\d{1,19})_(\d{1,19})$")
_SELECT = ("SELECT a.*, i.email AS author_email FROM activities a"
           " LEFT JOIN public.identities i ON i.id = a.created_by_id")


class ActivityNotFound(LookupError):
    """No such activity in this workspace, or not one the actor may see (the same answer)."""


class EventIsHistory(Exception):
    """Entries Kith wrote itself (kind 'event') are the record's history: nobody changes them."""


def encode_cursor(occurred_at: datetime, activity_id: int) -> str:
    """The keyset cursor after an entry: its time in microseconds since the epoch and its id."""
    delta = occurred_at.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return f"{micros}_{activity_id}"


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """(occurred_at, id) of a cursor made by encode_cursor; ValueError for anything else."""
    match = _CURSOR.match(cursor)
    if not match:
        raise ValueError("cursor must be the next_cursor value of a previous page")
    micros, activity_id = int(match.group(1)), int(match.group(2))
    try:
        when = datetime.fromtimestamp(micros // 1_000_000, UTC).replace(microsecond=micros % 1_000_000)
    except (OverflowError, OSError, ValueError):
        raise ValueError("cursor must be the next_cursor value of a previous page") from None
    return when, activity_id


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _in_scope(session: TenantSession, row: dict[str, Any]) -> bool:
    owners = session.policy.owner_ids(OBJECT)
    return owners is None or row.get("created_by_id") in owners


def entry(session: TenantSession, row: dict[str, Any]) -> dict[str, Any]:
    """A stored activity as the actor may see it, with its links, cursor and what the actor may do."""
    is_event = row["kind"] == "event"
    values = {k: row.get(k) for k in ("id", "kind", "subject", "body", "occurred_at", "duration_minutes",
                                      "created_by_id", "author_email", "created_at", *LINK_FIELDS)}
    values["event"] = _json(row.get("event"))
    if not is_event:  # Kith's own words on an event are no person's content to hide
        values = session.visible(OBJECT, values)
    mine = not is_event and _in_scope(session, row)
    values["links"] = {f: row.get(f) for f in LINK_FIELDS if row.get(f) is not None}
    values["cursor"] = encode_cursor(row["occurred_at"], int(row["id"]))
    values["editable"] = mine and session.policy.can(OBJECT, "edit")
    values["deletable"] = mine and session.policy.can(OBJECT, "delete")
    return values


def _one_link(links: dict[str, int | None]) -> tuple[str, int]:
    given = [(f, v) for f, v in links.items() if v is not None]
    if len(given) != 1:
        raise ValueError("a timeline belongs to exactly one record: give one of company_id, contact_id, lead_id, "
                         "deal_id")
    return given[0]


async def timeline(
    session: TenantSession,
    *,
    company_id: int | None = None,
    contact_id: int | None = None,
    lead_id: int | None = None,
    deal_id: int | None = None,
    limit: int = 50,
    before: str | None = None,
    record_checked: bool = False,
) -> list[dict[str, Any]]:
    """A record's timeline, newest first by (occurred_at, id): at most `limit` entries older than
    the cursor `before` (the `cursor` of the last entry of the previous page).

    Exactly one link argument names the record (ValueError otherwise, or for a bad cursor). The
    actor must be able to view that record (RecordNotFound otherwise); `record_checked` says the
    caller has just read that record in this transaction through the actor's scope of its type
    (e.g. its load_for_change, as the 360 pages do), which is at least as strict as
    `load_record`, so it is not read again. Each entry carries kind,
    subject, body, occurred_at, duration_minutes, event (dict or None), author_email, links
    ({field: id}), cursor, and editable / deletable for the actor.
    """
    field, record_id = _one_link({"company_id": company_id, "contact_id": contact_id, "lead_id": lead_id,
                                  "deal_id": deal_id})
    limit = max(1, min(int(limit), 500))
    after = decode_cursor(before) if before else None
    object_type, _ = LINK_TYPES[field]
    session.require(object_type, "view")
    if not record_checked and await load_record(session, field, record_id) is None:
        raise RecordNotFound(field)
    params: list[Any] = [record_id]
    where = [f"a.{field} = $1"]
    if not session.policy.can(OBJECT, "view"):
        where.append("a.kind = 'event'")
    else:
        owners = session.policy.owner_ids(OBJECT)
        if owners is not None:
            params.append(sorted(owners))
            where.append(f"(a.kind = 'event' OR a.created_by_id = ANY(${len(params)}::bigint[]))")
    if after is not None:
        params.extend(after)
        where.append(f"(a.occurred_at, a.id) < (${len(params) - 1}, ${len(params)})")
    params.append(limit)
    rows = await session.tx.execute_query_dict(
        f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY a.occurred_at DESC, a.id DESC LIMIT ${len(params)}",
        params)
    return [entry(session, row) for row in rows]


async def record_timeline(
    actor: Actor, field: str, record_id: int, *, limit: int = 50, before: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a record's timeline in its own transaction, and the cursor of the next page."""
    if field not in LINK_FIELDS:
        raise ValueError(f"unknown link {field}")
    async with acting_as(actor) as session:
        rows = await timeline(session, **{field: record_id}, limit=limit + 1, before=before)
    return rows[:limit], (rows[limit - 1]["cursor"] if len(rows) > limit else None)


async def load_activity(session: TenantSession, activity_id: int, *, lock: bool = False) -> dict[str, Any]:
    """An activity the actor may reach, or ActivityNotFound. Events are reachable through their
    records (anyone who may view one of them); other entries through the 'activities' scope."""
    rows = await session.tx.execute_query_dict(
        f"{_SELECT} WHERE a.id = $1" + (" FOR UPDATE OF a" if lock else ""), [activity_id])
    if not rows:
        raise ActivityNotFound(f"activity {activity_id} not found")
    row = rows[0]
    if row["kind"] == "event":
        for field in LINK_FIELDS:
            if row[field] is not None and await load_record(session, field, int(row[field])) is not None:
                return row
        raise ActivityNotFound(f"activity {activity_id} not found")
    if not session.policy.can(OBJECT, "view") or not _in_scope(session, row):
        raise ActivityNotFound(f"activity {activity_id} not found")
    return row


async def get_activity(actor: Actor, activity_id: int) -> dict[str, Any]:
    """One activity as the actor may see it."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        return entry(session, await load_activity(session, activity_id))


async def list_activities(
    actor: Actor, *, kind: str | None = None, limit: int = 25, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Calls, meetings, emails and notes in the actor's scope, newest first (events live on their
    records' timelines). Returns the page and the cursor of the next one."""
    limit = max(1, min(limit, MAX_PAGE))
    after = decode_cursor(cursor) if cursor else None
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        params: list[Any] = []
        where = ["a.kind <> 'event'"]
        owners = session.policy.owner_ids(OBJECT)
        if owners is not None:
            params.append(sorted(owners))
            where.append(f"a.created_by_id = ANY(${len(params)}::bigint[])")
        if kind:
            params.append(kind)
            where.append(f"a.kind = ${len(params)}")
        if after is not None:
            params.extend(after)
            where.append(f"(a.occurred_at, a.id) < (${len(params) - 1}, ${len(params)})")
        params.append(limit + 1)
        rows = await session.tx.execute_query_dict(
            f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY a.occurred_at DESC, a.id DESC LIMIT ${len(params)}",
            params)
        items = [entry(session, row) for row in rows[:limit]]
    return items, (items[-1]["cursor"] if len(rows) > limit else None)
