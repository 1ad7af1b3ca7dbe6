"""The workspace's pool rules (one row of crm_settings): after how many days without a follow-up an
owned record goes back to the pool, and how many pool records a member of each role may hold."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from kith.platform.access.actor import Actor
from kith.platform.access.rules import BUILT_IN_ROLES
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.pool.errors import PoolError
from kith.tenants.pool.schemas import PoolRulesIn


@dataclass(frozen=True)
class PoolRules:
    reclaim_days: int | None
    claim_limits: dict[str, int]
    updated_at: datetime

    def limit_for(self, role_key: str) -> int | None:
        """How many records of a type a member of `role_key` may hold from the pool; None: no limit."""
        limit = self.claim_limits.get(role_key)
        return int(limit) if limit is not None else None


async def load_rules(tx: BaseDBAsyncClient) -> PoolRules:
    """The pool rules, read in the tenant's transaction."""
    rows = await tx.execute_query_dict(
        "SELECT pool_reclaim_days, pool_claim_limits, updated_at FROM crm_settings WHERE id")
    row = rows[0]
    limits = row["pool_claim_limits"]
    limits = json.loads(limits) if isinstance(limits, str) else (limits or {})
    return PoolRules(reclaim_days=row["pool_reclaim_days"], claim_limits={str(k): int(v) for k, v in limits.items()},
                     updated_at=row["updated_at"])


async def workspace_roles(session: TenantSession) -> list[tuple[str, str]]:
    """(key, name) of every role of the workspace: the built-in ones, then the custom ones by name."""
    rows = await session.tx.execute_query_dict("SELECT key, name FROM roles ORDER BY lower(name)")
    return [(r.key, r.name) for r in BUILT_IN_ROLES.values()] + [(str(r["key"]), str(r["name"])) for r in rows]


async def rules_with_roles(session: TenantSession) -> dict[str, Any]:
    """The rules as the API and the settings page show them: every role with its limit."""
    rules = await load_rules(session.tx)
    roles = [{"key": key, "name": name, "limit": rules.limit_for(key)} for key, name in await workspace_roles(session)]
    return {"reclaim_days": rules.reclaim_days, "claim_limits": rules.claim_limits, "roles": roles,
            "updated_at": rules.updated_at}


async def get_rules(actor: Actor) -> dict[str, Any]:
    """The pool rules; any member may read them (a rep sees the limit that applies to them)."""
    async with acting_as(actor) as session:
        return await rules_with_roles(session)


async def set_rules(actor: Actor, data: PoolRulesIn) -> dict[str, Any]:
    """Replace the pool rules (needs 'workspace: manage_settings'); audited as pool.rules_update."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        known = {key for key, _ in await workspace_roles(session)}
        unknown = {f"claim_limits.{k}": f"There is no role '{k}' in this workspace." for k in data.claim_limits
                   if k not in known}
        if unknown:
            raise PoolError(422, "invalid_input", "Some fields are not valid.", fields=unknown)
        before = await load_rules(session.tx)
        limits = dict(sorted(data.claim_limits.items()))
        diff: dict[str, Any] = {}
        if before.reclaim_days != data.reclaim_days:
            diff["pool_reclaim_days"] = [before.reclaim_days, data.reclaim_days]
        if before.claim_limits != limits:
            diff["pool_claim_limits"] = [before.claim_limits, limits]
        if diff:
            await session.tx.execute_query(
                "UPDATE crm_settings SET pool_reclaim_days = $1, pool_claim_limits = $2::jsonb, updated_at = now()"
                " WHERE id", [data.reclaim_days, json.dumps(limits)])
            await session.audit("pool.rules_update", "crm_settings", None, diff)
        return await rules_with_roles(session)


async def rules_for_settings(actor: Actor) -> dict[str, Any]:
    """The pool rules for the settings page (needs 'workspace: manage_settings')."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        return await rules_with_roles(session)
