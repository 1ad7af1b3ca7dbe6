"""Acting in a tenant: one transaction in the tenant's scope, with the actor's permissions
loaded and an audit trail written in the same transaction as the change.

This is the one door every access path goes through (pages, API, jobs, exports, imports):
actions and queries in tenants/ take an Actor and work inside `acting_as(actor)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from tortoise.backends.base.client import TransactionalDBClient

from kith.platform.access.actor import Actor
from kith.platform.access.policy import Policy, load_policy
from kith.platform.access.rules import object_type as registered_type
from kith.platform.audit.log import append_entry
from kith.platform.audit.subjects import Subject
from kith.platform.billing.subscriptions import assert_writable
from kith.platform.db import tenant_scope


@dataclass
class TenantSession:
    tx: TransactionalDBClient
    actor: Actor
    policy: Policy
    # set once a read entry turned synchronous commit off for this transaction
    _async_commit: bool = field(default=False, repr=False)
    # set once a change was recorded: its commit stays synchronous whatever is read after
    _changed: bool = field(default=False, repr=False)

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
        subject: Subject | None = None,
        stored_key: tuple[str, str] | None = None,
    ) -> int:
        """Append an audit entry in this transaction: it commits or rolls back with the change.
        With `subject` (e.g. ("contacts", 42)) the diff's values are encrypted with that person's key;
        `stored_key` is that key's (key_id, wrapped_key) when already read with the subject's row."""
        if not action.endswith(".read_sensitive"):
            # Every change is recorded here, so this one check makes a read-only workspace
            # (billing past its grace period) refuse changes on every path: pages, API, jobs.
            await assert_writable(self.tx, self.actor.tenant_id, action)
            self._changed = True
            if self._async_commit:
                # a change is recorded: this transaction's commit must be durable again
                await self.tx.execute_query("SET LOCAL synchronous_commit = on")
                self._async_commit = False
        return await append_entry(
            self.tx, self.actor, action=action, object_type=object_type, object_id=object_id, diff=diff,
            subject=subject, stored_key=stored_key,
        )


    async def audit_read(
        self,
        object_type: str,
        ids: Sequence[str | int],
        fields: Iterable[str],
        *,
        listing: bool = False,
    ) -> int | None:
        """Record that the sensitive `fields` of the records `ids` were returned to the actor.

        One entry per call, "<type>.read_sensitive": a single record names itself as the
        object ({"fields": [...]}); a list page names no object and carries
        {"ids": [...], "fields": [...]}. Only ids and field names are stored, never values,
        so the read log adds no personal data of its own. Fields not declared sensitive, or
        hidden from the actor's role (never returned), are left out; nothing is written
        when nothing sensitive remains. Returns the entry's seq, or None.

        Call it last in the transaction: the entry takes the tenant's audit lock, which is
        held until commit, so reads of one tenant queue behind each other only for the
        commit itself.
        """
        if self.actor.kind in ("job", "system"):
            # Kith's own work (a job counting contacts for the welcome email, migrations,
            # retention) reads for internal use and shows nothing to a person; what such
            # work sends out (emails, exports) is audited where it leaves Kith. Auditing
            # these reads would only bury the reads people make.
            return None
        declared = registered_type(object_type)
        if declared is None or not ids:
            return None
        hidden = self.policy.hidden_fields(object_type)
        wanted = set(fields)
        shown = [f for f in declared.sensitive if f in wanted and f not in hidden]
        if not shown:
            return None
        # A read entry makes a read-only transaction write; waiting for its WAL flush would add
        # a disk sync to every list page. Commit asynchronously instead: a crash may lose the
        # last fraction of a second of read entries (whole transactions, so the chain stays
        # intact), never a change, because audit() turns it back on. The setting travels in the
        # append's own statement (set_config(..., is_local => true)): no round trip of its own.
        if listing:
            object_id: str | int | None = None
            diff: dict[str, Any] = {"ids": list(ids), "fields": shown}
        elif len(ids) != 1:
            raise ValueError("a single read names exactly one record; pass listing=True for a page")
        else:
            object_id, diff = ids[0], {"fields": shown}
        async_commit = not self._async_commit and not self._changed
        if async_commit:
            self._async_commit = True  # before the call: once sent, a later change must turn it back on
        return await append_entry(self.tx, self.actor, action=f"{object_type}.read_sensitive",
                                  object_type=object_type, object_id=object_id, diff=diff, async_commit=async_commit)


@asynccontextmanager
async def acting_as(actor: Actor) -> AsyncIterator[TenantSession]:
    """Enter the actor's tenant with its permissions loaded (one transaction)."""
    async with tenant_scope(actor.tenant_id) as tx:
        policy = await load_policy(tx, actor)
        yield TenantSession(tx=tx, actor=actor, policy=policy)
