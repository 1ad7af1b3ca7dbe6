"""Sending the emails recorded in public.outbox_emails.

An email is first written as a row (`queue_email`, inside the transaction that decided to
send it, deduplicated by `dedupe_key`), then delivered (`deliver`, after that transaction
committed). Jobs run at least once, so `deliver` claims the row before talking to SMTP:
`UPDATE ... WHERE status IN ('pending', 'failed')` lets exactly one caller through, and
every later call finds the row 'sending', 'sent' or 'outbox' and does nothing.

Statuses: pending -> sending -> sent | failed (failed rows are claimed again on retry);
with no SMTP_HOST configured, pending -> outbox (the dev outbox at /dev/outbox). The claim
stamps claimed_at: a row still 'sending' INTERRUPTED_AFTER later lost its worker mid-SMTP and
is left for an operator (the server may have the message). A row whose delivery job was never
queued stays 'pending'; the outbox sweeper (kith.jobs.outbox_sweeper) routes it to its job
again or gives it up (`give_up_pending`).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import aiosmtplib
from tortoise.backends.base.client import BaseDBAsyncClient

from kith.platform.config import Settings, get_settings
from kith.platform.db import platform_tx
from kith.platform.observability import get_logger

log = get_logger("kith.email")

SMTP_TIMEOUT_S = 30.0
_ERROR_MAX = 2000
_CLAIMABLE = "('pending', 'failed')"
# Far beyond one SMTP exchange (SMTP_TIMEOUT_S per step) and the job timeout.
INTERRUPTED_AFTER = timedelta(hours=1)


class EmailDeliveryError(RuntimeError):
    """SMTP failed; the row is marked 'failed' with the reason and may be delivered again."""


async def queue_email(
    tx: BaseDBAsyncClient,
    *,
    tenant_id: int | None,
    kind: str,
    dedupe_key: str,
    to: str,
    subject: str,
    body_text: str,
) -> int | None:
    """Record an email to send inside the caller's transaction; return its row id.

    A row with the same dedupe_key is never written twice: the existing row's id is
    returned instead (None only if that row vanished meanwhile, e.g. its tenant was
    deleted). Call `deliver(id)` after the transaction commits.
    """
    rows = await tx.execute_query_dict(
        "INSERT INTO public.outbox_emails (tenant_id, kind, dedupe_key, to_address, subject, body_text)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        [tenant_id, kind, dedupe_key, to, subject, body_text],
    )
    if not rows:
        # READ COMMITTED: this statement sees the row whose insert made ours a no-op.
        rows = await tx.execute_query_dict(
            "SELECT id FROM public.outbox_emails WHERE dedupe_key = $1", [dedupe_key]
        )
    return int(rows[0]["id"]) if rows else None


async def _not_claimed(email_id: int) -> str:
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT status FROM public.outbox_emails WHERE id = $1", [email_id]
        )
    return f"already {rows[0]['status']}" if rows else "missing"


async def _set_status(email_id: int, status: str, error: str = "") -> None:
    async with platform_tx() as tx:
        await tx.execute_query(
            "UPDATE public.outbox_emails SET status = $2, error = $3,"
            " sent_at = CASE WHEN $2 = 'sent' THEN now() END"
            " WHERE id = $1 AND status = 'sending'",
            [email_id, status, error],
        )


def compose_message(
    settings: Settings, *, email_id: int, created_at: datetime, to: str, subject: str, body_text: str
) -> EmailMessage:
    """The MIME message for an outbox row."""
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "kith.localhost"
    # Stable per row: should a retry follow a send whose reply was lost, receivers
    # that deduplicate on Message-ID still show one email.
    message["Message-ID"] = f"<outbox.{email_id}.{int(created_at.timestamp())}@{domain}>"
    message.set_content(body_text)
    return message


async def _send_smtp(settings: Settings, message: EmailMessage, handed_over: list[bool]) -> None:
    smtp = aiosmtplib.SMTP(
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        start_tls=settings.smtp_starttls,
        username=settings.smtp_username or None,
        password=settings.smtp_password.reveal() if settings.smtp_username else None,
        timeout=SMTP_TIMEOUT_S,
    )
    await smtp.connect()  # connects, STARTTLS when configured, logs in when a user is set
    try:
        handed_over[0] = True
        await smtp.send_message(message)
    finally:
        # Once send_message returned, the server has the message: a failing QUIT must
        # not turn it into a 'failed' row that a retry would send again.
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await smtp.quit()
        smtp.close()


async def deliver(email_id: int) -> str:
    """Deliver one outbox row, at most once, and say what happened.

    Returns 'outbox' (no SMTP_HOST: kept for the dev outbox) or 'sent' when this call
    delivered it; 'already sent', 'already outbox' or 'already sending' when another call
    did (nothing is done); 'missing' when there is no such row. SMTP failures mark the
    row 'failed' with the reason and raise EmailDeliveryError; a later deliver() (the
    job's retry) claims a failed row again.
    """
    settings = get_settings()
    if not settings.smtp_host:
        async with platform_tx() as tx:
            rows = await tx.execute_query_dict(
                "UPDATE public.outbox_emails SET status = 'outbox', error = '', sent_at = now()"
                f" WHERE id = $1 AND status IN {_CLAIMABLE} RETURNING kind",
                [email_id],
            )
        if not rows:
            return await _not_claimed(email_id)
        log.info("email_delivered", email_id=email_id, kind=rows[0]["kind"], status="outbox")
        return "outbox"

    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "UPDATE public.outbox_emails SET status = 'sending', claimed_at = now()"
            f" WHERE id = $1 AND status IN {_CLAIMABLE}"
            " RETURNING kind, to_address, subject, body_text, created_at",
            [email_id],
        )
    if not rows:
        return await _not_claimed(email_id)
    row = rows[0]
    message = compose_message(
        settings, email_id=email_id, created_at=row["created_at"], to=row["to_address"],
        subject=row["subject"], body_text=row["body_text"],
    )
    handed_over = [False]
    try:
        await _send_smtp(settings, message, handed_over)
    except asyncio.CancelledError:
        if not handed_over[0]:
            # Cancelled (worker shutdown, job timeout) before the message went out: the
            # row goes back to pending so the re-run job sends it.
            with contextlib.suppress(Exception):
                await _release(email_id)
        else:
            # The server may already have it; 'sending' stays for an operator to check
            # rather than risk a second copy.
            log.error("email_delivery_interrupted", email_id=email_id, kind=row["kind"])
        raise
    except Exception as exc:
        error = f"SMTP {settings.smtp_host}:{settings.smtp_port}: {type(exc).__name__}: {exc}"[:_ERROR_MAX]
        await _set_status(email_id, "failed", error)
        log.warning("email_failed", email_id=email_id, kind=row["kind"], error=error)
        raise EmailDeliveryError(error) from exc
    await _set_status(email_id, "sent")
    log.info("email_delivered", email_id=email_id, kind=row["kind"], status="sent")
    return "sent"


async def _release(email_id: int) -> None:
    async with platform_tx() as tx:
        await tx.execute_query(
            "UPDATE public.outbox_emails SET status = 'pending' WHERE id = $1 AND status = 'sending'",
            [email_id],
        )


async def give_up_pending(email_id: int, reason: str) -> bool:
    """Mark a row still 'pending' as 'failed' with `reason` (it was never sent and its occasion
    has passed); False when it is no longer pending. deliver() still claims a 'failed' row, so
    give up only rows that the jobs delivering their kind no longer send."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "UPDATE public.outbox_emails SET status = 'failed', error = $2 WHERE id = $1 AND status = 'pending'"
            " RETURNING kind", [int(email_id), reason[:_ERROR_MAX]])
    if rows:
        log.warning("email_given_up", email_id=email_id, kind=rows[0]["kind"], error=reason)
    return bool(rows)


async def interrupted_count() -> int:
    """Rows 'sending' for longer than INTERRUPTED_AFTER: a worker died mid-SMTP, so the server may
    or may not have the message. Never sent again automatically; operators see the count."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT count(*) AS n FROM public.outbox_emails WHERE status = 'sending'"
            " AND coalesce(claimed_at, created_at) < now() - $1::interval", [INTERRUPTED_AFTER])
    return int(rows[0]["n"])
