"""Links in campaign emails and the SES endpoint: reached without signing in.

- GET /e/o/<token>.gif: the open pixel, a 1x1 GIF that is never cached (a cached pixel records
  nothing); a token Kith did not make still gets the GIF, so an email never shows a broken
  image and a prober learns nothing, but records nothing.
- GET /e/c/<token>: records the click and redirects (302) to the URL signed into the token, and
  nowhere else; a changed token is a 404 page, never an open redirect.
- GET /e/u/<token>: whose list, which address, and a button; POST unsubscribes at once and
  confirms. A POST with `List-Unsubscribe=One-Click` (RFC 8058, what Gmail and Yahoo send from
  their own Unsubscribe button) gets a short 200. No CSRF token: the mailbox provider posting
  has none, and the signed token in the URL is the authority (web/app.py's NOT_FORMS).
- POST /webhooks/ses: SNS deliveries of SES notifications, taken only with a valid SNS
  signature (kith.tenants.campaigns.sns); bounces, complaints and deliveries land in the
  recipient's workspace, named by the X-Kith-Recipient header SES hands back.

Only GET records opens and clicks: HEAD is what link scanners send to look before they leap.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from kith.platform.observability import get_logger
from kith.tenants.campaigns.links import BadLink, parse_click_token, parse_open_token, parse_unsubscribe_token
from kith.tenants.campaigns.sns import ConfirmationFailed, SnsRejected, confirm_subscription, verify_message
from kith.tenants.campaigns.tracking import (
    record_click,
    record_open,
    ses_notification,
    unsubscribe,
    unsubscribe_view,
    workspace_locale,
)
from kith.web.forms import templates
from kith.web.i18n import locale_from_accept_language

log = get_logger("kith.web")

# A transparent 1x1 GIF (43 bytes).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0, private", "Pragma": "no-cache",
            "Expires": "0"}
# the token in the URL is the key to the page: keep it out of caches, Referer headers and indexes
PRIVATE_PAGE = {**NO_STORE, "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex, nofollow"}
# an unsubscribe POST is a few bytes; SNS messages are at most 256 KB
MAX_FORM_BYTES = 16 * 1024
MAX_SNS_BYTES = 512 * 1024
ONE_CLICK = "One-Click"


def _page(request: Request, template: str, context: dict[str, Any], *, locale: str | None,
          status: int = 200) -> HTMLResponse:
    """A public page in the workspace's language (the browser's when the workspace is unknown).
    Rendered without forms.render: these pages set no cookies for a stranger's browser."""
    ctx = {"request": request, "locale": locale or locale_from_accept_language(
        request.headers.get("accept-language", "")), "workspace_name": "", **context}
    response: HTMLResponse = templates.TemplateResponse(request, template, ctx, status_code=status)
    response.headers.update(PRIVATE_PAGE)
    return response


def _invalid(request: Request, *, locale: str | None = None, gone: bool = False) -> HTMLResponse:
    return _page(request, "tracking/invalid.html", {"gone": gone}, locale=locale, status=404)


async def open_pixel(request: Request) -> Response:
    try:
        target = parse_open_token(str(request.path_params["token"]))
    except BadLink:
        target = None
    if target is not None and request.method == "GET":
        await record_open(target.tenant_id, target.recipient_id)
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


async def click(request: Request) -> Response:
    try:
        target = parse_click_token(str(request.path_params["token"]))
    except BadLink:
        return _invalid(request)
    if request.method == "GET":
        # a click on a link Kith made goes through even when its campaign is gone
        await record_click(target.tenant_id, target.recipient_id, target.url)
    return RedirectResponse(target.url, status_code=302,
                            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


async def unsubscribe_page(request: Request) -> Response:
    try:
        target = parse_unsubscribe_token(str(request.path_params["token"]))
    except BadLink:
        return _invalid(request)
    view = await unsubscribe_view(target.tenant_id, target.recipient_id)
    if view is None:
        return _invalid(request, locale=await workspace_locale(target.tenant_id), gone=True)
    return _page(request, "tracking/unsubscribe.html", {
        "workspace_name": view.workspace_name, "email": view.email,
        "state": "already" if view.unsubscribed else "ask"}, locale=view.locale)


async def unsubscribe_post(request: Request) -> Response:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        return PlainTextResponse("The request body is too large for an unsubscribe.", status_code=413)
    form = await request.form()
    one_click = form.get("List-Unsubscribe") == ONE_CLICK
    await form.close()
    try:
        target = parse_unsubscribe_token(str(request.path_params["token"]))
    except BadLink:
        if one_click:
            return PlainTextResponse("This unsubscribe link is not valid.", status_code=404)
        return _invalid(request)
    client = request.client
    outcome = await unsubscribe(target.tenant_id, target.recipient_id, method="one-click" if one_click else "page",
                                ip=client.host if client else "", user_agent=request.headers.get("user-agent", ""),
                                request_id=str(request.scope.get("state", {}).get("request_id", "")))
    if one_click:
        if not outcome.found:
            return PlainTextResponse("This unsubscribe link no longer works.", status_code=404)
        return PlainTextResponse("Unsubscribed.", headers=NO_STORE)
    view = await unsubscribe_view(target.tenant_id, target.recipient_id) if outcome.found else None
    if view is None:
        return _invalid(request, locale=await workspace_locale(target.tenant_id), gone=True)
    return _page(request, "tracking/unsubscribe.html", {
        "workspace_name": view.workspace_name, "email": view.email,
        "state": "done" if outcome.changed else "already"}, locale=view.locale)


async def ses_webhook(request: Request) -> Response:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_SNS_BYTES:
        return JSONResponse({"error": "payload too large"}, status_code=413)
    body = await request.body()
    if len(body) > MAX_SNS_BYTES:
        return JSONResponse({"error": "payload too large"}, status_code=413)
    try:
        message = json.loads(body)
        await verify_message(message)
    except (ValueError, SnsRejected) as exc:
        reason = exc.message if isinstance(exc, SnsRejected) else "the body is not JSON"
        log.warning("ses_webhook_rejected", reason=reason)
        return JSONResponse({"error": "invalid SNS message or signature", "reason": reason}, status_code=400)
    kind = message["Type"]
    if kind == "SubscriptionConfirmation":
        try:
            await confirm_subscription(message)
        except SnsRejected as exc:
            log.warning("ses_webhook_rejected", reason=exc.message)
            return JSONResponse({"error": "invalid SNS message", "reason": exc.message}, status_code=400)
        except ConfirmationFailed as exc:
            log.warning("ses_subscription_not_confirmed", reason=str(exc), topic=message.get("TopicArn"))
            return JSONResponse({"error": str(exc)}, status_code=502)
        log.info("ses_subscription_confirmed", topic=message.get("TopicArn"))
        return JSONResponse({"outcome": "subscribed"})
    if kind != "Notification":
        return JSONResponse({"outcome": "ignored"})
    try:
        payload = json.loads(message["Message"])
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        # genuine, but not an SES notification: 200, or SNS would retry it for days
        return JSONResponse({"outcome": "ignored"})
    outcome = await ses_notification(payload)
    log.info("ses_notification", outcome=outcome, sns_message_id=message.get("MessageId"))
    return JSONResponse({"outcome": outcome})


routes = [
    Route("/e/o/{token}.gif", open_pixel, methods=["GET"]),
    Route("/e/c/{token}", click, methods=["GET"]),
    Route("/e/u/{token}", unsubscribe_page, methods=["GET"]),
    Route("/e/u/{token}", unsubscribe_post, methods=["POST"]),
    Route("/webhooks/ses", ses_webhook, methods=["POST"]),
]
