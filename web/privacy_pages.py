"""A contact's privacy requests in the browser: download its data-subject export, and erase
it after a confirmation page. The actions (tenants/contacts/privacy.py) check permissions,
record scope and hidden fields, and audit the request; a refusal surfaces as the 403 page."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.tenants.contacts import privacy, queries
from kith.web.api.privacy import export_response
from kith.web.edge import actor_of
from kith.web.forms import read_form, render

NO_SUCH_CONTACT = {"status": 404, "message": "There is no such contact."}


def _contact_id(request: Request) -> int | None:
    raw = str(request.path_params["contact_id"])
    return int(raw) if raw.isdigit() else None


async def _load(request: Request) -> dict[str, Any] | None:
    contact_id = _contact_id(request)
    if contact_id is None:
        return None
    try:
        return await queries.get_contact(actor_of(request), contact_id)
    except queries.ContactNotFound:
        return None


async def contact_export(request: Request) -> Response:
    # POST with the form's CSRF token: the export is audited, so no link or prefetch may trigger it
    await read_form(request)
    contact_id = _contact_id(request)
    if contact_id is None:
        return render(request, "error.html", NO_SUCH_CONTACT, status=404)
    try:
        export = await privacy.export_contact(actor_of(request), contact_id)
    except queries.ContactNotFound:
        return render(request, "error.html", NO_SUCH_CONTACT, status=404)
    response = export_response(export)
    response.headers["Cache-Control"] = "no-store"
    return response


async def contact_erase(request: Request) -> Response:
    contact = await _load(request)
    if contact is None:
        return render(request, "error.html", NO_SUCH_CONTACT, status=404)
    if request.method == "GET":
        return render(request, "contacts/erase.html", {"contact": contact})
    await read_form(request)
    try:
        await privacy.erase_contact(actor_of(request), contact["id"])
    except queries.ContactNotFound:
        return render(request, "error.html", NO_SUCH_CONTACT, status=404)
    return RedirectResponse(f"/t/{request.state.caller.tenant.slug}/contacts?erased={contact['id']}", status_code=303)


routes = [
    Route("/t/{slug}/contacts/{contact_id}/export", contact_export, methods=["POST"]),
    Route("/t/{slug}/contacts/{contact_id}/erase", contact_erase, methods=["GET", "POST"]),
]
