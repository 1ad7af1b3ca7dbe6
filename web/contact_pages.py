"""Contacts in the browser: list with search and pagination, create, edit, delete.

Permission checks happen in the actions and queries (below the web layer); a refusal
surfaces as the 403 page. Fields hidden from the caller's role are not shown or asked for.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.tenants.contacts import actions, queries
from kith.tenants.contacts.schemas import ContactIn, ContactPatch, phone_context
from kith.web.edge import actor_of
from kith.web.errors import validation_fields
from kith.web.forms import form_str, read_form, render
from kith.web.i18n import gettext_for

FIELDS = queries.FIELDS
Model = TypeVar("Model", bound=BaseModel)
NO_SUCH_CONTACT = {"status": 404, "message": "There is no such contact."}


def _base(request: Request) -> str:
    return f"/t/{request.state.caller.tenant.slug}"


def _validate(request: Request, model: type[Model], values: dict[str, str]) -> Model:
    """`values` as `model`, national phone numbers read in the workspace's default phone region."""
    return model.model_validate(values, context=phone_context(request.state.caller.tenant.default_phone_region))


def _errors(request: Request, exc: ValidationError) -> dict[str, str]:
    return validation_fields(exc, request.state.caller.tenant.locale)


def _form_values(form: Any, hidden: frozenset[str]) -> dict[str, str]:
    values = {k: form_str(form, k) for k in FIELDS if k not in hidden}
    if "marketing_consent" not in hidden and form.get("marketing_consent") is not None:
        values["marketing_consent"] = form_str(form, "marketing_consent")
    return values


async def contact_list(request: Request) -> Response:
    q = request.query_params.get("q", "")[:200]
    cursor = request.query_params.get("cursor")
    try:
        page = await queries.list_contacts(actor_of(request), q=q, limit=25, cursor=cursor)
    except ValueError:
        cursor = None
        page = await queries.list_contacts(actor_of(request), q=q, limit=25)
    return render(request, "contacts/list.html", {"page": page, "q": q, "cursor": cursor, "hidden": page.hidden})


async def contact_new(request: Request) -> Response:
    actor = actor_of(request)
    hidden = await queries.hidden_fields(actor)
    context: dict[str, Any] = {"values": {}, "errors": {}, "contact": None, "hidden": hidden}
    if request.method == "GET":
        return render(request, "contacts/form.html", context)
    values = _form_values(await read_form(request), hidden)
    try:
        data = _validate(request, ContactIn, values)
    except ValidationError as exc:
        return render(request, "contacts/form.html", {**context, "values": values, "errors": _errors(request, exc)},
                      status=422)
    contact = await actions.create_contact(actor, data)
    return RedirectResponse(f"{_base(request)}/contacts?created={contact['id']}", status_code=303)


async def _load(request: Request) -> dict[str, Any] | None:
    try:
        return await queries.get_contact(actor_of(request), int(request.path_params["contact_id"]))
    except (ValueError, queries.ContactNotFound):
        return None


async def contact_edit(request: Request) -> Response:
    actor = actor_of(request)
    contact = await _load(request)
    if contact is None:
        return render(request, "error.html", NO_SUCH_CONTACT, status=404)
    hidden = await queries.hidden_fields(actor)
    context: dict[str, Any] = {"contact": contact, "errors": {}, "hidden": hidden,
                               "values": {k: contact.get(k, "") for k in (*FIELDS, "marketing_consent")}}
    if request.method == "GET":
        return render(request, "contacts/form.html", context)
    values = _form_values(await read_form(request), hidden)
    try:
        changes = _validate(request, ContactPatch, values)
        await actions.update_contact(actor, contact["id"], changes)
    except ValidationError as exc:
        return render(request, "contacts/form.html", {**context, "values": values, "errors": _errors(request, exc)},
                      status=422)
    except ValueError:
        empty = gettext_for(request.state.caller.tenant.locale, "This field cannot be empty.")
        return render(request, "contacts/form.html", {**context, "values": values, "errors": {"name": empty}},
                      status=422)
    except queries.ContactNotFound:
        return render(request, "error.html", NO_SUCH_CONTACT, status=404)
    return RedirectResponse(f"{_base(request)}/contacts?updated={contact['id']}", status_code=303)


async def contact_delete(request: Request) -> Response:
    contact = await _load(request)
    if contact is None:
        return render(request, "error.html", NO_SUCH_CONTACT, status=404)
    if request.method == "GET":
        return render(request, "contacts/delete.html", {"contact": contact})
    await read_form(request)
    try:
        await actions.delete_contact(actor_of(request), contact["id"])
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
