"""Sending a campaign: every recipient exactly once, by any number of workers.

A sender takes ONE pending recipient per transaction, `FOR UPDATE SKIP LOCKED`, and in the same
statement marks it sent (with its event and timeline entry), renders the email and hands it to
the provider, which calls back (`settle`) at the moment it may have the message: the
transaction commits then. For SMTP that moment is the end of DATA, and the COMMIT is written
in the same step of the event loop as the final "." (see SmtpProvider._data), before the
server's reply is read. What a worker killed with SIGKILL leaves behind is decided by the
database: before the "." the row is still pending and its lock died with the connection (and
the server drops the unfinished message), so another sender sends it; after the COMMIT it is
sent and nobody touches it again; only a kill between the two system calls could repeat one.
A refusal of the data that arrives after the COMMIT is corrected in a second transaction.
Several senders run side by side in a worker (asyncio tasks, each with its own connection and
its own provider connection), and several workers share a campaign the same way.

arq is not trusted to decide anything (it delivers at least once, does not retry a job that
timed out, and picks up a dead worker's job only after the longest timeout): a job sends for at
most a time budget, then queues its continuation; `public.campaign_queue` carries a heartbeat
that the 5-second cron of kith.jobs.campaigns reads to queue sending jobs again for a campaign
nobody is sending.

A provider refusing a message for good (a 5xx from SMTP, SES rejecting it) is a bounce: the row
fails and the address is suppressed. A provider refusing for now (connection refused, 4xx, rate
limits) backs the campaign off: it waits for 2, 4, 8... seconds (at most 5 minutes) and pauses
with the provider's words after 8 refusals in a row. A configuration problem (an invalid
from-address, refused credentials) or a template that cannot render pauses it at once, with
the reason on the campaign's page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kith.platform.config import get_settings
from kith.platform.db import platform_tx, tenant_scope
from kith.platform.observability import get_logger
from kith.tenants.campaigns import links
from kith.tenants.campaigns.provider_settings import ProviderFactory, provider_factory
from kith.tenants.campaigns.providers import (
    OutgoingEmail,
    PermanentFailure,
    Provider,
    ProviderError,
    TemporaryFailure,
    Unconfirmed,
)
from kith.tenants.campaigns.templates import TemplateError, render, split_name

log = get_logger("kith.campaigns")
MAX_FAILURES = 8
HEARTBEAT_SECONDS = 2.0
RATE_BLOCK = 10  # emails a sender takes from the workspace's per-second rate at once

# Takes the next pending recipient (its row locked) and, unless it may not be sent to, marks it
# sent with its 'sent' event and timeline entry, all in one statement: the transaction is then
# only waiting for the provider and its COMMIT.
_CLAIM = (
    "WITH n AS (SELECT r.id, r.contact_id, r.email, r.merge, (x.email IS NOT NULL) AS suppressed,"
    " (r.contact_id IS NULL OR ct.id IS NULL OR ct.erased_at IS NOT NULL"
    "  OR ct.marketing_consent <> 'granted') AS no_consent"
    " FROM campaign_recipients r JOIN campaigns c ON c.id = r.campaign_id AND c.status = 'sending'"
    " LEFT JOIN email_suppressions x ON x.email = lower(r.email)"
    " LEFT JOIN contacts ct ON ct.id = r.contact_id"
    " WHERE r.campaign_id = $1 AND r.status = 'pending' AND r.id > $2"
    " ORDER BY r.id LIMIT 1 FOR UPDATE OF r SKIP LOCKED),"
    " s AS (UPDATE campaign_recipients r SET status = 'sent', sent_at = now(), attempts = r.attempts + 1,"
    "  message_id = '<c' || r.campaign_id || '.r' || r.id || '.t' || $3::bigint || '@kith>'"
    "  FROM n WHERE r.id = n.id AND NOT n.suppressed AND NOT n.no_consent"
    "  RETURNING r.id, r.campaign_id, r.contact_id),"
    " e AS (INSERT INTO campaign_events (campaign_id, recipient_id, kind) SELECT campaign_id, id, 'sent' FROM s),"
    " a AS (INSERT INTO activities (kind, subject, event, occurred_at, contact_id)"
    "  SELECT 'event', $4, $5::jsonb, now(), contact_id FROM s WHERE contact_id IS NOT NULL)"
    " SELECT * FROM n"
)
# Takes the 'sent' mark back: the provider refused the message after all.
_UNSEND = (
    "WITH r AS (UPDATE campaign_recipients SET status = 'pending', message_id = '', sent_at = NULL,"
    " attempts = attempts - 1 WHERE id = $1 AND status = 'sent' RETURNING id, campaign_id, contact_id),"
    " e AS (DELETE FROM campaign_events e USING r WHERE e.recipient_id = r.id AND e.kind = 'sent')"
    " DELETE FROM activities a USING r WHERE a.contact_id = r.contact_id AND a.kind = 'event'"
    " AND a.event->>'name' = 'campaign.sent' AND a.event->>'campaign_id' = r.campaign_id::text"
)
_BOUNCED = (
    "WITH s AS (UPDATE campaign_recipients SET status = 'failed', error = $2, bounced_at = now(),"
    " attempts = attempts + 1 WHERE id = $1 RETURNING id, campaign_id, contact_id, email),"
    " x AS (INSERT INTO email_suppressions (email, reason, source) SELECT lower(email), 'bounced', $5 FROM s"
    " ON CONFLICT (email) DO NOTHING),"
    " e AS (INSERT INTO campaign_events (campaign_id, recipient_id, kind, detail)"
    " SELECT campaign_id, id, 'bounced', jsonb_build_object('error', $2::text) FROM s)"
    " INSERT INTO activities (kind, subject, event, occurred_at, contact_id)"
    " SELECT 'event', $3, $4::jsonb, now(), contact_id FROM s WHERE contact_id IS NOT NULL"
)


@dataclass
class Campaign:
    """What every email of a campaign shares, read once per sender."""

    tenant_id: int
    id: int
    name: str
    subject: str
    html_body: str
    text_body: str
    from_name: str
    from_email: str
    reply_to: str
    workspace_name: str
    locale: str
    failures: int


@dataclass
class SendReport:
    sent: int = 0
    bounced: int = 0
    suppressed: int = 0
    stopped: str = ""          # why the senders stopped early ("" when the time budget ran out or all done)
    finished: bool = False     # the campaign has nothing left to send
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


class _Stop(Exception):
    """Every sender of this job stops: the campaign was paused or backs off."""


async def _load(tenant_id: int, campaign_id: int) -> Campaign | None:
    async with tenant_scope(tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "SELECT c.*, t.name AS workspace_name, t.locale FROM campaigns c, public.tenants t"
            " WHERE c.id = $1 AND t.id = $2", [int(campaign_id), int(tenant_id)])
    if not rows or rows[0]["status"] != "sending":
        return None
    r = rows[0]
    return Campaign(tenant_id=int(tenant_id), id=int(r["id"]), name=r["name"], subject=r["subject"],
                    html_body=r["html_body"], text_body=r["text_body"], from_name=r["from_name"],
                    from_email=r["from_email"], reply_to=r["reply_to"], workspace_name=r["workspace_name"],
                    locale=r["locale"] or "en", failures=int(r["failures"]))


def _message(campaign: Campaign, row: dict[str, Any], base_url: str) -> OutgoingEmail:
    rid = int(row["id"])
    merge = row["merge"]
    merge = dict(json.loads(merge) if isinstance(merge, str) else merge or {})
    first, last = split_name(str(merge.get("name") or ""))
    merge.setdefault("first_name", first)
    merge.setdefault("last_name", last)
    merge.setdefault("workspace_name", campaign.workspace_name)
    unsubscribe = links.unsubscribe_url(base_url, campaign.tenant_id, rid)
    subject, html, text = render(
        campaign.subject, campaign.html_body, campaign.text_body, merge, unsubscribe_url=unsubscribe,
        open_pixel_url=links.open_pixel_url(base_url, campaign.tenant_id, rid),
        click_url=lambda url: links.click_url(base_url, campaign.tenant_id, rid, url), locale=campaign.locale)
    return OutgoingEmail(
        to=row["email"], from_email=campaign.from_email, from_name=campaign.from_name, reply_to=campaign.reply_to,
        subject=subject, html=html, text=text,
        headers={"List-Unsubscribe": f"<{unsubscribe}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                 "X-Kith-Recipient": f"{campaign.tenant_id}.{rid}"},
        message_id=f"<c{campaign.id}.r{rid}.t{campaign.tenant_id}@kith>")


async def _pause(tenant_id: int, campaign_id: int, reason: str) -> None:
    async with tenant_scope(tenant_id) as tx:
        await tx.execute_query(
            "UPDATE campaigns SET status = 'paused', paused_reason = $2, updated_at = now()"
            " WHERE id = $1 AND status = 'sending'", [campaign_id, reason[:1000]])
    async with platform_tx() as ptx:
        await ptx.execute_query("DELETE FROM public.campaign_queue WHERE tenant_id = $1 AND campaign_id = $2",
                                [tenant_id, campaign_id])
    log.warning("campaign_paused", tenant_id=tenant_id, campaign_id=campaign_id, reason=reason)


async def _back_off(campaign: Campaign, reason: str) -> None:
    """One more refusal in a row: wait longer before trying again, or pause after too many."""
    async with tenant_scope(campaign.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "UPDATE campaigns SET failures = failures + 1, retry_at = now() + make_interval(secs =>"
            " least(300, 2 ^ (failures + 1))), updated_at = now() WHERE id = $1 AND status = 'sending'"
            " RETURNING failures, retry_at", [campaign.id])
    if not rows:
        return
    if rows[0]["failures"] >= MAX_FAILURES:
        await _pause(campaign.tenant_id, campaign.id,
                     f"The email provider refused {MAX_FAILURES} times in a row; the last time: {reason}")
        return
    async with platform_tx() as ptx:
        await ptx.execute_query(
            "UPDATE public.campaign_queue SET next_run_at = $3, heartbeat_at = NULL"
            " WHERE tenant_id = $1 AND campaign_id = $2", [campaign.tenant_id, campaign.id, rows[0]["retry_at"]])


class _Rate:
    """At most `per_minute` emails a minute for the workspace, across every worker: Redis counts
    each second's sends, and a sender takes its share of a second in blocks (one INCRBY for up to
    RATE_BLOCK emails); what it could not use within that second is dropped, never carried over."""

    def __init__(self, tenant_id: int, per_minute: int) -> None:
        self.tenant_id = tenant_id
        self.per_second = max(1, per_minute // 60)
        self.block = max(1, min(RATE_BLOCK, self.per_second // 4))
        self.second = 0
        self.tokens = 0

    async def wait(self) -> None:
        from kith.jobs.queue import get_queue  # jobs sits above tenants; the queue's Redis is the counter

        while True:
            second = int(time.time())
            if second == self.second and self.tokens > 0:
                self.tokens -= 1
                return
            redis = await get_queue()
            key = f"{get_settings().queue_name}:rate:{self.tenant_id}:{second}"
            count = int(await redis.incrby(key, self.block))
            if count == self.block:
                await redis.expire(key, 5)
            granted = max(0, min(self.block, self.per_second - (count - self.block)))
            if granted:
                self.second, self.tokens = second, granted - 1
                return
            await asyncio.sleep(max(0.01, second + 1 - time.time()))


async def _send_one(campaign: Campaign, provider: Provider, after: int, base_url: str,
                    report: SendReport) -> int | None:
    """Send the next pending recipient with an id above `after`; its id, or None when none is left.

    The row is marked sent before the provider is asked, in a transaction that commits at the
    moment the provider may have the message (`settle`: for SMTP right after the end of DATA is
    written, before the reply is read). Refused before that moment: the mark is taken back in the
    same transaction. Refused after it (a 5xx or 4xx reply to the data, which is rare): the mark is
    taken back in a second transaction. A connection lost after the data went out leaves the row
    sent: the server most likely kept the message, and a second copy is worse than a lost reply.
    """
    settled = False
    failure: ProviderError | None = None
    facts = {"name": "campaign.sent", "campaign_id": campaign.id, "campaign": campaign.name}
    async with tenant_scope(campaign.tenant_id) as tx:
        rows = await tx.execute_query_dict(_CLAIM, [campaign.id, after, campaign.tenant_id,
                                                    f"Sent the email of campaign “{campaign.name}”"[:200],
                                                    json.dumps(facts)])
        if not rows:
            return None
        row = rows[0]
        rid = int(row["id"])
        if row["suppressed"] or row["no_consent"]:
            await tx.execute_query("UPDATE campaign_recipients SET status = 'suppressed' WHERE id = $1", [rid])
            report.suppressed += 1
            return rid
        try:
            email = _message(campaign, row, base_url)
        except TemplateError as exc:
            raise _Stop(f"The campaign's template does not render: {exc}") from None

        async def settle() -> None:
            nonlocal settled
            await tx.commit()
            settled = True

        try:
            provider_id = await provider.send(email, settle)
        except PermanentFailure as exc:
            if not settled:
                await _bounce(tx, campaign, rid, exc.message)
                report.bounced += 1
                return rid
            failure = exc
        except TemporaryFailure as exc:
            if not settled:
                raise
            failure = exc
    if isinstance(failure, Unconfirmed):
        log.warning("campaign_reply_lost", tenant_id=campaign.tenant_id, campaign_id=campaign.id,
                    recipient_id=rid, error=failure.message)
        report.sent += 1
        raise failure  # kept as sent; the provider is unwell, so the campaign backs off
    if failure is not None:
        async with tenant_scope(campaign.tenant_id) as tx:
            if isinstance(failure, PermanentFailure):
                await _bounce(tx, campaign, rid, failure.message)
                report.bounced += 1
                return rid
            await tx.execute_query(_UNSEND, [rid])
        raise failure
    if provider_id and provider_id != email.message_id:  # SES names messages itself: keep its id too
        async with tenant_scope(campaign.tenant_id) as tx:
            await tx.execute_query("UPDATE campaign_recipients SET message_id = $2 WHERE id = $1", [rid, provider_id])
    report.sent += 1
    return rid


async def _bounce(tx: Any, campaign: Campaign, rid: int, error: str) -> None:
    """The recipient's address refused the message for good: take the 'sent' mark back, fail the
    row and suppress the address."""
    await tx.execute_query(_UNSEND, [rid])
    facts = {"name": "campaign.bounced", "campaign_id": campaign.id, "campaign": campaign.name}
    await tx.execute_query(_BOUNCED, [rid, error[:1000], f"The email of campaign “{campaign.name}” bounced"[:200],
                                      json.dumps(facts), f"campaign #{campaign.id}"])


async def _send_shielded(campaign: Campaign, provider: Provider, after: int, base_url: str,
                         report: SendReport) -> int | None:
    """`_send_one`, finished even when the job is cancelled meanwhile (arq cancels a job at a
    worker's SIGTERM once its grace time is over, and at its timeout): an email whose data went
    out has its COMMIT, and one whose COMMIT went out has its reply read. The cancellation is
    raised once it is done."""
    work = asyncio.ensure_future(_send_one(campaign, provider, after, base_url, report))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        if not work.done():
            await asyncio.wait([work])
        raise


async def _sender(campaign: Campaign, deadline: float, report: SendReport, per_minute: int,
                  base_url: str, factory: ProviderFactory) -> None:
    provider = factory()
    rate = _Rate(campaign.tenant_id, per_minute)
    after = 0
    try:
        while time.monotonic() < deadline and not report.stopped:
            await rate.wait()
            try:
                done = await _send_shielded(campaign, provider, after, base_url, report)
            except TemporaryFailure as exc:
                # one refusal of the provider stops every sender of this job, and counts once: the
                # senders that meet it at the same time are one attempt, not one each
                first = not report.stopped
                report.stopped = report.stopped or exc.message
                if first:
                    await _back_off(campaign, exc.message)
                return
            except _Stop as exc:
                report.stopped = str(exc)
                await _pause(campaign.tenant_id, campaign.id, str(exc))
                return
            except ProviderError as exc:
                report.stopped = exc.message
                await _pause(campaign.tenant_id, campaign.id, f"The email provider refused the campaign: {exc.message}")
                return
            if done is None:
                if after == 0:
                    return  # nothing pending anywhere this sender can take
                after = 0  # a second pass from the start: rows another sender released (a crash) wait there
                continue
            after = done
            if campaign.failures and report.sent:
                campaign.failures = 0
                async with tenant_scope(campaign.tenant_id) as tx:
                    await tx.execute_query("UPDATE campaigns SET failures = 0, retry_at = NULL WHERE id = $1",
                                           [campaign.id])
    finally:
        with contextlib.suppress(Exception):
            await provider.close()


async def _heartbeat(tenant_id: int, campaign_id: int) -> None:
    while True:
        with contextlib.suppress(Exception):
            async with platform_tx() as tx:
                await tx.execute_query(
                    "UPDATE public.campaign_queue SET heartbeat_at = now() WHERE tenant_id = $1 AND campaign_id = $2",
                    [tenant_id, campaign_id])
        await asyncio.sleep(HEARTBEAT_SECONDS)


async def finish_if_done(tenant_id: int, campaign_id: int) -> bool:
    """Mark the campaign sent when no recipient is pending (rows other senders hold are pending)."""
    async with tenant_scope(tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "UPDATE campaigns SET status = 'sent', finished_at = now(), updated_at = now()"
            " WHERE id = $1 AND status = 'sending' AND NOT EXISTS (SELECT 1 FROM campaign_recipients"
            " WHERE campaign_id = $1 AND status = 'pending') RETURNING id", [campaign_id])
    if rows:
        async with platform_tx() as ptx:
            await ptx.execute_query("DELETE FROM public.campaign_queue WHERE tenant_id = $1 AND campaign_id = $2",
                                    [tenant_id, campaign_id])
        log.info("campaign_sent", tenant_id=tenant_id, campaign_id=campaign_id)
    return bool(rows)


async def send_campaign(tenant_id: int, campaign_id: int, *, seconds: float, senders: int | None = None,
                        say: Callable[[str], None] | None = None) -> SendReport:
    """Send the campaign's pending recipients for at most `seconds` with `senders` side by side."""
    started = time.monotonic()
    report = SendReport()
    campaign = await _load(tenant_id, campaign_id)
    if campaign is None:
        report.stopped = "not sending"
        return report
    factory = await provider_factory(tenant_id)  # the workspace's provider settings, read once per job
    settings = get_settings()
    count = senders or settings.campaign_senders
    base_url = settings.base_url
    deadline = started + seconds
    beat = asyncio.get_running_loop().create_task(_heartbeat(tenant_id, campaign_id))
    try:
        await asyncio.gather(*(_sender(Campaign(**campaign.__dict__), deadline, report,
                                       settings.campaign_rate_per_minute, base_url, factory) for _ in range(count)))
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
    if not report.stopped:
        report.finished = await finish_if_done(tenant_id, campaign_id)
    report.seconds = time.monotonic() - started
    if say:
        say(f"campaign {campaign_id}: {report.sent:,} sent, {report.bounced:,} bounced, "
            f"{report.suppressed:,} suppressed in {report.seconds:.1f} s"
            + (" (finished)" if report.finished else f" ({report.stopped})" if report.stopped else ""))
    return report
