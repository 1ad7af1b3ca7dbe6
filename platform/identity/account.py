"""A person's own account: password change, two-factor changes that need the password,
active sessions and API tokens across workspaces.

Sensitive changes re-check the password (and, for two-factor changes, a code) through
the sign-in throttle, so a browser left signed in cannot be used to guess either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from kith.platform.db import platform_tx
from kith.platform.identity.events import ClientInfo, record_account_event
from kith.platform.identity.models import ApiToken, Identity, LoginChallenge, WebSession
from kith.platform.identity.passwords import PasswordRuleError, check_password_rules, hash_password, verify_password
from kith.platform.identity.ratelimit import Attempt, Lockout, begin_attempt, record_failure, release
from kith.platform.identity.totp import (
    TwoFactorError,
    new_recovery_codes,
    normalise_code,
    remove_two_factor,
    verify_second_factor,
)


class AccountError(ValueError):
    """A refused account change; `field` names the form field the message belongs to."""

    def __init__(self, field: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class SessionInfo:
    """One signed-in browser, as its owner sees it."""

    id: int
    ip: str
    user_agent: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    current: bool


async def _load(identity_id: int) -> Identity:
    async with platform_tx() as tx:
        return await Identity.filter(id=identity_id).using_db(tx).get()


async def _locked(identity: Identity, lock: Lockout, client: ClientInfo, during: str) -> AccountError:
    if lock.started:
        await record_account_event(identity.id, "login.locked", client, email=identity.email,
                                   detail={"scope": lock.scope, "until": lock.until.isoformat(), "during": during})
    return AccountError("current_password", lock.message(), retry_after=lock.retry_after_seconds())


async def _check_person(identity: Identity, password: str, code: str | None, client: ClientInfo,
                        during: str) -> Attempt:
    """Password (and code, when given) of the person at the keyboard, counted by the throttle.

    A malformed code is refused before anything is counted: it is a typo, not a guess.
    """
    if code is not None:
        try:
            normalise_code(code)
        except TwoFactorError as exc:
            raise AccountError("code", str(exc)) from None
    attempt = await begin_attempt(identity.email, client.ip)
    if isinstance(attempt, Lockout):
        raise await _locked(identity, attempt, client, during)
    if not verify_password(identity.password_hash, password):
        lock = await record_failure(attempt)
        if lock is not None:
            raise await _locked(identity, lock, client, during)
        raise AccountError("current_password", "Your current password is not correct.")
    if code is not None:
        try:
            await verify_second_factor(identity.id, code)
        except TwoFactorError as exc:
            lock = await record_failure(attempt)
            if lock is not None:
                raise await _locked(identity, lock, client, during) from None
            raise AccountError("code", str(exc)) from None
    return attempt


async def change_password(
    identity_id: int, *, current: str, new: str, keep_session_id: int | None, client: ClientInfo
) -> int:
    """Change the password after checking the current one; every other session (and any
    half-finished sign-in) ends. Returns how many sessions were ended."""
    identity = await _load(identity_id)
    if not new:
        raise AccountError("new_password", "Enter a new password.")
    try:
        check_password_rules(new, email=identity.email)
    except PasswordRuleError as exc:
        raise AccountError("new_password", str(exc)) from None
    attempt = await _check_person(identity, current, None, client, "password.change")
    await release(attempt)
    if verify_password(identity.password_hash, new):
        raise AccountError("new_password", "The new password is the same as the current one.")
    async with platform_tx() as tx:
        await Identity.filter(id=identity_id).using_db(tx).update(password_hash=hash_password(new))
        others = WebSession.filter(identity_id=identity_id)
        if keep_session_id is not None:
            others = others.exclude(id=keep_session_id)
        ended = await others.using_db(tx).delete()
        await LoginChallenge.filter(identity_id=identity_id).using_db(tx).delete()
    await record_account_event(identity_id, "password.change", client, email=identity.email,
                               detail={"sessions_ended": ended})
    return int(ended)


async def disable_two_factor(identity_id: int, *, password: str, code: str, client: ClientInfo) -> None:
    """Turn two-factor authentication off, after the password and a current code (or a
    recovery code)."""
    identity = await _load(identity_id)
    if identity.totp_enabled_at is None:
        raise AccountError("code", "Two-factor authentication is not on.")
    attempt = await _check_person(identity, password, code, client, "2fa.disable")
    await release(attempt)
    await remove_two_factor(identity_id, client)


async def regenerate_recovery_codes(identity_id: int, *, password: str, code: str, client: ClientInfo) -> list[str]:
    """New recovery codes after the password and a current code; the old ones stop working."""
    identity = await _load(identity_id)
    if identity.totp_enabled_at is None:
        raise AccountError("code", "Two-factor authentication is not on.")
    attempt = await _check_person(identity, password, code, client, "2fa.recovery_codes")
    await release(attempt)
    return await new_recovery_codes(identity_id, client)


async def active_sessions(identity_id: int, *, current_session_id: int | None) -> list[SessionInfo]:
    """The person's live sessions, most recently seen first."""
    async with platform_tx() as tx:
        rows = await WebSession.filter(
            identity_id=identity_id, expires_at__gt=datetime.now(UTC)
        ).using_db(tx).order_by("-last_seen_at", "-id")
    return [
        SessionInfo(id=s.id, ip=s.ip, user_agent=s.user_agent, created_at=s.created_at, last_seen_at=s.last_seen_at,
                    expires_at=s.expires_at, current=s.id == current_session_id)
        for s in rows
    ]


async def revoke_session(identity_id: int, session_id: int, client: ClientInfo) -> bool:
    """End one of the person's sessions at once (its cookie stops working); False if it
    is not theirs or already gone."""
    async with platform_tx() as tx:
        ended = await WebSession.filter(id=session_id, identity_id=identity_id).using_db(tx).delete()
        identity = await Identity.filter(id=identity_id).using_db(tx).get()
    if ended:
        await record_account_event(identity_id, "session.revoke", client, email=identity.email,
                                   detail={"session_id": session_id})
    return bool(ended)


async def revoke_other_sessions(identity_id: int, keep_session_id: int, client: ClientInfo) -> int:
    """Sign out everywhere else: end every session of the person but this one."""
    async with platform_tx() as tx:
        ended = await WebSession.filter(identity_id=identity_id).exclude(id=keep_session_id).using_db(tx).delete()
        identity = await Identity.filter(id=identity_id).using_db(tx).get()
    if ended:
        await record_account_event(identity_id, "session.revoke", client, email=identity.email,
                                   detail={"sessions_ended": ended, "kept_session_id": keep_session_id})
    return int(ended)


async def tokens_across_workspaces(identity_id: int) -> list[ApiToken]:
    """Every API token the person holds, in every workspace, newest first (tenant loaded)."""
    async with platform_tx() as tx:
        return await ApiToken.filter(identity_id=identity_id).using_db(tx).select_related(
            "tenant").order_by("-id")
