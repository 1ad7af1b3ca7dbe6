"""Workspace settings for administrators: roles, members' roles, teams.

Pages validate forms and call the actions in kith.platform.access.admin with the caller as
Actor; the permission checks happen there (a refusal is the 403 error page).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.platform.access import admin
from kith.platform.access.rules import (
    ACTIONS,
    BUILT_IN_DESCRIPTIONS,
    SCOPES,
    WORKSPACE_PERMISSIONS,
    object_types,
)
from kith.platform.access.schemas import RoleIn, RoleOut, RolePatch, TeamIn, TeamMemberIn
from kith.web.edge import actor_of
from kith.web.errors import title_for, validation_fields
from kith.web.forms import form_str, read_form, render
from kith.web.invite_pages import members_page

T = TypeVar("T")

SCOPE_LABELS = {"own": "Own records", "team": "Team's records", "all": "All records"}
WORKSPACE_LABELS = {
    "manage_users": "Manage users", "manage_roles": "Manage roles", "manage_billing": "Manage billing",
    "manage_settings": "Manage settings", "manage_campaigns": "Manage campaigns",
    "manage_targets": "Manage sales targets",
}


def _settings(request: Request, page: str) -> str:
    return f"/t/{request.state.caller.tenant.slug}/settings/{page}"


def _error(request: Request, status: int, message: str) -> Response:
    return render(request, "error.html", {"status": status, "title": title_for(status), "message": message},
                  status=status)


def _vocabulary() -> dict[str, Any]:
    return {"object_types": object_types(), "actions": ACTIONS, "scopes": SCOPES, "scope_labels": SCOPE_LABELS,
            "workspace_permissions": WORKSPACE_PERMISSIONS, "workspace_labels": WORKSPACE_LABELS}


async def _attempt(request: Request, action: Awaitable[T]) -> T | Response:
    """Run an action; a refusal other than bad input becomes the error page with its status."""
    try:
        return await action
    except admin.AccessAdminError as exc:
        return _error(request, exc.status, exc.message)


# --- roles -----------------------------------------------------------------------------


async def role_list(request: Request) -> Response:
    roles = await admin.list_roles(actor_of(request))
    return render(request, "admin/roles.html", {
        **_vocabulary(), "roles": roles, "descriptions": BUILT_IN_DESCRIPTIONS,
        "deleted": request.query_params.get("deleted", ""),
    })


def _role_form_values(form: FormData) -> dict[str, Any]:
    """The role form as RoleIn's input: checkboxes named grant:<type>:<action>,
    hidden:<type>:<field> and workspace:<permission>, and a select scope:<type>."""
    grants: dict[str, list[str]] = {}
    hidden: dict[str, list[str]] = {}
    scopes: dict[str, str] = {}
    workspace: list[str] = []
    for key in form:
        kind, _, rest = key.partition(":")
        type_name, _, item = rest.partition(":")
        if kind == "grant" and item:
            grants.setdefault(type_name, []).append(item)
        elif kind == "hidden" and item:
            hidden.setdefault(type_name, []).append(item)
        elif kind == "scope" and type_name:
            scopes[type_name] = form_str(form, key)
        elif kind == "workspace" and type_name:
            workspace.append(type_name)
    return {"name": form_str(form, "name"), "grants": grants, "workspace": workspace,
            "record_scope": scopes, "hidden_fields": hidden}


def _form_context(values: dict[str, Any], errors: dict[str, str], role: RoleOut | None) -> dict[str, Any]:
    return {**_vocabulary(), "values": values, "errors": errors, "role": role}


_EMPTY_ROLE: dict[str, Any] = {"name": "", "grants": {}, "workspace": [], "record_scope": {}, "hidden_fields": {}}


async def role_new(request: Request) -> Response:
    if request.method == "GET":
        return render(request, "admin/role_form.html", _form_context(_EMPTY_ROLE, {}, None))
    values = _role_form_values(await read_form(request))
    try:
        data = RoleIn.model_validate(values)
        await admin.create_role(actor_of(request), data)
    except ValidationError as exc:
        return render(request, "admin/role_form.html", _form_context(values, validation_fields(exc), None), status=422)
    except admin.AccessAdminError as exc:
        if not exc.fields:
            return _error(request, exc.status, exc.message)
        return render(request, "admin/role_form.html", _form_context(values, exc.fields, None), status=exc.status)
    return RedirectResponse(f"{_settings(request, 'roles')}?saved={data.name}", status_code=303)


async def role_edit(request: Request) -> Response:
    key = str(request.path_params["key"])
    # the form's token is checked before anything is looked up
    form = await read_form(request) if request.method == "POST" else None
    found = await _attempt(request, admin.get_role(actor_of(request), key))
    if isinstance(found, Response):
        return found
    if found.built_in:
        return _error(request, 409, f"The built-in role '{found.name}' cannot be changed; create a custom role.")
    if form is None:
        return render(request, "admin/role_form.html", _form_context(found.model_dump(), {}, found))
    values = _role_form_values(form)
    try:
        patch = RolePatch.model_validate(values)
        await admin.update_role(actor_of(request), key, patch)
    except ValidationError as exc:
        return render(request, "admin/role_form.html", _form_context(values, validation_fields(exc), found),
                      status=422)
    except admin.AccessAdminError as exc:
        if not exc.fields:
            return _error(request, exc.status, exc.message)
        return render(request, "admin/role_form.html", _form_context(values, exc.fields, found), status=exc.status)
    return RedirectResponse(f"{_settings(request, 'roles')}?saved={patch.name or key}", status_code=303)


async def role_delete(request: Request) -> Response:
    await read_form(request)
    done = await _attempt(request, admin.delete_role(actor_of(request), str(request.path_params["key"])))
    if isinstance(done, Response):
        return done
    return RedirectResponse(f"{_settings(request, 'roles')}?deleted=1", status_code=303)


# --- members ---------------------------------------------------------------------------


async def member_list(request: Request) -> Response:
    # the members page carries the invitation and deactivation forms (kith.web.invite_pages)
    return await members_page(request)


async def member_role(request: Request) -> Response:
    form = await read_form(request)
    raw = str(request.path_params["identity_id"])
    if not raw.isdigit():
        return _error(request, 404, "There is no such member.")
    try:
        await admin.set_member_role(actor_of(request), int(raw), form_str(form, "role"))
    except admin.AccessAdminError as exc:
        return _error(request, exc.status, exc.fields.get("role", exc.message))
    return RedirectResponse(f"{_settings(request, 'members')}?changed={raw}", status_code=303)


# --- teams -----------------------------------------------------------------------------


async def team_list(request: Request) -> Response:
    actor = actor_of(request)
    context: dict[str, Any] = {"errors": {}, "values": {}}
    status = 200
    if request.method == "POST":
        form = await read_form(request)
        context["values"] = {"name": form_str(form, "name")}
        try:
            await admin.create_team(actor, TeamIn.model_validate(context["values"]))
            return RedirectResponse(_settings(request, "teams"), status_code=303)
        except ValidationError as exc:
            context["errors"], status = validation_fields(exc), 422
        except admin.AccessAdminError as exc:
            context["errors"], status = (exc.fields or {"name": exc.message}), exc.status
    context["teams"] = await admin.list_teams(actor)
    context["members"] = await admin.list_members(actor)
    return render(request, "admin/teams.html", context, status=status)


def _ids(request: Request, *names: str) -> list[int] | None:
    raws = [str(request.path_params.get(n, "")) for n in names]
    return [int(r) for r in raws] if all(r.isdigit() for r in raws) else None


async def team_delete(request: Request) -> Response:
    await read_form(request)
    ids = _ids(request, "team_id")
    if ids is None:
        return _error(request, 404, "There is no such team.")
    done = await _attempt(request, admin.delete_team(actor_of(request), ids[0]))
    return done if isinstance(done, Response) else RedirectResponse(_settings(request, "teams"), status_code=303)


async def team_member_add(request: Request) -> Response:
    form = await read_form(request)
    ids = _ids(request, "team_id")
    member = form_str(form, "identity_id")
    if ids is None or not member.isdigit():
        return _error(request, 404, "There is no such team or member.")
    data = TeamMemberIn(is_manager=form_str(form, "is_manager") == "on")
    done = await _attempt(request, admin.set_team_member(actor_of(request), ids[0], int(member), data))
    return done if isinstance(done, Response) else RedirectResponse(_settings(request, "teams"), status_code=303)


async def team_member_remove(request: Request) -> Response:
    await read_form(request)
    ids = _ids(request, "team_id", "identity_id")
    if ids is None:
        return _error(request, 404, "There is no such team member.")
    done = await _attempt(request, admin.remove_team_member(actor_of(request), ids[0], ids[1]))
    return done if isinstance(done, Response) else RedirectResponse(_settings(request, "teams"), status_code=303)


routes = [
    Route("/t/{slug}/settings/roles", role_list, methods=["GET"]),
    Route("/t/{slug}/settings/roles/new", role_new, methods=["GET", "POST"]),
    Route("/t/{slug}/settings/roles/{key}/edit", role_edit, methods=["GET", "POST"]),
    Route("/t/{slug}/settings/roles/{key}/delete", role_delete, methods=["POST"]),
    Route("/t/{slug}/settings/members", member_list, methods=["GET"]),
    Route("/t/{slug}/settings/members/{identity_id}/role", member_role, methods=["POST"]),
    Route("/t/{slug}/settings/teams", team_list, methods=["GET", "POST"]),
    Route("/t/{slug}/settings/teams/{team_id}/delete", team_delete, methods=["POST"]),
    Route("/t/{slug}/settings/teams/{team_id}/members", team_member_add, methods=["POST"]),
    Route("/t/{slug}/settings/teams/{team_id}/members/{identity_id}/remove", team_member_remove, methods=["POST"]),
]
