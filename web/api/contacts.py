"""The contacts API: /api/v1/contacts (tenant from the token; /t/<slug>/api/v1 works too).

Handlers validate input and call one action or query with the caller as Actor; the
permission checks happen there, below the web layer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.requests import Request

from kith.tenants.companies import overview
from kith.tenants.companies.errors import InvalidFields
from kith.tenants.companies.schemas import ContactOverview
from kith.tenants.contacts import actions, queries
from kith.tenants.contacts.schemas import ContactIn, ContactOut, ContactPage, ContactPatch, phone_context
from kith.tenants.contacts.spec import SPEC
from kith.web.api.lists import engine_page, list_query
from kith.web.api.registry import endpoint
from kith.web.edge import actor_of
from kith.web.errors import ApiError


def _contact_id(request: Request) -> int:
    raw = request.path_params["contact_id"]
    if not str(raw).isdigit():
        raise ApiError(404, "not_found", "There is no such contact.")
    return int(raw)


def _phone_region(request: Request) -> dict[str, str | None]:
    """National phone numbers in the body are read in the workspace's default phone region."""
    return phone_context(request.state.caller.tenant.default_phone_region)


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "There is no such contact.")


@endpoint(
    "GET", "/contacts", summary="List contacts with filters, sort, search and keyset pagination",
    permission=("contacts", "view"), response=ContactPage, errors=(401, 403, 422),
    query=list_query("name, email, phone or company",
                     "lifecycle_stage:eq:customer, tags:has:vip, owner_id:eq:me, custom.tier:eq:gold"),
)
async def list_contacts(request: Request, body: None) -> BaseModel:
    page = await engine_page(request, SPEC)
    return ContactPage(items=[ContactOut(**item) for item in page.items], next_cursor=page.next_cursor)


@endpoint("POST", "/contacts", summary="Create a contact", permission=("contacts", "create"), body=ContactIn,
          response=ContactOut, status=201, errors=(400, 401, 403, 422), context=_phone_region)
async def create_contact(request: Request, body: ContactIn) -> BaseModel:
    try:
        return ContactOut(**await actions.create_contact(actor_of(request), body))
    except InvalidFields as exc:
        raise ApiError(422, "invalid_input", "Some fields are not valid.", fields=exc.fields) from None


@endpoint("GET", "/contacts/{contact_id}", summary="Get one contact", permission=("contacts", "view"),
          response=ContactOut, errors=(401, 403, 404))
async def get_contact(request: Request, body: None) -> BaseModel:
    try:
        return ContactOut(**await queries.get_contact(actor_of(request), _contact_id(request)))
    except queries.ContactNotFound:
        raise _not_found() from None


@endpoint("PATCH", "/contacts/{contact_id}", summary="Change some fields of a contact",
          permission=("contacts", "edit"), body=ContactPatch, response=ContactOut, errors=(400, 401, 403, 404, 422),
          context=_phone_region)
async def update_contact(request: Request, body: ContactPatch) -> BaseModel:
    try:
        return ContactOut(**await actions.update_contact(actor_of(request), _contact_id(request), body))
    except queries.ContactNotFound:
        raise _not_found() from None
    except InvalidFields as exc:
        raise ApiError(422, "invalid_input", "Some fields are not valid.", fields=exc.fields) from None
    except ValueError as exc:
        raise ApiError(422, "invalid_input", str(exc), fields={"name": "This field cannot be empty."}) from None


@endpoint("DELETE", "/contacts/{contact_id}", summary="Delete a contact", permission=("contacts", "delete"),
          status=204, errors=(401, 403, 404))
async def delete_contact(request: Request, body: None) -> None:
    try:
        await actions.delete_contact(actor_of(request), _contact_id(request))
    except queries.ContactNotFound:
        raise _not_found() from None


@endpoint("GET", "/contacts/{contact_id}/overview",
          summary="A contact's 360 view: its company, deals, orders, open tasks and timeline",
          permission=("contacts", "view"), response=ContactOverview, errors=(401, 403, 404))
async def contact_overview(request: Request, body: None) -> BaseModel:
    try:
        found: dict[str, Any] = await overview.contact_overview(actor_of(request), _contact_id(request))
    except queries.ContactNotFound:
        raise _not_found() from None
    return ContactOverview(**{k: v for k, v in found.items() if v is not None})


class Me(BaseModel):
    """Who the token belongs to, and its workspace."""

    workspace_slug: str
    workspace_name: str
    email: str
    role: str


@endpoint("GET", "/me", summary="The token's person and workspace", permission=None, response=Me, errors=(401,),
          tag="account")
async def me(request: Request, body: None) -> BaseModel:
    caller = request.state.caller
    return Me(workspace_slug=caller.tenant.slug, workspace_name=caller.tenant.name,
              email=caller.identity.email, role=caller.membership.role)
