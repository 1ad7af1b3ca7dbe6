"""Audit retention: each tenant keeps entries for `audit_settings.retention_days` (7 years by
default); older ones move to `audit_archive` with a MACed checkpoint, so the chain still
verifies end to end.

Rows leave the append-only `audit_log` only through the schema's SECURITY DEFINER function
`audit_archive_through()`, which moves (never destroys) them in one statement; see
tenants/migrations/0003_audit_log.sql for what that lets a SQL user do and why it is bounded.
Run by the arq job `audit_retention` (daily per tenant) or `kith audit archive --tenant SLUG`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.audit.log import append_entry, audit_key, checkpoint_mac, key_id_for, raw_connection
from kith.platform.db import tenant_scope

DEFAULT_RETENTION_DAYS = 365 * 7
MIN_RETENTION_DAYS = 30
MAX_RETENTION_DAYS = 36500
# Rows moved per transaction: each batch holds the tenant's audit lock (appends wait) while it
# runs, so a large backlog is archived in slices rather than one long lock.
ARCHIVE_BATCH = 20_000


class RetentionError(ValueError):
    """A retention setting out of range."""


@dataclass(frozen=True)
class ArchiveResult:
    rows: int
    through_seq: int | None
    batches: int


async def retention_days(tx: Any) -> int:
    """The tenant's retention in days (call inside its scope)."""
    value = await raw_connection(tx).fetchval("SELECT retention_days FROM audit_settings")
    return int(value) if value is not None else DEFAULT_RETENTION_DAYS


async def set_retention_days(tx: Any, actor: Actor, days: int) -> None:
    """Change the tenant's retention (inside its scope, permission already checked); audited."""
    if not MIN_RETENTION_DAYS <= days <= MAX_RETENTION_DAYS:
        raise RetentionError(f"Retention must be {MIN_RETENTION_DAYS} to {MAX_RETENTION_DAYS} days.")
    before = await retention_days(tx)
    if before == days:
        return
    await raw_connection(tx).execute(
        "INSERT INTO audit_settings (id, retention_days, updated_at) VALUES (true, $1, now())"
        " ON CONFLICT (id) DO UPDATE SET retention_days = EXCLUDED.retention_days, updated_at = now()",
        days,
    )
    await append_entry(tx, actor, action="audit.settings.update", object_type="audit_settings", object_id=None,
                       diff={"retention_days": [before, days]})


async def _archive_batch(tenant_id: int, now: datetime, batch: int, ceiling: int) -> tuple[int, int | None]:
    async with tenant_scope(tenant_id) as tx:
        conn = raw_connection(tx)
        cutoff = now - timedelta(days=await retention_days(tx))
        # Everything before the first entry still inside the retention window; `at` comes from
        # the server's clock under the append lock, so it grows with seq.
        bounds = await conn.fetchrow(
            "SELECT min(seq) AS first, coalesce((SELECT min(seq) FROM audit_log WHERE at >= $1) - 1,"
            " max(seq)) AS last FROM audit_log",
            cutoff,
        )
        first, last = bounds["first"], bounds["last"]
        if first is None or last is None or last < first:
            return 0, None
        through = min(int(last), int(first) + batch - 1, ceiling)
        if through < first:
            return 0, None
        last_hash = await conn.fetchval("SELECT hash FROM audit_log WHERE seq = $1", through)
        key = audit_key()
        key_id = key_id_for(key)
        moved = await conn.fetchval(
            "SELECT audit_archive_through($1, $2, $3, $4, $5)",
            tenant_id, through, last_hash, key_id, checkpoint_mac(key, tenant_id, through, last_hash, key_id),
        )
        await append_entry(tx, Actor.system(tenant_id, "audit retention"), action="audit.archive",
                           object_type="audit_log", object_id=None,
                           diff={"archived_through_seq": through, "rows": int(moved), "cutoff": cutoff.isoformat()})
        return int(moved), through


async def archive_expired(tenant_id: int, *, now: datetime | None = None, batch: int = ARCHIVE_BATCH) -> ArchiveResult:
    """Move the tenant's entries older than its retention into the archive; idempotent.

    Each batch is one transaction (move, checkpoint, and an "audit.archive" entry), so an
    interrupted run leaves whole batches done and the next run continues from there.
    """
    moment = now or datetime.now(UTC)
    # Only entries that existed when the run began: its own "audit.archive" entries (and any
    # written meanwhile) wait for the next run, so the loop ends even with a clock far ahead.
    async with tenant_scope(int(tenant_id)) as tx:
        ceiling = int(await raw_connection(tx).fetchval("SELECT coalesce(max(seq), 0) FROM audit_log"))
    total = 0
    through: int | None = None
    batches = 0
    while True:
        moved, last = await _archive_batch(int(tenant_id), moment, batch, ceiling)
        if not moved:
            return ArchiveResult(rows=total, through_seq=through, batches=batches)
        total += moved
        through = last
        batches += 1
