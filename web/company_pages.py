"""Companies in the browser: the company's 360 page, create, edit, and delete (which asks what
happens to the company's contacts). The list is the generic record list (web/record_pages.py).

Permission checks happen in the actions and queries (below the web layer); a refusal surfaces as
the 403 page. Fields hidden from the caller's role are not shown or asked for.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.tenants.companies import actions, overview, queries
from kith.tenants.companies.errors import CompanyHasContacts, CompanyInUse, CompanyNotFound, InvalidFields
from kith.tenants.companies.schemas import SIZES, CompanyIn, CompanyPatch
from kith.tenants.contacts.schemas import phone_context
from kith.web.edge import actor_of
from kith.web.errors import validation_fields
from kith.web.forms import form_str, read_form, render

TEXT_FIELDS = ("name", "domain", "industry", "size", "phone", "address", "city", "country", "notes")
NO_SUCH_COMPANY = {"status": 404, "message": "There is no such company."}


def base_path(request: Request) -> str:
    return f"/t/{request.state.caller.tenant.slug}"


def validate(request: Request, model: type[BaseModel], values: dict[str, Any]) -> Any:
    """`values` as `model`, national phone numbers read in the workspace's default phone region."""
    return model.model_validate(values, context=phone_context(request.state.caller.tenant.default_phone_region))


def errors_of(request: Request, exc: ValidationError) -> dict[str, str]:
    return validation_fields(exc, request.state.caller.tenant.locale)


def record_id(request: Request, name: str) -> int | None:
    raw = str(request.path_params[name])
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


def shared_values(form: FormData, hidden: frozenset[str], custom_fields: list[Any]) -> dict[str, Any]:
    """The owner, tags and custom field inputs every CRM record form has, as schema values:
    owner_id ("" = nobody), tags (comma-separated), custom.<key> inputs (multi-selects repeat)."""
    values: dict[str, Any] = {}
    if form.get("owner_id") is not None:
        owner = form_str(form, "owner_id").strip()
        values["owner_id"] = int(owner) if owner.isdigit() else None
    if "tags" not in hidden and form.get("tags") is not None:
        values["tags"] = [t for t in (part.strip() for part in form_str(form, "tags").split(",")) if t]
    if "custom" not in hidden and custom_fields:
        custom: dict[str, Any] = {}
        for definition in custom_fields:
            name = f"custom.{definition.key}"
            if definition.kind == "multi_select":
                custom[definition.key] = [str(v) for v in form.getlist(name) if isinstance(v, str) and v]
            elif form.get(name) is not None:
                custom[definition.key] = form_str(form, name)
        values["custom"] = custom
    return values


def shown_values(record: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """A stored record as its form shows it (tags as one comma-separated line)."""
    values: dict[str, Any] = {k: record.get(k) or "" for k in fields}
    values["owner_id"] = record.get("owner_id")
    values["tags"] = ", ".join(record.get("tags") or [])
    values["custom"] = record.get("custom") or {}
    return values


def form_display(values: dict[str, Any]) -> dict[str, Any]:
    """Submitted schema values as the form shows them again after an error."""
    shown = dict(values)
    if isinstance(shown.get("tags"), list):
        shown["tags"] = ", ".join(shown["tags"])
    shown.setdefault("custom", {})
    return shown


def _form_values(form: FormData, choices: dict[str, Any]) -> dict[str, Any]:
    hidden = choices["hidden"]
    values: dict[str, Any] = {k: form_str(form, k) for k in TEXT_FIELDS if k not in hidden}
    values.update(shared_values(form, hidden, choices["custom_fields"]))
    return values


def _context(choices: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"errors": {}, "values": {"custom": {}}, "company": None, "sizes": SIZES, **choices, **extra}


async def company_new(request: Request) -> Response:
    actor = actor_of(request)
    choices = await queries.form_choices(actor, "companies")
    context = _context(choices, values={"owner_id": actor.identity_id, "custom": {}})
    if request.method == "GET":
        return render(request, "companies/form.html", context)
    values = _form_values(await read_form(request), choices)
    try:
        data = validate(request, CompanyIn, values)
        company = await actions.create_company(actor, data)
    except ValidationError as exc:
        return render(request, "companies/form.html",
                      {**context, "values": form_display(values), "errors": errors_of(request, exc)}, status=422)
    except InvalidFields as exc:
        return render(request, "companies/form.html",
                      {**context, "values": form_display(values), "errors": exc.fields}, status=422)
    return RedirectResponse(f"{base_path(request)}/companies/{company['id']}?created=1", status_code=303)


async def company_page(request: Request) -> Response:
    company_id = record_id(request, "company_id")
    if company_id is None:
        return render(request, "error.html", NO_SUCH_COMPANY, status=404)
    try:
        found = await overview.company_overview(actor_of(request), company_id, custom_fields=True)
    except CompanyNotFound:
        return render(request, "error.html", NO_SUCH_COMPANY, status=404)
    return render(request, "companies/detail.html",
                  {**found, "record": {"type": "companies", "id": company_id}})


async def company_edit(request: Request) -> Response:
    actor = actor_of(request)
    # the form's token first: a forged post learns nothing, not even whether the company exists
    form = await read_form(request) if request.method == "POST" else None
    company_id = record_id(request, "company_id")
    try:
        if company_id is None:
            raise CompanyNotFound(str(company_id))
        company = await queries.get_company(actor, company_id)
    except CompanyNotFound:
        return render(request, "error.html", NO_SUCH_COMPANY, status=404)
    choices = await queries.form_choices(actor, "companies")
    context = _context(choices, company=company, values=shown_values(company, TEXT_FIELDS))
    if form is None:
        return render(request, "companies/form.html", context)
    values = _form_values(form, choices)
    try:
        await actions.update_company(actor, company["id"], validate(request, CompanyPatch, values))
    except ValidationError as exc:
        return render(request, "companies/form.html",
                      {**context, "values": form_display(values), "errors": errors_of(request, exc)}, status=422)
    except InvalidFields as exc:
        return render(request, "companies/form.html",
                      {**context, "values": form_display(values), "errors": exc.fields}, status=422)
    except CompanyNotFound:
        return render(request, "error.html", NO_SUCH_COMPANY, status=404)
    return RedirectResponse(f"{base_path(request)}/companies/{company['id']}?updated=1", status_code=303)


async def company_delete(request: Request) -> Response:
    actor = actor_of(request)
    form = await read_form(request) if request.method == "POST" else None
    company_id = record_id(request, "company_id")
    try:
        if company_id is None:
            raise CompanyNotFound(str(company_id))
        facts = await actions.deletion_facts(actor, company_id)
    except CompanyNotFound:
        return render(request, "error.html", NO_SUCH_COMPANY, status=404)
    context: dict[str, Any] = {**facts, "error": "", "choice": ""}
    if form is None:
        return render(request, "companies/delete.html", context)
    try:
        choice = actions.contacts_choice(form_str(form, "contacts"))
    except ValueError:
        choice = None  # not one of the radio buttons: asked again below
    try:
        await actions.delete_company(actor, company_id, contacts=choice)
    except CompanyNotFound:
        pass  # deleted meanwhile: the outcome the person asked for
    except (CompanyHasContacts, CompanyInUse) as exc:
        fresh = await actions.deletion_facts(actor, company_id)
        return render(request, "companies/delete.html",
                      {**fresh, "error": str(exc), "choice": choice or ""}, status=409)
    return RedirectResponse(f"{base_path(request)}/companies?deleted=1", status_code=303)


routes = [
    Route("/t/{slug}/companies/new", company_new, methods=["GET", "POST"]),
    Route("/t/{slug}/companies/{company_id:int}", company_page),
    Route("/t/{slug}/companies/{company_id:int}/edit", company_edit, methods=["GET", "POST"]),
    Route("/t/{slug}/companies/{company_id:int}/delete", company_delete, methods=["GET", "POST"]),
]
