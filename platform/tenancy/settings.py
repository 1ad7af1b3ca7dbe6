"""Workspace settings (name, logo, locale, time zone, default currency and phone region)
and the workspace's usage.

Changes need the workspace permission manage_settings and are audited with before/after
in the same transaction. Logos are PNG, JPEG or WebP of at most 256 KB, recognised by
their bytes (not by what the browser claims); SVG is refused because an SVG is a document
that can carry scripts and links, and serving tenant-supplied SVG from our origin would
be a stored XSS waiting for a missed header.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import available_timezones

import phonenumbers
from babel.numbers import list_currencies
from pydantic import BaseModel, ConfigDict, field_validator

from kith.platform.access.actor import Actor
from kith.platform.access.session import acting_as
from kith.platform.db import platform_tx, tenant_schema
from kith.platform.tenancy.provisioning import TenantNameError, validate_company_name

LOCALES: dict[str, str] = {"en": "English", "zh-CN": "简体中文 (Simplified Chinese)"}
LOGO_MAX_BYTES = 256 * 1024
LOGO_TYPES = ("image/png", "image/jpeg", "image/webp")


@functools.cache
def time_zones() -> tuple[str, ...]:
    """Every IANA time zone name this system knows, sorted (for validation and the form)."""
    return tuple(sorted(available_timezones()))


@functools.cache
def currencies() -> tuple[str, ...]:
    """ISO 4217 codes (from Babel's CLDR data), sorted."""
    return tuple(sorted(c for c in list_currencies() if len(c) == 3 and c.isalpha() and c.isupper()))


@functools.cache
def phone_regions() -> tuple[str, ...]:
    """Regions phonenumbers can parse national numbers for, sorted."""
    return tuple(sorted(phonenumbers.SUPPORTED_REGIONS))


class WorkspaceOut(BaseModel):
    """A workspace's settings."""

    name: str
    slug: str
    locale: str
    time_zone: str
    default_currency: str
    default_phone_region: str | None
    logo_url: str | None


class WorkspacePatch(BaseModel):
    """Settings to change; fields left out stay as they are. An empty default_phone_region
    clears it (phone numbers then need a leading +)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    locale: str | None = None
    time_zone: str | None = None
    default_currency: str | None = None
    default_phone_region: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return validate_company_name(value)
        except TenantNameError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        if value is not None and value not in LOCALES:
            raise ValueError(f"Choose one of the languages offered: {', '.join(LOCALES)}.")
        return value

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if value not in time_zones():
            raise ValueError(f"'{value[:60]}' is not a time zone; use an IANA name such as Europe/Paris or "
                             "Asia/Shanghai.")
        return value

    @field_validator("default_currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().upper()
        if code not in currencies():
            raise ValueError(f"'{value[:10]}' is not an ISO 4217 currency code (for example USD, EUR, CNY).")
        return code

    @field_validator("default_phone_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().upper()
        if code == "":
            return ""
        if code not in phone_regions():
            raise ValueError(f"'{value[:10]}' is not a region phone numbers can be read for; use a two-letter "
                             "code such as US, GB or CN.")
        return code


class SettingsError(ValueError):
    """Bad settings input: per-field messages."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


_COLUMNS = ("name", "locale", "time_zone", "default_currency", "default_phone_region")


def _logo_url(slug: str, updated: datetime | None) -> str | None:
    return f"/t/{slug}/logo?v={int(updated.timestamp())}" if updated is not None else None


def _out(row: dict[str, Any]) -> WorkspaceOut:
    return WorkspaceOut(name=row["name"], slug=row["slug"], locale=row["locale"], time_zone=row["time_zone"],
                        default_currency=row["default_currency"],
                        default_phone_region=row["default_phone_region"],
                        logo_url=_logo_url(row["slug"], row["logo_updated_at"]))


_SELECT = ("SELECT slug, name, locale, time_zone, default_currency, default_phone_region, logo_updated_at"
           " FROM public.tenants WHERE id = $1")


async def get_workspace(actor: Actor) -> WorkspaceOut:
    """The workspace's settings (needs manage_settings)."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        rows = await session.tx.execute_query_dict(_SELECT, [actor.tenant_id])
    return _out(rows[0])


async def update_workspace(actor: Actor, patch: WorkspacePatch) -> WorkspaceOut:
    """Change the settings given in `patch`; one audit entry with before/after of what changed."""
    wanted = patch.model_dump(exclude_unset=True, exclude_none=True)
    if wanted.get("default_phone_region") == "":
        wanted["default_phone_region"] = None
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        row = (await session.tx.execute_query_dict(_SELECT + " FOR UPDATE", [actor.tenant_id]))[0]
        before = {k: row[k] for k in _COLUMNS if k in wanted and row[k] != wanted[k]}
        after = {k: wanted[k] for k in before}
        if after:
            sets = ", ".join(f"{k} = ${n}" for n, k in enumerate(after, start=2))
            await session.tx.execute_query(f"UPDATE public.tenants SET {sets}, updated_at = now() WHERE id = $1",
                                           [actor.tenant_id, *after.values()])
            await session.audit("workspace.update", "workspace", actor.tenant_id, {"before": before, "after": after})
            row = {**row, **after}
    return _out(row)


def sniff_logo(data: bytes) -> str:
    """The content type of an acceptable logo, judged by its bytes; SettingsError otherwise."""
    if not data:
        raise SettingsError({"logo": "Choose an image file."})
    if len(data) > LOGO_MAX_BYTES:
        raise SettingsError({"logo": f"The logo is {len(data) // 1024} KB; it must be at most "
                                     f"{LOGO_MAX_BYTES // 1024} KB."})
    head = data[:512].lstrip().lower()
    if head.startswith(b"<svg") or head.startswith(b"<?xml") or b"<svg" in head:
        raise SettingsError({"logo": "SVG logos are not accepted (an SVG can contain scripts); "
                                     "upload a PNG, JPEG or WebP image."})
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise SettingsError({"logo": "The logo must be a PNG, JPEG or WebP image."})


async def set_logo(actor: Actor, data: bytes) -> WorkspaceOut:
    """Replace the workspace's logo (validated by `sniff_logo`); audited with sizes and types."""
    content_type = sniff_logo(data)
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        old = await session.tx.execute_query_dict(
            "SELECT content_type, octet_length(data) AS size FROM public.tenant_logos WHERE tenant_id = $1",
            [actor.tenant_id])
        await session.tx.execute_query(
            "INSERT INTO public.tenant_logos (tenant_id, content_type, data) VALUES ($1, $2, $3)"
            " ON CONFLICT (tenant_id) DO UPDATE SET content_type = EXCLUDED.content_type, data = EXCLUDED.data,"
            " updated_at = now()", [actor.tenant_id, content_type, data])
        await session.tx.execute_query(
            "UPDATE public.tenants SET logo_updated_at = clock_timestamp() WHERE id = $1", [actor.tenant_id])
        before = {"content_type": old[0]["content_type"], "bytes": old[0]["size"]} if old else None
        await session.audit("workspace.logo", "workspace", actor.tenant_id,
                            {"before": before, "after": {"content_type": content_type, "bytes": len(data)}})
        row = (await session.tx.execute_query_dict(_SELECT, [actor.tenant_id]))[0]
    return _out(row)


async def remove_logo(actor: Actor) -> WorkspaceOut:
    """Remove the workspace's logo."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        old = await session.tx.execute_query_dict(
            "DELETE FROM public.tenant_logos WHERE tenant_id = $1 RETURNING content_type, octet_length(data) AS size",
            [actor.tenant_id])
        if old:
            await session.tx.execute_query("UPDATE public.tenants SET logo_updated_at = NULL WHERE id = $1",
                                           [actor.tenant_id])
            await session.audit("workspace.logo", "workspace", actor.tenant_id, {
                "before": {"content_type": old[0]["content_type"], "bytes": old[0]["size"]}, "after": None})
        row = (await session.tx.execute_query_dict(_SELECT, [actor.tenant_id]))[0]
    return _out(row)


async def logo_of(tenant_id: int) -> tuple[str, bytes] | None:
    """The workspace's logo (content type, bytes), for members' pages; None when it has none."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT content_type, data FROM public.tenant_logos WHERE tenant_id = $1", [tenant_id])
    return (str(rows[0]["content_type"]), bytes(rows[0]["data"])) if rows else None


# --- usage ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageLine:
    name: str  # seats, contacts, emails_per_month, storage_mb
    used: int
    limit: int | None  # None: unlimited, or no plan known


@dataclass(frozen=True)
class Usage:
    lines: tuple[UsageLine, ...]
    storage_bytes: int
    plan_name: str | None  # None when billing could not say which plan applies


async def _plan(tenant_id: int) -> Any:
    # Billing integration point: `current_plan` needs billing's subscriptions; until they
    # exist (or if billing fails to answer) the page shows usage without limits.
    try:
        from kith.platform.billing.plans import current_plan

        return await current_plan(tenant_id)
    except ImportError:
        return None


async def usage(actor: Actor) -> Usage:
    """Seats (active members), contacts, emails this month (outbox rows since the first of the
    month, UTC) and storage (total size of the tenant schema's tables, indexes and TOAST)."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        rows = await session.tx.execute_query_dict(
            "SELECT (SELECT count(*) FROM public.memberships WHERE tenant_id = $1 AND is_active) AS seats,"
            " (SELECT count(*) FROM contacts) AS contacts,"
            " (SELECT count(*) FROM public.outbox_emails WHERE tenant_id = $1"
            "   AND created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') AS emails,"
            " (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            "   JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $2 AND c.relkind IN ('r', 'm'))"
            "   AS storage",
            [actor.tenant_id, tenant_schema(actor.tenant_id)],
        )
    r = rows[0]
    plan = await _plan(actor.tenant_id)
    storage = int(r["storage"])

    def limit(name: str) -> int | None:
        return plan.limit(name) if plan is not None else None

    lines = (
        UsageLine("seats", int(r["seats"]), limit("seats")),
        UsageLine("contacts", int(r["contacts"]), limit("contacts")),
        UsageLine("emails_per_month", int(r["emails"]), limit("emails_per_month")),
        UsageLine("storage_mb", -(-storage // (1024 * 1024)), limit("storage_mb")),
    )
    return Usage(lines, storage, plan.name if plan is not None else None)
