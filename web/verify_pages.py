"""Email verification pages: the emailed link, the account's verification page and its resend.

- /verify-email/<token>: GET shows whom the link is for and a confirm button; POST verifies.
  Mail scanners that open links (prefetching) therefore cannot use the link up;
- /account/verify-email: the signed-in person's address and whether it is verified, with
  "resend" (also on the banner every page shows while the address is unverified), limited to
  a few links an hour (429 with Retry-After beyond that).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.platform.identity.models import Identity
from kith.platform.identity.verification import (
    VerificationRefused,
    complete_verification,
    issue_verification,
    view_verification,
)
from kith.web.auth_pages import client_info, send_verification
from kith.web.forms import read_form, render

ACCOUNT_PAGE = "/account/verify-email"


def _refused(request: Request, exc: VerificationRefused) -> Response:
    return render(request, "invite/refused.html", {"message": exc.message, "code": exc.code}, status=exc.status)


async def follow_link(request: Request) -> Response:
    raw = str(request.path_params["token"])
    form = await read_form(request) if request.method == "POST" else None
    try:
        view = await view_verification(raw)
    except VerificationRefused as exc:
        return _refused(request, exc)
    if form is None:
        return render(request, "verify/confirm.html", {"email": view.email, "done": False})
    try:
        done = await complete_verification(raw, client_info(request))
    except VerificationRefused as exc:  # a parallel click used it first
        return _refused(request, exc)
    return render(request, "verify/confirm.html", {"email": done.email, "done": True})


async def account_page(request: Request, *, error: str = "", status: int = 200,
                       retry_after: int = 0) -> Response:
    identity: Identity | None = request.state.identity
    if identity is None:
        return RedirectResponse(f"/login?next={ACCOUNT_PAGE}", status_code=303)
    response = render(request, "verify/account.html", {
        "email": identity.email, "verified_at": identity.email_verified_at, "error": error,
        "sent": request.query_params.get("sent") == "1" and not error}, status=status)
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


async def account_get(request: Request) -> Response:
    return await account_page(request)


async def resend(request: Request) -> Response:
    await read_form(request)
    identity: Identity | None = request.state.identity
    if identity is None:
        return RedirectResponse(f"/login?next={ACCOUNT_PAGE}", status_code=303)
    try:
        issued = await issue_verification(identity.id)
    except VerificationRefused as exc:
        if exc.code == "already_verified":
            return RedirectResponse(ACCOUNT_PAGE, status_code=303)
        return await account_page(request, error=exc.message, status=exc.status,
                                  retry_after=exc.retry_after_seconds)
    await send_verification(issued)
    return RedirectResponse(f"{ACCOUNT_PAGE}?sent=1", status_code=303)


routes = [
    Route("/verify-email/{token}", follow_link, methods=["GET", "POST"]),
    Route(ACCOUNT_PAGE, account_get, methods=["GET"]),
    Route(f"{ACCOUNT_PAGE}/resend", resend, methods=["POST"]),
]
