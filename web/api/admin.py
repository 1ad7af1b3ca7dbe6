"""Workspace administration over the API: roles, members' roles, teams.

Handlers validate input and call one action in kith.platform.access.admin with the caller
as Actor; the permission checks happen there. PermissionDenied becomes a 403 in the app's
exception handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from pydantic import BaseModel
from starlette.requests import Request

from kith.platform.access import admin
from kith.platform.access.schemas import (
    MemberList,
    MemberOut,
    MemberRoleIn,
    RoleIn,
    RoleList,
    RoleOut,
    RolePatch,
    TeamIn,
    TeamList,
    TeamMemberIn,
    TeamOut,
)
from kith.web.api.registry import endpoint
from kith.web.edge import actor_of
from kith.web.errors import ApiError

TAG = "administration"
MANAGE_ROLES = ("workspace", "manage_roles")
MANAGE_USERS = ("workspace", "manage_users")

T = TypeVar("T")


async def _run(action: Awaitable[T]) -> T:
    """Await an administration action, turning its refusals into API errors."""
    try:
        return await action
    except admin.AccessAdminError as exc:
        raise ApiError(exc.status, exc.code, exc.message, fields=exc.fields) from None


def _int_param(request: Request, name: str, what: str) -> int:
    raw = str(request.path_params[name])
    if not raw.isdigit():
        raise ApiError(404, "not_found", f"There is no such {what}.")
    return int(raw)


@endpoint("GET", "/roles", summary="List roles: built-in and custom, with their permissions", tag=TAG,
          permission=MANAGE_ROLES, response=RoleList, errors=(401, 403))
async def list_roles(request: Request, body: None) -> BaseModel:
    return RoleList(items=await _run(admin.list_roles(actor_of(request))))


@endpoint("POST", "/roles", summary="Create a custom role", tag=TAG, permission=MANAGE_ROLES, body=RoleIn,
          response=RoleOut, status=201, errors=(400, 401, 403, 422))
async def create_role(request: Request, body: RoleIn) -> BaseModel:
    return await _run(admin.create_role(actor_of(request), body))


@endpoint("GET", "/roles/{key}", summary="Get one role", tag=TAG, permission=MANAGE_ROLES, response=RoleOut,
          errors=(401, 403, 404))
async def get_role(request: Request, body: None) -> BaseModel:
    return await _run(admin.get_role(actor_of(request), str(request.path_params["key"])))


@endpoint("PATCH", "/roles/{key}", summary="Change a custom role (the parts given replace the role's)", tag=TAG,
          permission=MANAGE_ROLES, body=RolePatch, response=RoleOut, errors=(400, 401, 403, 404, 409, 422))
async def update_role(request: Request, body: RolePatch) -> BaseModel:
    return await _run(admin.update_role(actor_of(request), str(request.path_params["key"]), body))


@endpoint("DELETE", "/roles/{key}", summary="Delete a custom role no member holds", tag=TAG,
          permission=MANAGE_ROLES, status=204, errors=(401, 403, 404, 409))
async def delete_role(request: Request, body: None) -> None:
    await _run(admin.delete_role(actor_of(request), str(request.path_params["key"])))


@endpoint("GET", "/members", summary="List the workspace's members and their roles", tag=TAG,
          permission=MANAGE_USERS, response=MemberList, errors=(401, 403))
async def list_members(request: Request, body: None) -> BaseModel:
    return MemberList(items=await _run(admin.list_members(actor_of(request))))


@endpoint("PATCH", "/members/{identity_id}", summary="Give a member another role", tag=TAG,
          permission=MANAGE_USERS, body=MemberRoleIn, response=MemberOut, errors=(400, 401, 403, 404, 409, 422))
async def set_member_role(request: Request, body: MemberRoleIn) -> BaseModel:
    identity_id = _int_param(request, "identity_id", "member")
    return await _run(admin.set_member_role(actor_of(request), identity_id, body.role))


@endpoint("GET", "/teams", summary="List teams and their members", tag=TAG, permission=MANAGE_USERS,
          response=TeamList, errors=(401, 403))
async def list_teams(request: Request, body: None) -> BaseModel:
    return TeamList(items=await _run(admin.list_teams(actor_of(request))))


@endpoint("POST", "/teams", summary="Create a team", tag=TAG, permission=MANAGE_USERS, body=TeamIn,
          response=TeamOut, status=201, errors=(400, 401, 403, 422))
async def create_team(request: Request, body: TeamIn) -> BaseModel:
    return await _run(admin.create_team(actor_of(request), body))


@endpoint("DELETE", "/teams/{team_id}", summary="Delete a team (its members stay in the workspace)", tag=TAG,
          permission=MANAGE_USERS, status=204, errors=(401, 403, 404))
async def delete_team(request: Request, body: None) -> None:
    await _run(admin.delete_team(actor_of(request), _int_param(request, "team_id", "team")))


@endpoint("PUT", "/teams/{team_id}/members/{identity_id}", summary="Put a member in a team, as manager or not",
          tag=TAG, permission=MANAGE_USERS, body=TeamMemberIn, response=TeamOut, errors=(400, 401, 403, 404, 422))
async def set_team_member(request: Request, body: TeamMemberIn) -> BaseModel:
    return await _run(admin.set_team_member(
        actor_of(request), _int_param(request, "team_id", "team"), _int_param(request, "identity_id", "member"), body
    ))


@endpoint("DELETE", "/teams/{team_id}/members/{identity_id}", summary="Take a member out of a team", tag=TAG,
          permission=MANAGE_USERS, status=204, errors=(401, 403, 404))
async def remove_team_member(request: Request, body: None) -> None:
    await _run(admin.remove_team_member(
        actor_of(request), _int_param(request, "team_id", "team"), _int_param(request, "identity_id", "member")
    ))
