"""The billing page at /t/<slug>/settings/billing, and the past-due banner on every workspace page.

Only roles with the workspace permission "manage_billing" (owners and admins) get in; the
check runs below the web layer, in the actions.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from kith.platform.billing.actions import (
    BillingError,
    billing_overview,
    open_portal,
    start_checkout,
)
from kith.platform.billing.plans import PLANS
from kith.platform.billing.subscriptions import current_subscription
from kith.platform.config import get_settings
from kith.platform.identity.verification import EmailNotVerified
from kith.web.edge import _is_api, actor_of
from kith.web.forms import form_str, read_form, render

STATE_WORDS = {
    "trialing": "Trial", "active": "Active", "past_due": "Payment overdue", "read_only": "Read-only",
    "suspended": "Suspended", "cancelled": "Cancelled",
}


def _page_url(slug: str) -> str:
    return f"{get_settings().base_url}/t/{slug}/settings/billing"


async def billing_page(request: Request, *, error: str = "", status: int = 200) -> Response:
    overview = await billing_overview(actor_of(request))
    notice = {"done": "Thank you: your payment is being confirmed; this page updates when Stripe tells us.",
              "cancelled": "Checkout was cancelled; nothing changed.",
              "changed": "Plan changed."}.get(request.query_params.get("checkout", ""), "")
    sub = overview.subscription
    if sub.comped() and sub.comped_until is not None:
        # the page's status line says it, after any checkout notice
        comp = (f"Complimentary {overview.plan.name} plan from Kith support until "
                f"{sub.comped_until:%Y-%m-%d}: not billed.")
        notice = f"{notice} {comp}".strip()
    context: dict[str, Any] = {
        "o": overview, "plans": [p for p in PLANS.values()], "state_words": STATE_WORDS, "error": error,
        "notice": notice,
    }
    return render(request, "billing/page.html", context, status=status)


async def billing_get(request: Request) -> Response:
    return await billing_page(request)


async def billing_checkout(request: Request) -> Response:
    form = await read_form(request)
    caller = request.state.caller
    page = _page_url(caller.tenant.slug)
    try:
        url = await start_checkout(actor_of(request), caller.tenant, form_str(form, "plan"),
                                   form_str(form, "interval") or "monthly",
                                   success_url=f"{page}?checkout=done", cancel_url=f"{page}?checkout=cancelled")
    except BillingError as exc:
        return await billing_page(request, error=str(exc), status=422)
    except EmailNotVerified as exc:
        return await billing_page(request, error=str(exc), status=403)
    return RedirectResponse(url or f"/t/{caller.tenant.slug}/settings/billing?checkout=changed", status_code=303)


async def billing_portal(request: Request) -> Response:
    await read_form(request)
    caller = request.state.caller
    url = await open_portal(actor_of(request), return_url=_page_url(caller.tenant.slug))
    return RedirectResponse(url or f"/t/{caller.tenant.slug}/settings/billing", status_code=303)


class BillingBannerMiddleware:
    """Puts the workspace's billing state on request.state.billing for billing/_banner.html.

    Added inside the edge, so it runs once the caller is resolved; only HTML pages of a
    workspace pay for the lookup (one primary-key read).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.get("state")
        if scope["type"] == "http" and state and state.get("caller") is not None and not _is_api(scope["path"]) \
                and scope["method"] == "GET":
            sub = await current_subscription(state["caller"].tenant.id)
            state["billing"] = {"state": sub.state(), "grace_ends_at": sub.grace_ends_at(),
                                "trial_days_left": sub.days_left_in_trial()}
        await self.app(scope, receive, send)


routes = [
    Route("/t/{slug}/settings/billing", billing_get, methods=["GET"]),
    Route("/t/{slug}/settings/billing/checkout", billing_checkout, methods=["POST"]),
    Route("/t/{slug}/settings/billing/portal", billing_portal, methods=["POST"]),
]
