"""Emails Kith sends, recorded before they leave (public schema)."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class OutboxEmail(Model):
    id = fields.BigIntField(primary_key=True)
    tenant: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "kith.Tenant", related_name="emails", null=True
    )
    kind = fields.TextField()
    dedupe_key = fields.TextField()
    to_address = fields.TextField()
    subject = fields.TextField()
    body_text = fields.TextField()
    status = fields.CharField(max_length=20, default="pending")
    error = fields.TextField(default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    sent_at = fields.DatetimeField(null=True)

    class Meta:
        table = "outbox_emails"
        schema = "public"
