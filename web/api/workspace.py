"""Tenant administration over the API: invitations, member deactivation, workspace settings.

Handlers validate input and call one action with the caller as Actor; the permission
checks happen in the actions (PermissionDenied becomes a 403 in the app's handlers).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from pydantic import BaseModel
from redis.exceptions import RedisError
from starlette.requests import Request

from kith.jobs.invites import enqueue_invitation_email
from kith.platform.access import admin
from kith.platform.access.schemas import MemberOut
from kith.platform.observability import get_logger
from kith.platform.tenancy import invites
from kith.platform.tenancy import settings as workspace
from kith.platform.tenancy.members import deactivate_member, reactivate_member
from kith.web.api.registry import endpoint
from kith.web.edge import actor_of
from kith.web.errors import ApiError

TAG = "administration"
MANAGE_USERS = ("workspace", "manage_users")
MANAGE_SETTINGS = ("workspace", "manage_settings")
T = TypeVar("T")
log = get_logger("kith.web.api")


async def _run(action: Awaitable[T]) -> T:
    """Await an action, turning its refusals into API errors."""
    try:
        return await action
    except (admin.AccessAdminError, invites.InvitationRefused) as exc:
        raise ApiError(exc.status, exc.code, exc.message, fields=exc.fields) from None


def _int_param(request: Request, name: str, what: str) -> int:
    raw = str(request.path_params[name])
    if not raw.isdigit():
        raise ApiError(404, "not_found", f"There is no such {what}.")
    return int(raw)


@endpoint("GET", "/invitations", summary="List pending invitations", tag=TAG, permission=MANAGE_USERS,
          response=invites.InvitationList, errors=(401, 403))
async def list_invitations(request: Request, body: None) -> BaseModel:
    return invites.InvitationList(items=await _run(invites.list_invitations(actor_of(request))))


@endpoint("POST", "/invitations", summary="Invite someone by email (a single-use link, emailed)", tag=TAG,
          permission=MANAGE_USERS, body=invites.InvitationIn, response=invites.InvitationOut, status=201,
          errors=(400, 401, 402, 403, 409, 422))
async def create_invitation(request: Request, body: invites.InvitationIn) -> BaseModel:
    created = await _run(invites.create_invitation(actor_of(request), body))
    try:
        await enqueue_invitation_email(request.state.caller.tenant.id, created.invitation.id, created.email_id)
    except (OSError, RedisError) as exc:  # the invitation exists; its email waits in the outbox
        log.warning("invitation email not queued", error=str(exc))
    return created.invitation


@endpoint("DELETE", "/invitations/{invitation_id}", summary="Withdraw a pending invitation", tag=TAG,
          permission=MANAGE_USERS, status=204, errors=(401, 403, 404))
async def revoke_invitation(request: Request, body: None) -> None:
    await _run(invites.revoke_invitation(actor_of(request), _int_param(request, "invitation_id", "invitation")))


@endpoint("POST", "/members/{identity_id}/deactivate", summary="Deactivate a member (sessions and tokens stop)",
          tag=TAG, permission=MANAGE_USERS, response=MemberOut, errors=(401, 403, 404, 409))
async def deactivate(request: Request, body: None) -> BaseModel:
    return await _run(deactivate_member(actor_of(request), _int_param(request, "identity_id", "member")))


@endpoint("POST", "/members/{identity_id}/reactivate", summary="Reactivate a deactivated member", tag=TAG,
          permission=MANAGE_USERS, response=MemberOut, errors=(401, 402, 403, 404))
async def reactivate(request: Request, body: None) -> BaseModel:
    return await _run(reactivate_member(actor_of(request), _int_param(request, "identity_id", "member")))


@endpoint("GET", "/workspace", summary="Get the workspace's settings", tag=TAG, permission=MANAGE_SETTINGS,
          response=workspace.WorkspaceOut, errors=(401, 403))
async def get_workspace(request: Request, body: None) -> BaseModel:
    return await workspace.get_workspace(actor_of(request))


@endpoint("PATCH", "/workspace", summary="Change the workspace's settings (the fields given)", tag=TAG,
          permission=MANAGE_SETTINGS, body=workspace.WorkspacePatch, response=workspace.WorkspaceOut,
          errors=(400, 401, 403, 422))
async def update_workspace(request: Request, body: workspace.WorkspacePatch) -> BaseModel:
    return await workspace.update_workspace(actor_of(request), body)
