"""API tokens: per person and workspace, shown once, stored as a SHA-256 hash
(they are 256-bit random, so a fast hash is enough and lookups stay one index probe)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kith.platform.db import platform_tx
from kith.platform.identity.models import ApiToken, Identity, Membership
from kith.platform.identity.sessions import token_hash
from kith.platform.tenancy.models import Tenant

TOKEN_PREFIX = "kith_"  # noqa: S105 - a public marker, not a secret
_LAST_USED_GRANULARITY = timedelta(minutes=1)


class TokenError(ValueError):
    pass


@dataclass
class TokenAuth:
    token: ApiToken
    tenant: Tenant
    identity: Identity
    membership: Membership


async def create_api_token(*, tenant_id: int, identity_id: int, name: str) -> tuple[ApiToken, str]:
    """Create a token; returns it with the raw secret, which is never stored."""
    name = name.strip()
    if not name:
        raise TokenError("Token name is required.")
    if len(name) > 100:
        raise TokenError("Token name must be at most 100 characters long.")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with platform_tx() as tx:
        member = await Membership.filter(
            tenant_id=tenant_id, identity_id=identity_id, is_active=True
        ).using_db(tx).first()
        if member is None:
            raise TokenError("That person is not an active member of this workspace.")
        token = await ApiToken.create(
            tenant_id=tenant_id, identity_id=identity_id, name=name, prefix=raw[:12],
            token_hash=token_hash(raw), using_db=tx,
        )
    return token, raw


async def authenticate_token(raw: str) -> TokenAuth | None:
    """The token's tenant and person, if the token is live and the membership active."""
    if not raw.startswith(TOKEN_PREFIX):
        return None
    async with platform_tx() as tx:
        token = await ApiToken.filter(token_hash=token_hash(raw), revoked_at=None).using_db(tx).select_related(
            "tenant", "identity"
        ).first()
        if token is None:
            return None
        member = await Membership.filter(
            tenant_id=token.tenant_id, identity_id=token.identity_id, is_active=True
        ).using_db(tx).first()
        if member is None:
            return None
        now = datetime.now(UTC)
        if token.last_used_at is None or now - token.last_used_at > _LAST_USED_GRANULARITY:
            token.last_used_at = now
            await token.save(update_fields=["last_used_at"], using_db=tx)
    return TokenAuth(token=token, tenant=token.tenant, identity=token.identity, membership=member)


async def tokens_of(tenant_id: int, identity_id: int) -> list[ApiToken]:
    async with platform_tx() as tx:
        return await ApiToken.filter(tenant_id=tenant_id, identity_id=identity_id).using_db(tx).order_by("-id")


async def revoke_api_token(*, tenant_id: int, identity_id: int, token_id: int) -> bool:
    async with platform_tx() as tx:
        changed = await ApiToken.filter(
            id=token_id, tenant_id=tenant_id, identity_id=identity_id, revoked_at=None
        ).using_db(tx).update(revoked_at=datetime.now(UTC))
    return bool(changed)
