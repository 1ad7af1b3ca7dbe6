"""A person's account security: two-factor authentication, sessions, API tokens across
workspaces, password change; and a workspace's own security settings (mandatory 2FA).

Every POST reads its form (CSRF check) before anything else, then calls one action in
kith.platform.identity.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.platform.identity.account import (
    AccountError,
    active_sessions,
    change_password,
    disable_two_factor,
    regenerate_recovery_codes,
    revoke_other_sessions,
    revoke_session,
    tokens_across_workspaces,
)
from kith.platform.identity.models import Identity
from kith.platform.identity.sessions import load_session, workspaces_of
from kith.platform.identity.tokens import revoke_own_token
from kith.platform.identity.totp import (
    TwoFactorError,
    begin_enrolment,
    confirm_enrolment,
    recovery_codes_left,
    set_workspace_requires_2fa,
    workspace_security,
)
from kith.web.auth_pages import client_info
from kith.web.edge import SESSION_COOKIE, actor_of
from kith.web.forms import form_str, read_form, render

SECURITY = "/account/security"
NOTICES = {
    "session": "That session was signed out.",
    "others": "All your other sessions were signed out.",
    "token": "The token was revoked.",
    "password": "Your password was changed; your other sessions were signed out.",
    "2fa-off": "Two-factor authentication is off.",
    "workspace": "Workspace security settings saved.",
}


def _to_login(request: Request) -> Response:
    return RedirectResponse(f"/login?next={quote(request.url.path, safe='')}", status_code=303)


def _id(request: Request, name: str) -> int:
    try:
        return int(request.path_params[name])
    except (KeyError, ValueError):
        return 0


async def _current_session_id(request: Request) -> int | None:
    session = await load_session(request.cookies.get(SESSION_COOKIE, ""))
    return session.session_id if session else None


async def _required_workspace(identity: Identity, slug: str) -> dict[str, str] | None:
    """The workspace named by ?required=, if the person belongs to it (so the notice never
    echoes arbitrary text or reveals other workspaces)."""
    if not slug:
        return None
    for tenant in await workspaces_of(identity.id):
        if tenant.slug == slug:
            return {"slug": tenant.slug, "name": tenant.name}
    return None


async def _overview(request: Request, identity: Identity, *, errors: dict[str, str] | None = None,
                    form: str = "", status: int = 200, retry_after: int | None = None) -> Response:
    context: dict[str, Any] = {
        "two_factor_on": identity.totp_enabled_at is not None,
        "enabled_at": identity.totp_enabled_at,
        "recovery_left": await recovery_codes_left(identity.id) if identity.totp_enabled_at else 0,
        "sessions": await active_sessions(identity.id, current_session_id=await _current_session_id(request)),
        "tokens": await tokens_across_workspaces(identity.id),
        "required": await _required_workspace(identity, request.query_params.get("required", "")),
        "notice": NOTICES.get(request.query_params.get("done", ""), ""),
        "errors": errors or {},
        "failed_form": form,
    }
    response = render(request, "account/security.html", context, status=status)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _refused(exc: AccountError) -> tuple[dict[str, str], int]:
    return {exc.field: exc.message}, (429 if exc.retry_after is not None else 422)


async def security(request: Request) -> Response:
    identity = request.state.identity
    if identity is None:
        return _to_login(request)
    return await _overview(request, identity)


async def two_factor_setup(request: Request) -> Response:
    """Enrolment: show the pending secret and its QR code; a correct code turns it on."""
    form = await read_form(request) if request.method == "POST" else None
    identity = request.state.identity
    if identity is None:
        return _to_login(request)
    required = await _required_workspace(identity, request.query_params.get("required", ""))
    if identity.totp_enabled_at is not None:
        return RedirectResponse(SECURITY, status_code=303)
    error = ""
    if form is not None:
        try:
            codes = await confirm_enrolment(identity.id, form_str(form, "code"), client_info(request))
        except TwoFactorError as exc:
            error = str(exc)
        else:
            return render(request, "account/recovery_codes.html",
                          {"codes": codes, "just_enabled": True, "required": required})
    enrolment = await begin_enrolment(identity.id)
    return render(request, "account/enrol.html", {"enrolment": enrolment, "error": error, "required": required},
                  status=422 if error else 200)


async def two_factor_disable(request: Request) -> Response:
    form = await read_form(request)
    identity = request.state.identity
    if identity is None:
        return _to_login(request)
    try:
        await disable_two_factor(identity.id, password=form_str(form, "password"), code=form_str(form, "code"),
                                 client=client_info(request))
    except AccountError as exc:
        errors, status = _refused(exc)
        return await _overview(request, identity, errors=errors, form="disable", status=status,
                               retry_after=exc.retry_after)
    return RedirectResponse(f"{SECURITY}?done=2fa-off", status_code=303)


async def recovery_codes(request: Request) -> Response:
    form = await read_form(request)
    identity = request.state.identity
    if identity is None:
        return _to_login(request)
    try:
        codes = await regenerate_recovery_codes(identity.id, password=form_str(form, "password"),
                                                code=form_str(form, "code"), client=client_info(request))
    except AccountError as exc:
        errors, status = _refused(exc)
        return await _overview(request, identity, errors=errors, form="recovery", status=status,
                               retry_after=exc.retry_after)
    return render(request, "account/recovery_codes.html", {"codes": codes, "just_enabled": False, "required": None})


async def session_revoke(request: Request) -> Response:
    await read_form(request)
    identity = request.state.identity
    if identity is None:
        return _to_login(request)
    session_id = _id(request, "session_id")
    current = await _current_session_id(request)
    await revoke_session(identity.id, session_id, client_info(request))
    if session_id == current:  # signed themselves out
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response
    return RedirectResponse(f"{SECURITY}?done=session", status_code=303)


async def sessions_revoke_others(request: Request) -> Response:
    await read_form(request)
    identity = request.state.identity
    current = await _current_session_id(request)
    if identity is None or current is None:
        return _to_login(request)
    await revoke_other_sessions(identity.id, current, client_info(request))
    return RedirectResponse(f"{SECURITY}?done=others", status_code=303)


async def token_revoke(request: Request) -> Response:
    await read_form(request)
    identity = request.state.identity
    if identity is None:
        return _to_login(request)
    await revoke_own_token(identity.id, _id(request, "token_id"), client_info(request))
    return RedirectResponse(f"{SECURITY}?done=token", status_code=303)


async def password(request: Request) -> Response:
    form = await read_form(request) if request.method == "POST" else None
    identity = request.state.identity
    if identity is None:
        return _to_login(request)
    if form is None:
        return render(request, "account/password.html", {"errors": {}})
    new = form_str(form, "new_password")
    errors: dict[str, str] = {}
    status = 422
    retry_after: int | None = None
    if new != form_str(form, "new_password_confirm"):
        errors["new_password_confirm"] = "The two new passwords do not match."  # noqa: S105 - a message
    else:
        try:
            await change_password(identity.id, current=form_str(form, "current_password"), new=new,
                                  keep_session_id=await _current_session_id(request), client=client_info(request))
        except AccountError as exc:
            errors, status = _refused(exc)
            retry_after = exc.retry_after
        else:
            return RedirectResponse(f"{SECURITY}?done=password", status_code=303)
    response = render(request, "account/password.html", {"errors": errors}, status=status)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


async def workspace_security_page(request: Request) -> Response:
    """A workspace's security settings: whether its members must use two-factor authentication.
    The actions check the "manage_settings" permission; a refusal is the 403 page."""
    form = await read_form(request) if request.method == "POST" else None
    actor = actor_of(request)
    if form is not None:
        await set_workspace_requires_2fa(actor, form_str(form, "require_2fa") == "on")
        return RedirectResponse(f"/t/{request.state.caller.tenant.slug}/settings/security?done=workspace",
                                status_code=303)
    current = await workspace_security(actor)
    return render(request, "account/workspace_security.html", {
        "require_2fa": current.require_2fa, "members": current.members,
        "notice": NOTICES.get(request.query_params.get("done", ""), ""),
    })


routes = [
    Route(SECURITY, security),
    Route(f"{SECURITY}/2fa", two_factor_setup, methods=["GET", "POST"]),
    Route(f"{SECURITY}/2fa/disable", two_factor_disable, methods=["POST"]),
    Route(f"{SECURITY}/recovery-codes", recovery_codes, methods=["POST"]),
    Route("/account/sessions/revoke-others", sessions_revoke_others, methods=["POST"]),
    Route("/account/sessions/{session_id}/revoke", session_revoke, methods=["POST"]),
    Route("/account/tokens/{token_id}/revoke", token_revoke, methods=["POST"]),
    Route("/account/password", password, methods=["GET", "POST"]),
    Route("/t/{slug}/settings/security", workspace_security_page, methods=["GET", "POST"]),
]
