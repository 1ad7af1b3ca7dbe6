"""Deleting a cancelled workspace once its retention period is over."""

from __future__ import annotations

from datetime import datetime, timedelta

from kith.platform.audit.log import EntryFields, append_platform_entry
from kith.platform.billing.subscriptions import now_utc
from kith.platform.config import get_settings
from kith.platform.db import TENANT_LOCK_CLASS, platform_tx


def deletion_due_at(cancelled_at: datetime) -> datetime:
    """When a workspace cancelled at `cancelled_at` is deleted (KITH_CANCELLED_RETENTION_DAYS later)."""
    return cancelled_at + timedelta(days=get_settings().cancelled_retention_days)


async def delete_cancelled_tenant(tenant_id: int) -> bool:
    """Mark the workspace deleted and drop its schema, if it is cancelled and past retention.

    One transaction: it first takes the tenant's lock exclusively, so it waits for every open
    transaction of the tenant (they hold it shared) and no new one starts; `kith_enter_tenant`
    refuses the tenant from then on. Returns whether it deleted; a second call does nothing.
    """
    tid = int(tenant_id)
    async with platform_tx() as tx:
        await tx.execute_query("SELECT pg_advisory_xact_lock($1, $2)", [TENANT_LOCK_CLASS, tid])
        rows = await tx.execute_query_dict(
            "SELECT cancelled_at FROM public.billing_subscriptions WHERE tenant_id = $1 AND status = 'cancelled'"
            " AND deleted_at IS NULL FOR UPDATE", [tid])
        if not rows or rows[0]["cancelled_at"] is None or deletion_due_at(rows[0]["cancelled_at"]) > now_utc():
            return False
        await tx.execute_query("UPDATE public.tenants SET status = 'deleted', updated_at = now() WHERE id = $1", [tid])
        # the owner's function (public migration 0015): the application role cannot drop schemas
        await tx.execute_query("SELECT public.kith_drop_tenant_schema($1)", [tid])
        await tx.execute_query("UPDATE public.billing_subscriptions SET deleted_at = now(), updated_at = now()"
                               " WHERE tenant_id = $1", [tid])
        await append_platform_entry(tx, EntryFields(
            actor_kind="system", actor_id="", token_id=None, actor_label="job:billing_retention", ip="",
            user_agent="", request_id="", object_type="tenant", object_id=str(tid), action="billing.tenant_deleted",
            diff={"cancelled_at": rows[0]["cancelled_at"].isoformat(),
                  "retention_days": get_settings().cancelled_retention_days},
        ))
    return True
