"""The leads API (/api/v1/leads, conversion) and the public customer pool (/api/v1/pool/..., claims and
returns of companies and leads, the pool rules). Tenant from the token; /t/<slug>/api/v1 works too.

Handlers validate input and call one action or query with the caller as Actor; the permission checks
happen there, below the web layer."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.requests import Request

from kith.tenants.contacts.schemas import phone_context
from kith.tenants.leads import actions, convert, queries
from kith.tenants.leads.errors import LeadError
from kith.tenants.leads.schemas import ConversionOut, ConvertIn, LeadIn, LeadOut, LeadPage, LeadPatch
from kith.tenants.pool import claims, rules
from kith.tenants.pool.errors import PoolError
from kith.tenants.pool.listing import pool_page
from kith.tenants.pool.schemas import ClaimOut, PoolItem, PoolPage, PoolRulesIn, PoolRulesOut, ReleaseIn
from kith.tenants.records.listing import ListError, parse_list_query
from kith.web.api.lists import list_error
from kith.web.api.registry import QueryParam, endpoint
from kith.web.edge import actor_of
from kith.web.errors import ApiError

TAG = "leads"
POOL_TAG = "pool"
LIST_QUERY = (
    QueryParam("q", "Text to find in name, email, phone or company (any script)."),
    QueryParam("f", "A filter field:operator:value, repeatable (e.g. status:eq:new, owner_id:eq:me)."),
    QueryParam("sort", "A field to sort on, - for descending (default -id)."),
    QueryParam("limit", "Page size, 1-100 (default 25).", "integer"),
    QueryParam("cursor", "next_cursor of the previous page."),
)


def _id(request: Request, name: str, noun: str) -> int:
    raw = str(request.path_params[name])
    if not raw.isdigit():
        raise ApiError(404, "not_found", f"There is no such {noun}.")
    return int(raw)


def _lead_id(request: Request) -> int:
    return _id(request, "lead_id", "lead")


def _phone_region(request: Request) -> dict[str, str | None]:
    """National phone numbers in the body are read in the workspace's default phone region."""
    return phone_context(request.state.caller.tenant.default_phone_region)


def lead_error(exc: LeadError) -> ApiError:
    message = "Some fields are not valid." if exc.status == 422 and exc.fields else exc.message
    return ApiError(exc.status, exc.code, message, fields=exc.fields)


def pool_error(exc: PoolError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message, fields=exc.fields)


@endpoint("GET", "/leads", summary="List leads with filters, sort, search and keyset pagination",
          permission=("leads", "view"), response=LeadPage, errors=(401, 403, 422), tag=TAG, query=LIST_QUERY)
async def list_leads(request: Request, body: None) -> BaseModel:
    try:
        page = await queries.list_leads(actor_of(request), parse_list_query(request.query_params))
    except ListError as exc:
        raise list_error(exc) from None
    return LeadPage(items=[LeadOut(**item) for item in page.items], next_cursor=page.next_cursor)


@endpoint("POST", "/leads", summary="Create a lead (owner_id null puts it in the public pool)",
          permission=("leads", "create"), body=LeadIn, response=LeadOut, status=201, errors=(400, 401, 403, 422),
          context=_phone_region, tag=TAG)
async def create_lead(request: Request, body: LeadIn) -> BaseModel:
    try:
        return LeadOut(**await actions.create_lead(actor_of(request), body))
    except LeadError as exc:
        raise lead_error(exc) from None


@endpoint("GET", "/leads/{lead_id}", summary="Get one lead (yours, in your scope, or in the pool)",
          permission=("leads", "view"), response=LeadOut, errors=(401, 403, 404), tag=TAG)
async def get_lead(request: Request, body: None) -> BaseModel:
    try:
        return LeadOut(**await queries.get_lead(actor_of(request), _lead_id(request)))
    except LeadError as exc:
        raise lead_error(exc) from None


@endpoint("PATCH", "/leads/{lead_id}", summary="Change some fields of a lead (status 'converted' only by converting)",
          permission=("leads", "edit"), body=LeadPatch, response=LeadOut, errors=(400, 401, 403, 404, 422),
          context=_phone_region, tag=TAG)
async def update_lead(request: Request, body: LeadPatch) -> BaseModel:
    try:
        return LeadOut(**await actions.update_lead(actor_of(request), _lead_id(request), body))
    except LeadError as exc:
        raise lead_error(exc) from None


@endpoint("DELETE", "/leads/{lead_id}", summary="Delete a lead", permission=("leads", "delete"), status=204,
          errors=(401, 403, 404), tag=TAG)
async def delete_lead(request: Request, body: None) -> None:
    try:
        await actions.delete_lead(actor_of(request), _lead_id(request))
    except LeadError as exc:
        raise lead_error(exc) from None


async def _release(request: Request, object_type: str, record_id: int, body: ReleaseIn) -> BaseModel:
    try:
        return ClaimOut(**await claims.release(actor_of(request), object_type, record_id, body.reason))
    except PoolError as exc:
        raise pool_error(exc) from None


async def _claim(request: Request, object_type: str, record_id: int) -> BaseModel:
    try:
        return ClaimOut(**await claims.claim(actor_of(request), object_type, record_id))
    except PoolError as exc:
        raise pool_error(exc) from None


# Returns are declared before claims: the role-matrix walk returns a member's record, then claims it back.
@endpoint("POST", "/leads/{lead_id}/release", summary="Return a lead to the public pool (its owner, or an all-scope "
          "role)", permission=("leads", "edit"), body=ReleaseIn, response=ClaimOut,
          errors=(400, 401, 403, 404, 409, 422), tag=POOL_TAG)
async def release_lead(request: Request, body: ReleaseIn) -> BaseModel:
    return await _release(request, "leads", _lead_id(request), body)


@endpoint("POST", "/leads/{lead_id}/claim", summary="Claim a lead from the public pool (409 when already claimed or "
          "past your role's claim limit)", permission=("leads", "edit"), response=ClaimOut,
          errors=(401, 403, 404, 409), tag=POOL_TAG)
async def claim_lead(request: Request, body: None) -> BaseModel:
    return await _claim(request, "leads", _lead_id(request))


@endpoint("POST", "/leads/{lead_id}/convert",
          summary="Convert a lead into a contact, a company (existing or new) and optionally a deal, in one step",
          permission=("contacts", "create"), body=ConvertIn, response=ConversionOut, status=201,
          errors=(400, 401, 402, 403, 404, 409, 422), tag=TAG)
async def convert_lead(request: Request, body: ConvertIn) -> BaseModel:
    try:
        result = await convert.convert_lead(actor_of(request), _lead_id(request), body)
    except LeadError as exc:
        raise lead_error(exc) from None
    return ConversionOut(**{**result, "lead": LeadOut(**result["lead"])})


@endpoint("POST", "/companies/{company_id}/release", summary="Return a company to the public pool (its owner, or an "
          "all-scope role)", permission=("companies", "edit"), body=ReleaseIn, response=ClaimOut,
          errors=(400, 401, 403, 404, 409, 422), tag=POOL_TAG)
async def release_company(request: Request, body: ReleaseIn) -> BaseModel:
    return await _release(request, "companies", _id(request, "company_id", "company"), body)


@endpoint("POST", "/companies/{company_id}/claim", summary="Claim a company from the public pool (409 when already "
          "claimed or past your role's claim limit)", permission=("companies", "edit"), response=ClaimOut,
          errors=(401, 403, 404, 409), tag=POOL_TAG)
async def claim_company(request: Request, body: None) -> BaseModel:
    return await _claim(request, "companies", _id(request, "company_id", "company"))


async def _pool(request: Request, object_type: str) -> BaseModel:
    try:
        listing = await pool_page(actor_of(request), object_type, parse_list_query(request.query_params))
    except ListError as exc:
        raise list_error(exc) from None
    return PoolPage(items=[PoolItem(**item) for item in listing.page.items], next_cursor=listing.page.next_cursor,
                    held=listing.held, limit=listing.limit, reclaim_days=listing.reclaim_days)


@endpoint("GET", "/pool/companies", summary="The companies in the public pool (nobody owns them)",
          permission=("companies", "view"), response=PoolPage, errors=(401, 403, 422), tag=POOL_TAG,
          query=LIST_QUERY)
async def pool_companies(request: Request, body: None) -> BaseModel:
    return await _pool(request, "companies")


@endpoint("GET", "/pool/leads", summary="The leads in the public pool (nobody owns them; converted leads never are)",
          permission=("leads", "view"), response=PoolPage, errors=(401, 403, 422), tag=POOL_TAG, query=LIST_QUERY)
async def pool_leads(request: Request, body: None) -> BaseModel:
    return await _pool(request, "leads")


@endpoint("GET", "/pool/rules", summary="The pool rules: reclaim days and each role's claim limit (any member)",
          permission=None, response=PoolRulesOut, errors=(401,), tag=POOL_TAG)
async def get_pool_rules(request: Request, body: None) -> BaseModel:
    return PoolRulesOut(**await rules.get_rules(actor_of(request)))


@endpoint("PUT", "/pool/rules", summary="Replace the pool rules", permission=("workspace", "manage_settings"),
          body=PoolRulesIn, response=PoolRulesOut, errors=(400, 401, 403, 422), tag=POOL_TAG)
async def put_pool_rules(request: Request, body: PoolRulesIn) -> BaseModel:
    try:
        return PoolRulesOut(**await rules.set_rules(actor_of(request), body))
    except PoolError as exc:
        raise pool_error(exc) from None
