"""Acting in a tenant: one transaction in the tenant's scope, with the actor's permissions
loaded and an audit trail written in the same transaction as the change.

This is the one door every access path goes through (pages, API, jobs, exports, imports):
actions and queries in tenants/ take an Actor and work inside `acting_as(actor)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import TransactionalDBClient

from kith.platform.access.actor import Actor
from kith.platform.access.policy import Policy, load_policy
from kith.platform.audit.log import append_entry
from kith.platform.db import tenant_scope


@dataclass
class TenantSession:
    tx: TransactionalDBClient
    actor: Actor
    policy: Policy

    def require(self, object_type: str, action: str) -> None:
        """Raise PermissionDenied unless the actor's role grants `action` on `object_type`."""
        self.policy.require(object_type, action)

    def require_fields(self, object_type: str, fields: Iterable[str]) -> None:
        """Raise PermissionDenied if any of `fields` is hidden from the actor's role."""
        self.policy.require_fields(object_type, fields)

    def visible(self, object_type: str, values: dict[str, Any]) -> dict[str, Any]:
        """`values` without the fields the actor's role may not see."""
        return self.policy.visible(object_type, values)

    async def audit(
        self,
        action: str,
        object_type: str,
        object_id: str | int | None = None,
        diff: dict[str, Any] | None = None,
    ) -> int:
        """Append an audit entry in this transaction: it commits or rolls back with the change."""
        return await append_entry(
            self.tx, self.actor, action=action, object_type=object_type, object_id=object_id, diff=diff
        )


@asynccontextmanager
async def acting_as(actor: Actor) -> AsyncIterator[TenantSession]:
    """Enter the actor's tenant with its permissions loaded (one transaction)."""
    async with tenant_scope(actor.tenant_id) as tx:
        policy = await load_policy(tx, actor)
        yield TenantSession(tx=tx, actor=actor, policy=policy)
