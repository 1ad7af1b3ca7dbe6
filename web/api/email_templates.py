"""The email templates API: list, read, create, change, delete, preview for a contact, test send.

Handlers validate input and call one action of kith.tenants.campaigns.template_service with the
caller as Actor; permission checks (object type "email_templates") happen there."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from kith.tenants.campaigns import template_service as service
from kith.tenants.campaigns.template_service import EmailTemplateIn, EmailTemplatePatch
from kith.tenants.records.refusals import RecordsRefusal
from kith.web.api.registry import QueryParam, endpoint
from kith.web.edge import actor_of
from kith.web.errors import ApiError

T = TypeVar("T")
TAG = "email templates"


class EmailTemplateSummary(BaseModel):
    id: int
    name: str = ""
    subject: str = ""
    created_by_id: int | None = None
    created_at: datetime
    updated_at: datetime


class EmailTemplateList(BaseModel):
    items: list[EmailTemplateSummary]


class EmailTemplateOut(EmailTemplateSummary):
    html_body: str = ""
    text_body: str = ""


class EmailTemplatePreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_id: int | None = Field(default=None, description=(
        "Fill the template in with this contact's values (as your role may see them); none: every merge "
        "field shows its default."))


class EmailTemplatePreviewOut(BaseModel):
    subject: str
    html: str
    text: str
    contact_id: int | None = None
    contact_name: str = ""


class EmailTestSendOut(BaseModel):
    to: str = Field(description="Your own address: a test goes to you alone.")
    subject: str
    message_id: str
    provider: str = Field(description="smtp, ses or outbox (the dev outbox at /dev/outbox).")


async def _run(call: Awaitable[T]) -> T:
    """Await a template action, turning its refusals into API errors."""
    try:
        return await call
    except RecordsRefusal as exc:
        raise ApiError(exc.status, exc.code, exc.message, fields=exc.fields) from None


def _id(request: Request) -> int:
    raw = str(request.path_params["template_id"])
    if not raw.isdigit():
        raise ApiError(404, "not_found", "There is no such email template.")
    return int(raw)


def _out(row: dict[str, Any]) -> EmailTemplateOut:
    return EmailTemplateOut(**row)


@endpoint("GET", "/email-templates", summary="List email templates by name (without their bodies)",
          permission=("email_templates", "view"), response=EmailTemplateList, errors=(401, 403), tag=TAG,
          query=(QueryParam("q", "Text to find in the name or subject (any script, e.g. 新品)."),))
async def list_email_templates(request: Request, body: None) -> BaseModel:
    rows = await service.list_templates(actor_of(request), q=request.query_params.get("q", "")[:200])
    return EmailTemplateList(items=[EmailTemplateSummary(**row) for row in rows])


@endpoint("POST", "/email-templates", summary="Save a new email template (checked: 422 names each problem and line)",
          permission=("email_templates", "create"), body=EmailTemplateIn, response=EmailTemplateOut, status=201,
          errors=(400, 401, 403, 409, 422), tag=TAG)
async def create_email_template(request: Request, body: EmailTemplateIn) -> BaseModel:
    return _out(await _run(service.create_template(actor_of(request), body)))


@endpoint("GET", "/email-templates/{template_id}", summary="Get one email template",
          permission=("email_templates", "view"), response=EmailTemplateOut, errors=(401, 403, 404), tag=TAG)
async def get_email_template(request: Request, body: None) -> BaseModel:
    return _out(await _run(service.get_template(actor_of(request), _id(request))))


@endpoint("PATCH", "/email-templates/{template_id}", summary="Change an email template (checked again as a whole)",
          permission=("email_templates", "edit"), body=EmailTemplatePatch, response=EmailTemplateOut,
          errors=(400, 401, 403, 404, 409, 422), tag=TAG)
async def update_email_template(request: Request, body: EmailTemplatePatch) -> BaseModel:
    return _out(await _run(service.update_template(actor_of(request), _id(request), body)))


@endpoint("DELETE", "/email-templates/{template_id}",
          summary="Delete an email template (campaigns made from it keep their copy)",
          permission=("email_templates", "delete"), status=204, errors=(401, 403, 404), tag=TAG)
async def delete_email_template(request: Request, body: None) -> None:
    await _run(service.delete_template(actor_of(request), _id(request)))


@endpoint("POST", "/email-templates/{template_id}/preview",
          summary="Fill a template in for a contact you may see (404 for one you may not)",
          permission=("email_templates", "view"), body=EmailTemplatePreviewIn, response=EmailTemplatePreviewOut,
          errors=(400, 401, 403, 404, 422), tag=TAG)
async def preview_email_template(request: Request, body: EmailTemplatePreviewIn) -> BaseModel:
    preview = await _run(service.preview_template(actor_of(request), _id(request), body.contact_id))
    return EmailTemplatePreviewOut(subject=preview.subject, html=preview.html, text=preview.text,
                                   contact_id=preview.contact_id, contact_name=preview.contact_name)


@endpoint("POST", "/email-templates/{template_id}/test-send",
          summary="Send the template to yourself, filled in with your own name and address",
          permission=("email_templates", "edit"), response=EmailTestSendOut, errors=(401, 403, 404, 422, 502), tag=TAG)
async def test_send_email_template(request: Request, body: None) -> BaseModel:
    sent = await _run(service.send_test(actor_of(request), template_id=_id(request)))
    return EmailTestSendOut(to=sent.to, subject=sent.subject, message_id=sent.message_id, provider=sent.provider)
