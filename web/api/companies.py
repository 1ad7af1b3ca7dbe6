"""The companies API: /api/v1/companies and the company's 360 overview (tenant from the token;
/t/<slug>/api/v1 works too).

Handlers validate input and call one action or query with the caller as Actor; the permission
checks happen there, below the web layer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.requests import Request

from kith.tenants.companies import actions, overview, queries
from kith.tenants.companies.errors import CompanyHasContacts, CompanyInUse, CompanyNotFound, InvalidFields
from kith.tenants.companies.schemas import CompanyIn, CompanyOut, CompanyOverview, CompanyPage, CompanyPatch
from kith.tenants.companies.spec import SPEC
from kith.tenants.contacts.schemas import phone_context
from kith.web.api.lists import engine_page, list_query
from kith.web.api.registry import QueryParam, endpoint
from kith.web.edge import actor_of
from kith.web.errors import ApiError

TAG = "companies"


def _company_id(request: Request) -> int:
    raw = request.path_params["company_id"]
    if not str(raw).isdigit():
        raise _not_found()
    return int(raw)


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "There is no such company.")


def _phone_region(request: Request) -> dict[str, str | None]:
    """National phone numbers in the body are read in the workspace's default phone region."""
    return phone_context(request.state.caller.tenant.default_phone_region)


def invalid_fields(exc: InvalidFields) -> ApiError:
    return ApiError(422, "invalid_input", "Some fields are not valid.", fields=exc.fields)


def delete_refusal(exc: CompanyHasContacts | CompanyInUse) -> ApiError:
    return ApiError(409, exc.code, str(exc))


@endpoint(
    "GET", "/companies", summary="List companies with filters, sort, search and keyset pagination",
    permission=("companies", "view"), response=CompanyPage, errors=(401, 403, 422), tag=TAG,
    query=list_query("name, domain or phone", "country:eq:CN, custom.tier:eq:gold"),
)
async def list_companies(request: Request, body: None) -> BaseModel:
    page = await engine_page(request, SPEC)
    return CompanyPage(items=[CompanyOut(**item) for item in page.items], next_cursor=page.next_cursor)


@endpoint("POST", "/companies", summary="Create a company", permission=("companies", "create"), body=CompanyIn,
          response=CompanyOut, status=201, errors=(400, 401, 403, 422), context=_phone_region, tag=TAG)
async def create_company(request: Request, body: CompanyIn) -> BaseModel:
    try:
        return CompanyOut(**await actions.create_company(actor_of(request), body))
    except InvalidFields as exc:
        raise invalid_fields(exc) from None


@endpoint("GET", "/companies/{company_id}", summary="Get one company", permission=("companies", "view"),
          response=CompanyOut, errors=(401, 403, 404), tag=TAG)
async def get_company(request: Request, body: None) -> BaseModel:
    try:
        return CompanyOut(**await queries.get_company(actor_of(request), _company_id(request)))
    except CompanyNotFound:
        raise _not_found() from None


@endpoint("PATCH", "/companies/{company_id}", summary="Change some fields of a company",
          permission=("companies", "edit"), body=CompanyPatch, response=CompanyOut,
          errors=(400, 401, 403, 404, 422), context=_phone_region, tag=TAG)
async def update_company(request: Request, body: CompanyPatch) -> BaseModel:
    try:
        return CompanyOut(**await actions.update_company(actor_of(request), _company_id(request), body))
    except CompanyNotFound:
        raise _not_found() from None
    except InvalidFields as exc:
        raise invalid_fields(exc) from None


@endpoint(
    "DELETE", "/companies/{company_id}", summary="Delete a company, saying what happens to its contacts",
    permission=("companies", "delete"), status=204, errors=(401, 403, 404, 409, 422), tag=TAG,
    query=(QueryParam("contacts", "Required when the company has contacts: unlink (keep them without a company) "
                      "or delete (delete them too). A company with deals or orders is refused (409)."),),
)
async def delete_company(request: Request, body: None) -> None:
    try:
        choice = actions.contacts_choice(request.query_params.get("contacts"))
    except ValueError:
        raise ApiError(422, "invalid_input", "contacts must be unlink or delete.",
                       fields={"contacts": "Must be unlink or delete."}) from None
    try:
        await actions.delete_company(actor_of(request), _company_id(request), contacts=choice)
    except CompanyNotFound:
        raise _not_found() from None
    except (CompanyHasContacts, CompanyInUse) as exc:
        raise delete_refusal(exc) from None


@endpoint("GET", "/companies/{company_id}/overview",
          summary="A company's 360 view: its contacts, deals, orders, open tasks and timeline",
          permission=("companies", "view"), response=CompanyOverview, errors=(401, 403, 404), tag=TAG)
async def company_overview(request: Request, body: None) -> BaseModel:
    try:
        found: dict[str, Any] = await overview.company_overview(actor_of(request), _company_id(request))
    except CompanyNotFound:
        raise _not_found() from None
    return CompanyOverview(**{k: v for k, v in found.items() if v is not None})
