"""Contacts in the browser: list with search and pagination, create, edit, delete."""

from __future__ import annotations

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.tenants.contacts import actions, queries
from kith.tenants.contacts.models import Contact
from kith.tenants.contacts.schemas import ContactIn, ContactPatch
from kith.web.errors import validation_fields
from kith.web.forms import form_str, read_form, render

FIELDS = ("name", "email", "phone", "company_name", "notes")


def _base(request: Request) -> str:
    return f"/t/{request.state.caller.tenant.slug}"


async def contact_list(request: Request) -> Response:
    caller = request.state.caller
    q = request.query_params.get("q", "")[:200]
    cursor = request.query_params.get("cursor")
    try:
        page = await queries.list_contacts(caller.tenant.id, q=q, limit=25, cursor=cursor)
    except ValueError:
        page = await queries.list_contacts(caller.tenant.id, q=q, limit=25)
    return render(request, "contacts/list.html", {"page": page, "q": q, "cursor": cursor})


async def contact_new(request: Request) -> Response:
    caller = request.state.caller
    if request.method == "GET":
        return render(request, "contacts/form.html", {"values": {}, "errors": {}, "contact": None})
    form = await read_form(request)
    values = {k: form_str(form, k) for k in FIELDS}
    try:
        data = ContactIn.model_validate(values)
    except ValidationError as exc:
        return render(request, "contacts/form.html",
                      {"values": values, "errors": validation_fields(exc), "contact": None}, status=422)
    contact = await actions.create_contact(caller.tenant.id, caller.identity.id, data)
    return RedirectResponse(f"{_base(request)}/contacts?created={contact.id}", status_code=303)


async def _load(request: Request) -> Contact | None:
    try:
        contact_id = int(request.path_params["contact_id"])
        return await queries.get_contact(request.state.caller.tenant.id, contact_id)
    except (ValueError, queries.ContactNotFound):
        return None


async def contact_edit(request: Request) -> Response:
    caller = request.state.caller
    contact = await _load(request)
    if contact is None:
        return render(request, "error.html", {"status": 404, "message": "There is no such contact."}, status=404)
    if request.method == "GET":
        values = {k: getattr(contact, k) for k in FIELDS}
        return render(request, "contacts/form.html", {"values": values, "errors": {}, "contact": contact})
    form = await read_form(request)
    values = {k: form_str(form, k) for k in FIELDS}
    try:
        changes = ContactPatch.model_validate(values)
        await actions.update_contact(caller.tenant.id, contact.id, changes)
    except ValidationError as exc:
        return render(request, "contacts/form.html",
                      {"values": values, "errors": validation_fields(exc), "contact": contact}, status=422)
    except queries.ContactNotFound:
        return render(request, "error.html", {"status": 404, "message": "There is no such contact."}, status=404)
    return RedirectResponse(f"{_base(request)}/contacts?updated={contact.id}", status_code=303)


async def contact_delete(request: Request) -> Response:
    caller = request.state.caller
    contact = await _load(request)
    if contact is None:
        return render(request, "error.html", {"status": 404, "message": "There is no such contact."}, status=404)
    if request.method == "GET":
        return render(request, "contacts/delete.html", {"contact": contact})
    await read_form(request)
    try:
        await actions.delete_contact(caller.tenant.id, contact.id)
    except queries.ContactNotFound:
        pass  # deleted meanwhile: the outcome the person asked for
    return RedirectResponse(f"{_base(request)}/contacts?deleted=1", status_code=303)


async def workspace_home(request: Request) -> Response:
    return RedirectResponse(f"{_base(request)}/contacts", status_code=303)


routes = [
    Route("/t/{slug}/", workspace_home),
    Route("/t/{slug}/contacts", contact_list),
    Route("/t/{slug}/contacts/new", contact_new, methods=["GET", "POST"]),
    Route("/t/{slug}/contacts/{contact_id}/edit", contact_edit, methods=["GET", "POST"]),
    Route("/t/{slug}/contacts/{contact_id}/delete", contact_delete, methods=["GET", "POST"]),
]
