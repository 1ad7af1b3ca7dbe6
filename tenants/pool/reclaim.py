"""Returning records nobody followed up to the pool (the workspace's rule: pool_reclaim_days).

An owned company or lead (a converted lead is done and stays) goes back when the latest of its last
follow-up (last_activity_at, stamped when someone logs a call, meeting, email or note or completes a
task), its claim and its creation is older than the rule's days. Each return is audited by the job's
actor and written on the record's timeline ("pool.returned" with the reason and the previous owner),
so the history stays. Work is done in batches, one transaction each: a run that stops halfway
leaves every batch either done or untouched, and running again only finds what is still due.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.activities.events import record_event
from kith.tenants.pool.claims import POOL_TYPES, PoolType
from kith.tenants.pool.rules import load_rules

BATCH = 500
JOB_LABEL = "job:pool_reclaim"


@dataclass
class ReclaimResult:
    reclaim_days: int | None
    returned: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.returned.values())


def job_actor(tenant_id: int) -> Actor:
    """The actor the reclaim job works and is audited as."""
    return Actor(kind="job", tenant_id=tenant_id, role="owner", label=JOB_LABEL)


async def _reclaim_batch(session: TenantSession, kind: PoolType, days: int, batch: int) -> int:
    converted = " AND converted_at IS NULL" if kind.object_type == "leads" else ""
    rows = await session.tx.execute_query_dict(
        f"WITH due AS (SELECT id, owner_id, claimed_at FROM {kind.object_type}"
        f" WHERE owner_id IS NOT NULL{converted}"
        " AND greatest(last_activity_at, claimed_at, created_at) < now() - make_interval(days => $1)"
        " ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)"
        f" UPDATE {kind.object_type} t SET owner_id = NULL, claimed_at = NULL, pooled_at = now(), updated_at = now()"
        " FROM due WHERE t.id = due.id RETURNING t.id, t.pooled_at, due.owner_id AS previous_owner,"
        " due.claimed_at AS previous_claimed_at", [days, batch])
    reason = f"no follow-up in {days} days"
    for row in sorted(rows, key=lambda r: int(r["id"])):
        record_id, previous = int(row["id"]), int(row["previous_owner"])
        diff = {"owner_id": [previous, None], "claimed_at": [row["previous_claimed_at"], None],
                "pooled_at": [None, row["pooled_at"]], "reason": [None, reason]}
        await session.audit(f"{kind.noun}.reclaim", kind.object_type, record_id, diff)
        await record_event(session, "pool.returned", {"reason": reason, "previous_owner": previous},
                           subject=f"Returned to the pool: {reason}", **{kind.link: record_id})
    return len(rows)


async def reclaim_stale(tenant_id: int, *, batch: int = BATCH) -> ReclaimResult:
    """Return the tenant's records nobody followed up within its rule to the pool; a no-op when the
    workspace has no rule. Idempotent: what was returned is no longer owned, so a repeat finds nothing."""
    actor = job_actor(tenant_id)
    async with acting_as(actor) as session:
        days = (await load_rules(session.tx)).reclaim_days
    result = ReclaimResult(reclaim_days=days)
    if days is None:
        return result
    for kind in POOL_TYPES.values():
        result.returned[kind.object_type] = 0
        while True:
            async with acting_as(actor) as session:
                done = await _reclaim_batch(session, kind, days, batch)
            result.returned[kind.object_type] += done
            if done < batch:
                break
    return result
