"""The contacts API: /api/v1/contacts (tenant from the token; /t/<slug>/api/v1 works too)."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.requests import Request

from kith.tenants.contacts import actions, queries
from kith.tenants.contacts.schemas import ContactIn, ContactOut, ContactPage, ContactPatch
from kith.web.api.registry import QueryParam, endpoint
from kith.web.errors import ApiError


def _contact_id(request: Request) -> int:
    raw = request.path_params["contact_id"]
    if not str(raw).isdigit():
        raise ApiError(404, "not_found", "There is no such contact.")
    return int(raw)


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "25")
    if not raw.isdigit() or not 1 <= int(raw) <= queries.MAX_PAGE:
        raise ApiError(422, "invalid_input", f"limit must be a whole number from 1 to {queries.MAX_PAGE}.",
                       fields={"limit": f"Must be 1 to {queries.MAX_PAGE}."})
    return int(raw)


@endpoint(
    "GET", "/contacts", summary="List contacts, newest first, with search and keyset pagination",
    response=ContactPage, errors=(401, 422),
    query=(
        QueryParam("q", "Text to find in name, email, phone or company (any script)."),
        QueryParam("limit", "Page size, 1-100 (default 25).", "integer"),
        QueryParam("cursor", "next_cursor of the previous page."),
    ),
)
async def list_contacts(request: Request, body: None) -> BaseModel:
    caller = request.state.caller
    try:
        page = await queries.list_contacts(
            caller.tenant.id, q=request.query_params.get("q", ""), limit=_limit(request),
            cursor=request.query_params.get("cursor"),
        )
    except ValueError as exc:
        raise ApiError(422, "invalid_input", str(exc), fields={"cursor": str(exc)}) from None
    return ContactPage(items=[ContactOut.model_validate(c) for c in page.items], next_cursor=page.next_cursor)


@endpoint("POST", "/contacts", summary="Create a contact", body=ContactIn, response=ContactOut, status=201,
          errors=(400, 401, 422))
async def create_contact(request: Request, body: ContactIn) -> BaseModel:
    caller = request.state.caller
    contact = await actions.create_contact(caller.tenant.id, caller.identity.id, body)
    return ContactOut.model_validate(contact)


@endpoint("GET", "/contacts/{contact_id}", summary="Get one contact", response=ContactOut, errors=(401, 404))
async def get_contact(request: Request, body: None) -> BaseModel:
    try:
        contact = await queries.get_contact(request.state.caller.tenant.id, _contact_id(request))
    except queries.ContactNotFound:
        raise ApiError(404, "not_found", "There is no such contact.") from None
    return ContactOut.model_validate(contact)


@endpoint("PATCH", "/contacts/{contact_id}", summary="Change some fields of a contact", body=ContactPatch,
          response=ContactOut, errors=(400, 401, 404, 422))
async def update_contact(request: Request, body: ContactPatch) -> BaseModel:
    try:
        contact = await actions.update_contact(request.state.caller.tenant.id, _contact_id(request), body)
    except queries.ContactNotFound:
        raise ApiError(404, "not_found", "There is no such contact.") from None
    except ValueError as exc:
        raise ApiError(422, "invalid_input", str(exc), fields={"name": "This field cannot be empty."}) from None
    return ContactOut.model_validate(contact)


@endpoint("DELETE", "/contacts/{contact_id}", summary="Delete a contact", status=204, errors=(401, 404))
async def delete_contact(request: Request, body: None) -> None:
    try:
        await actions.delete_contact(request.state.caller.tenant.id, _contact_id(request))
    except queries.ContactNotFound:
        raise ApiError(404, "not_found", "There is no such contact.") from None


class Me(BaseModel):
    """Who the token belongs to, and its workspace."""

    workspace_slug: str
    workspace_name: str
    email: str
    role: str


@endpoint("GET", "/me", summary="The token's person and workspace", response=Me, errors=(401,), tag="account")
async def me(request: Request, body: None) -> BaseModel:
    caller = request.state.caller
    return Me(workspace_slug=caller.tenant.slug, workspace_name=caller.tenant.name,
              email=caller.identity.email, role=caller.membership.role)
