"""What happens to a campaign email after it left: opens, clicks, unsubscribes, deliveries,
bounces and complaints, and the workspace's suppression list that keeps Kith from mailing an
address again.

Every effect lands in the recipient's own workspace (the tenant id comes from a signed link or
from the X-Kith-Recipient header SES hands back, never from a scan of all workspaces), in one
transaction: the campaign_recipients timestamp, a campaign_events row for the report, one
timeline event per kind and recipient on the contact (repeat opens and clicks would flood it),
and for unsubscribes, bounces and complaints an email_suppressions row. Each step checks the
recipient's timestamp first, so a second unsubscribe, a reloaded pixel or a notification SNS
delivers twice changes nothing more.

Two layers: `*_in(session, ...)` functions work inside a transaction the caller holds (the
sending engine calls `bounce_in` for an SMTP 5xx while it holds the recipient's row), and the
plain functions (`record_open`, `unsubscribe`, ...) open their own transaction as the system
actor the link or notification stands for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from tortoise.backends.base.client import BaseDBAsyncClient

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.platform.db import TenantUnavailable, tenant_scope
from kith.platform.tenancy.models import Tenant, TenantStatus
from kith.tenants.activities.events import record_event
from kith.tenants.contacts.privacy import record_consent_event

SuppressionReason = Literal["unsubscribed", "bounced", "complained", "manual"]
REASONS: Final = ("unsubscribed", "bounced", "complained", "manual")
UNSUBSCRIBE_SOURCE: Final = "unsubscribe link"
# The header the sending engine puts on every campaign email: "<tenant id>.<recipient id>". SES
# returns the original headers in its notifications, which is how a bounce finds its workspace.
RECIPIENT_HEADER: Final = "X-Kith-Recipient"
_HEADER_VALUE = re.compile(r"\s*([1-9][0-9]{0,17})\.([1-9][0-9]{0,17})\s*")
# Our own Message-ID ("<c{campaign}.r{recipient}.{tenant}@kith>"), when SES keeps it.
_MESSAGE_ID = re.compile(r"\s*<c[0-9]+\.r([1-9][0-9]{0,17})\.([1-9][0-9]{0,17})@kith>\s*")
# actor labels: what the audit log and consent history say did it
OPEN_LABEL: Final = "open pixel"
CLICK_LABEL: Final = "tracked link"
SES_LABEL: Final = "SES notification"


def recipient_header_value(tenant_id: int, recipient_id: int) -> str:
    """The X-Kith-Recipient header value of one campaign email."""
    return f"{int(tenant_id)}.{int(recipient_id)}"


# --- suppression ---------------------------------------------------------------------------


def _address(email: str) -> str:
    return email.strip().lower()


async def suppression_reason(tx: BaseDBAsyncClient, email: str) -> str | None:
    """Why `email` is on the workspace's suppression list ('unsubscribed', 'bounced',
    'complained' or 'manual'), or None. `tx` is a transaction in the workspace's tenant scope."""
    if not email.strip():
        return None
    rows = await tx.execute_query_dict("SELECT reason FROM email_suppressions WHERE email = $1", [_address(email)])
    return str(rows[0]["reason"]) if rows else None


async def is_suppressed(tx: BaseDBAsyncClient, email: str) -> bool:
    """True when marketing email must never go to `email` in this workspace (checked by the
    sending engine before every send, in the transaction that holds the recipient's row)."""
    return await suppression_reason(tx, email) is not None


async def suppress(tx: BaseDBAsyncClient, email: str, reason: SuppressionReason, source: str) -> bool:
    """Put `email` on the workspace's suppression list; True when it was not on it before.

    The first reason stays (an address that unsubscribed and later complained is already kept
    out, and its history says why it first was); `source` says where it came from ("campaign 12",
    "SES bounce", a person's email)."""
    if reason not in REASONS:
        raise ValueError(f"unknown suppression reason {reason!r}; use one of {', '.join(REASONS)}")
    address = _address(email)
    if not address:
        return False
    rows = await tx.execute_query_dict(
        "INSERT INTO email_suppressions (email, reason, source) VALUES ($1, $2, $3)"
        " ON CONFLICT (email) DO NOTHING RETURNING email", [address, reason, source[:200]])
    return bool(rows)


# --- the recipient's row -------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """A campaign recipient as tracking needs it (read with its row locked)."""

    id: int
    campaign_id: int
    campaign_name: str
    contact_id: int | None
    email: str
    status: str
    message_id: str
    delivered_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None
    bounced_at: datetime | None
    complained_at: datetime | None
    unsubscribed_at: datetime | None


async def locked_recipient(session: TenantSession, recipient_id: int,
                           message_id: str | None = None) -> Recipient | None:
    """The recipient, its row locked until the transaction ends (so two clicks at once record one
    first click), or None. With `message_id`, only when the row carries that provider id."""
    rows = await session.tx.execute_query_dict(
        "SELECT r.id, r.campaign_id, c.name AS campaign_name, r.contact_id, r.email, r.status, r.message_id,"
        " r.delivered_at, r.opened_at, r.clicked_at, r.bounced_at, r.complained_at, r.unsubscribed_at"
        " FROM campaign_recipients r JOIN campaigns c ON c.id = r.campaign_id"
        " WHERE r.id = $1 AND ($2::text IS NULL OR r.message_id = $2) FOR UPDATE OF r",
        [int(recipient_id), message_id])
    return Recipient(**rows[0]) if rows else None


async def _set(session: TenantSession, recipient: Recipient, column: str, at: datetime) -> None:
    # column names come from this module only
    await session.tx.execute_query(
        f"UPDATE campaign_recipients SET {column} = $2 WHERE id = $1", [recipient.id, at])  # noqa: S608


async def _campaign_event(session: TenantSession, recipient: Recipient, kind: str, at: datetime,
                          detail: Mapping[str, Any] | None = None) -> None:
    await session.tx.execute_query(
        "INSERT INTO campaign_events (campaign_id, recipient_id, kind, at, detail) VALUES ($1, $2, $3, $4, $5::jsonb)",
        [recipient.campaign_id, recipient.id, kind, at, json.dumps(dict(detail or {}), default=str)])


_TIMELINE_SUBJECTS: Final = {
    "opened": "Opened the email of campaign “{name}”",
    "clicked": "Clicked a link in the email of campaign “{name}”",
    "bounced": "The email of campaign “{name}” bounced",
    "complained": "Marked the email of campaign “{name}” as spam",
    "unsubscribed": "Unsubscribed through campaign “{name}”",
}


async def _timeline(session: TenantSession, recipient: Recipient, kind: str, at: datetime,
                    facts: Mapping[str, Any] | None = None) -> None:
    if recipient.contact_id is None:
        return  # the contact was deleted after the campaign started: no timeline to write on
    await record_event(
        session, f"campaign.{kind}",
        {"campaign_id": recipient.campaign_id, "campaign": recipient.campaign_name,
         "recipient_id": recipient.id, **(facts or {})},
        subject=_TIMELINE_SUBJECTS[kind].format(name=recipient.campaign_name), contact_id=recipient.contact_id,
        occurred_at=at)


def _now() -> datetime:
    return datetime.now(UTC)


# --- opens and clicks ----------------------------------------------------------------------


async def open_in(session: TenantSession, recipient_id: int, *, at: datetime | None = None) -> bool:
    """Record that the recipient opened the email; True for the first open.

    Only the first open is kept (opened_at, one 'opened' event, one timeline event): mail
    clients and image proxies (Gmail's, Apple's Mail Privacy Protection) reload the pixel at
    will, so later loads carry no information worth a row."""
    recipient = await locked_recipient(session, recipient_id)
    return recipient is not None and await _first_open(session, recipient, at or _now())


async def _first_open(session: TenantSession, recipient: Recipient, at: datetime) -> bool:
    if recipient.opened_at is not None:
        return False
    await _set(session, recipient, "opened_at", at)
    await _campaign_event(session, recipient, "opened", at, {"first": True})
    await _timeline(session, recipient, "opened", at)
    return True


async def click_in(session: TenantSession, recipient_id: int, url: str, *, at: datetime | None = None) -> bool:
    """Record a click on `url`; True for the recipient's first click.

    Every click is a 'clicked' event carrying its URL (which links work is what a marketer asks);
    the first also sets clicked_at and writes the timeline event. A click proves the email was
    opened, so it counts as the open when the pixel was blocked."""
    recipient = await locked_recipient(session, recipient_id)
    if recipient is None:
        return False
    at = at or _now()
    await _first_open(session, recipient, at)
    first = recipient.clicked_at is None
    await _campaign_event(session, recipient, "clicked", at, {"url": url, "first": first})
    if first:
        await _set(session, recipient, "clicked_at", at)
        await _timeline(session, recipient, "clicked", at, {"url": url})
    return first


# --- unsubscribe ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UnsubscribeOutcome:
    """What an unsubscribe did: `changed` is False when everything was already in place."""

    found: bool
    changed: bool
    email: str = ""


async def unsubscribe_in(session: TenantSession, recipient_id: int, *, method: str,
                         at: datetime | None = None) -> UnsubscribeOutcome:
    """Unsubscribe the recipient at once: the address suppressed ('unsubscribed'), the contact's
    marketing consent withdrawn (source 'unsubscribe link', with a consent_events row), the
    recipient's unsubscribed_at, a campaign event, a timeline event and an audit entry.

    `method` says how ("page" for the confirm button, "one-click" for RFC 8058). A second call
    finds everything in place and changes nothing. The audit action is "privacy.unsubscribe":
    a privacy duty, which even a read-only (unpaid) workspace carries out."""
    recipient = await locked_recipient(session, recipient_id)
    if recipient is None:
        return UnsubscribeOutcome(found=False, changed=False)
    at = at or _now()
    diff: dict[str, Any] = {}
    if await suppress(session.tx, recipient.email, "unsubscribed", f"campaign {recipient.campaign_id}"):
        diff["suppressed"] = "unsubscribed"
    first = recipient.unsubscribed_at is None
    if first:
        await _set(session, recipient, "unsubscribed_at", at)
        await _campaign_event(session, recipient, "unsubscribed", at, {"method": method})
        diff["recipient_unsubscribed_at"] = at.isoformat()
    contact_id = recipient.contact_id
    # an erased contact keeps no consent history: its address is suppressed, nothing more
    contact_rows = [] if contact_id is None else await session.tx.execute_query_dict(
        "SELECT marketing_consent, consent_source FROM contacts WHERE id = $1 AND erased_at IS NULL FOR UPDATE",
        [contact_id])
    if contact_id is not None and contact_rows and contact_rows[0]["marketing_consent"] != "withdrawn":
        before = contact_rows[0]
        await session.tx.execute_query(
            "UPDATE contacts SET marketing_consent = 'withdrawn', consent_source = $2, consent_at = $3,"
            " unsubscribed_at = $3, updated_at = now() WHERE id = $1",
            [contact_id, UNSUBSCRIBE_SOURCE, at])
        await record_consent_event(session, contact_id, "withdrawn", UNSUBSCRIBE_SOURCE, at)
        diff["marketing_consent"] = [before["marketing_consent"], "withdrawn"]
        diff["consent_source"] = [before["consent_source"], UNSUBSCRIBE_SOURCE]
    if first:
        await _timeline(session, recipient, "unsubscribed", at, {"method": method})
    if not diff:
        return UnsubscribeOutcome(found=True, changed=False, email=recipient.email)
    facts = {**diff, "campaign_id": recipient.campaign_id, "recipient_id": recipient.id, "method": method}
    if contact_id is not None:
        await session.audit("privacy.unsubscribe", "contacts", contact_id, facts, subject=("contacts", contact_id))
    else:
        await session.audit("privacy.unsubscribe", "campaigns", recipient.campaign_id, facts)
    return UnsubscribeOutcome(found=True, changed=True, email=recipient.email)


# --- delivery, bounces, complaints ---------------------------------------------------------


async def delivery_in(session: TenantSession, recipient: Recipient, *, at: datetime) -> bool:
    """Record that the provider delivered the email (no timeline event: every email would have
    one); True the first time."""
    if recipient.delivered_at is not None:
        return False
    await _set(session, recipient, "delivered_at", at)
    await _campaign_event(session, recipient, "delivered", at)
    return True


async def _event_exists(session: TenantSession, recipient: Recipient, kind: str, at: datetime) -> bool:
    # (campaign_id, at) is indexed: a notification delivered twice carries the same timestamp
    rows = await session.tx.execute_query_dict(
        "SELECT 1 FROM campaign_events WHERE campaign_id = $1 AND at = $2 AND recipient_id = $3 AND kind = $4",
        [recipient.campaign_id, at, recipient.id, kind])
    return bool(rows)


async def bounce_in(session: TenantSession, recipient_id: int, *, permanent: bool,
                    detail: Mapping[str, Any] | None = None, at: datetime | None = None,
                    source: str = "") -> bool:
    """Record a bounce of the recipient's email; True when it changed anything.

    A permanent bounce (SES bounceType Permanent, an SMTP 5xx) means the address will never take
    mail: bounced_at, a 'bounced' event, the address suppressed ('bounced') and one timeline
    event, all once. A transient bounce (mailbox full, greylisting) is only an event, recorded
    once per timestamp so a redelivered notification adds nothing."""
    recipient = await locked_recipient(session, recipient_id)
    if recipient is None:
        return False
    return await _bounce(session, recipient, permanent=permanent, detail=detail, at=at or _now(), source=source)


async def _bounce(session: TenantSession, recipient: Recipient, *, permanent: bool,
                  detail: Mapping[str, Any] | None, at: datetime, source: str) -> bool:
    facts = {"permanent": permanent, **(detail or {})}
    if not permanent:
        if await _event_exists(session, recipient, "bounced", at):
            return False
        await _campaign_event(session, recipient, "bounced", at, facts)
        return True
    if recipient.bounced_at is not None:
        return False
    await _set(session, recipient, "bounced_at", at)
    await _campaign_event(session, recipient, "bounced", at, facts)
    await suppress(session.tx, recipient.email, "bounced", source or f"campaign {recipient.campaign_id}")
    await _timeline(session, recipient, "bounced", at, {k: v for k, v in facts.items() if k != "diagnostic"})
    return True


async def complaint_in(session: TenantSession, recipient: Recipient, *, at: datetime,
                       detail: Mapping[str, Any] | None = None, source: str = "") -> bool:
    """Record that the recipient marked the email as spam: complained_at, a 'complained' event,
    the address suppressed ('complained') and one timeline event, once."""
    if recipient.complained_at is not None:
        return False
    await _set(session, recipient, "complained_at", at)
    await _campaign_event(session, recipient, "complained", at, detail)
    await suppress(session.tx, recipient.email, "complained", source or f"campaign {recipient.campaign_id}")
    await _timeline(session, recipient, "complained", at)
    return True


# --- entry points that open their own transaction ------------------------------------------


def _link_actor(tenant_id: int, label: str, ip: str = "", user_agent: str = "", request_id: str = "") -> Actor:
    """Kith itself, acting for a link in an email or a provider's notification (no member)."""
    return Actor(kind="system", tenant_id=tenant_id, role="owner", label=label, ip=ip,
                 user_agent=user_agent[:300], request_id=request_id)


async def record_open(tenant_id: int, recipient_id: int) -> bool:
    """The open pixel was loaded; True for the first open. A deleted workspace records nothing."""
    try:
        async with acting_as(_link_actor(tenant_id, OPEN_LABEL)) as session:
            return await open_in(session, recipient_id)
    except TenantUnavailable:
        return False


async def record_click(tenant_id: int, recipient_id: int, url: str) -> bool:
    """A tracked link was followed; True for the recipient's first click."""
    try:
        async with acting_as(_link_actor(tenant_id, CLICK_LABEL)) as session:
            return await click_in(session, recipient_id, url)
    except TenantUnavailable:
        return False


async def unsubscribe(tenant_id: int, recipient_id: int, *, method: str, ip: str = "", user_agent: str = "",
                      request_id: str = "") -> UnsubscribeOutcome:
    """Unsubscribe through a signed link (see unsubscribe_in); `found` is False when the
    workspace or the recipient no longer exists."""
    actor = _link_actor(tenant_id, UNSUBSCRIBE_SOURCE, ip, user_agent, request_id)
    try:
        async with acting_as(actor) as session:
            return await unsubscribe_in(session, recipient_id, method=method)
    except TenantUnavailable:
        return UnsubscribeOutcome(found=False, changed=False)


async def record_bounce(tenant_id: int, recipient_id: int, *, permanent: bool,
                        detail: Mapping[str, Any] | None = None, at: datetime | None = None) -> bool:
    """A bounce reported outside a sending transaction (see bounce_in)."""
    async with acting_as(_link_actor(tenant_id, SES_LABEL)) as session:
        return await bounce_in(session, recipient_id, permanent=permanent, detail=detail, at=at)


async def record_complaint(tenant_id: int, recipient_id: int, *, detail: Mapping[str, Any] | None = None,
                           at: datetime | None = None) -> bool:
    """A complaint reported outside a sending transaction (see complaint_in)."""
    async with acting_as(_link_actor(tenant_id, SES_LABEL)) as session:
        recipient = await locked_recipient(session, recipient_id)
        return recipient is not None and await complaint_in(session, recipient, at=at or _now(), detail=detail)


# --- the unsubscribe page ------------------------------------------------------------------


@dataclass(frozen=True)
class UnsubscribeView:
    """What the public unsubscribe page shows: whose list, which address, and whether done."""

    workspace_name: str
    locale: str
    email: str
    unsubscribed: bool


async def unsubscribe_view(tenant_id: int, recipient_id: int) -> UnsubscribeView | None:
    """The unsubscribe page's facts, or None when the workspace or recipient is gone."""
    try:
        async with tenant_scope(tenant_id) as tx:
            rows = await tx.execute_query_dict(
                "SELECT t.name, t.locale, r.email, r.unsubscribed_at,"
                " EXISTS (SELECT 1 FROM email_suppressions s WHERE s.email = lower(btrim(r.email))"
                "         AND s.reason = 'unsubscribed') AS listed"
                " FROM campaign_recipients r JOIN public.tenants t ON t.id = $2 WHERE r.id = $1",
                [int(recipient_id), int(tenant_id)])
    except TenantUnavailable:
        return None
    if not rows:
        return None
    row = rows[0]
    return UnsubscribeView(workspace_name=str(row["name"]), locale=str(row["locale"] or "en"), email=str(row["email"]),
                           unsubscribed=row["unsubscribed_at"] is not None or bool(row["listed"]))


async def workspace_locale(tenant_id: int) -> str | None:
    """The workspace's locale for a public page about one of its emails; None when unknown."""
    tenant = await Tenant.filter(id=int(tenant_id)).exclude(status=TenantStatus.DELETED).first()
    return None if tenant is None else tenant.locale


# --- SES notifications ---------------------------------------------------------------------


def _headers(mail: Mapping[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for item in mail.get("headers") or []:
        if isinstance(item, Mapping) and isinstance(item.get("name"), str) and isinstance(item.get("value"), str):
            found.append((item["name"].lower(), item["value"]))
    return found


def ses_recipient_ref(mail: Mapping[str, Any]) -> tuple[int, int] | None:
    """(tenant id, recipient id) of the email an SES notification is about: from the
    X-Kith-Recipient header, else from our own Message-ID when SES kept it; None otherwise."""
    headers = _headers(mail)
    for name, value in headers:
        if name == RECIPIENT_HEADER.lower() and (match := _HEADER_VALUE.fullmatch(value)):
            return int(match.group(1)), int(match.group(2))
    common = mail.get("commonHeaders")
    candidates = [v for n, v in headers if n == "message-id"]
    if isinstance(common, Mapping) and isinstance(common.get("messageId"), str):
        candidates.append(common["messageId"])
    for value in candidates:
        if match := _MESSAGE_ID.fullmatch(value):
            return int(match.group(2)), int(match.group(1))
    return None


def _timestamp(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return _now()
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return _now()


async def ses_notification(message: Mapping[str, Any]) -> str:
    """Apply one SES notification (the Message of a verified SNS Notification, parsed) in the
    recipient's workspace; returns what happened, for the response and the logs.

    The recipient must be the one the X-Kith-Recipient header names AND carry the SES
    MessageId the notification is about: a header alone, which anyone could put in an email,
    moves nothing."""
    kind = message.get("notificationType") or message.get("eventType")
    mail = message.get("mail")
    if kind not in ("Bounce", "Complaint", "Delivery") or not isinstance(mail, Mapping):
        return "ignored"
    ses_id = mail.get("messageId")
    ref = ses_recipient_ref(mail)
    if ref is None or not isinstance(ses_id, str) or not ses_id:
        return "unknown_recipient"
    tenant_id, recipient_id = ref
    try:
        async with acting_as(_link_actor(tenant_id, SES_LABEL)) as session:
            recipient = await locked_recipient(session, recipient_id, message_id=ses_id)
            if recipient is None:
                return "unknown_recipient"
            changed = await _apply_ses(session, recipient, str(kind), message)
    except TenantUnavailable:
        return "unknown_recipient"
    return f"{str(kind).lower()}_recorded" if changed else "duplicate"


def _section(message: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = message.get(key)
    return value if isinstance(value, Mapping) else {}


async def _apply_ses(session: TenantSession, recipient: Recipient, kind: str, message: Mapping[str, Any]) -> bool:
    if kind == "Delivery":
        return await delivery_in(session, recipient, at=_timestamp(_section(message, "delivery").get("timestamp")))
    if kind == "Complaint":
        complaint = _section(message, "complaint")
        detail = {"feedback_type": str(complaint.get("complaintFeedbackType") or ""),
                  "feedback_id": str(complaint.get("feedbackId") or "")}
        return await complaint_in(session, recipient, at=_timestamp(complaint.get("timestamp")), detail=detail,
                                  source="SES complaint")
    bounce = _section(message, "bounce")
    bounced = [b for b in bounce.get("bouncedRecipients") or [] if isinstance(b, Mapping)]
    diagnostic = next((str(b.get("diagnosticCode")) for b in bounced if b.get("diagnosticCode")), "")
    detail = {"bounce_type": str(bounce.get("bounceType") or ""),
              "bounce_subtype": str(bounce.get("bounceSubType") or ""),
              "feedback_id": str(bounce.get("feedbackId") or ""), "diagnostic": diagnostic[:500]}
    return await _bounce(session, recipient, permanent=bounce.get("bounceType") == "Permanent", detail=detail,
                         at=_timestamp(bounce.get("timestamp")), source="SES bounce")
