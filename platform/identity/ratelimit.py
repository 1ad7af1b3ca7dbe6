"""Sign-in throttling: too many failures lock an email, or a client IP, for a while.

Counts live in `public.login_throttles`, one row per key, so every web process sees the
same numbers and nothing is kept in memory. Each attempt is counted *before* its
password is checked and uncounted if it succeeds: a burst of parallel guesses therefore
gets at most the allowed number of password checks, instead of all of them racing past a
"not locked yet" read.

- N failures for one email within the window lock that email for the lockout period;
  while locked even the right password is refused (so a guess that happens to be right
  tells the guesser nothing). A success clears the email's count.
- The same for a client IP, with a higher limit, so one address cannot walk through
  many emails. A success does not clear an IP's count (one valid account would
  otherwise reset it for an attacker); it only takes back its own provisional count.
- Locks apply to unknown emails too, so a lock says nothing about which emails exist.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from tortoise.backends.base.client import TransactionalDBClient

from kith.platform.config import get_settings
from kith.platform.db import platform_tx

Scope = Literal["email", "ip"]

# One attempt in this many also deletes long-idle rows, so the table stays as small as the
# set of keys seen recently without a separate job.
_SWEEP_ONE_IN = 200


@dataclass(frozen=True)
class Lockout:
    """Sign-in refused until `until`; `started` is true for the attempt that set the lock."""

    scope: Scope
    until: datetime
    started: bool = False

    def retry_after_seconds(self, now: datetime | None = None) -> int:
        """Whole seconds until the lock ends (at least 1), for a Retry-After header."""
        left = (self.until - (now or datetime.now(UTC))).total_seconds()
        return max(1, math.ceil(left))

    def message(self, now: datetime | None = None) -> str:
        """What to tell the person: why, and when to try again."""
        minutes = max(1, math.ceil(self.retry_after_seconds(now) / 60))
        wait = f"{minutes} minute{'s' if minutes != 1 else ''}"
        at = self.until.astimezone(UTC).strftime("%H:%M UTC")
        if self.scope == "ip":
            return (f"Too many failed sign-in attempts from your network. "
                    f"Try again in {wait} (after {at}).")
        return (f"Too many failed sign-in attempts for this account. For your security, signing in "
                f"is paused: try again in {wait} (after {at}).")


@dataclass(frozen=True)
class Attempt:
    """A counted sign-in attempt; settle it with record_failure, record_success or release."""

    email_key: str
    ip_key: str


def normalise_email(email: str) -> str:
    """The key an email is counted under: trimmed and case-folded, as identities match it."""
    return email.strip().lower()[:320]


def _ip_key(ip: str) -> str:
    return ip.strip()[:64] or "unknown"


def _limits() -> tuple[int, int, timedelta]:
    s = get_settings()
    return s.login_max_failures, s.login_max_failures_per_ip, timedelta(minutes=s.login_lockout_minutes)


_RESERVE = """
INSERT INTO public.login_throttles AS t (scope, key, failures, window_started_at)
VALUES ($1, $2, 1, now())
ON CONFLICT (scope, key) DO UPDATE SET
    failures = CASE
        WHEN t.locked_until > now() THEN t.failures
        WHEN t.locked_until IS NOT NULL OR t.window_started_at <= now() - $3::interval THEN 1
        ELSE t.failures + 1 END,
    window_started_at = CASE
        WHEN t.locked_until > now() THEN t.window_started_at
        WHEN t.locked_until IS NOT NULL OR t.window_started_at <= now() - $3::interval THEN now()
        ELSE t.window_started_at END,
    locked_until = CASE WHEN t.locked_until > now() THEN t.locked_until END
RETURNING failures, locked_until
"""

# Lock a key whose count has reached the limit (no-op when it is already locked).
_LOCK = """
UPDATE public.login_throttles SET locked_until = now() + $3::interval
 WHERE scope = $1 AND key = $2 AND failures >= $4 AND (locked_until IS NULL OR locked_until <= now())
RETURNING locked_until
"""

_UNCOUNT = """
UPDATE public.login_throttles SET failures = greatest(failures - 1, 0)
 WHERE scope = $1 AND key = $2 AND (locked_until IS NULL OR locked_until <= now())
"""


async def _rows(tx: TransactionalDBClient, sql: str, *args: Any) -> list[dict[str, Any]]:
    return await tx.execute_query_dict(sql, list(args))


async def _reserve(tx: TransactionalDBClient, scope: Scope, key: str, limit: int, window: timedelta) -> Lockout | None:
    row = (await _rows(tx, _RESERVE, scope, key, window))[0]
    if row["locked_until"] is not None:
        return Lockout(scope, row["locked_until"])
    if row["failures"] > limit:
        # More attempts arrived in this window than the limit allows (a parallel burst got
        # here before the attempt that reached the limit settled): refuse, and lock.
        locked = await _rows(tx, _LOCK, scope, key, window, limit)
        if locked:
            return Lockout(scope, locked[0]["locked_until"], started=True)
        again = await _rows(tx, "SELECT locked_until FROM public.login_throttles WHERE scope = $1 AND key = $2",
                            scope, key)
        return Lockout(scope, again[0]["locked_until"])
    return None


async def begin_attempt(email: str, ip: str) -> Attempt | Lockout:
    """Count a sign-in attempt before its password is checked, or refuse it while locked.

    The client IP is counted first; a refused email still counts against the IP, so one
    address hammering locked accounts soon locks itself out.
    """
    max_email, max_ip, window = _limits()
    attempt = Attempt(normalise_email(email), _ip_key(ip))
    async with platform_tx() as tx:
        if secrets.randbelow(_SWEEP_ONE_IN) == 0:
            await _sweep(tx, window)
        refused = await _reserve(tx, "ip", attempt.ip_key, max_ip, window)
        if refused is None:
            refused = await _reserve(tx, "email", attempt.email_key, max_email, window)
    return refused if refused is not None else attempt


async def record_failure(attempt: Attempt) -> Lockout | None:
    """The attempt failed: its count stays. Returns the lock this failure started, if any."""
    max_email, max_ip, window = _limits()
    async with platform_tx() as tx:
        email_lock = await _rows(tx, _LOCK, "email", attempt.email_key, window, max_email)
        ip_lock = await _rows(tx, _LOCK, "ip", attempt.ip_key, window, max_ip)
    if email_lock:
        return Lockout("email", email_lock[0]["locked_until"], started=True)
    if ip_lock:
        return Lockout("ip", ip_lock[0]["locked_until"], started=True)
    return None


async def record_success(attempt: Attempt) -> None:
    """The person is signed in: clear the email's count, take back the IP's provisional one."""
    async with platform_tx() as tx:
        await _rows(tx, "DELETE FROM public.login_throttles WHERE scope = 'email' AND key = $1", attempt.email_key)
        await _rows(tx, _UNCOUNT, "ip", attempt.ip_key)


async def release(attempt: Attempt) -> None:
    """Neither success nor failure (the password was right, a second factor is still owed):
    take back the attempt's provisional counts, so the code step is counted on its own."""
    async with platform_tx() as tx:
        await _rows(tx, _UNCOUNT, "email", attempt.email_key)
        await _rows(tx, _UNCOUNT, "ip", attempt.ip_key)


async def _sweep(tx: TransactionalDBClient, window: timedelta) -> None:
    await _rows(
        tx, "DELETE FROM public.login_throttles WHERE window_started_at < now() - 2 * $1::interval"
            " AND (locked_until IS NULL OR locked_until < now())", window)

