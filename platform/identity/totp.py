"""TOTP two-factor authentication (RFC 6238, via pyotp), recovery codes, and the
workspace switch that makes two-factor authentication mandatory for its members.

- Enrolment is two steps: a pending secret is shown (text and QR code), and only a
  correct code from it turns two-factor authentication on, so nobody is locked out by a
  secret their app never stored.
- A code is accepted for the current 30-second step and one step either side (clock
  drift), and only if its step is later than the last one accepted: a code seen over
  someone's shoulder cannot be replayed, not even within its own window.
- Ten recovery codes (80 random bits each, stored as SHA-256) are shown once and each
  works once in place of a TOTP code.
- The secrets are encrypted at rest (kith.platform.crypto), bound to their identity and
  column. Values stored before encryption existed are still read as plain text, and
  `kith keys rotate` encrypts them: a SQL migration cannot, since the keys never reach
  the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import pyotp
import segno
from tortoise.backends.base.client import TransactionalDBClient
from tortoise.expressions import Q

from kith.platform.access.actor import Actor
from kith.platform.access.session import acting_as
from kith.platform.crypto import encrypt, reveal
from kith.platform.db import platform_tx
from kith.platform.identity.events import ClientInfo, record_account_event
from kith.platform.identity.models import Identity, RecoveryCode

ISSUER = "Kith"
STEP_SECONDS = 30
RECOVERY_CODE_COUNT = 10
_DIGITS = re.compile(r"^\d{6}$")
_RECOVERY = re.compile(r"^[a-z2-7]{16}$")

Factor = Literal["totp", "recovery"]


class TwoFactorError(ValueError):
    """A refused code or request, with a message a person can act on."""


@dataclass(frozen=True)
class Enrolment:
    """A pending secret to show: as text to type, and as a QR code (inline SVG)."""

    secret: str
    uri: str
    qr_svg: str


def secret_context(column: str, identity_id: int) -> str:
    """Where an encrypted TOTP secret lives ("identities.totp_secret:42"): its associated data."""
    return f"identities.{column}:{int(identity_id)}"


def _seal(column: str, identity_id: int, secret: str) -> str:
    return encrypt(secret, secret_context(column, identity_id))


def _open(column: str, identity_id: int, stored: str | None) -> str | None:
    return reveal(stored, secret_context(column, identity_id))


def _now_step() -> int:
    return int(time.time()) // STEP_SECONDS


def _code_hash(normalised: str) -> str:
    return hashlib.sha256(normalised.encode()).hexdigest()


def normalise_code(code: str) -> tuple[Factor, str]:
    """Tell a TOTP code from a recovery code, ignoring spaces, hyphens and case.

    Raises TwoFactorError when it is neither shape.
    """
    cleaned = re.sub(r"[\s-]", "", code).lower()
    if _DIGITS.match(cleaned):
        return "totp", cleaned
    if _RECOVERY.match(cleaned):
        return "recovery", cleaned
    raise TwoFactorError("Enter the 6-digit code from your authenticator app, or one of your recovery codes "
                         "(like abcd-efgh-ijkl-mnop).")


def _matching_step(secret: str, code: str) -> int | None:
    totp = pyotp.TOTP(secret, interval=STEP_SECONDS)
    now = _now_step()
    for step in (now, now - 1, now + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None


def _new_recovery_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()  # 80 bits -> 16 characters
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


async def _replace_recovery_codes(identity_id: int, tx: TransactionalDBClient) -> list[str]:
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    await RecoveryCode.filter(identity_id=identity_id).using_db(tx).delete()
    await RecoveryCode.bulk_create(
        [RecoveryCode(identity_id=identity_id, code_hash=_code_hash(c.replace("-", ""))) for c in codes],
        using_db=tx,
    )
    return codes


def qr_svg(uri: str) -> str:
    """The provisioning URI as an inline SVG QR code, drawn by the server (no outside service)."""
    return str(segno.make(uri, error="m").svg_inline(scale=5, border=2, title="Two-factor QR code"))


async def begin_enrolment(identity_id: int) -> Enrolment:
    """The pending secret to show, creating one if needed.

    The same pending secret comes back until it is confirmed, so reloading the page
    after scanning does not invalidate what the app stored.
    """
    async with platform_tx() as tx:
        identity = await Identity.filter(id=identity_id).using_db(tx).select_for_update().get()
        if identity.totp_enabled_at is not None:
            raise TwoFactorError("Two-factor authentication is already on.")
        secret = _open("totp_pending_secret", identity_id, identity.totp_pending_secret)
        if not secret:
            secret = pyotp.random_base32()
            await Identity.filter(id=identity_id).using_db(tx).update(
                totp_pending_secret=_seal("totp_pending_secret", identity_id, secret))
    uri = pyotp.TOTP(secret, interval=STEP_SECONDS).provisioning_uri(name=identity.email, issuer_name=ISSUER)
    return Enrolment(secret=secret, uri=uri, qr_svg=qr_svg(uri))


async def confirm_enrolment(identity_id: int, code: str, client: ClientInfo) -> list[str]:
    """Turn two-factor authentication on with a correct code from the pending secret.

    Returns the recovery codes, in the only form they will ever be shown.
    """
    kind, cleaned = normalise_code(code)
    if kind != "totp":
        raise TwoFactorError("Enter the 6-digit code your authenticator app shows for Kith.")
    async with platform_tx() as tx:
        identity = await Identity.filter(id=identity_id).using_db(tx).select_for_update().get()
        if identity.totp_enabled_at is not None:
            raise TwoFactorError("Two-factor authentication is already on.")
        pending = _open("totp_pending_secret", identity_id, identity.totp_pending_secret)
        if not pending:
            raise TwoFactorError("Start the set-up again: there is no pending secret.")
        step = _matching_step(pending, cleaned)
        if step is None:
            raise TwoFactorError("That code is not correct. Check that your device's clock is right and "
                                 "enter the code currently shown.")
        await Identity.filter(id=identity_id).using_db(tx).update(
            totp_secret=_seal("totp_secret", identity_id, pending), totp_pending_secret=None,
            totp_enabled_at=datetime.now(UTC), totp_last_step=step,
        )
        codes = await _replace_recovery_codes(identity_id, tx)
    await record_account_event(identity_id, "2fa.enable", client, email=identity.email)
    return codes


async def verify_second_factor(identity_id: int, code: str) -> Factor:
    """Accept a TOTP code (once per time-step) or an unused recovery code (once ever).

    Raises TwoFactorError saying what was wrong: the shape, the code, or a reuse.
    """
    kind, cleaned = normalise_code(code)
    async with platform_tx() as tx:
        identity = await Identity.filter(id=identity_id).using_db(tx).get()
        secret = _open("totp_secret", identity_id, identity.totp_secret)
        if secret is None:
            raise TwoFactorError("Two-factor authentication is not on for this account.")
        if kind == "recovery":
            used = await RecoveryCode.filter(
                identity_id=identity_id, code_hash=_code_hash(cleaned), used_at=None
            ).using_db(tx).update(used_at=datetime.now(UTC))
            if not used:
                raise TwoFactorError("That recovery code is not correct, or was already used.")
            return "recovery"
        step = _matching_step(secret, cleaned)
        if step is None:
            raise TwoFactorError("That code is not correct. Enter the code your authenticator app shows now.")
        # Conditional update: of two requests racing with the same code only one wins.
        accepted = await Identity.filter(
            Q(totp_last_step__isnull=True) | Q(totp_last_step__lt=step), id=identity_id
        ).using_db(tx).update(totp_last_step=step)
        if not accepted:
            raise TwoFactorError("That code was already used. Wait for your app to show the next one.")
    return "totp"


async def remove_two_factor(identity_id: int, client: ClientInfo) -> None:
    """Turn two-factor authentication off and drop the recovery codes (callers check the
    person first: see kith.platform.identity.account.disable_two_factor)."""
    async with platform_tx() as tx:
        identity = await Identity.filter(id=identity_id).using_db(tx).get()
        await Identity.filter(id=identity_id).using_db(tx).update(
            totp_secret=None, totp_pending_secret=None, totp_enabled_at=None, totp_last_step=None)
        await RecoveryCode.filter(identity_id=identity_id).using_db(tx).delete()
    await record_account_event(identity_id, "2fa.disable", client, email=identity.email)


async def new_recovery_codes(identity_id: int, client: ClientInfo) -> list[str]:
    """Replace the recovery codes (the old ones stop working); returns the new ones, shown once."""
    async with platform_tx() as tx:
        identity = await Identity.filter(id=identity_id).using_db(tx).get()
        codes = await _replace_recovery_codes(identity_id, tx)
    await record_account_event(identity_id, "2fa.enable", client, email=identity.email,
                               detail={"recovery_codes": "regenerated"})
    return codes


async def recovery_codes_left(identity_id: int) -> int:
    """How many unused recovery codes the person still has."""
    async with platform_tx() as tx:
        return await RecoveryCode.filter(identity_id=identity_id, used_at=None).using_db(tx).count()


async def workspace_requires_2fa(tenant_id: int) -> bool:
    """Whether the workspace makes two-factor authentication mandatory for its members."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict("SELECT require_2fa FROM public.tenants WHERE id = $1", [tenant_id])
    return bool(rows and rows[0]["require_2fa"])


async def must_enrol(identity: Identity, tenant_id: int) -> bool:
    """True when this person has to turn on two-factor authentication before using the
    workspace. Costs no query for people who already have it on."""
    return identity.totp_enabled_at is None and await workspace_requires_2fa(tenant_id)


@dataclass(frozen=True)
class MemberTwoFactor:
    """A workspace member and whether they have two-factor authentication on."""

    email: str
    role: str
    two_factor_on: bool


@dataclass(frozen=True)
class WorkspaceSecurity:
    """A workspace's security settings, as its administrators see them."""

    require_2fa: bool
    members: list[MemberTwoFactor]


async def workspace_security(actor: Actor) -> WorkspaceSecurity:
    """The actor's workspace's two-factor requirement and its members' two-factor state
    (those without it first). Needs the workspace permission "manage_settings"."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        required = await session.tx.execute_query_dict(
            "SELECT require_2fa FROM public.tenants WHERE id = $1", [actor.tenant_id])
        rows = await session.tx.execute_query_dict(
            "SELECT i.email, m.role, i.totp_enabled_at IS NOT NULL AS on_"
            " FROM public.memberships m JOIN public.identities i ON i.id = m.identity_id"
            " WHERE m.tenant_id = $1 AND m.is_active ORDER BY on_, lower(i.email)", [actor.tenant_id])
    return WorkspaceSecurity(
        require_2fa=bool(required and required[0]["require_2fa"]),
        members=[MemberTwoFactor(str(r["email"]), str(r["role"]), bool(r["on_"])) for r in rows],
    )


async def set_workspace_requires_2fa(actor: Actor, required: bool) -> bool:
    """Turn the actor's workspace's two-factor requirement on or off, audited in the same
    transaction; True if it changed. Needs the workspace permission "manage_settings"."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        changed = await session.tx.execute_query_dict(
            "UPDATE public.tenants SET require_2fa = $2, updated_at = now()"
            " WHERE id = $1 AND require_2fa IS DISTINCT FROM $2 RETURNING id", [actor.tenant_id, required])
        if changed:
            await session.audit("settings.update", "workspace", actor.tenant_id,
                                {"require_2fa": [not required, required]})
    return bool(changed)
