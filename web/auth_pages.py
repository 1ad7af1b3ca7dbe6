"""Signup, login, logout and the workspace chooser."""

from __future__ import annotations

from urllib.parse import urlparse

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.platform.db import platform_tx
from kith.platform.identity.models import Identity
from kith.platform.identity.sessions import (
    SESSION_LIFETIME,
    authenticate_password,
    end_session,
    start_session,
    workspaces_of,
)
from kith.platform.observability import get_logger
from kith.platform.tenancy.signup import SignupError, sign_up
from kith.web.edge import SESSION_COOKIE
from kith.web.forms import form_str, read_form, render, set_cookie

log = get_logger("kith.web.auth")


def _safe_next(target: str) -> str:
    """Only same-site relative paths, so ?next= cannot send people elsewhere."""
    parsed = urlparse(target)
    if target.startswith("/") and not target.startswith("//") and not parsed.scheme and not parsed.netloc:
        return target
    return ""


def _client(request: Request) -> tuple[str, str]:
    ip = request.client.host if request.client else ""
    return ip, request.headers.get("user-agent", "")


async def _signed_in(request: Request, identity_id: int, target: str) -> Response:
    async with platform_tx() as tx:
        identity = await Identity.get(id=identity_id).using_db(tx)
    ip, agent = _client(request)
    raw = await start_session(identity, ip=ip, user_agent=agent)
    response = RedirectResponse(target, status_code=303)
    set_cookie(response, SESSION_COOKIE, raw, max_age=int(SESSION_LIFETIME.total_seconds()))
    return response


async def signup(request: Request) -> Response:
    values = {"company_name": "", "slug": "", "email": ""}
    if request.method == "GET":
        return render(request, "signup.html", {"values": values, "errors": {}})
    form = await read_form(request)
    values = {k: form_str(form, k) for k in values}
    try:
        result = await sign_up(
            company_name=values["company_name"], slug=values["slug"], email=values["email"],
            password=form_str(form, "password"),
        )
    except SignupError as exc:
        return render(request, "signup.html", {"values": values, "errors": exc.fields}, status=422)
    await _welcome(result.tenant.id, result.identity.id)
    return await _signed_in(request, result.identity.id, f"/t/{result.tenant.slug}/contacts")


async def _welcome(tenant_id: int, identity_id: int) -> None:
    from kith.jobs.queue import enqueue_welcome_email

    try:
        await enqueue_welcome_email(tenant_id, identity_id)
    except (OSError, RedisError) as exc:  # Redis down: the workspace exists; log it rather than fail signup
        log.warning("welcome email not queued", tenant_id=tenant_id, error=str(exc))


async def login(request: Request) -> Response:
    next_url = _safe_next(request.query_params.get("next", ""))
    if request.method == "GET":
        return render(request, "login.html", {"email": "", "next": next_url, "error": ""})
    form = await read_form(request)
    email = form_str(form, "email")
    next_url = _safe_next(form_str(form, "next"))
    identity = await authenticate_password(email, form_str(form, "password"))
    if identity is None:
        log.info("login failed")
        return render(request, "login.html",
                      {"email": email, "next": next_url, "error": "Email or password is not correct."}, status=401)
    if not next_url:
        spaces = await workspaces_of(identity.id)
        next_url = f"/t/{spaces[0].slug}/contacts" if len(spaces) == 1 else "/workspaces"
    return await _signed_in(request, identity.id, next_url)


async def logout(request: Request) -> Response:
    await read_form(request)
    raw = request.cookies.get(SESSION_COOKIE, "")
    if raw:
        await end_session(raw)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def workspaces(request: Request) -> Response:
    identity = request.state.identity
    if identity is None:
        return RedirectResponse("/login?next=/workspaces", status_code=303)
    return render(request, "workspaces.html", {"workspaces": await workspaces_of(identity.id)})


async def home(request: Request) -> Response:
    if request.state.identity is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse("/workspaces", status_code=303)


routes = [
    Route("/", home),
    Route("/signup", signup, methods=["GET", "POST"]),
    Route("/login", login, methods=["GET", "POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/workspaces", workspaces),
]
