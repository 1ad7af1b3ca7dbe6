"""The privacy API: a contact's data-subject export and its erasure.

Both call one action in tenants/contacts/privacy.py, where permissions, record scope and
hidden fields are enforced and the request is audited."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from kith.tenants.contacts import privacy, queries
from kith.tenants.contacts.schemas import ContactOut
from kith.web.api.contacts import _contact_id, _not_found
from kith.web.api.registry import endpoint
from kith.web.edge import actor_of


class ContactExport(BaseModel):
    """Everything Kith holds about one contact, as the caller's role may see it (a JSON file)."""

    format: str = Field(description="kith.contact-export/1")
    exported_at: str
    contact_id: int
    contact: dict[str, Any] = Field(description="The record; fields hidden from the role are absent.")
    consent: dict[str, Any] | None = Field(description="Consent state and its history; null when hidden.")
    audit_entries: list[dict[str, Any]] = Field(description="Audit entries about the contact, values decrypted "
                                                "or '[erased]'.")
    emails: list[dict[str, Any]] = Field(description="Emails Kith queued to the contact's address here.")
    fields_withheld: list[str] = Field(description="Fields left out because the role may not see them.")


def export_response(export: dict[str, Any]) -> Response:
    """The export as a download: JSON, named after the contact."""
    return Response(
        privacy.export_json(export), media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="contact-{int(export["contact_id"])}.json"'},
    )


@endpoint("GET", "/contacts/{contact_id}/export", summary="Export everything held about a contact (JSON file)",
          permission=("contacts", "export"), response=ContactExport, errors=(401, 403, 404), tag="privacy")
async def export_contact(request: Request, body: None) -> Response:
    try:
        return export_response(await privacy.export_contact(actor_of(request), _contact_id(request)))
    except queries.ContactNotFound:
        raise _not_found() from None


@endpoint("POST", "/contacts/{contact_id}/erase",
          summary="Erase a contact on request: pseudonymize it everywhere and destroy its audit key",
          permission=("contacts", "delete"), response=ContactOut, errors=(401, 403, 404), tag="privacy")
async def erase_contact(request: Request, body: None) -> BaseModel:
    try:
        return ContactOut(**await privacy.erase_contact(actor_of(request), _contact_id(request)))
    except queries.ContactNotFound:
        raise _not_found() from None
