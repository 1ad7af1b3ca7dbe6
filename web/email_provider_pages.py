"""Settings › Email sending (/t/<slug>/settings/email; manage_settings, checked by the actions in
kith.tenants.campaigns.provider_settings): send campaign email through the platform's provider,
the workspace's own SMTP server or its own Amazon SES account.

One form works without JavaScript: every field is there, grouped by kind in fieldsets, and only
the chosen kind's fields are read (a small inline script hides the others). Its two buttons are
Save (action=save, then back to the page with ?saved=1) and Check connection (action=check),
which checks the values in the form without saving them (a blank password is the stored one)
and shows the server's answer on the page. Passwords and secrets are never shown back.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.tenants.campaigns import provider_settings as service
from kith.tenants.campaigns.provider_settings import CheckResult, EmailProviderIn, ProviderSettings
from kith.tenants.records.refusals import RecordsRefusal
from kith.web.edge import actor_of
from kith.web.errors import validation_fields
from kith.web.forms import form_str, read_form, render
from kith.web.i18n import gettext_for

# the form's fields of each kind; the other kinds' are not read
KIND_FIELDS = {
    "smtp": ("smtp_host", "smtp_port", "smtp_username", "smtp_password", "smtp_starttls"),
    "ses": ("ses_region", "ses_access_key_id", "ses_secret_access_key"),
    "platform": (),
}
SECRET_FIELDS = ("smtp_password", "ses_secret_access_key")


def _path(request: Request) -> str:
    return f"/t/{request.state.caller.tenant.slug}/settings/email"


def _values(current: ProviderSettings) -> dict[str, Any]:
    """The form's values from the saved settings (secrets stay blank)."""
    return {"kind": current.kind, "smtp_host": current.smtp_host, "smtp_port": str(current.smtp_port),
            "smtp_username": current.smtp_username, "smtp_starttls": current.smtp_starttls,
            "ses_region": current.ses_region, "ses_access_key_id": current.ses_access_key_id}


def _submitted(form: FormData) -> dict[str, Any]:
    """What the form asks for, as the model takes it: the chosen kind and its fields alone."""
    kind = form_str(form, "kind")
    data: dict[str, Any] = {"kind": kind}
    for name in KIND_FIELDS.get(kind, ()):
        data[name] = form_str(form, name) == "on" if name == "smtp_starttls" else form_str(form, name)
    return data


def _shown(form: FormData) -> dict[str, Any]:
    """The form's values to show again after a refusal or a check (secrets stay blank)."""
    shown: dict[str, Any] = {name: form_str(form, name) for fields in KIND_FIELDS.values() for name in fields
                             if name not in SECRET_FIELDS}
    shown["kind"] = form_str(form, "kind")
    shown["smtp_starttls"] = form_str(form, "smtp_starttls") == "on"
    return shown


async def _page(request: Request, *, values: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
                checked: CheckResult | None = None, status: int = 200) -> Response:
    current = await service.get_provider_settings(actor_of(request))
    return render(request, "admin/email_provider.html", {
        "provider": current, "values": values if values is not None else _values(current), "errors": errors or {},
        "checked": checked, "saved": request.query_params.get("saved", "") == "1",
    }, status=status)


def _translated(request: Request, fields: dict[str, str]) -> dict[str, str]:
    locale = request.state.caller.tenant.locale
    return {k: gettext_for(locale, v) for k, v in fields.items()}


async def email_provider_page(request: Request) -> Response:
    if request.method == "GET":
        return await _page(request)
    form = await read_form(request)
    action = form_str(form, "action") or "save"
    actor = actor_of(request)
    try:
        data = EmailProviderIn.model_validate(_submitted(form))
        if action == "check":
            checked = await service.check_provider(actor, data)
            return await _page(request, values=_shown(form), checked=checked)
        await service.save_provider_settings(actor, data)
    except ValidationError as exc:
        errors = validation_fields(exc, request.state.caller.tenant.locale)
        return await _page(request, values=_shown(form), errors=errors, status=422)
    except RecordsRefusal as exc:
        return await _page(request, values=_shown(form), errors=_translated(request, exc.fields), status=exc.status)
    return RedirectResponse(f"{_path(request)}?saved=1", status_code=303)


routes = [
    Route("/t/{slug}/settings/email", email_provider_page, methods=["GET", "POST"]),
]
