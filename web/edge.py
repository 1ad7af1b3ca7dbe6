"""The edge: every request passes here before any handler runs.

- a request id, and one structured log line per request;
- the tenant from the URL (/t/<slug>/...), resolved once and failing closed: an unknown
  or deleted workspace is a 404, a suspended one a 403, before any handler runs;
- who is asking: a session cookie for pages, a Bearer token for /api/v1;
- for tenant pages, an active membership (a non-member gets the same 404 as a stranger).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from starlette.datastructures import Headers
from starlette.requests import Request, cookie_parser
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kith.platform.access.actor import Actor
from kith.platform.access.policy import Policy
from kith.platform.access.rules import BUILT_IN_ROLES
from kith.platform.access.session import acting_as
from kith.platform.db import platform_tx
from kith.platform.identity.events import ClientInfo
from kith.platform.identity.models import Identity, Membership
from kith.platform.identity.sessions import load_session, membership_for
from kith.platform.identity.tokens import authenticate_token
from kith.platform.identity.totp import must_enrol
from kith.platform.observability import bind_context, clear_context, get_logger
from kith.platform.ops.impersonation import COOKIE_NAME as IMPERSONATION_COOKIE
from kith.platform.ops.impersonation import ActiveImpersonation, load_impersonation
from kith.platform.tenancy.models import Tenant, TenantStatus
from kith.web.errors import ApiError

SESSION_COOKIE = "kith_session"
_TENANT_PATH = re.compile(r"^/t/([^/]+)(/.*)?$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
PUBLIC_API_PATHS = {"/api/v1/openapi.json", "/healthz", "/readyz"}

log = get_logger("kith.web")


@dataclass
class Caller:
    """Who is asking, and in which workspace. Handlers get it from request.state.caller."""

    tenant: Tenant
    identity: Identity
    membership: Membership
    via: str  # "session", "token" or "impersonation" (a support operator acting as the member)
    token_id: int | None = None
    impersonation: ActiveImpersonation | None = None


def actor_of(request: Request) -> Actor:
    """The caller of a tenant request as an Actor, for actions and queries below the web layer."""
    return _actor(request.state.caller, request.scope)


def _actor(caller: Caller, scope: Scope) -> Actor:
    client = scope.get("client")
    # An impersonating operator acts with the member's role and identity (scopes, ownership) but
    # is the actor: kind "operator", a label naming the operator, the ids in `extra`.
    impersonation = caller.impersonation
    return Actor(
        kind="operator" if impersonation else "token" if caller.via == "token" else "user",
        tenant_id=caller.tenant.id,
        role=caller.membership.role,
        identity_id=caller.identity.id,
        label=impersonation.label if impersonation else caller.identity.email,
        token_id=caller.token_id,
        ip=client[0] if client else "",
        user_agent=Headers(scope=scope).get("user-agent", "")[:300],
        request_id=str(scope.get("state", {}).get("request_id", "")),
        extra=impersonation.actor_extra() if impersonation else {},
    )


def _is_api(path: str) -> bool:
    return path.startswith("/api/") or bool(re.match(r"^/t/[^/]+/api/", path))


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, error_page: Any) -> None:
        self.app = app
        self.error_page = error_page  # (scope, status, message) -> Response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        given = headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        clear_context()
        bind_context(request_id=request_id)
        status_holder = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            refusal = await self._resolve(scope, headers, state)
            if refusal is not None:
                await refusal(scope, receive, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            tenant = state.get("tenant")
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status_holder["status"],
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                tenant=tenant.slug if tenant is not None else None,
                request_id=request_id,
            )
            clear_context()

    async def _resolve(self, scope: Scope, headers: Headers, state: dict[str, Any]) -> Response | None:
        path: str = scope["path"]
        api = _is_api(path)
        match = _TENANT_PATH.match(path)
        slug = match.group(1) if match else None
        public = path in PUBLIC_API_PATHS or path.startswith("/static/")
        # pages need the session; the API authenticates by token; public paths need no one
        raw_session = "" if api or public else _cookies(headers).get(SESSION_COOKIE, "")
        # an operator's impersonation cookie is scoped to /t/<slug>, and reaches pages only
        raw_impersonation = "" if api or slug is None else _cookies(headers).get(IMPERSONATION_COOKIE, "")
        tenant: Tenant | None = None
        session = None
        member: Membership | None = None
        impersonation: ActiveImpersonation | None = None
        if slug is not None and not raw_session and not raw_impersonation:
            # the workspace alone (an API path, or a page without a cookie): one statement on its
            # own, no BEGIN/COMMIT around it
            tenant = await Tenant.filter(slug=slug).first()
        elif slug is not None or raw_session:
            async with platform_tx() as tx:  # the edge's lookups share one transaction
                if slug is not None:
                    tenant = await Tenant.filter(slug=slug).using_db(tx).first()
                if raw_impersonation and tenant is not None:
                    impersonation = await load_impersonation(raw_impersonation, tenant.id, tx)
                if raw_session and impersonation is None:
                    session = await load_session(raw_session, tx)
                    if session is not None and tenant is not None:
                        member = await membership_for(session.identity.id, tenant.id, tx)
        if slug is not None:
            refusal = self._tenant_refusal(scope, tenant, api)
            if refusal is not None:
                return refusal
            state["tenant"] = tenant
            bind_context(tenant=slug)

        if api and not public:
            return await self._api_auth(scope, headers, state, tenant)
        if impersonation is not None and tenant is not None:
            # The operator's own console cookie never comes here (path /ops); a live impersonation
            # alone lets them in, as the member. No identity in state: the header then offers no
            # Account or Sign out of the member's, only the banner's End button.
            if (match and (match.group(2) or "").startswith("/settings/tokens")) and scope["method"] != "GET":
                # an API token would be a credential of the member's outliving the time box
                return self.error_page(scope, 403, "Support cannot create or revoke API tokens while impersonating.")
            state["identity"] = None
            state["caller"] = Caller(tenant=tenant, identity=impersonation.identity,
                                     membership=impersonation.membership, via="impersonation",
                                     impersonation=impersonation)
            role = impersonation.membership.role
            if role in BUILT_IN_ROLES:
                state["policy"] = Policy(role=BUILT_IN_ROLES[role], actor=_actor(state["caller"], scope))
            else:
                async with acting_as(_actor(state["caller"], scope)) as tenant_session:
                    state["policy"] = tenant_session.policy
            return None
        state["identity"] = session.identity if session else None
        if public or tenant is None:
            return None
        if session is None:
            target = path + ("?" + scope["query_string"].decode() if scope.get("query_string") else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        if member is None:
            return self.error_page(scope, 404, "There is no such workspace, or you are not a member of it.")
        if await must_enrol(session.identity, tenant.id):  # the workspace requires 2FA; tokens are not affected
            return RedirectResponse(f"/account/security?required={quote(tenant.slug, safe='')}", status_code=303)
        caller = Caller(tenant=tenant, identity=session.identity, membership=member, via="session")
        state["caller"] = caller
        # Pages show only what the role may use (the actions enforce it either way). The nav
        # reads workspace permissions only, which a built-in role answers without the database.
        actor = _actor(caller, scope)
        if member.role in BUILT_IN_ROLES:
            state["policy"] = Policy(role=BUILT_IN_ROLES[member.role], actor=actor)
        else:
            async with acting_as(actor) as tenant_session:
                state["policy"] = tenant_session.policy
        return None

    def _tenant_refusal(self, scope: Scope, tenant: Tenant | None, api: bool) -> Response | None:
        if tenant is None or tenant.status in (TenantStatus.DELETED, TenantStatus.PROVISIONING):
            return _refuse(api, self.error_page, scope, 404, "no_such_workspace", "There is no such workspace.")
        if tenant.status == TenantStatus.SUSPENDED:
            return _refuse(api, self.error_page, scope, 403, "workspace_suspended",
                           "This workspace is suspended; its owner can contact support.")
        return None

    async def _api_auth(
        self, scope: Scope, headers: Headers, state: dict[str, Any], tenant: Tenant | None
    ) -> Response | None:
        auth = headers.get("authorization", "")
        scheme, _, raw = auth.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            return _api_error(401, "not_authenticated", "Send an API token: 'Authorization: Bearer <token>'.")
        client = scope.get("client")
        found = await authenticate_token(raw.strip(), ClientInfo(
            ip=client[0] if client else "", user_agent=headers.get("user-agent", "")[:300],
            request_id=str(state.get("request_id", ""))))
        if found is None:
            return _api_error(401, "invalid_token", "The API token is not valid, was revoked, or its owner "
                                                    "is no longer a member of the workspace.")
        if tenant is not None and found.tenant.id != tenant.id:
            return _api_error(404, "no_such_workspace", "There is no such workspace.")
        refusal = self._tenant_refusal(scope, found.tenant, True)
        if refusal is not None:
            return refusal
        state["tenant"] = found.tenant
        state["identity"] = found.identity
        state["caller"] = Caller(found.tenant, found.identity, found.membership, via="token", token_id=found.token.id)
        bind_context(tenant=found.tenant.slug)
        return None


def _cookies(headers: Headers) -> dict[str, str]:
    return cookie_parser(headers.get("cookie", ""))


def _api_error(status: int, code: str, message: str) -> Response:
    return JSONResponse(ApiError(status, code, message).payload(), status_code=status)


def _refuse(api: bool, error_page: Any, scope: Scope, status: int, code: str, message: str) -> Response:
    if api:
        return _api_error(status, code, message)
    response: Response = error_page(scope, status, message)
    return response
