"""The API of global search, duplicates and merges (/api/v1/search, /duplicates/..., .../merge).

Handlers validate input and call one query or action with the caller as Actor; permission
checks, record scopes and hidden fields are applied there, below the web layer."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.requests import Request

from kith.tenants.search import duplicates, merge, search
from kith.tenants.search.records import RecordNotFound
from kith.tenants.search.schemas import (
    CompanyMergeIn,
    ContactMergeIn,
    DuplicateCandidateOut,
    DuplicateGroupOut,
    DuplicateGroupPage,
    DuplicateList,
    MergeOut,
    SearchGroupOut,
    SearchHit,
    SearchResultsOut,
)
from kith.web.api.registry import QueryParam, endpoint
from kith.web.edge import actor_of
from kith.web.errors import ApiError

_NOUNS = {"contacts": "contact", "companies": "company"}


def _record_id(request: Request, name: str, object_type: str) -> int:
    raw = str(request.path_params[name])
    if not raw.isdigit():
        raise _not_found(object_type)
    return int(raw)


def _not_found(object_type: str) -> ApiError:
    return ApiError(404, "not_found", f"There is no such {_NOUNS[object_type]}.")


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid_input", message[:1].upper() + message[1:] + ".", fields={field: message})


@endpoint(
    "GET", "/search", summary="Search companies, contacts, leads and deals at once (any script, Chinese included)",
    permission=None, response=SearchResultsOut, errors=(401, 422), tag="search",
    query=(
        QueryParam("q", "Text to find in names, emails, phone numbers (any spacing), domains and company names. "
                        "2 characters match names and company names; 1 character, names starting with it."),
        QueryParam("types", "Comma-separated kinds to search: companies, contacts, leads, deals (default: all)."),
        QueryParam("limit", f"Hits per kind, 1-{search.MAX_LIMIT} (default {search.DEFAULT_LIMIT}).", "integer"),
    ),
)
async def search_records(request: Request, body: None) -> BaseModel:
    """Any member may search: each kind appears only when the caller's role may view it."""
    raw_limit = request.query_params.get("limit", str(search.DEFAULT_LIMIT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= search.MAX_LIMIT:
        raise _invalid("limit", f"must be a whole number from 1 to {search.MAX_LIMIT}")
    try:
        results = await search.search(actor_of(request), request.query_params.get("q", ""),
                                      types=request.query_params.get("types"), limit=int(raw_limit))
    except search.SearchInputError as exc:
        raise _invalid(exc.field, exc.message) from None
    return SearchResultsOut(q=results.q, groups=[
        SearchGroupOut(type=g.object_type, items=[SearchHit(**item) for item in g.items],  # type: ignore[arg-type]
                       has_more=g.has_more) for g in results.groups])


async def _candidates(request: Request, object_type: str, param: str) -> BaseModel:
    try:
        found = await duplicates.find_duplicates(actor_of(request), object_type,
                                                 _record_id(request, param, object_type))
    except RecordNotFound:
        raise _not_found(object_type) from None
    return DuplicateList(items=[DuplicateCandidateOut(record=c.record, reasons=c.reasons) for c in found])


@endpoint("GET", "/contacts/{contact_id}/duplicates", summary="Possible duplicates of a contact, with the reasons",
          permission=("contacts", "view"), response=DuplicateList, errors=(401, 403, 404), tag="search")
async def contact_duplicates(request: Request, body: None) -> BaseModel:
    return await _candidates(request, "contacts", "contact_id")


@endpoint("GET", "/companies/{company_id}/duplicates", summary="Possible duplicates of a company, with the reasons",
          permission=("companies", "view"), response=DuplicateList, errors=(401, 403, 404), tag="search")
async def company_duplicates(request: Request, body: None) -> BaseModel:
    return await _candidates(request, "companies", "company_id")


async def _groups(request: Request, object_type: str) -> BaseModel:
    try:
        page = await duplicates.duplicate_groups(actor_of(request), object_type, request.query_params.get("reason"),
                                                 cursor=request.query_params.get("cursor"))
    except duplicates.DuplicateInputError as exc:
        raise _invalid(exc.field, exc.message) from None
    return DuplicateGroupPage(
        object_type=page.object_type, reason=page.reason, reasons=page.reasons, next_cursor=page.next_cursor,
        groups=[DuplicateGroupOut(reason=g.reason, key=g.key, count=g.count, records=g.records) for g in page.groups])


_GROUP_QUERY = (
    QueryParam("reason", "Which shared value groups the records (default: the first the caller may use)."),
    QueryParam("cursor", "next_cursor of the previous page."),
)


@endpoint("GET", "/duplicates/contacts", summary="Groups of contacts sharing an email, a phone number or a name "
          "at one company", permission=("contacts", "view"), response=DuplicateGroupPage, errors=(401, 403, 422),
          tag="search", query=_GROUP_QUERY)
async def contact_duplicate_groups(request: Request, body: None) -> BaseModel:
    return await _groups(request, "contacts")


@endpoint("GET", "/duplicates/companies", summary="Groups of companies sharing a domain or a name",
          permission=("companies", "view"), response=DuplicateGroupPage, errors=(401, 403, 422), tag="search",
          query=_GROUP_QUERY)
async def company_duplicate_groups(request: Request, body: None) -> BaseModel:
    return await _groups(request, "companies")


async def _merge(request: Request, object_type: str, param: str, body: ContactMergeIn | CompanyMergeIn) -> BaseModel:
    try:
        outcome = await merge.merge_records(actor_of(request), object_type, _record_id(request, param, object_type),
                                            body.other_id, dict(body.fields))
    except RecordNotFound:
        raise _not_found(object_type) from None
    except merge.MergeRefused as exc:
        raise _invalid(exc.field, exc.message) from None
    return MergeOut(merge_id=outcome.merge_id, object_type=outcome.object_type, kept_id=outcome.kept_id,
                    merged_id=outcome.merged_id, changed=outcome.changed, moved=outcome.moved, kept=outcome.kept)


@endpoint("POST", "/contacts/{contact_id}/merge", summary="Merge another contact into this one (then delete it)",
          permission=("contacts", "delete"), body=ContactMergeIn, response=MergeOut, errors=(400, 401, 403, 404, 422),
          tag="search")
async def merge_contact(request: Request, body: ContactMergeIn) -> BaseModel:
    """Needs edit on this contact and delete on the other; every related record moves to this one."""
    return await _merge(request, "contacts", "contact_id", body)


@endpoint("POST", "/companies/{company_id}/merge", summary="Merge another company into this one (then delete it)",
          permission=("companies", "delete"), body=CompanyMergeIn, response=MergeOut,
          errors=(400, 401, 403, 404, 422), tag="search")
async def merge_company(request: Request, body: CompanyMergeIn) -> BaseModel:
    """Needs edit on this company and delete on the other; contacts, deals, orders and the timeline move here."""
    return await _merge(request, "companies", "company_id", body)
