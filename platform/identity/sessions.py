"""Server-side web sessions: the cookie holds a random token, the database its hash,
so logging out (or deactivating a person) ends the session at once."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kith.platform.db import platform_tx
from kith.platform.identity.models import Identity, Membership, WebSession
from kith.platform.identity.passwords import DUMMY_HASH, verify_password
from kith.platform.tenancy.models import Tenant

SESSION_LIFETIME = timedelta(days=14)


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass
class SessionUser:
    identity: Identity
    session_id: int


async def authenticate_password(email: str, password: str) -> Identity | None:
    """The identity if email and password match; same work either way."""
    async with platform_tx() as tx:
        identity = await Identity.filter(email__iexact=email.strip()).using_db(tx).first()
        if identity is None:
            verify_password(DUMMY_HASH, password)
            return None
        if not verify_password(identity.password_hash, password):
            return None
        identity.last_login_at = datetime.now(UTC)
        await identity.save(update_fields=["last_login_at"], using_db=tx)
        return identity


async def start_session(identity: Identity, *, ip: str = "", user_agent: str = "") -> str:
    """Create a session and return the raw token for the cookie."""
    raw = secrets.token_urlsafe(32)
    async with platform_tx() as tx:
        await WebSession.create(
            token_hash=token_hash(raw), identity=identity, expires_at=datetime.now(UTC) + SESSION_LIFETIME,
            ip=ip[:64], user_agent=user_agent[:300], using_db=tx,
        )
    return raw


async def load_session(raw: str) -> SessionUser | None:
    if not raw:
        return None
    async with platform_tx() as tx:
        session = await WebSession.filter(
            token_hash=token_hash(raw), expires_at__gt=datetime.now(UTC)
        ).using_db(tx).select_related("identity").first()
    if session is None:
        return None
    return SessionUser(identity=session.identity, session_id=session.id)


async def end_session(raw: str) -> None:
    async with platform_tx() as tx:
        await WebSession.filter(token_hash=token_hash(raw)).using_db(tx).delete()


async def membership_for(identity_id: int, tenant_id: int) -> Membership | None:
    """The active membership of a person in a workspace, or None."""
    async with platform_tx() as tx:
        return await Membership.filter(
            identity_id=identity_id, tenant_id=tenant_id, is_active=True
        ).using_db(tx).first()


async def workspaces_of(identity_id: int) -> list[Tenant]:
    async with platform_tx() as tx:
        return await Tenant.filter(
            memberships__identity_id=identity_id, memberships__is_active=True, status__in=["active", "suspended"]
        ).using_db(tx).order_by("name")
