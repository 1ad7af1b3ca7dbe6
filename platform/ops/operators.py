"""Support operators: platform accounts, separate from the people of workspaces.

- An operator signs in at /ops/login with a password, then a TOTP code; there is no other
  way in (no recovery codes: a lost device is reset by another operator with the CLI).
  The password hashing, the TOTP check and the sign-in throttle are the ones tenant users
  have (kith.platform.identity.{passwords,totp,ratelimit}); the throttle counts operator
  emails under their own keys ("operator:<email>"), so they never share a count with a
  workspace member who has the same address.
- `kith ops create-operator` makes the account and prints the TOTP secret once; the first
  correct code confirms it. An operator with no secret cannot sign in.
- Sessions are server-side (`public.operator_sessions`), named by a random cookie token
  whose SHA-256 alone is stored. The half-signed-in state (password right, code owed) is a
  row of stage 'password' that grants nothing but a try at the code; success replaces it
  with a new token of stage 'active', so a token seen before the code never becomes a session.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
from tortoise.backends.base.client import TransactionalDBClient

from kith.platform.crypto import encrypt, reveal
from kith.platform.db import platform_tx
from kith.platform.identity.passwords import DUMMY_HASH, check_password_rules, hash_password, verify_password
from kith.platform.identity.totp import (
    ISSUER,
    STEP_SECONDS,
    TwoFactorError,
    _matching_step,
    normalise_code,
)

# A working day; operators sign in again each day, with a fresh code.
OPERATOR_SESSION_LIFETIME = timedelta(hours=12)
# Between password and code: as for tenant users (kith.platform.identity.sessions).
CHALLENGE_LIFETIME = timedelta(minutes=5)
CHALLENGE_MAX_ATTEMPTS = 5
LAST_SEEN_GRANULARITY = timedelta(minutes=1)
THROTTLE_PREFIX = "operator:"


class OperatorError(ValueError):
    """A refused operator change, with a message a person can act on."""


@dataclass(frozen=True)
class Operator:
    """An operator as the console shows and audits them."""

    id: int
    email: str
    display_name: str

    @property
    def label(self) -> str:
        """What audit entries name the operator by."""
        return f"support: {self.email} (operator {self.id})"


@dataclass(frozen=True)
class OperatorEnrolment:
    """A new operator and the TOTP secret to put in an authenticator app, shown once."""

    operator: Operator
    secret: str
    uri: str


@dataclass(frozen=True)
class OperatorSession:
    """A live operator session (stage 'active') or sign-in challenge (stage 'password')."""

    id: int
    operator: Operator
    stage: str
    attempts: int


def token_hash(raw: str) -> str:
    """The stored form of a cookie token."""
    return hashlib.sha256(raw.encode()).hexdigest()


def secret_context(operator_id: int) -> str:
    """Where an operator's encrypted TOTP secret lives: its associated data."""
    return f"operators.totp_secret:{int(operator_id)}"


def throttle_key(email: str) -> str:
    """The key an operator's sign-in attempts are counted under by the shared throttle."""
    return THROTTLE_PREFIX + email.strip().lower()


def _operator(row: dict[str, Any], prefix: str = "") -> Operator:
    return Operator(int(row[f"{prefix}id"]), str(row[f"{prefix}email"]), str(row[f"{prefix}display_name"]))


async def create_operator(email: str, password: str, *, display_name: str = "") -> OperatorEnrolment:
    """Create an operator with a new TOTP secret; returns the secret and its otpauth URI.

    Raises OperatorError for a malformed or taken email, PasswordRuleError for a weak password.
    """
    email = email.strip()
    if "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
        raise OperatorError(f"{email!r} is not an email address")
    check_password_rules(password, email=email)
    secret = pyotp.random_base32()
    async with platform_tx() as tx:
        taken = await tx.execute_query_dict("SELECT 1 FROM public.operators WHERE lower(email) = lower($1)", [email])
        if taken:
            raise OperatorError(f"an operator with email {email} already exists")
        rows = await tx.execute_query_dict(
            "INSERT INTO public.operators (email, display_name, password_hash) VALUES ($1, $2, $3)"
            " RETURNING id, email, display_name", [email, display_name.strip(), hash_password(password)])
        operator = _operator(rows[0])
        # the id is part of the associated data, so the secret is sealed once the row exists
        await tx.execute_query("UPDATE public.operators SET totp_secret = $2 WHERE id = $1",
                               [operator.id, encrypt(secret, secret_context(operator.id))])
    uri = pyotp.TOTP(secret, interval=STEP_SECONDS).provisioning_uri(name=email, issuer_name=f"{ISSUER} ops")
    return OperatorEnrolment(operator, secret, uri)


async def check_operator_password(email: str, password: str) -> Operator | None:
    """The enabled operator with this email and password, or None; the same work is done
    whether the email exists or not, so timing does not tell which operators exist."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT id, email, display_name, password_hash FROM public.operators"
            " WHERE lower(email) = lower($1) AND enabled", [email.strip()])
    if not rows:
        verify_password(DUMMY_HASH, password)
        return None
    return _operator(rows[0]) if verify_password(str(rows[0]["password_hash"]), password) else None


async def has_second_factor(operator_id: int) -> bool:
    """Whether the operator has a TOTP secret at all (without one, signing in is refused)."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT totp_secret IS NOT NULL AS has FROM public.operators WHERE id = $1", [operator_id])
    return bool(rows and rows[0]["has"])


async def _new_session(tx: TransactionalDBClient, operator_id: int, stage: str, lifetime: timedelta,
                       ip: str, user_agent: str) -> str:
    raw = secrets.token_urlsafe(32)
    await tx.execute_query(
        "INSERT INTO public.operator_sessions (token_hash, operator_id, stage, ip, user_agent, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        [token_hash(raw), operator_id, stage, ip[:64], user_agent[:300], datetime.now(UTC) + lifetime])
    return raw


async def start_challenge(operator_id: int, *, ip: str = "", user_agent: str = "") -> str:
    """Remember that the operator passed the password step; returns the raw token for a
    short-lived cookie that grants only a try at the code."""
    async with platform_tx() as tx:
        # live challenges last minutes, so this sweep of dead rows stays cheap
        await tx.execute_query("DELETE FROM public.operator_sessions WHERE expires_at <= now()", [])
        return await _new_session(tx, operator_id, "password", CHALLENGE_LIFETIME, ip, user_agent)


async def load_operator_session(raw: str, stage: str = "active") -> OperatorSession | None:
    """The live session (or challenge, with stage="password") named by a cookie token, of an
    enabled operator; None otherwise."""
    if not raw:
        return None
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT s.id AS sid, s.stage, s.attempts, s.last_seen_at, o.id, o.email, o.display_name"
            " FROM public.operator_sessions s JOIN public.operators o ON o.id = s.operator_id"
            " WHERE s.token_hash = $1 AND s.stage = $2 AND s.expires_at > now() AND o.enabled"
            " AND s.attempts < $3", [token_hash(raw), stage, CHALLENGE_MAX_ATTEMPTS])
        if not rows:
            return None
        row = rows[0]
        if datetime.now(UTC) - row["last_seen_at"] >= LAST_SEEN_GRANULARITY:
            await tx.execute_query("UPDATE public.operator_sessions SET last_seen_at = now() WHERE id = $1",
                                   [row["sid"]])
    return OperatorSession(int(row["sid"]), _operator(row), str(row["stage"]), int(row["attempts"]))


async def verify_operator_code(operator_id: int, code: str) -> None:
    """Accept a TOTP code once per time-step; the first one accepted confirms the enrolment.

    Raises TwoFactorError saying what was wrong (shape, code, reuse, or no secret at all).
    """
    kind, cleaned = normalise_code(code)
    if kind != "totp":
        raise TwoFactorError("Enter the 6-digit code your authenticator app shows for Kith ops.")
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT totp_secret FROM public.operators WHERE id = $1 AND enabled", [operator_id])
        secret = reveal(rows[0]["totp_secret"], secret_context(operator_id)) if rows else None
        if not secret:
            raise TwoFactorError("This operator has no two-factor authentication; ask for a new enrolment.")
        step = _matching_step(secret, cleaned)
        if step is None:
            raise TwoFactorError("That code is not correct. Enter the code your authenticator app shows now.")
        # conditional: of two requests racing with one code only one wins
        accepted = await tx.execute_query_dict(
            "UPDATE public.operators SET totp_last_step = $2, totp_confirmed_at = coalesce(totp_confirmed_at, now())"
            " WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2) RETURNING id", [operator_id, step])
        if not accepted:
            raise TwoFactorError("That code was already used. Wait for your app to show the next one.")


async def count_challenge_attempt(challenge_id: int) -> int:
    """Count one wrong code against a challenge; returns the tries left (0: it is used up)."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "UPDATE public.operator_sessions SET attempts = attempts + 1 WHERE id = $1 AND stage = 'password'"
            " RETURNING attempts", [challenge_id])
        if not rows or rows[0]["attempts"] >= CHALLENGE_MAX_ATTEMPTS:
            await tx.execute_query("DELETE FROM public.operator_sessions WHERE id = $1", [challenge_id])
            return 0
    return CHALLENGE_MAX_ATTEMPTS - int(rows[0]["attempts"])


async def complete_sign_in(challenge: OperatorSession, *, ip: str = "", user_agent: str = "") -> str | None:
    """Swap a challenge whose code was accepted for a session; returns its raw token, or None
    when a parallel request already used the challenge."""
    async with platform_tx() as tx:
        used = await tx.execute_query_dict(
            "DELETE FROM public.operator_sessions WHERE id = $1 AND stage = 'password' RETURNING id", [challenge.id])
        if not used:
            return None
        await tx.execute_query("UPDATE public.operators SET last_login_at = now() WHERE id = $1",
                               [challenge.operator.id])
        return await _new_session(tx, challenge.operator.id, "active", OPERATOR_SESSION_LIFETIME, ip, user_agent)


async def end_operator_session(raw: str) -> int | None:
    """Sign an operator out: the session goes, and so does any impersonation started from it
    (marked ended, 'signed_out'). Returns the session's id, or None if there was none."""
    async with platform_tx() as tx:
        # before the DELETE, whose foreign key would only null the impersonations' link
        await tx.execute_query(
            "UPDATE public.impersonation_sessions SET ended_at = now(), end_reason = 'signed_out'"
            " WHERE ended_at IS NULL AND operator_session_id ="
            " (SELECT id FROM public.operator_sessions WHERE token_hash = $1)", [token_hash(raw)])
        rows = await tx.execute_query_dict(
            "DELETE FROM public.operator_sessions WHERE token_hash = $1 RETURNING id", [token_hash(raw)])
    return int(rows[0]["id"]) if rows else None
