"""API tokens: per person and workspace, shown once, stored as a SHA-256 hash
(they are 256-bit random, so a fast hash is enough and lookups stay one index probe).

Creating and revoking a token is audited in the token's workspace, in the same
transaction as the change (token rows live in public, reached by qualified name from
inside the tenant's scope).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from tortoise.models import Model

from kith.platform.access.actor import Actor
from kith.platform.audit.log import append_entry
from kith.platform.db import TenantUnavailable, fetchrow_alone, platform_tx, tenant_scope
from kith.platform.identity.events import ClientInfo
from kith.platform.identity.models import ApiToken, Identity, Membership
from kith.platform.identity.sessions import token_hash
from kith.platform.tenancy.models import Tenant

TOKEN_PREFIX = "kith_"  # noqa: S105 - a public marker, not a secret
_LAST_USED_GRANULARITY = timedelta(minutes=1)
M = TypeVar("M", bound=Model)


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


def _columns(alias: str, model: type[Model]) -> list[str]:
    return [f'{alias}.{c} AS "{alias}.{c}"' for c in sorted(model._meta.db_fields)]


_AUTH_SQL: str | None = None


def _auth_sql() -> str:
    """The one statement that authenticates a token (built once the ORM knows its models' columns).

    It finds the live token (not revoked) with its workspace, person and *active* membership,
    and in the same statement records the use when the last one is older than a minute. The
    UPDATE's condition is re-checked on the row's newest version when requests race (READ
    COMMITTED), so of concurrent first requests of a minute only one records the use; `_used`
    says whether this one did. The workspace's status is not filtered here: the edge tells a
    suspended (403) from a deleted workspace (404), as before.
    """
    global _AUTH_SQL
    if _AUTH_SQL is None:
        selected = ", ".join(_columns("t", ApiToken) + _columns("n", Tenant) + _columns("i", Identity)
                             + _columns("m", Membership))
        _AUTH_SQL = (
            f"WITH found AS (SELECT {selected} FROM public.api_tokens t"  # noqa: S608 - names from the models
            " JOIN public.tenants n ON n.id = t.tenant_id"
            " JOIN public.identities i ON i.id = t.identity_id"
            " JOIN public.memberships m ON m.tenant_id = t.tenant_id AND m.identity_id = t.identity_id"
            "  AND m.is_active"
            " WHERE t.token_hash = $1 AND t.revoked_at IS NULL LIMIT 1),"
            " used AS (UPDATE public.api_tokens u SET last_used_at = $2 FROM found"
            "  WHERE u.id = found.\"t.id\""
            "  AND (u.last_used_at IS NULL OR u.last_used_at < $2::timestamptz - $3::interval)"
            "  RETURNING u.id)"
            " SELECT found.*, EXISTS (SELECT 1 FROM used) AS _used FROM found"
        )
    return _AUTH_SQL


def _model(model: type[M], alias: str, row: Mapping[str, Any]) -> M:
    prefix = f"{alias}."
    return model._init_from_db(**{c: row[prefix + c] for c in model._meta.db_fields})


async def authenticate_token(raw: str, client: ClientInfo | None = None) -> TokenAuth | None:
    """The token's tenant and person, if the token is live and the membership active.

    One statement on its own (autocommit; behind PgBouncer's transaction pooling a single
    statement is its own transaction): no BEGIN/COMMIT, nothing cached, so a revoked token or
    a deactivated membership is refused from the next request on.

    Use is audited ("token.use") at most once per token per minute, alongside last_used_at:
    an entry per request would double every API call's cost and bury the log, while a
    minute's granularity still answers "was this token used, when and from where".
    """
    if not raw.startswith(TOKEN_PREFIX):
        return None
    now = datetime.now(UTC)
    row = await fetchrow_alone(_auth_sql(), token_hash(raw), now, _LAST_USED_GRANULARITY)
    if row is None:
        return None
    token = _model(ApiToken, "t", row)
    tenant = _model(Tenant, "n", row)
    identity = _model(Identity, "i", row)
    member = _model(Membership, "m", row)
    token.tenant, token.identity = tenant, identity
    if row["_used"]:
        token.last_used_at = now
        await _audit_use(token, member, client or ClientInfo())
    return TokenAuth(token=token, tenant=tenant, identity=identity, membership=member)


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
