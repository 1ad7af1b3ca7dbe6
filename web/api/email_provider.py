"""The email provider API: GET /email-provider (the workspace's choice, never a secret), PUT
/email-provider (choose the platform's email, the workspace's own SMTP server or its own SES
account) and POST /email-provider/check (connect with the saved settings and report).

All three need the workspace permission manage_settings, checked below the web layer
(kith.tenants.campaigns.provider_settings)."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import Literal, TypeVar

from pydantic import BaseModel, Field
from starlette.requests import Request

from kith.tenants.campaigns import provider_settings as service
from kith.tenants.campaigns.provider_settings import EmailProviderIn, ProviderSettings
from kith.tenants.records.refusals import RecordsRefusal
from kith.web.api.registry import endpoint
from kith.web.edge import actor_of
from kith.web.errors import ApiError

TAG = "email provider"
PERMISSION = ("workspace", "manage_settings")
T = TypeVar("T")


class EmailProviderOut(BaseModel):
    kind: Literal["platform", "smtp", "ses"] = Field(description=(
        "platform: Kith's own email (see platform_kind); smtp: the workspace's SMTP server; ses: its SES account."))
    smtp_host: str
    smtp_port: int
    smtp_username: str
    smtp_password_set: bool = Field(description="Whether a password is stored; the password itself is never returned.")
    smtp_starttls: bool
    ses_region: str
    ses_access_key_id: str
    ses_secret_access_key_set: bool = Field(description="Whether a secret access key is stored; never returned.")
    updated_at: datetime | None = Field(description="Null: never changed (the platform's email).")
    updated_by_id: int | None
    platform_kind: Literal["ses", "smtp", "outbox"] = Field(description=(
        "What Kith's own email is on this installation: Amazon SES, an SMTP server, or the dev outbox."))
    platform_where: str = Field(description="Its SES region or SMTP host:port; empty for the dev outbox.")


class EmailProviderCheckOut(BaseModel):
    ok: bool
    message: str = Field(description="What the server said: success details, or why the connection failed.")
    kind: Literal["smtp", "ses", "outbox"] = Field(description="What was checked.")


def _out(found: ProviderSettings) -> EmailProviderOut:
    return EmailProviderOut.model_validate(found, from_attributes=True)


async def _run(call: Awaitable[T]) -> T:
    """Await a provider settings action, turning its refusals into API errors."""
    try:
        return await call
    except RecordsRefusal as exc:
        raise ApiError(exc.status, exc.code, exc.message, fields=exc.fields) from None


@endpoint("GET", "/email-provider", summary="Get how the workspace sends campaign email (never a secret)", tag=TAG,
          permission=PERMISSION, response=EmailProviderOut, errors=(401, 403))
async def get_email_provider(request: Request, body: None) -> BaseModel:
    return _out(await service.get_provider_settings(actor_of(request)))


@endpoint("PUT", "/email-provider", summary="Choose how the workspace sends campaign email", tag=TAG,
          permission=PERMISSION, body=EmailProviderIn, response=EmailProviderOut, errors=(400, 401, 403, 422))
async def put_email_provider(request: Request, body: EmailProviderIn) -> BaseModel:
    return _out(await _run(service.save_provider_settings(actor_of(request), body)))


@endpoint("POST", "/email-provider/check", summary="Connect to the saved email provider and report what it said",
          tag=TAG, permission=PERMISSION, response=EmailProviderCheckOut, errors=(401, 403))
async def check_email_provider(request: Request, body: None) -> BaseModel:
    found = await _run(service.check_provider(actor_of(request)))
    return EmailProviderCheckOut(ok=found.ok, message=found.message, kind=found.kind)
