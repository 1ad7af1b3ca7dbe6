"""Email verification by emailed link: single use, expiring after LINK_LIFETIME.

A person's address is unverified (`identities.email_verified_at` NULL) until they follow a
link mailed to it, or accept an invitation (whose link was mailed there too). Signup writes
the first link and its email in the signup transaction; the web queues the delivery job
after the commit. A signed-in person can ask for another link (the banner's "resend"), at
most SENDS_PER_HOUR an hour, counted from the link rows themselves; support can resend from
the ops console under the same limit.

What an unverified person may do: everything during the trial, except starting a paid plan
(`require_verified`, called by billing's checkout): invoices, receipts and dunning go by
email, so a paying workspace needs an owner who is known to receive it.

Following a link marks the address verified, uses up every other link of the person, and is
audited ("email.verify") in every workspace of the person after the change commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from kith.platform.config import get_settings
from kith.platform.db import platform_tx
from kith.platform.email.delivery import queue_email
from kith.platform.identity.events import ClientInfo, record_account_event
from kith.platform.identity.links import new_link_token, token_digest

VERIFY_PATH = "/verify-email/"
# Long enough for someone who signs up in the evening to find the mail next morning.
LINK_LIFETIME = timedelta(hours=48)
SENDS_PER_HOUR = 3


class EmailNotVerified(PermissionError):
    """The work needs a verified email address; the message says how to get one."""

    def __init__(self, email: str, what: str) -> None:
        super().__init__(
            f"Verify your email address {email} before {what}: open the link we emailed you, or ask for a "
            "new one from the banner at the top of the page (or Account → Verify email, /account/verify-email)."
        )
        self.email = email


class VerificationRefused(Exception):
    """A link that cannot be used (code: unknown, expired, used) or a send that is refused
    (code: already_verified, rate_limited, with `retry_after_seconds`)."""

    def __init__(self, status: int, code: str, message: str, *, retry_after_seconds: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_seconds = retry_after_seconds


@dataclass(frozen=True)
class IssuedVerification:
    """A link written with its email; deliver the email (by its outbox id) after the commit."""

    verification_id: int
    email_id: int
    email: str


def _digest(raw: str) -> str:
    return token_digest(raw, "kith-email-verify")


def verification_text(*, url: str, hours: int) -> str:
    """The plain-text body of the verification email."""
    return (
        "Hello,\n\nPlease confirm that this is your email address for Kith.\n\n"
        f"Open this link to confirm it; it works once, for {hours} hours:\n{url}\n\n"
        "If you did not sign up for Kith, ignore this email: nothing happens unless you open the link.\n\n"
        "The Kith team\n"
    )


async def issue_verification_in(tx: BaseDBAsyncClient, identity_id: int) -> IssuedVerification:
    """Write a new link for the identity's address and queue its email, inside the caller's
    transaction (signup's, an ops action's, or a resend's).

    Refused (VerificationRefused) when the address is already verified (409) or SENDS_PER_HOUR
    links went out in the last hour (429, with the seconds until the next one is allowed).
    """
    # the identity row is locked so parallel requests count each other's links
    found = await tx.execute_query_dict(
        "SELECT email, email_verified_at FROM public.identities WHERE id = $1 FOR UPDATE", [int(identity_id)])
    if not found:
        raise VerificationRefused(404, "unknown", "There is no such account.")
    email = str(found[0]["email"])
    if found[0]["email_verified_at"] is not None:
        raise VerificationRefused(409, "already_verified", f"The email address {email} is already verified.")
    recent = await tx.execute_query_dict(
        "SELECT created_at FROM public.email_verifications WHERE identity_id = $1"
        " AND created_at > now() - interval '1 hour' ORDER BY created_at", [int(identity_id)])
    if len(recent) >= SENDS_PER_HOUR:
        oldest: datetime = recent[0]["created_at"]
        wait = max(1, int((oldest + timedelta(hours=1) - datetime.now(UTC)).total_seconds()))
        raise VerificationRefused(
            429, "rate_limited",
            f"{SENDS_PER_HOUR} verification emails were sent to {email} in the last hour. Check the spam folder, "
            f"or ask again in {(wait + 59) // 60} minutes.", retry_after_seconds=wait)
    raw = new_link_token()
    rows = await tx.execute_query_dict(
        "INSERT INTO public.email_verifications (identity_id, email, token_hash, expires_at)"
        " VALUES ($1, $2, $3, $4) RETURNING id",
        [int(identity_id), email, _digest(raw), datetime.now(UTC) + LINK_LIFETIME])
    verification_id = int(rows[0]["id"])
    hours = int(LINK_LIFETIME.total_seconds() // 3600)
    email_id = await queue_email(
        tx, tenant_id=None, kind="email_verification", dedupe_key=f"email_verification:{verification_id}",
        to=email, subject="Confirm your email address for Kith",
        body_text=verification_text(url=f"{get_settings().base_url}{VERIFY_PATH}{raw}", hours=hours),
    )
    assert email_id is not None  # the dedupe key names a row made in this transaction
    return IssuedVerification(verification_id, email_id, email)


async def issue_verification(identity_id: int) -> IssuedVerification:
    """`issue_verification_in` in a transaction of its own (the banner's resend)."""
    async with platform_tx() as tx:
        return await issue_verification_in(tx, identity_id)


async def verification_is_pending(verification_id: int) -> bool:
    """Whether the link can still be used (the email job skips links made useless meanwhile)."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT 1 FROM public.email_verifications v JOIN public.identities i ON i.id = v.identity_id"
            " WHERE v.id = $1 AND v.used_at IS NULL AND v.expires_at > now() AND i.email_verified_at IS NULL"
            " AND lower(i.email) = lower(v.email)", [int(verification_id)])
    return bool(rows)


_UNKNOWN = ("This verification link is not valid. Check that you opened the whole link from the email, or ask "
            "for a new one after signing in (Account → Verify email).")

_SELECT = ("SELECT v.id, v.identity_id, v.email AS sent_to, v.expires_at, v.used_at, i.email,"
           " i.email_verified_at FROM public.email_verifications v"
           " JOIN public.identities i ON i.id = v.identity_id WHERE v.token_hash = $1")


def _check(row: dict[str, Any] | None) -> dict[str, Any]:
    # an address changed since the link was sent makes the link prove nothing about it
    if row is None or str(row["sent_to"]).lower() != str(row["email"]).lower():
        raise VerificationRefused(404, "unknown", _UNKNOWN)
    if row["used_at"] is not None:
        raise VerificationRefused(410, "used", "This verification link was already used; each link works once.")
    if row["expires_at"] <= datetime.now(UTC):
        raise VerificationRefused(410, "expired", "This verification link has expired. Sign in and ask for a new "
                                                  "one (Account → Verify email).")
    return row


@dataclass(frozen=True)
class VerificationView:
    """What a usable link is for."""

    identity_id: int
    email: str
    already_verified: bool


async def view_verification(raw: str) -> VerificationView:
    """Whom a verification link is for, or VerificationRefused saying why it cannot be used."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(_SELECT, [_digest(raw)]) if raw else []
    row = _check(rows[0] if rows else None)
    return VerificationView(int(row["identity_id"]), str(row["email"]), row["email_verified_at"] is not None)


async def complete_verification(raw: str, client: ClientInfo) -> VerificationView:
    """Follow a link: the address is verified and every link of the person used up, in one
    transaction that locks the link's row (two parallel clicks: the second sees it used).
    Audited ("email.verify") after the commit."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(_SELECT + " FOR UPDATE OF v", [_digest(raw)]) if raw else []
        row = _check(rows[0] if rows else None)
        identity_id = int(row["identity_id"])
        await tx.execute_query(
            "UPDATE public.identities SET email_verified_at = coalesce(email_verified_at, now()) WHERE id = $1",
            [identity_id])
        await tx.execute_query("UPDATE public.email_verifications SET used_at = now() WHERE identity_id = $1"
                               " AND used_at IS NULL", [identity_id])
    email = str(row["email"])
    if row["email_verified_at"] is None:
        await record_account_event(identity_id, "email.verify", client, email=email, detail={"via": "link"})
    return VerificationView(identity_id, email, True)


async def mark_verified_in(tx: BaseDBAsyncClient, identity_id: int) -> bool:
    """Mark the identity's address verified inside the caller's transaction (an invitation's
    link proved it); True when it was not verified before. The caller audits after the commit."""
    rows = await tx.execute_query_dict(
        "UPDATE public.identities SET email_verified_at = now() WHERE id = $1 AND email_verified_at IS NULL"
        " RETURNING id", [int(identity_id)])
    return bool(rows)


async def require_verified(tx: BaseDBAsyncClient, identity_id: int | None, what: str) -> None:
    """Raise EmailNotVerified unless the identity's address is verified. `what` completes
    "Verify your email address before ..." (e.g. "starting a paid plan"). Actors without an
    identity (jobs, the system) pass: they pay nothing and receive no mail."""
    if identity_id is None:
        return
    rows = await tx.execute_query_dict(
        "SELECT email, email_verified_at FROM public.identities WHERE id = $1", [int(identity_id)])
    if rows and rows[0]["email_verified_at"] is None:
        raise EmailNotVerified(str(rows[0]["email"]), what)
