"""People and how they get in (public schema): one identity may belong to several workspaces."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from kith.platform.tenancy.models import Tenant


class Identity(Model):
    id = fields.BigIntField(primary_key=True)
    email = fields.TextField()
    display_name = fields.TextField(default="")
    password_hash = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)
    last_login_at = fields.DatetimeField(null=True)
    # when the person proved they read mail at `email` (a verification link, or an invitation's)
    email_verified_at = fields.DatetimeField(null=True)
    # TOTP two-factor authentication: the active secret, one being enrolled (not yet
    # confirmed with a code), when it was turned on, and the last time-step accepted (a
    # code is refused unless its step is later, so one code never works twice).
    totp_secret = fields.TextField(null=True)
    totp_pending_secret = fields.TextField(null=True)
    totp_enabled_at = fields.DatetimeField(null=True)
    totp_last_step = fields.BigIntField(null=True)

    class Meta:
        table = "identities"
        schema = "public"


class Membership(Model):
    id = fields.BigIntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField("kith.Tenant", related_name="memberships")
    identity: fields.ForeignKeyRelation[Identity] = fields.ForeignKeyField("kith.Identity", related_name="memberships")
    role = fields.TextField(default="sales")  # a role key: built-in or a tenant's custom role
    is_active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "memberships"
        schema = "public"


class WebSession(Model):
    id = fields.BigIntField(primary_key=True)
    token_hash = fields.TextField()
    identity: fields.ForeignKeyRelation[Identity] = fields.ForeignKeyField("kith.Identity", related_name="sessions")
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    ip = fields.TextField(default="")
    user_agent = fields.TextField(default="")
    last_seen_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "web_sessions"
        schema = "public"


class RecoveryCode(Model):
    """A single-use stand-in for a TOTP code; only its SHA-256 is stored."""

    id = fields.BigIntField(primary_key=True)
    identity: fields.ForeignKeyRelation[Identity] = fields.ForeignKeyField(
        "kith.Identity", related_name="recovery_codes"
    )
    code_hash = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "recovery_codes"
        schema = "public"


class LoginChallenge(Model):
    """Password accepted, second factor owed: short-lived, and never a session."""

    id = fields.BigIntField(primary_key=True)
    token_hash = fields.TextField()
    identity: fields.ForeignKeyRelation[Identity] = fields.ForeignKeyField(
        "kith.Identity", related_name="login_challenges"
    )
    next_url = fields.TextField(default="")
    attempts = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()

    class Meta:
        table = "login_challenges"
        schema = "public"


class ApiToken(Model):
    id = fields.BigIntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField("kith.Tenant", related_name="api_tokens")
    tenant_id: int  # the foreign keys' columns, which Tortoise sets; declared for type checkers
    identity: fields.ForeignKeyRelation[Identity] = fields.ForeignKeyField("kith.Identity", related_name="api_tokens")
    identity_id: int
    name = fields.TextField()
    prefix = fields.TextField()
    token_hash = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_tokens"
        schema = "public"
