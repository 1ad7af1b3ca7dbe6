"""What every list endpoint of the list engine shares: its query parameters and its errors."""

from __future__ import annotations

from starlette.requests import Request

from kith.tenants.records.listing import ListError, RecordPage, list_records, parse_list_query
from kith.tenants.records.spec import RecordSpec
from kith.web.api.registry import QueryParam
from kith.web.edge import actor_of
from kith.web.errors import ApiError


def list_query(searched: str, filter_example: str) -> tuple[QueryParam, ...]:
    """The query parameters of a list: `searched` says what q matches, `filter_example` a filter."""
    return (
        QueryParam("q", f"Text to find in {searched} (any script)."),
        QueryParam("f", f"A filter field:operator:value, repeatable (e.g. {filter_example})."),
        QueryParam("sort", "A field to sort on, - for descending (default -id: newest first)."),
        QueryParam("limit", "Page size, 1-100 (default 25).", "integer"),
        QueryParam("cursor", "next_cursor of the previous page."),
    )


def list_error(exc: ListError) -> ApiError:
    """A query the engine cannot run, as a 422 naming the part (filter, sort, cursor...)."""
    return ApiError(422, "invalid_input", exc.message, fields={exc.field: exc.message})


async def engine_page(request: Request, spec: RecordSpec) -> RecordPage:
    """One page of `spec`'s records for the caller, from the request's query string."""
    try:
        return await list_records(actor_of(request), spec, parse_list_query(request.query_params))
    except ListError as exc:
        raise list_error(exc) from None
