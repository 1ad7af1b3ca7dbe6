"""Workspace settings and usage pages (manage_settings, checked by the actions), and the
workspace's logo for its members' pages."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.platform.tenancy import settings as workspace
from kith.web.edge import actor_of
from kith.web.errors import validation_fields
from kith.web.forms import form_str, read_form, render

_FIELDS = ("name", "locale", "time_zone", "default_currency", "default_phone_region")
_USAGE_LABELS = {"seats": "Seats (active members)", "contacts": "Contacts",
                 "emails_per_month": "Emails this month", "storage_mb": "Storage (MB)"}


def _choices() -> dict[str, Any]:
    return {"locales": workspace.LOCALES, "time_zones": workspace.time_zones(),
            "currencies": workspace.currencies(), "regions": workspace.phone_regions()}


async def settings_page(request: Request) -> Response:
    actor = actor_of(request)
    if request.method == "GET":
        current = await workspace.get_workspace(actor)
        values = {k: getattr(current, k) or "" for k in _FIELDS}
        return render(request, "workspace/settings.html", {
            **_choices(), "values": values, "errors": {}, "current": current,
            "saved": request.query_params.get("saved", "")})
    form = await read_form(request)
    try:
        return await _save(request, form)
    finally:
        await form.close()  # an uploaded logo is a temporary file


async def _save(request: Request, form: FormData) -> Response:
    actor = actor_of(request)
    values = {k: form_str(form, k) for k in _FIELDS}
    errors: dict[str, str] = {}
    patch: workspace.WorkspacePatch | None = None
    try:
        patch = workspace.WorkspacePatch.model_validate(values)
    except ValidationError as exc:
        errors.update(validation_fields(exc))
    upload = form.get("logo")
    logo: bytes | None = None
    if isinstance(upload, UploadFile) and upload.filename:
        logo = await upload.read()
        try:
            workspace.sniff_logo(logo)
        except workspace.SettingsError as exc:
            errors.update(exc.fields)
    if errors or patch is None:
        # nothing is written unless every field is valid
        current = await workspace.get_workspace(actor)
        return render(request, "workspace/settings.html", {
            **_choices(), "values": values, "errors": errors, "current": current, "saved": ""}, status=422)
    result = await workspace.update_workspace(actor, patch)
    if logo is not None:
        result = await workspace.set_logo(actor, logo)
    elif form_str(form, "remove_logo") == "on":
        result = await workspace.remove_logo(actor)
    return RedirectResponse(f"/t/{result.slug}/settings/workspace?saved=1", status_code=303)


async def usage_page(request: Request) -> Response:
    found = await workspace.usage(actor_of(request))
    return render(request, "workspace/usage.html", {"usage": found, "labels": _USAGE_LABELS})


async def logo(request: Request) -> Response:
    """The logo, for any member (the header shows it); bytes are served as the type they
    were recognised as, never sniffed, and with a policy that runs nothing."""
    found = await workspace.logo_of(request.state.caller.tenant.id)
    if found is None:
        return Response(status_code=404)
    content_type, data = found
    return Response(data, media_type=content_type, headers={
        "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'",
        "Cache-Control": "private, max-age=86400"})


routes = [
    Route("/t/{slug}/settings/workspace", settings_page, methods=["GET", "POST"]),
    Route("/t/{slug}/settings/usage", usage_page, methods=["GET"]),
    Route("/t/{slug}/logo", logo, methods=["GET"]),
]
