"""Service in the browser: the service home (the queue's counts, the caller's working tickets), a
ticket's page (its conversation, the reply and note form, status, priority and assignee), open, edit
and delete, and the service levels in the settings. The tickets list is the generic record list
(web/record_pages.py).

Permission checks happen in the actions and queries (below the web layer); a refusal surfaces as the
403 page. Fields hidden from the caller's role are not shown or asked for.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.platform.access.rules import PermissionDenied, permission_label
from kith.tenants.tickets import actions, detail, sla
from kith.tenants.tickets.errors import TicketError
from kith.tenants.tickets.schemas import CHANNELS, PRIORITIES, STATUSES, MessageIn, SlaIn, TicketIn, TicketPatch
from kith.web.company_pages import errors_of, form_display, record_id, shared_values, shown_values
from kith.web.edge import actor_of
from kith.web.forms import form_str, read_form, render

TEXT_FIELDS = ("subject", "description", "priority", "channel")
NO_SUCH_TICKET = {"status": 404, "message": "There is no such ticket."}


def _base(request: Request) -> str:
    return f"/t/{request.state.caller.tenant.slug}"


def _form_values(form: FormData, choices: dict[str, Any], *, with_status: bool) -> dict[str, Any]:
    hidden = choices["hidden"]
    names = (*TEXT_FIELDS, "status") if with_status else TEXT_FIELDS
    values: dict[str, Any] = {k: form_str(form, k) for k in names if k not in hidden}
    for name in ("contact_id", "company_id"):
        if name not in hidden and form.get(name) is not None:
            raw = form_str(form, name).strip()
            values[name] = int(raw) if raw.isdigit() and len(raw) < 19 else (raw or None)
    values.update(shared_values(form, hidden, choices["custom_fields"]))
    return values


def _context(choices: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"errors": {}, "values": {"custom": {}}, "ticket": None, "priorities": PRIORITIES, "channels": CHANNELS,
            "statuses": STATUSES, "object_type": "tickets", "contact": None, **choices, **extra}


async def _with_contact_email(request: Request, form: FormData, values: dict[str, Any]) -> dict[str, str]:
    """A contact named by email in the form (a help desk types the customer's address) as contact_id."""
    email = form_str(form, "contact_email").strip()
    if not email or values.get("contact_id"):
        return {}
    found = await detail.find_contact(actor_of(request), email)
    if found is None:
        return {"contact_email": "No contact you can see has this email."}
    values["contact_id"] = found
    return {}


async def _submit(request: Request, context: dict[str, Any], model: type[TicketIn] | type[TicketPatch],
                  save: Callable[[Any], Awaitable[dict[str, Any]]]) -> dict[str, Any] | Response:
    """The ticket form posted: its values checked as `model` and given to `save`; the saved ticket, or the
    form again naming each bad field (the 404 page when the ticket went meanwhile)."""
    form = await read_form(request)
    values = _form_values(form, context, with_status=context["ticket"] is not None)
    shown = {**form_display(values), "contact_email": form_str(form, "contact_email")}
    errors = await _with_contact_email(request, form, values)
    try:
        data = model.model_validate(values)
    except ValidationError as exc:
        errors = {**errors_of(request, exc), **errors}
    if errors:
        return render(request, "tickets/form.html", {**context, "values": shown, "errors": errors}, status=422)
    try:
        return await save(data)
    except TicketError as exc:
        if exc.status == 404:
            return render(request, "error.html", NO_SUCH_TICKET, status=404)
        return render(request, "tickets/form.html", {**context, "values": shown, "errors": exc.fields},
                      status=exc.status)


async def ticket_new(request: Request) -> Response:
    actor = actor_of(request)
    choices = await detail.form_choices(actor)
    raw_contact = request.query_params.get("contact_id", "")
    contact = await detail.contact_label(actor, int(raw_contact)) if raw_contact.isdigit() and len(raw_contact) < 19 \
        else None
    raw_company = request.query_params.get("company_id", "")
    values = {"owner_id": actor.identity_id, "priority": "normal", "channel": "web", "custom": {},
              "contact_id": contact["id"] if contact else None,
              "company_id": int(raw_company) if raw_company.isdigit() and len(raw_company) < 19 else None}
    context = _context(choices, values=values, contact=contact)
    if request.method == "GET":
        return render(request, "tickets/form.html", context)
    done = await _submit(request, context, TicketIn, lambda data: actions.create_ticket(actor, data))
    if isinstance(done, Response):
        return done
    return RedirectResponse(f"{_base(request)}/tickets/{done['id']}?created=1", status_code=303)


async def _page(request: Request, ticket_id: int, *, status: int = 200, **extra: Any) -> Response:
    try:
        context = await detail.ticket_page(actor_of(request), ticket_id)
    except TicketError:
        return render(request, "error.html", NO_SUCH_TICKET, status=404)
    return render(request, "tickets/detail.html",
                  {"statuses": STATUSES, "priorities": PRIORITIES, "reply_errors": {}, "reply_values": {},
                   **context, **extra}, status=status)


async def ticket_detail(request: Request) -> Response:
    ticket_id = record_id(request, "ticket_id")
    if ticket_id is None:
        return render(request, "error.html", NO_SUCH_TICKET, status=404)
    return await _page(request, ticket_id)


async def _may(request: Request, action: str) -> tuple[int, dict[str, Any]] | Response:
    """The ticket of the path and its page's facts, if the caller may `action` it (edit, delete): the
    404 page when they may not see it, PermissionDenied (the 403 page) when they may see but not change it."""
    ticket_id = record_id(request, "ticket_id")
    try:
        found = await detail.ticket_page(actor_of(request), ticket_id) if ticket_id is not None else None
    except TicketError:
        found = None
    if found is None or ticket_id is None:
        return render(request, "error.html", NO_SUCH_TICKET, status=404)
    if not found["can"][action]:
        raise PermissionDenied(found["role_name"], permission_label("tickets", action))
    return ticket_id, found


async def ticket_edit(request: Request) -> Response:
    actor = actor_of(request)
    may = await _may(request, "edit")
    if isinstance(may, Response):
        return may
    ticket_id, found = may
    ticket = found["ticket"]
    choices = await detail.form_choices(actor)
    values = {**shown_values(ticket, (*TEXT_FIELDS, "status")), "contact_id": ticket.get("contact_id"),
              "company_id": ticket.get("company_id")}
    contact = ({"id": ticket["contact_id"], "name": ticket.get("contact_name") or f"#{ticket['contact_id']}",
                "email": ticket.get("contact_email") or ""} if ticket.get("contact_id") else None)
    context = _context(choices, ticket=ticket, values=values, contact=contact)
    if request.method == "GET":
        return render(request, "tickets/form.html", context)
    done = await _submit(request, context, TicketPatch, lambda patch: actions.update_ticket(actor, ticket_id, patch))
    if isinstance(done, Response):
        return done
    return RedirectResponse(f"{_base(request)}/tickets/{ticket_id}?updated=1", status_code=303)


async def _on_page(request: Request, ticket_id: int, change: Callable[[], Awaitable[Any]], errors_name: str,
                   **extra: Any) -> Response | None:
    """Run one of a ticket page's forms: None when done, else the page again with the errors of bad input
    under `errors_name` (the 404 page when the ticket is not the caller's to see)."""
    try:
        await change()
    except ValidationError as exc:
        return await _page(request, ticket_id, status=422, **{errors_name: errors_of(request, exc)}, **extra)
    except TicketError as exc:
        if exc.status == 404:
            return render(request, "error.html", NO_SUCH_TICKET, status=404)
        return await _page(request, ticket_id, status=exc.status,
                           **{errors_name: exc.fields or {"body": exc.message}}, **extra)
    return None


async def ticket_update(request: Request) -> Response:
    """The quick form on a ticket's page: status, priority and assignee, or "take it" (assign to me)."""
    actor = actor_of(request)
    ticket_id = record_id(request, "ticket_id")
    if ticket_id is None:
        return render(request, "error.html", NO_SUCH_TICKET, status=404)
    form = await read_form(request)
    if form_str(form, "take"):
        values: dict[str, Any] = {"owner_id": actor.identity_id}
    else:
        values = {k: form_str(form, k) for k in ("status", "priority") if form_str(form, k)}
        if form.get("owner_id") is not None:
            owner = form_str(form, "owner_id").strip()
            values["owner_id"] = int(owner) if owner.isdigit() and len(owner) < 19 else None
    refused = await _on_page(request, ticket_id, lambda: actions.update_ticket(
        actor, ticket_id, TicketPatch.model_validate(values)), "update_errors")
    return refused or RedirectResponse(f"{_base(request)}/tickets/{ticket_id}?updated=1", status_code=303)


async def ticket_message(request: Request) -> Response:
    actor = actor_of(request)
    ticket_id = record_id(request, "ticket_id")
    if ticket_id is None:
        return render(request, "error.html", NO_SUCH_TICKET, status=404)
    form = await read_form(request)
    values: dict[str, Any] = {"kind": form_str(form, "kind") or "reply", "body": form_str(form, "body"),
                              "status": form_str(form, "status") or None}
    if form_str(form, "email_offered"):  # the box was offered: unticked means "record it only"
        values["email"] = bool(form_str(form, "email")) and values["kind"] == "reply"
    refused = await _on_page(request, ticket_id, lambda: actions.add_message(
        actor, ticket_id, MessageIn.model_validate(values)), "reply_errors", reply_values=values)
    if refused:
        return refused
    done = "noted" if values["kind"] == "note" else "replied"
    return RedirectResponse(f"{_base(request)}/tickets/{ticket_id}?{done}=1#conversation", status_code=303)


async def ticket_delete(request: Request) -> Response:
    actor = actor_of(request)
    may = await _may(request, "delete")
    if isinstance(may, Response):
        return may
    ticket_id, found = may
    if request.method == "GET":
        return render(request, "tickets/delete.html", {"ticket": found["ticket"]})
    await read_form(request)
    try:
        await actions.delete_ticket(actor, ticket_id)
    except TicketError as exc:
        return render(request, "error.html", {"status": exc.status, "message": exc.message}, status=exc.status)
    return RedirectResponse(f"{_base(request)}/tickets?deleted=1", status_code=303)


async def service_home(request: Request) -> Response:
    return render(request, "tickets/service.html", await detail.service_home(actor_of(request)))


def _sla_values(form: FormData) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """The service-levels form as SlaIn values, the inputs as typed, and errors of inputs that are not numbers."""
    values: dict[str, Any] = {}
    shown: dict[str, str] = {}
    errors: dict[str, str] = {}
    for priority in PRIORITIES:
        values[priority] = {}
        for part in ("first_response_hours", "resolution_hours"):
            name = f"{priority}.{part}"
            raw = shown[name] = form_str(form, name).strip()
            if not raw.isdigit() or len(raw) > 5:
                errors[name] = "Enter a whole number of hours from 1 to 8760."
            else:
                values[priority][part] = int(raw)
    return values, shown, errors


async def sla_settings(request: Request) -> Response:
    actor = actor_of(request)
    current = await sla.levels_for_settings(actor)
    shown = {f"{p}.{part}": str(getattr(getattr(current, p), part)) for p in PRIORITIES
             for part in ("first_response_hours", "resolution_hours")}
    context: dict[str, Any] = {"priorities": PRIORITIES, "values": shown, "errors": {},
                               "saved": bool(request.query_params.get("saved"))}
    if request.method == "GET":
        return render(request, "tickets/sla.html", context)
    form = await read_form(request)
    values, shown, errors = _sla_values(form)
    if not errors:
        try:
            await sla.set_levels(actor, SlaIn.model_validate(values))
        except ValidationError as exc:
            errors = errors_of(request, exc)
    if errors:
        return render(request, "tickets/sla.html", {**context, "values": shown, "errors": errors}, status=422)
    return RedirectResponse(f"{_base(request)}/settings/service?saved=1", status_code=303)


routes = [
    Route("/t/{slug}/service", service_home),
    Route("/t/{slug}/tickets/new", ticket_new, methods=["GET", "POST"]),
    Route("/t/{slug}/tickets/{ticket_id:int}", ticket_detail),
    Route("/t/{slug}/tickets/{ticket_id:int}/edit", ticket_edit, methods=["GET", "POST"]),
    Route("/t/{slug}/tickets/{ticket_id:int}/update", ticket_update, methods=["POST"]),
    Route("/t/{slug}/tickets/{ticket_id:int}/messages", ticket_message, methods=["POST"]),
    Route("/t/{slug}/tickets/{ticket_id:int}/delete", ticket_delete, methods=["GET", "POST"]),
    Route("/t/{slug}/settings/service", sla_settings, methods=["GET", "POST"]),
]
