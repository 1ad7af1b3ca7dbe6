"""The workspace's service levels: hours to the first reply and to resolution, per priority, kept in
crm_settings.ticket_sla as {"urgent": [1, 4], ...}. Due times are stored on each ticket when it is
opened and when its priority changes, counted from the moment it was opened."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.tickets.schemas import PRIORITIES, SlaIn, SlaOut, SlaTimes

# what a workspace starts with (tenant migration 0016 has the same default)
DEFAULT: dict[str, tuple[int, int]] = {"urgent": (1, 4), "high": (4, 24), "normal": (8, 72), "low": (24, 168)}


def _read(raw: Any) -> dict[str, tuple[int, int]]:
    stored = json.loads(raw) if isinstance(raw, str) else (raw or {})
    levels = dict(DEFAULT)
    for priority in PRIORITIES:
        pair = stored.get(priority)
        if isinstance(pair, list) and len(pair) == 2:
            levels[priority] = (int(pair[0]), int(pair[1]))
    return levels


async def load_levels(session: TenantSession) -> dict[str, tuple[int, int]]:
    """(first response hours, resolution hours) by priority."""
    rows = await session.tx.execute_query_dict("SELECT ticket_sla FROM crm_settings")
    return _read(rows[0]["ticket_sla"] if rows else None)


def due_times(levels: dict[str, tuple[int, int]], priority: str, opened_at: datetime) -> tuple[datetime, datetime]:
    """(first response due, resolution due) of a ticket of `priority` opened at `opened_at`."""
    first, resolution = levels[priority]
    return opened_at + timedelta(hours=first), opened_at + timedelta(hours=resolution)


def as_out(levels: dict[str, tuple[int, int]]) -> SlaOut:
    return SlaOut(**{p: SlaTimes(first_response_hours=f, resolution_hours=r) for p, (f, r) in levels.items()})


async def get_levels(actor: Actor) -> SlaOut:
    """The service levels; any member who may view tickets may read them."""
    async with acting_as(actor) as session:
        session.require("tickets", "view")
        return as_out(await load_levels(session))


async def levels_for_settings(actor: Actor) -> SlaOut:
    """The service levels for the settings page (needs 'workspace: manage_settings')."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        return as_out(await load_levels(session))


async def set_levels(actor: Actor, data: SlaIn) -> SlaOut:
    """Change the service levels (workspace: manage_settings). Tickets already open keep their due times."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        before = await load_levels(session)
        after = {p: (getattr(data, p).first_response_hours, getattr(data, p).resolution_hours) for p in PRIORITIES}
        diff = {p: [list(before[p]), list(after[p])] for p in PRIORITIES if before[p] != after[p]}
        if diff:
            await session.tx.execute_query(
                "UPDATE crm_settings SET ticket_sla = $1::jsonb, updated_at = now()",
                [json.dumps({p: list(v) for p, v in after.items()})])
            await session.audit("tickets.sla_update", "crm_settings", None, diff)
        return as_out(after)
