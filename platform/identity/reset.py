"""Password reset by emailed link: single use, expiring after KITH_PASSWORD_RESET_MINUTES.

The "forgot password" request never says whether the email has an account: the web only
queues a job with the address, and the same page follows either way. The job
(`issue_password_reset`) looks the person up, applies the per-email limit, and writes the
reset row and its email in one transaction; with no such account it writes nothing.

The per-email limit (RESETS_PER_HOUR) is counted from the reset rows themselves rather than
through `login_throttles`: that table locks out failed sign-ins and would show a lockout
to the requester, whereas a reset over the limit must look exactly like one that was sent.

Setting the new password ends every session and half-finished sign-in of the person, uses
up every other reset link they hold, and clears their sign-in lockout.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kith.platform.config import get_settings
from kith.platform.db import platform_tx
from kith.platform.email.delivery import queue_email
from kith.platform.identity.events import ClientInfo, record_account_event
from kith.platform.identity.links import new_link_token, token_digest
from kith.platform.identity.passwords import PasswordRuleError, check_password_rules, hash_password
from kith.platform.identity.ratelimit import normalise_email

RESET_PATH = "/reset/"
RESETS_PER_HOUR = 3


class ResetRefused(Exception):
    """The link cannot be used (code: unknown, expired, used) or the new password is refused
    (code: invalid_input, with `fields`)."""

    def __init__(self, status: int, code: str, message: str, *, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}


def _digest(raw: str) -> str:
    return token_digest(raw, "kith-password-reset")


def reset_text(*, url: str, minutes: int) -> str:
    """The plain-text body of the reset email."""
    return (
        "Hello,\n\nSomeone (hopefully you) asked to reset the password of your Kith account.\n\n"
        f"Choose a new password here; the link works once, for {minutes} minutes:\n{url}\n\n"
        "If you did not ask, ignore this email: your password stays as it is.\n\nThe Kith team\n"
    )


async def issue_password_reset(email: str) -> int | None:
    """Create a reset link for the account with this email and queue its email; returns the
    outbox row id, or None when there is no such account or it had RESETS_PER_HOUR already."""
    settings = get_settings()
    raw = new_link_token()
    async with platform_tx() as tx:
        found = await tx.execute_query_dict(
            "SELECT id, email FROM public.identities WHERE lower(email) = $1", [normalise_email(email)])
        if not found:
            return None
        identity_id = int(found[0]["id"])
        # the identity row is locked so parallel requests count each other
        await tx.execute_query("SELECT 1 FROM public.identities WHERE id = $1 FOR UPDATE", [identity_id])
        recent = await tx.execute_query_dict(
            "SELECT count(*) AS n FROM public.password_resets WHERE identity_id = $1"
            " AND created_at > now() - interval '1 hour'", [identity_id])
        if int(recent[0]["n"]) >= RESETS_PER_HOUR:
            return None
        expires_at = datetime.now(UTC) + timedelta(minutes=settings.password_reset_minutes)
        rows = await tx.execute_query_dict(
            "INSERT INTO public.password_resets (identity_id, token_hash, expires_at) VALUES ($1, $2, $3)"
            " RETURNING id", [identity_id, _digest(raw), expires_at])
        return await queue_email(
            tx, tenant_id=None, kind="password_reset", dedupe_key=f"password_reset:{rows[0]['id']}",
            to=str(found[0]["email"]), subject="Reset your Kith password",
            body_text=reset_text(url=f"{settings.base_url}{RESET_PATH}{raw}", minutes=settings.password_reset_minutes),
        )


_UNKNOWN = "This reset link is not valid. Ask for a new one on the sign-in page (Forgot your password?)."


@dataclass(frozen=True)
class ResetView:
    email: str


def _check(row: dict[str, object] | None) -> None:
    if row is None:
        raise ResetRefused(404, "unknown", _UNKNOWN)
    if row["used_at"] is not None:
        raise ResetRefused(410, "used", "This reset link was already used; each link works once. "
                                        "Ask for a new one if you need to.")
    expires_at = row["expires_at"]
    assert isinstance(expires_at, datetime)
    if expires_at <= datetime.now(UTC):
        raise ResetRefused(410, "expired", "This reset link has expired. Ask for a new one on the sign-in page.")


_SELECT = ("SELECT r.id, r.identity_id, r.expires_at, r.used_at, i.email FROM public.password_resets r"
           " JOIN public.identities i ON i.id = r.identity_id WHERE r.token_hash = $1")


async def view_password_reset(raw: str) -> ResetView:
    """Whom a reset link is for, or ResetRefused."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(_SELECT, [_digest(raw)]) if raw else []
    row = rows[0] if rows else None
    _check(row)
    assert row is not None
    return ResetView(email=str(row["email"]))


async def complete_password_reset(raw: str, new_password: str, client: ClientInfo) -> int:
    """Set a new password through a reset link; returns the identity id. Every session of the
    person ends, every other reset link of theirs is used up, and their sign-in lock is lifted."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(_SELECT + " FOR UPDATE OF r", [_digest(raw)]) if raw else []
        row = rows[0] if rows else None
        _check(row)
        assert row is not None
        email = str(row["email"])
        try:
            check_password_rules(new_password, email=email)
        except PasswordRuleError as exc:
            raise ResetRefused(422, "invalid_input", "Some fields are not valid.",
                               fields={"password": str(exc)}) from None
        identity_id = int(row["identity_id"])  # type: ignore[call-overload]
        await tx.execute_query("UPDATE public.identities SET password_hash = $2 WHERE id = $1",
                               [identity_id, hash_password(new_password)])
        await tx.execute_query("UPDATE public.password_resets SET used_at = now() WHERE identity_id = $1"
                               " AND used_at IS NULL", [identity_id])
        ended = await tx.execute_query_dict(
            "DELETE FROM public.web_sessions WHERE identity_id = $1 RETURNING id", [identity_id])
        await tx.execute_query("DELETE FROM public.login_challenges WHERE identity_id = $1", [identity_id])
        await tx.execute_query("DELETE FROM public.login_throttles WHERE scope = 'email' AND key = $1",
                               [normalise_email(email)])
    await record_account_event(identity_id, "password.reset", client, email=email,
                               detail={"sessions_ended": len(ended)})
    return identity_id
