"""The web app factory: pages for people, /api/v1 for programs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from kith.platform.access.rules import PermissionDenied
from kith.platform.billing.plans import LimitExceeded
from kith.platform.billing.subscriptions import WorkspaceReadOnly
from kith.platform.config import get_settings
from kith.platform.db import close_db, init_db
from kith.platform.identity.verification import EmailNotVerified
from kith.platform.observability import configure_logging, get_logger, init_sentry
from kith.tenants.registry import TENANT_MODEL_MODULES
from kith.web import (
    account_pages,
    activity_pages,
    admin_pages,
    audit_pages,
    auth_pages,
    backup_pages,
    billing_pages,
    campaign_pages,
    company_pages,
    contact_pages,
    deal_pages,
    dev_pages,
    email_provider_pages,
    export_job_pages,
    export_pages,
    health,
    import_pages,
    invite_pages,
    lead_pages,
    ops_pages,
    privacy_pages,
    record_pages,
    sales_pages,
    search_pages,
    segment_pages,
    template_pages,
    ticket_pages,
    token_pages,
    tracking_pages,
    verify_pages,
    webhooks,
    workspace_pages,
)
from kith.web.api import activities as _activities_api  # noqa: F401 - activities, tasks and timelines
from kith.web.api import admin as _admin_api  # noqa: F401 - registers the administration endpoints
from kith.web.api import audit as _audit_api  # noqa: F401 - registers the audit endpoint
from kith.web.api import backups as _backups_api  # noqa: F401 - the workspace's backups and Back up now
from kith.web.api import billing as _billing_api  # noqa: F401 - registers the billing endpoints
from kith.web.api import campaigns as _campaigns_api  # noqa: F401 - segments, campaigns, sending and reports
from kith.web.api import companies as _companies_api  # noqa: F401 - companies and the customer 360 view
from kith.web.api import contacts as _contacts_api  # noqa: F401 - registers the contacts endpoints
from kith.web.api import deals as _deals_api  # noqa: F401 - pipelines, stages, deals, board and forecast
from kith.web.api import email_provider as _email_provider_api  # noqa: F401 - the workspace's own SMTP or SES
from kith.web.api import email_templates as _email_templates_api  # noqa: F401 - campaign email templates
from kith.web.api import export_jobs as _export_jobs_api  # noqa: F401 - exports run in the background
from kith.web.api import exports as _exports_api  # noqa: F401 - CSV/XLSX exports of lists and saved views
from kith.web.api import imports as _imports_api  # noqa: F401 - CSV/XLSX imports: upload, map, check, run, undo
from kith.web.api import leads as _leads_api  # noqa: F401 - leads, conversion and the public pool
from kith.web.api import privacy as _privacy_api  # noqa: F401 - registers the export and erasure endpoints
from kith.web.api import records as _records_api  # noqa: F401 - custom fields, saved views, bulk changes
from kith.web.api import sales as _sales_api  # noqa: F401 - products, orders and sales targets
from kith.web.api import search as _search_api  # noqa: F401 - global search, duplicates and merges
from kith.web.api import tickets as _tickets_api  # noqa: F401 - service tickets, replies, queue and service levels
from kith.web.api import workspace as _workspace_api  # noqa: F401 - registers invitations and workspace settings
from kith.web.api.openapi import openapi_document
from kith.web.api.registry import api_routes
from kith.web.edge import EdgeMiddleware, _is_api
from kith.web.errors import ApiError, title_for
from kith.web.forms import CsrfError, read_form, render

log = get_logger("kith.web")


def error_page(scope: Scope, status: int, message: str) -> Response:
    request = Request(scope)
    return render(request, "error.html", {"status": status, "title": title_for(status), "message": message},
                  status=status)


async def openapi_json(request: Request) -> Response:
    return JSONResponse(openapi_document())


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.payload(), status_code=exc.status)


async def _permission_denied(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PermissionDenied)
    if _is_api(request.url.path):
        payload = ApiError(403, "permission_denied", str(exc)).payload()
        payload["error"]["permission"] = exc.permission
        return JSONResponse(payload, status_code=403)
    return error_page(request.scope, 403, str(exc))


async def _plan_limit(request: Request, exc: Exception) -> Response:
    # 402: the request was fine, the plan is full; the message names the limit and how to raise it
    if _is_api(request.url.path):
        return JSONResponse(ApiError(402, "plan_limit", str(exc)).payload(), status_code=402)
    return error_page(request.scope, 402, str(exc))


async def _email_not_verified(request: Request, exc: Exception) -> Response:
    # 403: allowed for the role, but not before the person's email is verified (e.g. paid checkout)
    if _is_api(request.url.path):
        return JSONResponse(ApiError(403, "email_not_verified", str(exc)).payload(), status_code=403)
    return error_page(request.scope, 403, str(exc))


async def _read_only(request: Request, exc: Exception) -> Response:
    if _is_api(request.url.path):
        return JSONResponse(ApiError(403, "workspace_read_only", str(exc)).payload(), status_code=403)
    return error_page(request.scope, 403, str(exc))


async def _csrf_error(request: Request, exc: Exception) -> Response:
    return error_page(request.scope, 403, str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if _is_api(request.url.path):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        message = {404: "There is no such API path.", 405: "This path does not accept that method."}.get(
            exc.status_code, str(exc.detail))
        return JSONResponse(ApiError(exc.status_code, code, message).payload(), status_code=exc.status_code)
    messages = {404: "There is no such page.", 405: "This page does not accept that method."}
    return error_page(request.scope, exc.status_code, messages.get(exc.status_code, str(exc.detail)))


# POST routes that are not forms people submit: they authenticate another way
# (campaign unsubscribe links: the signed token is the proof, and RFC 8058 one-click POSTs carry no form token)
NOT_FORMS = {"/webhooks/stripe", "/webhooks/ses", "/e/u/{token}"}


def _csrf_first(endpoint: Any) -> Any:
    """Check a form POST's CSRF token before the page's handler runs, so no handler can look
    anything up (or answer 404) for a forged request first; read_form caches the form."""

    # an upload page can refuse a body it will not take (too large) before it is read at all
    early = getattr(endpoint, "refuse_before_form", None)

    async def run(request: Request) -> Response:
        if request.method == "POST":
            refused = early(request) if early is not None else None
            if refused is not None:
                return refused  # type: ignore[no-any-return]
            await read_form(request)
        response: Response = await endpoint(request)
        return response

    run.__name__ = getattr(endpoint, "__name__", "page")
    return run


def _guarded(routes: list[Any]) -> list[Any]:
    return [Route(r.path, _csrf_first(r.endpoint), methods=sorted(r.methods or ()), name=r.name)
            if isinstance(r, Route) and "POST" in (r.methods or set()) and r.path not in NOT_FORMS else r
            for r in routes]


def create_app() -> Starlette:
    """Build the ASGI app (uvicorn: `kith.web.app:create_app --factory`)."""
    settings = get_settings()
    configure_logging(settings, "web")
    init_sentry(settings, "web")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        await init_db(TENANT_MODEL_MODULES)
        try:
            yield {}
        finally:
            from kith.jobs.queue import close_queue

            await close_queue()
            await close_db()

    api = api_routes()
    routes = [
        *health.routes,
        Route("/api/v1/openapi.json", openapi_json),
        Mount("/api/v1", routes=api),
        Mount("/t/{slug}/api/v1", routes=api),
        *auth_pages.routes,
        *account_pages.routes,
        *contact_pages.routes,
        *company_pages.routes,
        *lead_pages.routes,
        *ticket_pages.routes,
        *deal_pages.routes,
        *activity_pages.routes,
        *sales_pages.routes,
        *search_pages.routes,
        *record_pages.routes,
        *export_pages.routes,
        *privacy_pages.routes,
        *verify_pages.routes,
        *token_pages.routes,
        *admin_pages.routes,
        *invite_pages.routes,
        *workspace_pages.routes,
        *audit_pages.routes,
        *ops_pages.routes,
        *billing_pages.routes,
        *webhooks.routes,
        *dev_pages.routes,
        *backup_pages.routes,
        *import_pages.routes,
        *export_job_pages.routes,
        *campaign_pages.routes,
        *segment_pages.routes,
        *tracking_pages.routes,
        *template_pages.routes,
        *email_provider_pages.routes,
        Mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static"),
    ]
    app = Starlette(
        routes=_guarded(routes),
        lifespan=lifespan,
        exception_handlers={
            ApiError: _api_error,
            CsrfError: _csrf_error,
            HTTPException: _http_error,
            PermissionDenied: _permission_denied,
            WorkspaceReadOnly: _read_only,
            LimitExceeded: _plan_limit,
            EmailNotVerified: _email_not_verified,
        },
    )
    # inside the edge (added first): it reads the caller the edge resolved
    app.add_middleware(billing_pages.BillingBannerMiddleware)
    app.add_middleware(EdgeMiddleware, error_page=error_page)
    return app
