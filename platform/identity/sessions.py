"""Server-side web sessions: the cookie holds a random token, the database its hash,
so logging out (or deactivating a person) ends the session at once."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise.backends.base.client import TransactionalDBClient

from kith.platform.db import platform_tx
from kith.platform.identity.models import Identity, LoginChallenge, Membership, WebSession
from kith.platform.identity.passwords import DUMMY_HASH, verify_password
from kith.platform.tenancy.models import Tenant

SESSION_LIFETIME = timedelta(days=14)
# "Last seen" is written at most this often, so a busy session costs no write per request.
LAST_SEEN_GRANULARITY = timedelta(minutes=1)
# Between password and second factor: long enough to open an authenticator app, short
# enough that a stolen half-login cookie is worth little; a few tries, then start over.
CHALLENGE_LIFETIME = timedelta(minutes=5)
CHALLENGE_MAX_ATTEMPTS = 5


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass
class SessionUser:
    identity: Identity
    session_id: int


@dataclass
class PasswordCheck:
    """The result of checking a sign-in password: who the email names (if anyone), and
    whether the password matched. The identity is kept on a mismatch so the failure can
    be audited against the account it targeted."""

    identity: Identity | None
    ok: bool


async def check_password(email: str, password: str) -> PasswordCheck:
    """Check an email and password; the same work is done whether the email exists or not."""
    async with platform_tx() as tx:
        identity = await Identity.filter(email__iexact=email.strip()).using_db(tx).first()
    if identity is None:
        verify_password(DUMMY_HASH, password)
        return PasswordCheck(None, False)
    return PasswordCheck(identity, verify_password(identity.password_hash, password))


async def identity_id_for_email(email: str) -> int | None:
    """The id of the identity with this email (any case), or None."""
    async with platform_tx() as tx:
        found = await Identity.filter(email__iexact=email.strip()).using_db(tx).only("id").first()
    return found.id if found is not None else None


async def mark_signed_in(identity_id: int) -> None:
    """Record a completed sign-in (all factors passed)."""
    async with platform_tx() as tx:
        await Identity.filter(id=identity_id).using_db(tx).update(last_login_at=datetime.now(UTC))


async def start_session(identity: Identity, *, ip: str = "", user_agent: str = "") -> str:
    """Create a session and return the raw token for the cookie."""
    raw = secrets.token_urlsafe(32)
    async with platform_tx() as tx:
        await WebSession.create(
            token_hash=token_hash(raw), identity=identity, expires_at=datetime.now(UTC) + SESSION_LIFETIME,
            ip=ip[:64], user_agent=user_agent[:300], using_db=tx,
        )
    return raw


async def load_session(raw: str, within: TransactionalDBClient | None = None) -> SessionUser | None:
    """The live session of a cookie's token, or None; `within` shares the caller's transaction."""
    if not raw:
        return None
    async with platform_tx(within) as tx:
        session = await WebSession.filter(
            token_hash=token_hash(raw), expires_at__gt=datetime.now(UTC)
        ).using_db(tx).select_related("identity").first()
        if session is None:
            return None
        now = datetime.now(UTC)
        if now - session.last_seen_at >= LAST_SEEN_GRANULARITY:
            await WebSession.filter(id=session.id).using_db(tx).update(last_seen_at=now)
    return SessionUser(identity=session.identity, session_id=session.id)


async def end_session(raw: str) -> None:
    async with platform_tx() as tx:
        await WebSession.filter(token_hash=token_hash(raw)).using_db(tx).delete()


async def purge_expired_sessions(*, batch: int = 5_000) -> int:
    """Delete web sessions and login challenges that expired (nobody can use them: every read
    checks expires_at), a batch per short transaction so the table is never locked for long.
    Returns how many rows went. The daily cron (kith.jobs.housekeeping) calls it."""
    removed = 0
    for table in ("web_sessions", "login_challenges"):
        while True:
            async with platform_tx() as tx:
                rows = await tx.execute_query_dict(
                    f"WITH gone AS (DELETE FROM public.{table} WHERE id IN (SELECT id FROM public.{table}"  # noqa: S608
                    " WHERE expires_at <= now() LIMIT $1) RETURNING 1) SELECT count(*) AS n FROM gone", [batch])
            removed += int(rows[0]["n"])
            if int(rows[0]["n"]) < batch:
                break
    return removed


async def start_login_challenge(identity_id: int, *, next_url: str = "") -> str:
    """Remember that this person passed the password step; returns the raw token for a
    short-lived cookie. It grants nothing but a try at the second factor."""
    raw = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    async with platform_tx() as tx:
        # live challenges last minutes, so the table stays tiny and this sweep is cheap
        await LoginChallenge.filter(expires_at__lte=now).using_db(tx).delete()
        await LoginChallenge.create(
            token_hash=token_hash(raw), identity_id=identity_id, next_url=next_url[:2000],
            expires_at=now + CHALLENGE_LIFETIME, using_db=tx,
        )
    return raw


async def load_login_challenge(raw: str) -> LoginChallenge | None:
    """The live challenge named by a cookie (not expired, tries left), with its identity."""
    if not raw:
        return None
    async with platform_tx() as tx:
        return await LoginChallenge.filter(
            token_hash=token_hash(raw), expires_at__gt=datetime.now(UTC), attempts__lt=CHALLENGE_MAX_ATTEMPTS
        ).using_db(tx).select_related("identity").first()


async def count_challenge_attempt(challenge_id: int) -> int:
    """Count one wrong code against a challenge; returns the tries left (0: it is used up)."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "UPDATE public.login_challenges SET attempts = attempts + 1 WHERE id = $1 RETURNING attempts",
            [challenge_id],
        )
        if not rows or rows[0]["attempts"] >= CHALLENGE_MAX_ATTEMPTS:
            await LoginChallenge.filter(id=challenge_id).using_db(tx).delete()
            return 0
    return CHALLENGE_MAX_ATTEMPTS - int(rows[0]["attempts"])


async def end_login_challenge(challenge_id: int) -> bool:
    """Consume a challenge; False if it was already gone (a parallel request used it)."""
    async with platform_tx() as tx:
        deleted = await LoginChallenge.filter(id=challenge_id).using_db(tx).delete()
    return bool(deleted)


async def membership_for(
    identity_id: int, tenant_id: int, within: TransactionalDBClient | None = None
) -> Membership | None:
    """The active membership of a person in a workspace, or None."""
    async with platform_tx(within) as tx:
        return await Membership.filter(
            identity_id=identity_id, tenant_id=tenant_id, is_active=True
        ).using_db(tx).first()


async def workspaces_of(identity_id: int) -> list[Tenant]:
    async with platform_tx() as tx:
        return await Tenant.filter(
            memberships__identity_id=identity_id, memberships__is_active=True, status__in=["active", "suspended"]
        ).using_db(tx).order_by("name")
