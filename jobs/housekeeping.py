"""Platform housekeeping crons: rows nobody can use any more are deleted so that tables do not
grow forever (expired web sessions and login challenges: every read already ignores them)."""

from __future__ import annotations

from typing import Any

from kith.platform.identity.sessions import purge_expired_sessions
from kith.platform.observability import get_logger

log = get_logger("kith.jobs.housekeeping")


async def purge_sessions(ctx: dict[str, Any]) -> int:
    """Daily: delete expired web sessions and login challenges; returns how many went."""
    removed = await purge_expired_sessions()
    log.info("sessions_purged", removed=removed)
    return removed
