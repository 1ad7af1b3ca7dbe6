"""Email templates in the browser, under /t/<slug>/campaigns/templates.

One form serves writing, previewing and test sending, and works without JavaScript: its buttons
submit the content being written with action=save, preview (filled in for the contact chosen in
"Preview as", shown below the form) or test (sent to yourself). With JavaScript, a small inline
script also refreshes the preview while you type, through POST .../templates/preview (JSON).
Permission checks happen in kith.tenants.campaigns.template_service; a refusal surfaces as the
403 page, a template's problems at their fields, translated.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from kith.platform.access.rules import PermissionDenied
from kith.tenants.campaigns import template_service as service
from kith.tenants.campaigns.template_service import EmailTemplateIn, EmailTemplatePatch, InvalidTemplate, Preview
from kith.tenants.campaigns.templates import TemplateProblem
from kith.tenants.contacts.spec import SPEC as CONTACTS_SPEC
from kith.tenants.records.listing import ListError, ListQuery, list_records
from kith.tenants.records.refusals import RecordsRefusal
from kith.web.edge import actor_of
from kith.web.errors import validation_fields
from kith.web.forms import form_str, read_form
from kith.web.forms import render as render_page
from kith.web.i18n import gettext_for

FIELDS = ("name", "subject", "html_body", "text_body")
CONTACT_CHOICES = 20


def _base(request: Request) -> str:
    return f"/t/{request.state.caller.tenant.slug}/campaigns/templates"


def _t(request: Request, message: str) -> str:
    return gettext_for(request.state.caller.tenant.locale, message)


def _problem(request: Request, p: TemplateProblem) -> str:
    """A template problem in the workspace's language: part, line and what is wrong."""
    return _t(request, "%(part)s, line %(line)s: %(problem)s") % {
        "part": _t(request, p.part), "line": p.line, "problem": _t(request, p.problem) % dict(p.params)}


def _refusal(request: Request, exc: RecordsRefusal) -> dict[str, str]:
    """A refusal's messages per field ("" when no field carries it), translated."""
    if isinstance(exc, InvalidTemplate):
        errors: dict[str, str] = {}
        for p in exc.problems:
            errors[p.field] = (errors[p.field] + "\n" if p.field in errors else "") + _problem(request, p)
        return errors
    return {k: _t(request, v) for k, v in exc.fields.items()} or {"": _t(request, exc.message)}


def _path_id(request: Request) -> int:
    raw = str(request.path_params["template_id"])
    return int(raw) if raw.isdigit() else 0


def _not_found(request: Request, exc: RecordsRefusal) -> Response:
    return render_page(request, "error.html", {"status": 404, "message": _t(request, exc.message)}, status=404)


async def template_list(request: Request) -> Response:
    q = request.query_params.get("q", "")[:200]
    items = await service.list_templates(actor_of(request), q=q)
    return render_page(request, "campaigns/templates_list.html", {"items": items, "q": q, "base": _base(request)})


def _values(form: FormData) -> dict[str, str]:
    return {k: form_str(form, k) for k in FIELDS}


def _contact_id(raw: str) -> int | None:
    raw = raw.strip()
    return int(raw) if raw.isdigit() else None


async def _contact_choices(request: Request, q: str, chosen: Preview | None) -> list[dict[str, Any]]:
    """Contacts to preview as: up to 20 the member may see, matching `q`; [] without 'contacts: view'."""
    actor = actor_of(request)
    page = None
    for columns in (["name"], ["id"]):  # a role that may not see names still picks by number
        try:
            page = await list_records(actor, CONTACTS_SPEC, ListQuery(q=q.strip()[:200], limit=CONTACT_CHOICES,
                                                                      columns=columns))
            break
        except PermissionDenied:
            continue
        except ListError:
            return []
    items = [{"id": row["id"], "name": row.get("name") or f"#{row['id']}"} for row in (page.items if page else [])]
    if chosen is not None and chosen.contact_id is not None and all(i["id"] != chosen.contact_id for i in items):
        items.insert(0, {"id": chosen.contact_id, "name": chosen.contact_name or f"#{chosen.contact_id}"})
    return items


async def _form(request: Request, template: dict[str, Any] | None, values: dict[str, str], *,
                errors: dict[str, str] | None = None, preview: Preview | None = None, preview_error: str = "",
                sent: service.SentTest | None = None, contact_q: str = "", status: int = 200) -> Response:
    context = {
        "template": template, "values": values, "errors": errors or {}, "preview": preview,
        "preview_error": preview_error, "sent": sent, "contact_q": contact_q, "base": _base(request),
        "contacts": await _contact_choices(request, contact_q, preview),
        "merge_fields": await service.merge_field_names(actor_of(request)),
    }
    return render_page(request, "campaigns/templates_edit.html", context, status=status)


async def _preview(request: Request, values: dict[str, str], contact_id: int | None
                   ) -> tuple[Preview | None, str]:
    """(preview, "") or (None, the reason it cannot be shown), in the workspace's language."""
    try:
        return await service.preview_draft(actor_of(request), values["subject"], values["html_body"],
                                           values["text_body"], contact_id), ""
    except RecordsRefusal as exc:
        return None, _t(request, exc.message)


async def _act(request: Request, template: dict[str, Any] | None) -> Response:
    """Handle the form's buttons: save, preview, test (send to yourself)."""
    form = await read_form(request)
    values = _values(form)
    action = form_str(form, "action") or "save"
    contact_q = form_str(form, "contact_q")
    contact_id = _contact_id(form_str(form, "contact_id"))
    actor = actor_of(request)
    if action in ("preview", "find"):
        preview, problem = await _preview(request, values, contact_id)
        return await _form(request, template, values, preview=preview, preview_error=problem, contact_q=contact_q)
    if action == "test":
        try:
            sent = await service.send_test(actor, template_id=template["id"] if template else None,
                                           content=(values["subject"], values["html_body"], values["text_body"]))
        except RecordsRefusal as exc:
            if exc.status == 404:
                return _not_found(request, exc)
            return await _form(request, template, values, errors=_refusal(request, exc), contact_q=contact_q,
                               status=exc.status)
        preview, problem = await _preview(request, values, contact_id)
        return await _form(request, template, values, sent=sent, preview=preview, preview_error=problem,
                           contact_q=contact_q)
    try:
        if template is None:
            saved = await service.create_template(actor, EmailTemplateIn.model_validate(values))
        else:
            saved = await service.update_template(actor, template["id"], EmailTemplatePatch.model_validate(values))
    except ValidationError as exc:
        errors = validation_fields(exc, request.state.caller.tenant.locale)
        return await _form(request, template, values, errors=errors, contact_q=contact_q, status=422)
    except RecordsRefusal as exc:
        if exc.status == 404:
            return _not_found(request, exc)
        return await _form(request, template, values, errors=_refusal(request, exc), contact_q=contact_q,
                           status=exc.status)
    flag = "created" if template is None else "saved"
    return RedirectResponse(f"{_base(request)}/{saved['id']}?{flag}=1", status_code=303)


async def template_new(request: Request) -> Response:
    if request.method == "GET":
        # the same check the save makes, before anyone writes a template they could not keep
        policy = getattr(request.state, "policy", None)
        if policy is not None:
            policy.require("email_templates", "create")
        values = {"name": "", "subject": "", "html_body": "", "text_body": ""}
        return await _form(request, None, values)
    return await _act(request, None)


async def template_edit(request: Request) -> Response:
    try:
        template = await service.get_template(actor_of(request), _path_id(request))
    except RecordsRefusal as exc:
        return _not_found(request, exc)
    if request.method == "GET":
        values = {k: str(template.get(k) or "") for k in FIELDS}
        # a saved template opens with its preview: every merge field at its default
        preview, problem = await _preview(request, values, None)
        return await _form(request, template, values, preview=preview, preview_error=problem)
    return await _act(request, template)


async def template_preview(request: Request) -> Response:
    """The live preview of the form's content, for the page's script (JSON)."""
    form = await read_form(request)
    values = _values(form)
    try:
        preview = await service.preview_draft(actor_of(request), values["subject"], values["html_body"],
                                              values["text_body"], _contact_id(form_str(form, "contact_id")))
    except RecordsRefusal as exc:
        return JSONResponse({"error": _t(request, exc.message)}, status_code=exc.status)
    return JSONResponse({"subject": preview.subject, "html": preview.html, "text": preview.text,
                         "contact_id": preview.contact_id, "contact_name": preview.contact_name})


async def template_delete(request: Request) -> Response:
    actor = actor_of(request)
    try:
        template = await service.get_template(actor, _path_id(request))
    except RecordsRefusal as exc:
        return _not_found(request, exc)
    if request.method == "GET":
        return render_page(request, "campaigns/templates_delete.html", {"template": template, "base": _base(request)})
    await read_form(request)
    try:
        await service.delete_template(actor, template["id"])
    except RecordsRefusal as exc:
        if exc.status != 404:
            raise
        # deleted meanwhile: the outcome the person asked for
    return RedirectResponse(f"{_base(request)}?deleted=1", status_code=303)


routes: list[Route] = [
    Route("/t/{slug}/campaigns/templates", template_list),
    Route("/t/{slug}/campaigns/templates/new", template_new, methods=["GET", "POST"]),
    Route("/t/{slug}/campaigns/templates/preview", template_preview, methods=["POST"]),
    Route("/t/{slug}/campaigns/templates/{template_id}", template_edit, methods=["GET", "POST"]),
    Route("/t/{slug}/campaigns/templates/{template_id}/delete", template_delete, methods=["GET", "POST"]),
]
