"""The service API: tickets (/api/v1/tickets), their conversation (replies and internal notes), the
service queue's counts and the workspace's service levels. Tenant from the token; /t/<slug>/api/v1
works too.

Handlers validate input and call one action or query with the caller as Actor; the permission checks
happen there, below the web layer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.requests import Request

from kith.tenants.records.listing import ListError, parse_list_query
from kith.tenants.tickets import actions, queries, sla
from kith.tenants.tickets.errors import TicketError
from kith.tenants.tickets.schemas import (
    MessageIn,
    MessageOut,
    QueueCounts,
    SlaIn,
    SlaOut,
    TicketIn,
    TicketOut,
    TicketPage,
    TicketPatch,
    TicketThread,
)
from kith.web.api.lists import list_error
from kith.web.api.registry import QueryParam, endpoint
from kith.web.edge import actor_of
from kith.web.errors import ApiError

TAG = "tickets"
LIST_QUERY = (
    QueryParam("q", "Text to find in the subject (any script)."),
    QueryParam("f", "A filter field:operator:value, repeatable (e.g. status:in:new|open, owner_id:eq:me, "
                    "resolution_due_at:lt:2026-12-01T00:00:00Z)."),
    QueryParam("sort", "A field to sort on, - for descending (default -id)."),
    QueryParam("limit", "Page size, 1-100 (default 25).", "integer"),
    QueryParam("cursor", "next_cursor of the previous page."),
)


def _ticket_id(request: Request) -> int:
    raw = str(request.path_params["ticket_id"])
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(404, "not_found", "There is no such ticket.")
    return int(raw)


def ticket_error(exc: TicketError) -> ApiError:
    message = "Some fields are not valid." if exc.status == 422 and exc.fields else exc.message
    return ApiError(exc.status, exc.code, message, fields=exc.fields)


def _thread(found: dict[str, Any]) -> TicketThread:
    return TicketThread(ticket=TicketOut(**found["ticket"]), messages=[MessageOut(**m) for m in found["messages"]])


@endpoint("GET", "/tickets", summary="List tickets with filters, sort, search and keyset pagination",
          permission=("tickets", "view"), response=TicketPage, errors=(401, 403, 422), tag=TAG, query=LIST_QUERY)
async def list_tickets(request: Request, body: None) -> BaseModel:
    try:
        page = await queries.list_tickets(actor_of(request), parse_list_query(request.query_params))
    except ListError as exc:
        raise list_error(exc) from None
    return TicketPage(items=[TicketOut(**item) for item in page.items], next_cursor=page.next_cursor)


@endpoint("POST", "/tickets", summary="Open a ticket (due times from the workspace's service levels)",
          permission=("tickets", "create"), body=TicketIn, response=TicketOut, status=201,
          errors=(400, 401, 403, 422), tag=TAG)
async def create_ticket(request: Request, body: TicketIn) -> BaseModel:
    try:
        return TicketOut(**await actions.create_ticket(actor_of(request), body))
    except TicketError as exc:
        raise ticket_error(exc) from None


@endpoint("GET", "/tickets/queue", summary="The service queue's counts in your scope: new, open, pending, "
          "unassigned, overdue and yours", permission=("tickets", "view"), response=QueueCounts,
          errors=(401, 403), tag=TAG)
async def ticket_queue(request: Request, body: None) -> BaseModel:
    return QueueCounts(**await queries.queue_counts(actor_of(request)))


@endpoint("GET", "/tickets/sla", summary="The service levels: hours to first reply and to resolution per priority",
          permission=("tickets", "view"), response=SlaOut, errors=(401, 403), tag=TAG)
async def get_sla(request: Request, body: None) -> BaseModel:
    return await sla.get_levels(actor_of(request))


@endpoint("PUT", "/tickets/sla", summary="Replace the service levels (tickets opened or re-prioritised later use them)",
          permission=("workspace", "manage_settings"), body=SlaIn, response=SlaOut, errors=(400, 401, 403, 422),
          tag=TAG)
async def put_sla(request: Request, body: SlaIn) -> BaseModel:
    return await sla.set_levels(actor_of(request), body)


@endpoint("GET", "/tickets/{ticket_id}", summary="Get one ticket with its conversation (replies and internal notes)",
          permission=("tickets", "view"), response=TicketThread, errors=(401, 403, 404), tag=TAG)
async def get_ticket(request: Request, body: None) -> BaseModel:
    try:
        return _thread(await queries.get_thread(actor_of(request), _ticket_id(request)))
    except TicketError as exc:
        raise ticket_error(exc) from None


@endpoint("PATCH", "/tickets/{ticket_id}", summary="Change some fields of a ticket: status, priority, assignee...",
          permission=("tickets", "edit"), body=TicketPatch, response=TicketOut, errors=(400, 401, 403, 404, 422),
          tag=TAG)
async def update_ticket(request: Request, body: TicketPatch) -> BaseModel:
    try:
        return TicketOut(**await actions.update_ticket(actor_of(request), _ticket_id(request), body))
    except TicketError as exc:
        raise ticket_error(exc) from None


@endpoint("POST", "/tickets/{ticket_id}/messages", summary="Reply to the customer or add an internal note (409 for a "
          "reply to a closed ticket)", permission=("tickets", "edit"), body=MessageIn, response=TicketThread,
          status=201, errors=(400, 401, 403, 404, 409, 422), tag=TAG)
async def add_message(request: Request, body: MessageIn) -> BaseModel:
    try:
        return _thread(await actions.add_message(actor_of(request), _ticket_id(request), body))
    except TicketError as exc:
        raise ticket_error(exc) from None


@endpoint("DELETE", "/tickets/{ticket_id}", summary="Delete a ticket and its conversation",
          permission=("tickets", "delete"), status=204, errors=(401, 403, 404), tag=TAG)
async def delete_ticket(request: Request, body: None) -> None:
    try:
        await actions.delete_ticket(actor_of(request), _ticket_id(request))
    except TicketError as exc:
        raise ticket_error(exc) from None
