"""Contacts in the browser: list with search and pagination, the contact's 360 page, create, edit,
delete.

Permission checks happen in the actions and queries (below the web layer); a refusal
surfaces as the 403 page. Fields hidden from the caller's role are not shown or asked for.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.tenants.companies import overview
from kith.tenants.companies.errors import InvalidFields
from kith.tenants.companies.queries import form_choices
from kith.tenants.contacts import actions, queries
from kith.tenants.contacts.schemas import LIFECYCLE_STAGES, ContactIn, ContactPatch, phone_context
from kith.web.company_pages import form_display, record_id, shared_values, shown_values
from kith.web.edge import actor_of
from kith.web.errors import validation_fields
from kith.web.forms import form_str, read_form, render
from kith.web.i18n import gettext_for

FIELDS = (*queries.FIELDS, "title", "source")
Model = TypeVar("Model", bound=BaseModel)
NO_SUCH_CONTACT = {"status": 404, "message": "There is no such contact."}


def _base(request: Request) -> str:
    return f"/t/{request.state.caller.tenant.slug}"


def _validate(request: Request, model: type[Model], values: dict[str, str]) -> Model:
    """`values` as `model`, national phone numbers read in the workspace's default phone region."""
    return model.model_validate(values, context=phone_context(request.state.caller.tenant.default_phone_region))


def _errors(request: Request, exc: ValidationError) -> dict[str, str]:
    return validation_fields(exc, request.state.caller.tenant.locale)


def _form_values(form: Any, choices: dict[str, Any]) -> dict[str, Any]:
    hidden = choices["hidden"]
    values: dict[str, Any] = {k: form_str(form, k) for k in FIELDS if k not in hidden}
    for name in ("marketing_consent", "lifecycle_stage"):
        if name not in hidden and form.get(name) is not None:
            values[name] = form_str(form, name)
    if form.get("company_id") is not None:
        company = form_str(form, "company_id").strip()
        values["company_id"] = int(company) if company.isdigit() else None
    values.update(shared_values(form, hidden, choices["custom_fields"]))
    return values


def _form_context(choices: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"errors": {}, "contact": None, "stages": LIFECYCLE_STAGES, **choices, **extra}


def _stored_values(contact: dict[str, Any]) -> dict[str, Any]:
    values = shown_values(contact, FIELDS)
    values.update({k: contact.get(k) for k in ("marketing_consent", "lifecycle_stage", "company_id")})
    return values


async def contact_new(request: Request) -> Response:
    actor = actor_of(request)
    choices = await form_choices(actor, "contacts")
    preset = request.query_params.get("company_id", "")
    context = _form_context(choices, values={"owner_id": actor.identity_id, "custom": {},
                                             "company_id": int(preset) if preset.isdigit() else None})
    if request.method == "GET":
        return render(request, "contacts/form.html", context)
    values = _form_values(await read_form(request), choices)
    try:
        data = _validate(request, ContactIn, values)
        contact = await actions.create_contact(actor, data)
    except ValidationError as exc:
        return render(request, "contacts/form.html",
                      {**context, "values": form_display(values), "errors": _errors(request, exc)}, status=422)
    except InvalidFields as exc:
        return render(request, "contacts/form.html",
                      {**context, "values": form_display(values), "errors": exc.fields}, status=422)
    return RedirectResponse(f"{_base(request)}/contacts?created={contact['id']}", status_code=303)


async def contact_page(request: Request) -> Response:
    contact_id = record_id(request, "contact_id")
    if contact_id is None:
        return render(request, "error.html", NO_SUCH_CONTACT, status=404)
    try:
        found = await overview.contact_overview(actor_of(request), contact_id, custom_fields=True)
    except queries.ContactNotFound:
        return render(request, "error.html", NO_SUCH_CONTACT, status=404)
    return render(request, "contacts/detail.html", {**found, "record": {"type": "contacts", "id": contact_id}})


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
    choices = await form_choices(actor, "contacts")
    context = _form_context(choices, contact=contact, values=_stored_values(contact))
    if request.method == "GET":
        return render(request, "contacts/form.html", context)
    values = _form_values(await read_form(request), choices)
    try:
        changes = _validate(request, ContactPatch, values)
        await actions.update_contact(actor, contact["id"], changes)
    except ValidationError as exc:
        return render(request, "contacts/form.html",
                      {**context, "values": form_display(values), "errors": _errors(request, exc)}, status=422)
    except InvalidFields as exc:
        return render(request, "contacts/form.html",
                      {**context, "values": form_display(values), "errors": exc.fields}, status=422)
    except ValueError:
        empty = gettext_for(request.state.caller.tenant.locale, "This field cannot be empty.")
        return render(request, "contacts/form.html",
                      {**context, "values": form_display(values), "errors": {"name": empty}}, status=422)
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
    Route("/t/{slug}/contacts/new", contact_new, methods=["GET", "POST"]),
    Route("/t/{slug}/contacts/{contact_id:int}", contact_page),
    Route("/t/{slug}/contacts/{contact_id}/edit", contact_edit, methods=["GET", "POST"]),
    Route("/t/{slug}/contacts/{contact_id}/delete", contact_delete, methods=["GET", "POST"]),
]
