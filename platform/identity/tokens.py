"""API tokens: per person and workspace, shown once, stored as a SHA-256 hash
(they are 256-bit random, so a fast hash is enough and lookups stay one index probe).

Creating and revoking a token is audited in the token's workspace, in the same
transaction as the change (token rows live in public, reached by qualified name from
inside the tenant's scope).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kith.platform.access.actor import Actor
from kith.platform.audit.log import append_entry
from kith.platform.db import TenantUnavailable, platform_tx, tenant_scope
from kith.platform.identity.events import ClientInfo
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


def _actor(tenant_id: int, identity: Identity, role: str, client: ClientInfo) -> Actor:
    return Actor(kind="user", tenant_id=tenant_id, role=role, identity_id=identity.id, label=identity.email,
                 ip=client.ip, user_agent=client.user_agent, request_id=client.request_id)


async def create_api_token(
    *, tenant_id: int, identity_id: int, name: str, client: ClientInfo | None = None
) -> tuple[ApiToken, str]:
    """Create a token; returns it with the raw secret, which is never stored.

    `client` says where the request came from, for the audit entry (the CLI passes none).
    """
    name = name.strip()
    if not name:
        raise TokenError("Token name is required.")
    if len(name) > 100:
        raise TokenError("Token name must be at most 100 characters long.")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with tenant_scope(tenant_id) as tx:
        member = await Membership.filter(
            tenant_id=tenant_id, identity_id=identity_id, is_active=True
        ).using_db(tx).select_related("identity").first()
        if member is None:
            raise TokenError("That person is not an active member of this workspace.")
        token = await ApiToken.create(
            tenant_id=tenant_id, identity_id=identity_id, name=name, prefix=raw[:12],
            token_hash=token_hash(raw), using_db=tx,
        )
        await append_entry(tx, _actor(tenant_id, member.identity, member.role, client or ClientInfo()),
                           action="token.create", object_type="api_token", object_id=token.id,
                           diff={"name": name, "prefix": token.prefix})
    return token, raw


async def authenticate_token(raw: str, client: ClientInfo | None = None) -> TokenAuth | None:
    """The token's tenant and person, if the token is live and the membership active.

    Use is audited ("token.use") at most once per token per minute, alongside last_used_at:
    an entry per request would double every API call's cost and bury the log, while a
    minute's granularity still answers "was this token used, when and from where".
    """
    if not raw.startswith(TOKEN_PREFIX):
        return None
    first_use_this_minute = False
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
            # conditional, so of concurrent first requests only one records the use
            first_use_this_minute = bool(await ApiToken.filter(
                id=token.id, last_used_at=token.last_used_at
            ).using_db(tx).update(last_used_at=now))
            token.last_used_at = now
    if first_use_this_minute:
        await _audit_use(token, member, client or ClientInfo())
    return TokenAuth(token=token, tenant=token.tenant, identity=token.identity, membership=member)


async def _audit_use(token: ApiToken, member: Membership, client: ClientInfo) -> None:
    actor = Actor(kind="token", tenant_id=token.tenant_id, role=member.role, identity_id=token.identity_id,
                  label=token.identity.email, token_id=token.id, ip=client.ip, user_agent=client.user_agent,
                  request_id=client.request_id)
    try:
        async with tenant_scope(token.tenant_id) as tx:
            await append_entry(tx, actor, action="token.use", object_type="api_token", object_id=token.id,
                               diff={"prefix": token.prefix})
    except TenantUnavailable:
        pass  # the workspace went away meanwhile; the edge refuses the request anyway


async def tokens_of(tenant_id: int, identity_id: int) -> list[ApiToken]:
    async with platform_tx() as tx:
        return await ApiToken.filter(tenant_id=tenant_id, identity_id=identity_id).using_db(tx).order_by("-id")


async def revoke_api_token(
    *, tenant_id: int, identity_id: int, token_id: int, client: ClientInfo | None = None
) -> bool:
    """Revoke one of the person's live tokens in a workspace; False if there is none such."""
    async with tenant_scope(tenant_id) as tx:
        token = await ApiToken.filter(
            id=token_id, tenant_id=tenant_id, identity_id=identity_id, revoked_at=None
        ).using_db(tx).select_related("identity").first()
        # conditional on still being live, so of two parallel revokes only one is audited
        if token is None or not await ApiToken.filter(id=token.id, revoked_at=None).using_db(tx).update(
                revoked_at=datetime.now(UTC)):
            return False
        member = await Membership.filter(tenant_id=tenant_id, identity_id=identity_id).using_db(tx).first()
        # a former member may still revoke what they left behind; the entry then names no role
        role = member.role if member is not None else ""
        await append_entry(tx, _actor(tenant_id, token.identity, role, client or ClientInfo()),
                           action="token.revoke", object_type="api_token", object_id=token.id,
                           diff={"name": token.name, "prefix": token.prefix})
    return True


async def revoke_own_token(identity_id: int, token_id: int, client: ClientInfo) -> bool:
    """Revoke one of the person's tokens, in whichever workspace it belongs to."""
    async with platform_tx() as tx:
        token = await ApiToken.filter(id=token_id, identity_id=identity_id, revoked_at=None).using_db(tx).first()
    if token is None:
        return False
    try:
        return await revoke_api_token(tenant_id=token.tenant_id, identity_id=identity_id, token_id=token_id,
                                      client=client)
    except TenantUnavailable:
        # the workspace was deleted: its tokens no longer authenticate anyway (and it keeps no log)
        async with platform_tx() as tx:
            changed = await ApiToken.filter(id=token_id, identity_id=identity_id, revoked_at=None).using_db(
                tx).update(revoked_at=datetime.now(UTC))
        return bool(changed)
