"""Emailing a ticket's replies to its contact, through the workspace's own email provider (its SMTP
server or SES; the platform's when it has none; the dev outbox without either).

A reply to be emailed is recorded with the contact's address and email_status 'pending' in the
transaction that adds it; the handler then queues `ticket_reply_email` (kith.jobs.ticket_replies).
Jobs run at least once, so `email_reply` claims the message before handing it over:
`UPDATE ... WHERE email_status IN ('pending', 'failed')` lets one caller through; a message left
'sending' (its worker died mid-send) is not sent again, as the server may have it. A reply whose
job was lost (Redis down at the commit) is picked up by `unsent_replies`, which the worker's sweep
runs every ten minutes.
"""

from __future__ import annotations

import html
from datetime import timedelta
from typing import Any

from kith.platform.db import tenant_scope
from kith.tenants.campaigns.provider_settings import provider_factory
from kith.tenants.campaigns.providers import OutgoingEmail, ProviderError
from kith.tenants.campaigns.template_service import member_sender

EMAIL_KIND = "ticket_reply"
_ERROR_MAX = 2000
# a pending reply younger than this still has its own job coming; the sweep leaves it be
SWEEP_AFTER = timedelta(minutes=10)


class ReplyNotSent(RuntimeError):
    """The provider could not take the reply now (a connection, a 4xx); the job tries again."""


def reply_email(row: dict[str, Any], tenant_id: int) -> OutgoingEmail:
    """The email of one reply: from the workspace (replies to it go to the agent who wrote it), with
    the ticket's number in the subject so the customer's answer can be told apart."""
    from_email, from_name = member_sender(str(row["author_email"] or ""))
    subject = f"Re: [#{row['ticket_id']}] {row['subject']}"
    text = f"{row['body']}\n\n-- \n{row['author_name'] or row['workspace']}\n{row['workspace']}\n"
    return OutgoingEmail(
        to=str(row["email_to"]), from_email=from_email, from_name=from_name or str(row["workspace"]),
        reply_to=str(row["author_email"] or ""), subject=subject[:300],
        html="<p>" + html.escape(str(row["body"])).replace("\n", "<br>\n") + "</p>", text=text,
        headers={"X-Kith-Ticket": f"{tenant_id}.{row['ticket_id']}"},
        message_id=f"<t{tenant_id}.ticket{row['ticket_id']}.m{row['id']}@kith>")


async def _mark(tenant_id: int, message_id: int, status: str, error: str = "") -> None:
    async with tenant_scope(tenant_id) as tx:
        await tx.execute_query(
            "UPDATE ticket_messages SET email_status = $2, email_error = $3,"
            " emailed_at = CASE WHEN $2 = 'sent' THEN now() END WHERE id = $1",
            [message_id, status, error[:_ERROR_MAX]])


async def email_reply(tenant_id: int, message_id: int) -> str:
    """Send one reply, at most once; say what happened ('sent', 'failed: <why>', or 'already <status>'
    when another run did or is doing it). A refusal that is the workspace's configuration or the
    address (ProviderError) marks the reply failed for good; anything else marks it failed and raises
    ReplyNotSent for the job to try again."""
    async with tenant_scope(tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "WITH claimed AS (UPDATE ticket_messages SET email_status = 'sending', email_error = ''"
            " WHERE id = $1 AND email_status IN ('pending', 'failed') RETURNING *)"
            " SELECT c.id, c.ticket_id, c.body, c.email_to, t.subject, i.email AS author_email,"
            " nullif(i.display_name, '') AS author_name, w.name AS workspace FROM claimed c"
            " JOIN tickets t ON t.id = c.ticket_id LEFT JOIN public.identities i ON i.id = c.author_id"
            " JOIN public.tenants w ON w.id = $2", [message_id, tenant_id])
        if not rows:
            status = await tx.execute_query_dict(
                "SELECT email_status FROM ticket_messages WHERE id = $1", [message_id])
            return f"already {status[0]['email_status'] or 'not emailed'}" if status else "missing"
    provider = (await provider_factory(tenant_id))()
    try:
        await provider.send(reply_email(dict(rows[0]), tenant_id))
    except ProviderError as exc:
        await _mark(tenant_id, message_id, "failed", exc.message)
        return f"failed: {exc.message}"
    except Exception as exc:
        await _mark(tenant_id, message_id, "failed", f"{type(exc).__name__}: {exc}")
        raise ReplyNotSent(str(exc)) from exc
    finally:
        await provider.close()
    await _mark(tenant_id, message_id, "sent")
    return "sent"


async def unsent_replies(tenant_id: int) -> list[int]:
    """Replies still 'pending' SWEEP_AFTER after they were written (their job was never queued or was
    lost), oldest first: the sweep queues their jobs again."""
    async with tenant_scope(tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "SELECT id FROM ticket_messages WHERE email_status = 'pending' AND created_at < now() - $1::interval"
            " ORDER BY created_at LIMIT 500", [SWEEP_AFTER])
    return [int(r["id"]) for r in rows]
