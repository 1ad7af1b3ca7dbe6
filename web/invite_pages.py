"""Pages behind emailed links, and the members page's invitation and deactivation forms.

- /t/<slug>/settings/members/invite, .../invitations/<id>/revoke, .../members/<id>/deactivate
  and /reactivate: forms on the members page (manage_users, checked by the actions);
- /invite/<token>: accept an invitation, as a new person or signed in as the invited email;
- /forgot-password and /reset/<token>: password reset by emailed link. The request page
  says the same thing whether or not the address has an account.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.jobs.invites import enqueue_invitation_email, enqueue_password_reset
from kith.platform.access import admin
from kith.platform.db import platform_tx
from kith.platform.identity.models import Identity
from kith.platform.identity.reset import ResetRefused, complete_password_reset, view_password_reset
from kith.platform.identity.sessions import SESSION_LIFETIME, end_session, start_session
from kith.platform.observability import get_logger
from kith.platform.tenancy import invites
from kith.platform.tenancy.members import deactivate_member, reactivate_member
from kith.web.auth_pages import client_info
from kith.web.edge import SESSION_COOKIE, actor_of
from kith.web.errors import title_for, validation_fields
from kith.web.forms import form_str, read_form, render, set_cookie

log = get_logger("kith.web.invites")


def _members_url(request: Request, query: str = "") -> str:
    return f"/t/{request.state.caller.tenant.slug}/settings/members" + (f"?{query}" if query else "")


def _error(request: Request, status: int, message: str) -> Response:
    return render(request, "error.html", {"status": status, "title": title_for(status), "message": message},
                  status=status)


async def members_page(request: Request, *, status: int = 200, invite_values: dict[str, str] | None = None,
                       invite_errors: dict[str, str] | None = None) -> Response:
    """The members page with its invitation form (also re-shown with the form's errors)."""
    actor = actor_of(request)
    return render(request, "admin/members.html", {
        "members": await admin.list_members(actor), "roles": await admin.role_choices(actor),
        "invitations": await invites.list_invitations(actor), "changed": request.query_params.get("changed", ""),
        "notice": request.query_params.get("notice", ""),
        "invite_values": invite_values or {"email": "", "role": "sales"}, "invite_errors": invite_errors or {},
    }, status=status)


async def invite(request: Request) -> Response:
    form = await read_form(request)
    values = {"email": form_str(form, "email"), "role": form_str(form, "role") or "sales"}
    try:
        created = await invites.create_invitation(actor_of(request), invites.InvitationIn.model_validate(values))
    except ValidationError as exc:
        return await members_page(request, status=422, invite_values=values, invite_errors=validation_fields(exc))
    except (invites.InvitationRefused, admin.AccessAdminError) as exc:
        return await members_page(request, status=exc.status, invite_values=values,
                                  invite_errors=exc.fields or {"email": exc.message})
    await _send_invitation(request.state.caller.tenant.id, created)
    return RedirectResponse(_members_url(request, "notice=invited"), status_code=303)


async def _send_invitation(tenant_id: int, created: invites.CreatedInvitation) -> None:
    try:
        await enqueue_invitation_email(tenant_id, created.invitation.id, created.email_id)
    except (OSError, RedisError) as exc:  # the invitation exists; its email waits in the outbox
        log.warning("invitation email not queued", tenant_id=tenant_id, error=str(exc))


def _int(request: Request, name: str) -> int | None:
    raw = str(request.path_params[name])
    return int(raw) if raw.isdigit() else None


async def revoke(request: Request) -> Response:
    await read_form(request)
    invitation_id = _int(request, "invitation_id")
    if invitation_id is None:
        return _error(request, 404, "There is no such pending invitation.")
    try:
        await invites.revoke_invitation(actor_of(request), invitation_id)
    except invites.InvitationRefused as exc:
        return _error(request, exc.status, exc.message)
    return RedirectResponse(_members_url(request, "notice=revoked"), status_code=303)


async def _member_change(request: Request, deactivate: bool) -> Response:
    await read_form(request)
    identity_id = _int(request, "identity_id")
    if identity_id is None:
        return _error(request, 404, "There is no such member.")
    try:
        if deactivate:
            await deactivate_member(actor_of(request), identity_id)
        else:
            await reactivate_member(actor_of(request), identity_id)
    except (admin.AccessAdminError, invites.InvitationRefused) as exc:
        return _error(request, exc.status, exc.message)
    notice = "deactivated" if deactivate else "reactivated"
    return RedirectResponse(_members_url(request, f"notice={notice}&changed={identity_id}"), status_code=303)


async def deactivate(request: Request) -> Response:
    return await _member_change(request, True)


async def reactivate(request: Request) -> Response:
    return await _member_change(request, False)


# --- accepting an invitation ----------------------------------------------------------------


def _refused(request: Request, exc: invites.InvitationRefused | ResetRefused) -> Response:
    return render(request, "invite/refused.html", {"message": exc.message, "code": exc.code}, status=exc.status)


async def accept(request: Request) -> Response:
    raw = str(request.path_params["token"])
    form = await read_form(request) if request.method == "POST" else None
    try:
        view = await invites.view_invitation(raw)
    except invites.InvitationRefused as exc:
        return _refused(request, exc)
    identity: Identity | None = request.state.identity
    context: dict[str, Any] = {"invitation": view, "token": raw, "values": {"display_name": ""}, "errors": {}}
    wrong_account = identity is not None and identity.email.lower() != view.email.lower()
    context["wrong_account"] = wrong_account
    if form is None:
        return render(request, "invite/accept.html", context, status=403 if wrong_account else 200)
    client = client_info(request)
    display_name = form_str(form, "display_name")
    try:
        accepted = await invites.accept_invitation(
            raw, signed_in_identity_id=identity.id if identity is not None else None, display_name=display_name,
            password=form_str(form, "password"), client_ip=client.ip, user_agent=client.user_agent)
    except invites.InvitationRefused as exc:
        if exc.code != "invalid_input":
            context["refusal"] = exc.message
            return render(request, "invite/accept.html", context, status=exc.status)
        context.update(values={"display_name": display_name}, errors=exc.fields)
        return render(request, "invite/accept.html", context, status=422)
    response = RedirectResponse(f"/t/{accepted.tenant_slug}/contacts", status_code=303)
    if accepted.created_identity:
        async with platform_tx() as tx:
            person = await Identity.filter(id=accepted.identity_id).using_db(tx).get()
        raw_session = await start_session(person, ip=client.ip, user_agent=client.user_agent)
        set_cookie(response, SESSION_COOKIE, raw_session, max_age=int(SESSION_LIFETIME.total_seconds()))
    return response


async def switch_account(request: Request) -> Response:
    """Signed in as someone else: sign out, then sign in as the invited email and come back."""
    await read_form(request)
    raw_session = request.cookies.get(SESSION_COOKIE, "")
    if raw_session:
        await end_session(raw_session)
    response = RedirectResponse(f"/login?next=/invite/{request.path_params['token']}", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- password reset -------------------------------------------------------------------------


async def forgot_password(request: Request) -> Response:
    if request.method == "GET":
        return render(request, "invite/forgot.html", {"sent": False, "email": ""})
    form = await read_form(request)
    email = form_str(form, "email").strip()
    if email:
        try:
            await enqueue_password_reset(email)
        except (OSError, RedisError) as exc:
            log.warning("password reset not queued", error=str(exc))
    # the same answer whether or not the address has an account
    return render(request, "invite/forgot.html", {"sent": True, "email": email})


async def reset_password(request: Request) -> Response:
    raw = str(request.path_params["token"])
    form = await read_form(request) if request.method == "POST" else None
    try:
        view = await view_password_reset(raw)
    except ResetRefused as exc:
        return _refused(request, exc)
    if form is None:
        return render(request, "invite/reset.html", {"email": view.email, "errors": {}})
    try:
        await complete_password_reset(raw, form_str(form, "password"), client_info(request))
    except ResetRefused as exc:
        if exc.code != "invalid_input":
            return _refused(request, exc)
        return render(request, "invite/reset.html", {"email": view.email, "errors": exc.fields}, status=422)
    response = RedirectResponse("/login?reset=1", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


routes = [
    Route("/t/{slug}/settings/members/invite", invite, methods=["POST"]),
    Route("/t/{slug}/settings/invitations/{invitation_id}/revoke", revoke, methods=["POST"]),
    Route("/t/{slug}/settings/members/{identity_id}/deactivate", deactivate, methods=["POST"]),
    Route("/t/{slug}/settings/members/{identity_id}/reactivate", reactivate, methods=["POST"]),
    Route("/invite/{token}", accept, methods=["GET", "POST"]),
    Route("/invite/{token}/switch", switch_account, methods=["POST"]),
    Route("/forgot-password", forgot_password, methods=["GET", "POST"]),
    Route("/reset/{token}", reset_password, methods=["GET", "POST"]),
]
