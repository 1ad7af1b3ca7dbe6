"""The tenant registry (public schema)."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class TenantStatus(StrEnum):
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DELETED = "deleted"


class Tenant(Model):
    id = fields.BigIntField(primary_key=True)
    slug = fields.TextField()
    name = fields.TextField()
    schema_name = fields.TextField()
    status = fields.CharEnumField(TenantStatus, max_length=20, default=TenantStatus.PROVISIONING)
    canary = fields.BooleanField(default=False)
    schema_version = fields.IntField(default=0)
    # workspace settings (public migration 0008); the logo's bytes are in public.tenant_logos
    locale = fields.TextField(default="en")
    time_zone = fields.TextField(default="UTC")
    default_currency = fields.TextField(default="USD")
    default_phone_region = fields.TextField(null=True)
    logo_updated_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "tenants"
        schema = "public"

    def __str__(self) -> str:
        return self.slug
