"""Contacts live in the tenant's schema: the table name is unqualified on purpose,
so it resolves only inside a tenant scope."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Contact(Model):
    id = fields.BigIntField(primary_key=True)
    name = fields.TextField()
    email = fields.TextField(default="")
    phone = fields.TextField(default="")
    company_name = fields.TextField(default="")
    notes = fields.TextField(default="")
    marketing_consent = fields.TextField(default="unknown")  # unknown | granted | withdrawn
    consent_source = fields.TextField(default="")
    consent_at = fields.DatetimeField(null=True)
    unsubscribed_at = fields.DatetimeField(null=True)
    erased_at = fields.DatetimeField(null=True)
    created_by_id = fields.BigIntField(null=True)
    owner_id = fields.BigIntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "contacts"
