"""One declaration per API endpoint: it makes the route and its OpenAPI entry, so a
route cannot exist without being described."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kith.web.errors import ApiError, validation_fields

Handler = Callable[..., Awaitable[Any]]
# Makes the pydantic validation context of a request's body (e.g. the workspace's phone region)
BodyContext = Callable[[Request], dict[str, Any]]


@dataclass(frozen=True)
class QueryParam:
    name: str
    description: str
    type: str = "string"
    required: bool = False


# What an endpoint needs: (object type, action) such as ("contacts", "view"), or
# ("workspace", "manage_roles"); None for routes any signed-in caller may use (about themselves).
Permission = tuple[str, str] | None


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    operation_id: str
    permission: Permission
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    query: tuple[QueryParam, ...] = ()
    auth: bool = True
    tag: str = "contacts"
    errors: tuple[int, ...] = field(default_factory=tuple)
    context: BodyContext | None = None


ENDPOINTS: list[Endpoint] = []


def endpoint(
    method: str,
    path: str,
    *,
    summary: str,
    permission: Permission,
    body: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    query: tuple[QueryParam, ...] = (),
    auth: bool = True,
    tag: str = "contacts",
    errors: tuple[int, ...] = (),
    context: BodyContext | None = None,
) -> Callable[[Handler], Handler]:
    """Register an API endpoint. The handler gets (request, body) and returns a model, None or a Response.

    `permission` is declared, never inferred: the role-matrix test walks every endpoint with every
    built-in role and checks that the actions below the web layer allow or deny exactly as declared.
    `context`, if given, makes the validation context of the body from the request, so rules that
    depend on the workspace (a phone number's default region) live in the schema and fail as 422.
    """

    def register(fn: Handler) -> Handler:
        ENDPOINTS.append(
            Endpoint(method, path, fn, summary, fn.__name__, permission, body, response, status, query, auth, tag,
                     errors, context)
        )
        return fn

    return register


async def _read_body(request: Request, model: type[BaseModel], context: BodyContext | None = None) -> BaseModel:
    raw = await request.body()
    try:
        data = json.loads(raw or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"Request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "Request body must be a JSON object.")
    try:
        return model.model_validate(data, context=context(request) if context is not None else None)
    except ValidationError as exc:
        raise ApiError(422, "invalid_input", "Some fields are not valid.", fields=validation_fields(exc)) from None


def _wrap(ep: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        body = await _read_body(request, ep.body, ep.context) if ep.body is not None else None
        result = await ep.handler(request, body)
        if isinstance(result, Response):
            return result
        if result is None:
            return Response(status_code=ep.status)
        # exclude_unset: a field left out on purpose (hidden from the caller's role) stays absent;
        # pydantic-core writes the JSON itself (no dict in between, no stdlib json encoder)
        return Response(result.model_dump_json(exclude_unset=True), status_code=ep.status,
                        media_type="application/json")

    run.__name__ = ep.operation_id
    return run


def api_routes() -> list[Route]:
    """Starlette routes for every registered endpoint (mounted under /api/v1 and /t/{slug}/api/v1)."""
    return [Route(ep.path, _wrap(ep), methods=[ep.method]) for ep in ENDPOINTS]
