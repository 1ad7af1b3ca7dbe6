"""People and how they get in (public schema): one identity may belong to several workspaces."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Identity(Model):
    id = fields.BigIntField(primary_key=True)
    email = fields.TextField()
    display_name = fields.TextField(default="")
    password_hash = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)
    last_login_at = fields.DatetimeField(null=True)

    class Meta:
        table = "identities"
        schema = "public"


class Membership(Model):
    id = fields.BigIntField(primary_key=True)
    tenant: fields.ForeignKeyRelation = fields.ForeignKeyField("kith.Tenant", related_name="memberships")
    identity: fields.ForeignKeyRelation = fields.ForeignKeyField("kith.Identity", related_name="memberships")
    role = fields.CharField(max_length=20, default="member")
    is_active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "memberships"
        schema = "public"


class WebSession(Model):
    id = fields.BigIntField(primary_key=True)
    token_hash = fields.TextField()
    identity: fields.ForeignKeyRelation = fields.ForeignKeyField("kith.Identity", related_name="sessions")
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    ip = fields.TextField(default="")
    user_agent = fields.TextField(default="")

    class Meta:
        table = "web_sessions"
        schema = "public"


class ApiToken(Model):
    id = fields.BigIntField(primary_key=True)
    tenant: fields.ForeignKeyRelation = fields.ForeignKeyField("kith.Tenant", related_name="api_tokens")
    identity: fields.ForeignKeyRelation = fields.ForeignKeyField("kith.Identity", related_name="api_tokens")
    name = fields.TextField()
    prefix = fields.TextField()
    token_hash = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_tokens"
        schema = "public"
