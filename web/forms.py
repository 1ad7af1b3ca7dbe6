"""Rendering pages and reading forms: CSRF protection on every form.

Double-submit: a signed random value lives in an HttpOnly cookie and in a hidden field of
every form; a POST whose field does not match its cookie is refused with 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.templating import Jinja2Templates

from kith.platform.config import get_settings
from kith.web.i18n import install as install_i18n
from kith.web.i18n import locale_from_accept_language

CSRF_COOKIE = "kith_csrf"
CSRF_FIELD = "csrf_token"

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
install_i18n(templates.env)


class CsrfError(Exception):
    pass


def _sign(value: str) -> str:
    key = get_settings().secret_key.reveal().encode()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


def _valid(token: str) -> bool:
    value, _, sig = token.partition(".")
    return bool(value) and hmac.compare_digest(_sign(value), sig)


def csrf_token(request: Request) -> str:
    """The request's CSRF token: the cookie's, or a new one set on the response."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if not _valid(token):
        cached = request.scope.setdefault("state", {}).get("new_csrf")
        if cached:
            return str(cached)
        value = secrets.token_urlsafe(24)
        token = f"{value}.{_sign(value)}"
        request.scope["state"]["new_csrf"] = token
    return token


def set_cookie(response: Response, name: str, value: str, *, max_age: int | None = None) -> None:
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite="lax", secure=get_settings().secure_cookies, path="/"
    )


def render(request: Request, template: str, context: dict[str, Any] | None = None, status: int = 200) -> HTMLResponse:
    ctx = {"request": request, "csrf_token": csrf_token(request), "settings": get_settings()}
    ctx.update(context or {})
    state = request.scope.get("state", {})
    ctx.setdefault("caller", state.get("caller"))
    ctx.setdefault("identity", state.get("identity"))
    ctx.setdefault("policy", state.get("policy"))
    # the workspace's language on its pages; elsewhere the browser's
    caller = ctx["caller"]
    ctx.setdefault("locale", caller.tenant.locale if caller is not None else
                   locale_from_accept_language(request.headers.get("accept-language", "")))
    # times on a workspace's pages in its time zone (|local_dt); elsewhere UTC, as stored
    ctx.setdefault("time_zone", caller.tenant.time_zone if caller is not None else "UTC")
    response = templates.TemplateResponse(request, template, ctx, status_code=status)
    new = state.get("new_csrf")
    if new:
        set_cookie(response, CSRF_COOKIE, new)
    return response


async def read_form(request: Request) -> FormData:
    """The submitted form, after checking its CSRF token against the cookie."""
    form = await request.form()
    sent = str(form.get(CSRF_FIELD, ""))
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not sent or not cookie or not hmac.compare_digest(sent, cookie) or not _valid(cookie):
        await form.close()  # a refused upload's spooled files are closed (and removed) now
        raise CsrfError("The form's security token is missing or out of date; reload the page and try again.")
    return form


def form_str(form: FormData, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""
