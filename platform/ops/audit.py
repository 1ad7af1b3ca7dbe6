"""How an operator's action is recorded: in the platform's log and in the workspace's own.

Both entries are written in one transaction with the change (the tenant's scope: its
`search_path` is the tenant's schema, and every platform table is named with `public.`),
so a change is never without its entries, nor an entry without its change. The workspace's
entry carries an Actor of kind "operator", so its admins see in their audit log that
support acted, who, and why.
"""

from __future__ import annotations

from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.audit.log import EntryFields, append_entry, append_platform_entry
from kith.platform.identity.events import ClientInfo
from kith.platform.ops.operators import Operator

# An Actor needs a role; this key names no role, so it grants nothing if it ever reached a policy.
OPERATOR_ROLE = "operator"


class ReasonRequired(ValueError):
    """An operator action was asked for without a reason."""

    def __init__(self) -> None:
        super().__init__("Give a reason: every support action is recorded with one, and the workspace sees it.")


def clean_reason(reason: str) -> str:
    """The reason, trimmed and bounded; raises ReasonRequired when it is blank."""
    text = " ".join(reason.split())[:500]
    if not text:
        raise ReasonRequired()
    return text


def operator_actor(operator: Operator, tenant_id: int, client: ClientInfo) -> Actor:
    """The operator as the actor of an entry in a workspace's audit log (outside impersonation)."""
    return Actor(kind="operator", tenant_id=tenant_id, role=OPERATOR_ROLE, label=operator.label,
                 ip=client.ip, user_agent=client.user_agent, request_id=client.request_id,
                 extra={"operator_id": str(operator.id)})


async def record_ops_action(tx: Any, operator: Operator, client: ClientInfo, *, tenant_id: int, tenant_slug: str,
                            action: str, object_type: str, object_id: str | int, detail: dict[str, Any]) -> None:
    """Append the workspace's entry, then the platform's, inside `tx` (a tenant_scope transaction).

    The tenant's audit lock is taken before the platform's, always in that order, so two
    operator actions cannot deadlock on the two locks.
    """
    await append_entry(tx, operator_actor(operator, tenant_id, client), action=action, object_type=object_type,
                       object_id=object_id, diff=detail)
    await append_platform_entry(tx, EntryFields(
        actor_kind="operator", actor_id=str(operator.id), token_id=None, actor_label=operator.label[:320],
        ip=client.ip[:64], user_agent=client.user_agent[:512], request_id=client.request_id[:64],
        object_type=object_type, object_id=str(object_id), action=action,
        diff={"tenant_id": tenant_id, "tenant": tenant_slug, **detail},
    ))
