"""Where a workspace's campaign email goes: the platform's provider, its own SMTP server, or its own
Amazon SES account (Settings › Email sending; GET/PUT /api/v1/email-provider).

The choice is one row of the workspace's `email_provider` table (tenant migration 0014); no row
means 'platform', which is `providers.provider_for`: the platform's SES, SMTP or dev outbox.
The SMTP password and the SES secret access key are encrypted at rest (kith.platform.crypto,
bound to the column and the workspace) and never leave this module except into a provider:
reads say only whether one is set, the audit entry only that it changed.

The sending engine reads the row once per job (`provider_factory`) and makes one provider per
concurrent sender from it, so every sender of a job uses the same settings and a change made
while a campaign sends applies from its next job. A stored secret that no key of the keyring
opens any more does not crash the job: its providers refuse every email with that reason, so
the campaign pauses saying what to do.

Rules of a change (`save_provider_settings`, needs the workspace permission manage_settings,
audited as "email_provider.update"): a password or secret left blank keeps the stored one,
except that a stored SMTP password is only ever sent to the host it was given for (changing
the host needs it again); switching kind clears the other kind's settings and secrets.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kith.platform.access.actor import Actor
from kith.platform.access.session import acting_as
from kith.platform.config import get_settings
from kith.platform.crypto import DecryptionError, decrypt, encrypt
from kith.platform.db import tenant_scope
from kith.platform.observability import get_logger
from kith.tenants.campaigns.providers import (
    OutgoingEmail,
    Provider,
    ProviderError,
    SesProvider,
    Settle,
    SmtpProvider,
    provider_for,
)
from kith.tenants.records.refusals import RecordsRefusal

log = get_logger("kith.campaigns")

OBJECT = "email_provider"
Kind = Literal["platform", "smtp", "ses"]
DEFAULT_SMTP_PORT = 587
CHECK_TIMEOUT_S = 15.0  # a check waits this long for a mail server's answers
SECRETS = ("smtp_password", "ses_secret_access_key")
_SETTINGS = ("kind", "smtp_host", "smtp_port", "smtp_username", "smtp_starttls", "ses_region", "ses_access_key_id")
_EMPTY: dict[str, Any] = {"kind": "platform", "smtp_host": "", "smtp_port": DEFAULT_SMTP_PORT, "smtp_username": "",
                          "smtp_password": None, "smtp_starttls": True, "ses_region": "", "ses_access_key_id": "",
                          "ses_secret_access_key": None, "updated_at": None, "updated_by_id": None}

PORT_MESSAGE = "The port must be a whole number from 1 to 65535."
HOST_MESSAGE = "Give a host name such as smtp.example.com or an IP address, without a port."
PRIVATE_MESSAGE = "Give the address of a mail server on the internet; private and local addresses are not allowed."
SCHEME_MESSAGE = "Give the server's host name alone, without smtp:// (for example smtp.example.com)."
REGION_MESSAGE = "The region must look like us-east-1."
KEY_ID_MESSAGE = "An access key ID is 16 to 128 capital letters and digits, such as AKIAIOSFODNN7EXAMPLE."
SECRET_MESSAGE = "The secret access key cannot contain spaces."  # noqa: S105 - a message
HOST_REQUIRED = "Give the host name of your SMTP server."
PASSWORD_REQUIRED = "Give the password for this user name."  # noqa: S105 - a message
PASSWORD_AGAIN = "Enter the password again: a stored password is only sent to the server it was given for."  # noqa: S105 - a message
USERNAME_REQUIRED = "A password is only used with a user name; give the user name too."
REGION_REQUIRED = "Give the AWS region of your SES account, such as us-east-1."
KEY_ID_REQUIRED = "Give the access key ID of an IAM user allowed to send with SES."
SECRET_REQUIRED = "Give the secret access key that belongs to this access key ID."  # noqa: S105 - a message

_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}\.?$){_DNS_LABEL}(?:\.{_DNS_LABEL})*\.?$")
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")
_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")


def secret_context(column: str, tenant_id: int) -> str:
    """What a secret's ciphertext is bound to: its column and its workspace."""
    return f"email_provider.{column}:{int(tenant_id)}"


class EmailProviderIn(BaseModel):
    """The workspace's email provider as a whole: the kind, and the settings of that kind (the
    other kind's are ignored and cleared)."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind = Field(description="platform: Kith's own email; smtp: your SMTP server; ses: your Amazon SES "
                                   "account.")
    smtp_host: str = Field(default="", max_length=253, description="Required for smtp: smtp.example.com.")
    smtp_port: int | None = Field(default=None, description=f"1-65535; empty: {DEFAULT_SMTP_PORT}. Kith "
                                  "connects with STARTTLS or plain SMTP (not implicit TLS on 465).")
    smtp_username: str = Field(default="", max_length=320, description="Empty: no login.")
    smtp_password: str | None = Field(default=None, max_length=1000, description=(
        "Empty or left out: keep the stored password (only while the host stays the same)."))
    smtp_starttls: bool = Field(default=True, description="Require STARTTLS before logging in and sending.")
    ses_region: str = Field(default="", max_length=40, description="Required for ses: us-east-1.")
    ses_access_key_id: str = Field(default="", max_length=128, description="Required for ses.")
    ses_secret_access_key: str | None = Field(default=None, max_length=256, description=(
        "Empty or left out: keep the stored secret."))

    @field_validator("smtp_port", mode="before")
    @classmethod
    def _port(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, str) and value.strip().isdecimal():
            value = int(value.strip())  # also full-width digits typed with a Chinese input method
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise ValueError(PORT_MESSAGE)
        return value

    @field_validator("smtp_host")
    @classmethod
    def _host(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return ""
        if "://" in value:
            raise ValueError(SCHEME_MESSAGE)
        try:
            ip = ipaddress.ip_address(value.removeprefix("[").removesuffix("]"))
        except ValueError:
            pass
        else:
            if not ip.is_global and not get_settings().workspace_smtp_private:
                raise ValueError(PRIVATE_MESSAGE)
            return str(ip)
        try:
            ascii_name = value.encode("idna").decode("ascii")  # 邮件.例子.中国 -> xn--...
        except UnicodeError:
            raise ValueError(HOST_MESSAGE) from None
        if not _HOST_NAME.match(ascii_name):
            raise ValueError(HOST_MESSAGE)
        return ascii_name.lower()

    @field_validator("smtp_username", "ses_access_key_id")
    @classmethod
    def _trimmed(cls, value: str) -> str:
        return value.strip()

    @field_validator("ses_region")
    @classmethod
    def _region(cls, value: str) -> str:
        value = value.strip().lower()
        if value and not _REGION.match(value):
            raise ValueError(REGION_MESSAGE)
        return value

    @field_validator("ses_access_key_id")
    @classmethod
    def _key_id(cls, value: str) -> str:
        if value and not _KEY_ID.match(value):
            raise ValueError(KEY_ID_MESSAGE)
        return value

    @field_validator("ses_secret_access_key")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        value = (value or "").strip()
        if any(c.isspace() for c in value):
            raise ValueError(SECRET_MESSAGE)
        return value or None


@dataclass(frozen=True)
class ProviderSettings:
    """The workspace's email provider as people and the API see it: never a secret, only whether
    one is stored; and what 'platform' means here (the platform's own provider)."""

    kind: str
    smtp_host: str
    smtp_port: int
    smtp_username: str
    smtp_password_set: bool
    smtp_starttls: bool
    ses_region: str
    ses_access_key_id: str
    ses_secret_access_key_set: bool
    updated_at: datetime | None
    updated_by_id: int | None
    platform_kind: str   # ses, smtp or outbox: what the platform's provider is
    platform_where: str  # its SES region or SMTP host:port ("" for the outbox)


@dataclass(frozen=True)
class CheckResult:
    """A connection check: whether it worked and, either way, what the server said."""

    ok: bool
    message: str
    kind: str  # what was checked: smtp, ses or outbox


class InvalidProviderSettings(RecordsRefusal):
    """Settings that cannot be used, with a message at each field (422)."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(422, "invalid_input", " ".join(fields.values()), fields=fields)


def platform_provider() -> tuple[str, str]:
    """(kind, where) of the platform's provider, as `provider_for` chooses it."""
    settings = get_settings()
    if settings.ses_region:
        return "ses", settings.ses_region
    if settings.smtp_host:
        return "smtp", f"{settings.smtp_host}:{settings.smtp_port}"
    return "outbox", ""


def _public(row: dict[str, Any] | None) -> ProviderSettings:
    r = row or _EMPTY
    platform_kind, platform_where = platform_provider()
    return ProviderSettings(
        kind=r["kind"], smtp_host=r["smtp_host"], smtp_port=int(r["smtp_port"]), smtp_username=r["smtp_username"],
        smtp_password_set=r["smtp_password"] is not None, smtp_starttls=bool(r["smtp_starttls"]),
        ses_region=r["ses_region"], ses_access_key_id=r["ses_access_key_id"],
        ses_secret_access_key_set=r["ses_secret_access_key"] is not None, updated_at=r["updated_at"],
        updated_by_id=r["updated_by_id"], platform_kind=platform_kind, platform_where=platform_where)


async def _row(tx: Any, *, lock: bool = False) -> dict[str, Any] | None:
    rows = await tx.execute_query_dict("SELECT * FROM email_provider WHERE id = 1" + (" FOR UPDATE" if lock else ""))
    return rows[0] if rows else None


async def load_provider_settings(tenant_id: int) -> ProviderSettings:
    """The workspace's provider settings without secrets (for Kith's own code; people and the API
    go through `get_provider_settings`, which checks the permission)."""
    async with tenant_scope(tenant_id) as tx:
        return _public(await _row(tx))


async def get_provider_settings(actor: Actor) -> ProviderSettings:
    """The workspace's provider settings without secrets (needs manage_settings)."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        return _public(await _row(session.tx))


def _revealed(row: dict[str, Any], column: str, tenant_id: int) -> str:
    token = row[column]
    return "" if token is None else decrypt(str(token), secret_context(column, tenant_id))


def _resolve(data: EmailProviderIn, stored: dict[str, Any] | None, tenant_id: int) -> dict[str, Any]:
    """The row `data` asks for, given what is stored: secrets encrypted, a blank one kept, the other
    kind's settings cleared. InvalidProviderSettings names each field that stops it."""
    before = stored or _EMPTY
    same_kind = before["kind"] == data.kind
    values = {k: v for k, v in _EMPTY.items() if k not in ("updated_at", "updated_by_id")}
    values["kind"] = data.kind
    errors: dict[str, str] = {}

    def secret(column: str, given: str | None) -> str | None:
        """The token to store for a secret `given` (None: keep the stored one, if any)."""
        kept: str | None = before[column] if same_kind else None
        if not given:
            return kept
        try:
            if kept is not None and _revealed(before, column, tenant_id) == given:
                return kept  # the same secret typed again: no change
        except DecryptionError:
            pass
        return encrypt(given, secret_context(column, tenant_id))

    if data.kind == "smtp":
        values.update(smtp_host=data.smtp_host, smtp_port=data.smtp_port or DEFAULT_SMTP_PORT,
                      smtp_username=data.smtp_username, smtp_starttls=data.smtp_starttls)
        if not data.smtp_host:
            errors["smtp_host"] = HOST_REQUIRED
        if data.smtp_password and not data.smtp_username:
            errors["smtp_username"] = USERNAME_REQUIRED
        elif data.smtp_username:  # without a user name there is no login, and no password is kept
            values["smtp_password"] = secret("smtp_password", data.smtp_password)
            moved = same_kind and data.smtp_host != before["smtp_host"]
            if values["smtp_password"] is None:
                errors["smtp_password"] = PASSWORD_REQUIRED
            elif not data.smtp_password and moved:
                # whoever may change the settings must not learn the password by pointing the host elsewhere
                errors["smtp_password"] = PASSWORD_AGAIN
    elif data.kind == "ses":
        values.update(ses_region=data.ses_region, ses_access_key_id=data.ses_access_key_id)
        if not data.ses_region:
            errors["ses_region"] = REGION_REQUIRED
        if not data.ses_access_key_id:
            errors["ses_access_key_id"] = KEY_ID_REQUIRED
        values["ses_secret_access_key"] = secret("ses_secret_access_key", data.ses_secret_access_key)
        other_key = same_kind and data.ses_access_key_id != before["ses_access_key_id"]
        if values["ses_secret_access_key"] is None or (other_key and not data.ses_secret_access_key):
            errors["ses_secret_access_key"] = SECRET_REQUIRED  # a secret belongs to one access key
    if errors:
        raise InvalidProviderSettings(errors)
    return values


def _audit_diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """{field: [before, after]} of what changed; a secret only says that it was set or replaced,
    never its value or its ciphertext."""
    diff: dict[str, Any] = {k: [before[k], after[k]] for k in _SETTINGS if before[k] != after[k]}
    for column in SECRETS:
        if before[column] != after[column]:
            diff[column] = ["set" if before[column] is not None else None,
                            "new value" if after[column] is not None else None]
    return diff


async def save_provider_settings(actor: Actor, data: EmailProviderIn) -> ProviderSettings:
    """Choose the workspace's email provider (needs manage_settings); one audit entry naming what
    changed (secrets only as "set"/"new value"). Nothing changes when a field is refused."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        stored = await _row(session.tx, lock=True)
        before = stored or _EMPTY
        after = _resolve(data, stored, actor.tenant_id)
        diff = _audit_diff(before, after)
        if not diff:
            return _public(stored)
        columns = list(after)
        placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
        rows = await session.tx.execute_query_dict(
            f"INSERT INTO email_provider (id, {', '.join(columns)}, updated_at, updated_by_id)"
            f" VALUES (1, {placeholders}, now(), ${len(columns) + 1}) ON CONFLICT (id) DO UPDATE SET {updates},"
            " updated_at = now(), updated_by_id = EXCLUDED.updated_by_id RETURNING *",
            [*after.values(), actor.identity_id])
        await session.audit("email_provider.update", OBJECT, None, diff)
        return _public(rows[0])


# --- providers for the sending engine ---------------------------------------------------------

ProviderFactory = Callable[[], Provider]


class _Unusable:
    """The workspace's own provider whose secret cannot be read: every email is refused with the
    reason, which pauses the campaign (a configuration problem) instead of failing the job."""

    name = "unusable"

    def __init__(self, message: str) -> None:
        self.message = message

    async def send(self, email: OutgoingEmail, settle: Settle | None = None) -> str:
        raise ProviderError(self.message)

    async def close(self) -> None:
        return None


def _factory(row: dict[str, Any] | None, tenant_id: int) -> ProviderFactory:
    kind = row["kind"] if row else "platform"
    if row is None or kind == "platform":
        return lambda: provider_for(tenant_id)
    try:
        password = _revealed(row, "smtp_password", tenant_id)
        secret = _revealed(row, "ses_secret_access_key", tenant_id)
    except DecryptionError as exc:
        what = "SMTP password" if kind == "smtp" else "SES secret access key"
        log.error("email_provider_unreadable", tenant_id=tenant_id, error=str(exc))
        reason = (f"the workspace's {what} cannot be decrypted with Kith's current keys ({exc}); enter it again "
                  "in Settings › Email sending")
        return lambda: _Unusable(reason)
    if kind == "smtp":
        host, port, username, starttls = row["smtp_host"], int(row["smtp_port"]), row["smtp_username"], \
            bool(row["smtp_starttls"])
        private_ok = get_settings().workspace_smtp_private
        return lambda: SmtpProvider(host, port, username=username, password=password, starttls=starttls, own=True,
                                    private_ok=private_ok)
    region, key_id = row["ses_region"], row["ses_access_key_id"]
    endpoint = get_settings().ses_endpoint_url or None
    return lambda: SesProvider(region, endpoint_url=endpoint, access_key_id=key_id, secret_access_key=secret)


async def provider_factory_in(tx: Any, tenant_id: int) -> ProviderFactory:
    """`provider_factory` inside a transaction already in the workspace's scope (a test send)."""
    ready = await tx.execute_query_dict("SELECT to_regclass('email_provider') IS NOT NULL AS ready")
    # a schema not migrated to 0014 yet (during a roll-out) has no settings: the platform's provider
    return _factory(await _row(tx) if ready[0]["ready"] else None, tenant_id)


async def provider_factory(tenant_id: int) -> ProviderFactory:
    """Read the workspace's provider settings once and return a function making a new provider
    from them, one per concurrent sender (each to be closed by its sender)."""
    async with tenant_scope(tenant_id) as tx:
        return await provider_factory_in(tx, tenant_id)


# --- Check connection -------------------------------------------------------------------------

def _said(message: str) -> str:
    # the provider's words are written for a campaign that will retry; a check does not
    return message.removesuffix("; will retry").replace("; will retry", "")


async def _check_smtp(provider: SmtpProvider) -> CheckResult:
    """Connect (STARTTLS and login as configured), then QUIT; the server's words either way."""
    try:
        greeting = await provider.check()  # the sending path's own connect, with its error mapping
    except ProviderError as exc:
        message = _said(exc.message)
        if provider.port == 465 and "did not answer" in message:
            message += (" Port 465 expects TLS from the first byte, which Kith does not use: use port 587 "
                        "with STARTTLS.")
        return CheckResult(False, message, "smtp")
    done = [f"Connected to {provider.where}"]
    if provider.starttls:
        done.append("switched to TLS (STARTTLS)")
    if provider.username:
        done.append(f"signed in as {provider.username}")
    said = f"; the server introduced itself as {greeting}" if greeting else ""
    return CheckResult(True, ", ".join(done) + said + ".", "smtp")


_DENIED = {401, 403}


async def _check_ses(provider: SesProvider) -> CheckResult:
    """List the account's identities: proves the region, the endpoint and the credentials, and says
    which addresses and domains SES lets it send from. (sesv2 GetAccount would say more, but moto,
    against which Kith tests SES, does not answer it.)"""
    try:
        answer = await asyncio.to_thread(provider.client.list_email_identities, PageSize=100)
    except (ClientError, BotoCoreError) as exc:
        message = _said(provider._failure(exc, "", "").message)
        if isinstance(exc, ClientError):
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if status in _DENIED:
                message += " (this check lists the account's identities, so it also needs ses:ListEmailIdentities)"
        return CheckResult(False, message, "ses")
    finally:
        await provider.close()
    verified = [str(i["IdentityName"]) for i in answer.get("EmailIdentities", [])
                if i.get("VerificationStatus") == "SUCCESS" and i.get("SendingEnabled", True)]
    if not verified:
        return CheckResult(True, f"{provider.endpoint} accepted the credentials. No address or domain is verified "
                                 "yet: verify the one your campaigns are sent from before sending.", "ses")
    shown = ", ".join(verified[:10]) + (f" and {len(verified) - 10} more" if len(verified) > 10 else "")
    return CheckResult(True, f"{provider.endpoint} accepted the credentials. Verified: {shown}.", "ses")


async def check_provider(actor: Actor, data: EmailProviderIn | None = None) -> CheckResult:
    """Connect to the workspace's provider and report (needs manage_settings): SMTP connects, logs
    in as configured and quits; SES lists the account's identities; the dev outbox has nothing to
    reach. `data` checks settings being edited (a blank secret is the stored one) without saving
    them; None checks what is saved. Nothing is held open in the database while the server answers."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        stored = await _row(session.tx)
    row = stored or _EMPTY
    if data is not None:
        row = {**row, **_resolve(data, stored, actor.tenant_id)}
    settings = get_settings()
    if row["kind"] == "platform":
        if settings.ses_region:
            return await _check_ses(SesProvider(settings.ses_region, endpoint_url=settings.ses_endpoint_url or None))
        if settings.smtp_host:
            platform = SmtpProvider.from_settings(settings)
            platform._timeout = CHECK_TIMEOUT_S  # a person waits for the answer
            return await _check_smtp(platform)
        return CheckResult(True, "The dev outbox keeps every email at /dev/outbox; there is no server to reach.",
                           "outbox")
    try:
        password = _revealed(row, "smtp_password", actor.tenant_id)
        secret = _revealed(row, "ses_secret_access_key", actor.tenant_id)
    except DecryptionError as exc:
        return CheckResult(False, f"The stored secret cannot be decrypted ({exc}); enter it again and save.",
                           row["kind"])
    if row["kind"] == "smtp":
        return await _check_smtp(SmtpProvider(row["smtp_host"], int(row["smtp_port"]), username=row["smtp_username"],
                                              password=password, starttls=bool(row["smtp_starttls"]),
                                              timeout=CHECK_TIMEOUT_S, own=True,
                                              private_ok=settings.workspace_smtp_private))
    return await _check_ses(SesProvider(row["ses_region"], endpoint_url=settings.ses_endpoint_url or None,
                                        access_key_id=row["ses_access_key_id"], secret_access_key=secret))
