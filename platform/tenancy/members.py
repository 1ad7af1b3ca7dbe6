"""A member's lifecycle after joining: deactivate and reactivate.

A deactivated member keeps their membership row (role, teams, authorship) with
`is_active = false`. Every way in reads that flag on every request: the edge's
`membership_for` for pages and `authenticate_token` for the API, so the person's sessions
get 404 and their API tokens 401 in this workspace from the next request on, while their
sessions keep working in the person's other workspaces. Reactivating restores both; the
tokens were never revoked, only refused.
"""

from __future__ import annotations

from kith.platform.access import admin
from kith.platform.access.actor import Actor
from kith.platform.access.rules import PermissionDenied
from kith.platform.access.schemas import MemberOut
from kith.platform.access.session import acting_as
from kith.platform.tenancy.invites import check_seat_available, sync_seats


async def deactivate_member(actor: Actor, identity_id: int) -> MemberOut:
    """Deactivate a member (needs manage_users). Nobody deactivates themselves, only an owner
    deactivates an owner, and the last active owner cannot be deactivated."""
    async with acting_as(actor) as session:
        policy = session.policy
        policy.require_manage("manage_users")
        rows = await session.tx.execute_query_dict(
            "SELECT role, is_active FROM public.memberships WHERE tenant_id = $1 AND identity_id = $2 FOR UPDATE",
            [actor.tenant_id, identity_id],
        )
        if not rows:
            raise admin.AccessAdminError(404, "not_found", "There is no such member.")
        if not rows[0]["is_active"]:
            return await admin.member_in(session, identity_id)
        if identity_id == actor.identity_id:
            raise admin.AccessAdminError(409, "self", "You cannot deactivate yourself; ask another admin.")
        role = str(rows[0]["role"])
        if role == admin.OWNER:
            if policy.role.key != admin.OWNER:
                raise PermissionDenied(policy.role.name, "workspace: owner", "Only an owner may deactivate an owner.")
            # every owner row locked in one order, as for role changes, so two owners
            # deactivating each other at once are serialised and the second is refused
            owners = await session.tx.execute_query_dict(
                "SELECT identity_id FROM public.memberships WHERE tenant_id = $1 AND role = 'owner' AND is_active"
                " ORDER BY id FOR UPDATE",
                [actor.tenant_id],
            )
            if [r["identity_id"] for r in owners] in ([identity_id], []):
                raise admin.AccessAdminError(409, "last_owner", "This is the workspace's last owner and cannot be "
                                                                "deactivated; make someone else owner first.")
        await session.tx.execute_query(
            "UPDATE public.memberships SET is_active = false, deactivated_at = now()"
            " WHERE tenant_id = $1 AND identity_id = $2",
            [actor.tenant_id, identity_id],
        )
        await session.audit("member.deactivate", "membership", identity_id,
                            {"before": {"is_active": True}, "after": {"is_active": False}})
        out = await admin.member_in(session, identity_id)
    await sync_seats(actor.tenant_id)
    return out


async def reactivate_member(actor: Actor, identity_id: int) -> MemberOut:
    """Reactivate a deactivated member (needs manage_users; takes a seat again)."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_users")
        rows = await session.tx.execute_query_dict(
            "SELECT is_active FROM public.memberships WHERE tenant_id = $1 AND identity_id = $2",
            [actor.tenant_id, identity_id],
        )
        if not rows:
            raise admin.AccessAdminError(404, "not_found", "There is no such member.")
        if rows[0]["is_active"]:
            return await admin.member_in(session, identity_id)
    # the seat check opens its own transactions, so it runs between the lookup and the change
    await check_seat_available(actor.tenant_id)
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_users")
        changed = await session.tx.execute_query_dict(
            "UPDATE public.memberships SET is_active = true, deactivated_at = NULL"
            " WHERE tenant_id = $1 AND identity_id = $2 AND NOT is_active RETURNING id",
            [actor.tenant_id, identity_id],
        )
        if changed:
            await session.audit("member.reactivate", "membership", identity_id,
                                {"before": {"is_active": False}, "after": {"is_active": True}})
        out = await admin.member_in(session, identity_id)
    if changed:
        await sync_seats(actor.tenant_id)
    return out
