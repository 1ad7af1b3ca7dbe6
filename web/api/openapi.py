"""The OpenAPI 3.1 document, built from the endpoint registry and the pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from kith.web.api.registry import ENDPOINTS
from kith.web.errors import title_for

API_PREFIX = "/api/v1"

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "code", "message"],
            "properties": {
                "status": {"type": "integer"},
                "code": {"type": "string", "description": "Stable machine-readable code."},
                "message": {"type": "string", "description": "What is wrong, in words a person can act on."},
                "fields": {"type": "object", "additionalProperties": {"type": "string"},
                           "description": "Per-field messages for invalid input."},
                "permission": {"type": "string",
                               "description": "With 403 permission_denied: the permission the role lacks."},
            },
        }
    },
}

_HEALTH_SCHEMA = {
    "type": "object",
    "properties": {"status": {"type": "string"}, "checks": {"type": "object",
                                                           "additionalProperties": {"type": "string"}}},
}


def _add_model(components: dict[str, Any], model: type[BaseModel]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _error_response(status: int) -> dict[str, Any]:
    return {"description": title_for(status),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def openapi_document() -> dict[str, Any]:
    components: dict[str, Any] = {"Error": _ERROR_SCHEMA, "Health": _HEALTH_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for ep in ENDPOINTS:
        op: dict[str, Any] = {"operationId": ep.operation_id, "summary": ep.summary, "tags": [ep.tag]}
        params = [
            {"name": name, "in": "path", "required": True,
             "schema": {"type": "integer" if name.endswith("_id") else "string"}}
            for name in _path_params(ep.path)
        ]
        params += [
            {"name": p.name, "in": "query", "required": p.required, "description": p.description,
             "schema": {"type": p.type}}
            for p in ep.query
        ]
        if params:
            op["parameters"] = params
        if ep.body is not None:
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": _add_model(components, ep.body)}}}
        ok: dict[str, Any] = {"description": "OK" if ep.status != 201 else "Created"}
        if ep.response is not None:
            ok["content"] = {"application/json": {"schema": _add_model(components, ep.response)}}
        if ep.status == 204:
            ok = {"description": "No content"}
        errors = set(ep.errors) | ({403} if ep.permission is not None else set())
        op["responses"] = {str(ep.status): ok, **{str(s): _error_response(s) for s in sorted(errors)}}
        if ep.permission is not None:
            # which role permission the call needs; a role without it gets 403 permission_denied
            op["x-kith-permission"] = f"{ep.permission[0]}: {ep.permission[1]}"
        if ep.auth:
            op["security"] = [{"bearer": []}]
        paths.setdefault(API_PREFIX + ep.path, {})[ep.method.lower()] = op
    for path, summary in (("/healthz", "The process is alive"),
                          ("/readyz", "The database and Redis are reachable")):
        responses = {"200": {"description": "OK", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Health"}}}}}
        if path == "/readyz":
            responses["503"] = {"description": "A dependency is down", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Health"}}}}
        paths[path] = {"get": {"operationId": path.strip("/"), "summary": summary, "tags": ["operations"],
                               "responses": responses}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Kith API",
            "version": "1",
            "description": (
                "Kith's JSON API. Authenticate with `Authorization: Bearer <token>` (create tokens under "
                "Settings > API tokens, or `kith tokens create`). The token names its workspace; every path "
                "also works under `/t/<workspace-slug>/api/v1/...`. Errors are JSON objects with a stable "
                "`code`, a `message` and, for invalid input (422), per-field messages."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]
