"""Claiming records from the pool and returning them to it.

A claim needs the 'edit' permission on the type and room under the role's claim limit: the records
of that type the member holds that were claimed from the pool and not yet returned (owner_id = the
member and claimed_at set; for leads, not converted). Assigning a record to someone clears
claimed_at, so only claims count. A claim is race-safe: the record's row is locked (SELECT ... FOR
UPDATE), so of two claims of one record one wins and the other is told "already claimed"; and the
member's own claims are serialized by a transaction-level advisory lock, so parallel claims of
different records cannot overrun the limit together.

A return to the pool is made by the record's owner, or by a role whose scope reaches all records.
Each claim and return is audited ("<noun>.claim", "<noun>.release") and written on the record's
timeline ("pool.claimed", "pool.returned" with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.activities.events import record_event
from kith.tenants.pool.errors import PoolError, not_found
from kith.tenants.pool.rules import load_rules


@dataclass(frozen=True)
class PoolType:
    object_type: str  # also the table
    noun: str  # singular, for messages and audit actions
    label: str  # plural, for messages
    link: str  # the timeline link column of record_event
    lock_class: int  # first key of the advisory lock serializing one member's claims of this type

    @property
    def held_condition(self) -> str:
        """Records counted against the claim limit (owner_id compared with $1)."""
        extra = " AND converted_at IS NULL" if self.object_type == "leads" else ""
        return f"owner_id = $1 AND claimed_at IS NOT NULL{extra}"

    @property
    def pool_condition(self) -> str:
        """The pool itself: records nobody owns (a converted lead is done, never pooled)."""
        extra = f" AND {self.object_type}.converted_at IS NULL" if self.object_type == "leads" else ""
        return f"{self.object_type}.owner_id IS NULL{extra}"


POOL_TYPES: dict[str, PoolType] = {
    "companies": PoolType("companies", "company", "companies", "company_id", 0x6B706301),
    "leads": PoolType("leads", "lead", "leads", "lead_id", 0x6B706302),
}


def pool_type(object_type: str) -> PoolType:
    found = POOL_TYPES.get(object_type)
    if found is None:
        raise ValueError(f"{object_type} have no pool")
    return found


async def holding(session: TenantSession, kind: PoolType) -> tuple[int, int | None]:
    """(how many records of the type the actor holds from the pool, the actor's limit or None)."""
    limit = (await load_rules(session.tx)).limit_for(session.actor.role)
    if session.actor.identity_id is None:
        return 0, limit
    rows = await session.tx.execute_query_dict(
        f"SELECT count(*) AS n FROM {kind.object_type} WHERE {kind.held_condition}", [session.actor.identity_id])
    return int(rows[0]["n"]), limit


def _outcome(kind: PoolType, row: dict[str, Any], held: int, limit: int | None) -> dict[str, Any]:
    return {"object_type": kind.object_type, "id": int(row["id"]), "owner_id": row["owner_id"],
            "claimed_at": row["claimed_at"], "pooled_at": row["pooled_at"], "held": held, "limit": limit}


async def _locked(session: TenantSession, kind: PoolType, record_id: int) -> dict[str, Any]:
    rows = await session.tx.execute_query_dict(
        f"SELECT * FROM {kind.object_type} WHERE id = $1 FOR UPDATE", [record_id])
    if not rows:
        raise not_found(kind.noun)
    return dict(rows[0])


def _in_scope(session: TenantSession, kind: PoolType, owner_id: int | None) -> bool:
    owners = session.policy.owner_ids(kind.object_type)
    return owners is None or (owner_id is not None and owner_id in owners)


async def claim_in(session: TenantSession, object_type: str, record_id: int) -> dict[str, Any]:
    """Take a record from the pool: the actor becomes its owner (see the module for the rules)."""
    kind = pool_type(object_type)
    session.require(kind.object_type, "edit")
    me = session.actor.identity_id
    if me is None:
        raise PoolError(422, "no_person", "Only a member can claim records from the pool.")
    # one member's claims of a type one after the other: the count below stays true until commit
    await session.tx.execute_query("SELECT pg_advisory_xact_lock($1, $2)", [kind.lock_class, me % 2_147_483_647])
    row = await _locked(session, kind, record_id)
    if row["owner_id"] is not None:
        if row["owner_id"] == me:
            raise PoolError(409, "already_yours", f"You already hold this {kind.noun}.")
        if row["claimed_at"] is None and not _in_scope(session, kind, row["owner_id"]):
            raise not_found(kind.noun)  # never in the pool and not the actor's business
        raise PoolError(409, "already_claimed", f"This {kind.noun} was already claimed by someone else.")
    if kind.object_type == "leads" and row["converted_at"] is not None:
        raise PoolError(409, "converted", "This lead was converted; it cannot be claimed.")
    held, limit = await holding(session, kind)
    if limit is not None and held >= limit:
        raise PoolError(
            409, "claim_limit",
            f"Your role '{session.policy.role.name}' may hold at most {limit} {kind.label} claimed from the pool "
            f"(claim limit); you hold {held}. Return one to the pool or ask an admin to raise the limit.")
    rows = await session.tx.execute_query_dict(
        f"UPDATE {kind.object_type} SET owner_id = $2, claimed_at = now(), pooled_at = NULL, updated_at = now()"
        " WHERE id = $1 RETURNING *", [record_id, me])
    claimed = dict(rows[0])
    diff = {"owner_id": [None, me], "claimed_at": [row["claimed_at"], claimed["claimed_at"]],
            "pooled_at": [row["pooled_at"], None]}
    await session.audit(f"{kind.noun}.claim", kind.object_type, record_id, diff)
    await record_event(session, "pool.claimed", {"owner_id": me, "pooled_since": row["pooled_at"]},
                       subject="Claimed from the pool", **{kind.link: record_id})
    return _outcome(kind, claimed, held + 1, limit)


async def release_in(session: TenantSession, object_type: str, record_id: int, reason: str = "") -> dict[str, Any]:
    """Return a record to the pool: by its owner, or by a role whose scope reaches all records."""
    kind = pool_type(object_type)
    session.require(kind.object_type, "edit")
    row = await _locked(session, kind, record_id)
    owner = row["owner_id"]
    if owner is None:
        raise PoolError(409, "already_in_pool", f"This {kind.noun} is already in the pool.")
    if not _in_scope(session, kind, owner):
        raise not_found(kind.noun)
    if owner != session.actor.identity_id and session.policy.owner_ids(kind.object_type) is not None:
        raise PoolError(403, "not_owner", f"Only the {kind.noun}'s owner, or a role that reaches all {kind.label}, "
                                          "may return it to the pool.")
    if kind.object_type == "leads" and row["converted_at"] is not None:
        raise PoolError(409, "converted", "This lead was converted; it stays with its owner.")
    default = "returned by its owner" if owner == session.actor.identity_id else "returned by a manager"
    reason = reason.strip() or default
    rows = await session.tx.execute_query_dict(
        f"UPDATE {kind.object_type} SET owner_id = NULL, claimed_at = NULL, pooled_at = now(), updated_at = now()"
        " WHERE id = $1 RETURNING *", [record_id])
    released = dict(rows[0])
    diff = {"owner_id": [owner, None], "claimed_at": [row["claimed_at"], None],
            "pooled_at": [row["pooled_at"], released["pooled_at"]], "reason": [None, reason]}
    await session.audit(f"{kind.noun}.release", kind.object_type, record_id, diff)
    await record_event(session, "pool.returned", {"reason": reason, "previous_owner": owner},
                       subject=f"Returned to the pool: {reason}", **{kind.link: record_id})
    held, limit = await holding(session, kind)
    return _outcome(kind, released, held, limit)


async def claim(actor: Actor, object_type: str, record_id: int) -> dict[str, Any]:
    """Claim a company or a lead from the pool (see claim_in)."""
    async with acting_as(actor) as session:
        return await claim_in(session, object_type, record_id)


async def release(actor: Actor, object_type: str, record_id: int, reason: str = "") -> dict[str, Any]:
    """Return a company or a lead to the pool (see release_in)."""
    async with acting_as(actor) as session:
        return await release_in(session, object_type, record_id, reason)
