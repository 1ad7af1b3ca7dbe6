"""Campaign email tracking end to end through the real app: the open pixel, click redirects,
unsubscribe pages and RFC 8058 one-click POSTs (no login, no CSRF), SES notifications delivered
as SNS would (signed with a certificate of our own, served from loopback), and the report.

Campaign and recipient rows are inserted directly (a campaign row, a contact, a recipient row
marked sent), so these tests exercise tracking alone, whatever state the sending engine is in.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from kith.platform.access.actor import Actor
from kith.platform.access.session import acting_as
from kith.platform.billing.subscriptions import WorkspaceReadOnly, current_subscription
from kith.platform.config import reset_settings, restored_environment
from kith.platform.db import platform_tx, tenant_scope
from kith.tenants.campaigns import links, sns
from kith.tenants.campaigns.report import campaign_report, report_chart_svg
from kith.tenants.campaigns.tracking import bounce_in, is_suppressed, suppress, suppression_reason
from kith.tenants.records.refusals import RecordsRefusal

from .conftest import Services, Workspace
from .web_helpers import client

TARGET = "https://example.com/offer?utm_source=kith&x=1#top"


@dataclass
class Sent:
    """One campaign recipient whose email was sent."""

    ws: Workspace
    campaign_id: int
    recipient_id: int
    contact_id: int
    email: str
    message_id: str


async def sent_email(ws: Workspace, email: str = "", *, campaign_id: int | None = None,
                     name: str = "Spring offer") -> Sent:
    """A contact with marketing consent, a campaign (unless given) and its recipient row marked
    sent with an SES-like message id, inserted directly in the workspace's scope."""
    email = email or f"reader-{uuid.uuid4().hex[:8]}@example.org"
    message_id = f"0100018{uuid.uuid4().hex}-000000"
    async with tenant_scope(ws.tenant_id) as tx:
        [contact] = await tx.execute_query_dict(
            "INSERT INTO contacts (name, email, marketing_consent, consent_source, consent_at)"
            " VALUES ($1, $2, 'granted', 'web form', now()) RETURNING id", [f"Reader {email}", email])
        if campaign_id is None:
            [campaign] = await tx.execute_query_dict(
                "INSERT INTO campaigns (name, status, subject, started_at) VALUES ($1, 'sending', 'Hello', now())"
                " RETURNING id", [name])
            campaign_id = int(campaign["id"])
        [recipient] = await tx.execute_query_dict(
            "INSERT INTO campaign_recipients (campaign_id, contact_id, email, status, message_id, sent_at)"
            " VALUES ($1, $2, $3, 'sent', $4, now()) RETURNING id", [campaign_id, contact["id"], email, message_id])
        await tx.execute_query(
            "INSERT INTO campaign_events (campaign_id, recipient_id, kind) VALUES ($1, $2, 'sent')",
            [campaign_id, recipient["id"]])
    return Sent(ws, campaign_id, int(recipient["id"]), int(contact["id"]), email, message_id)


async def state(s: Sent) -> dict[str, Any]:
    """Everything tracking may change about one recipient, read back from the database."""
    async with tenant_scope(s.ws.tenant_id) as tx:
        [r] = await tx.execute_query_dict("SELECT * FROM campaign_recipients WHERE id = $1", [s.recipient_id])
        [c] = await tx.execute_query_dict(
            "SELECT marketing_consent, consent_source, consent_at, unsubscribed_at FROM contacts WHERE id = $1",
            [s.contact_id])
        events = await tx.execute_query_dict(
            "SELECT kind, detail FROM campaign_events WHERE recipient_id = $1 AND kind <> 'sent' ORDER BY id",
            [s.recipient_id])
        timeline = await tx.execute_query_dict(
            "SELECT event->>'name' AS name, subject FROM activities WHERE contact_id = $1 AND kind = 'event'"
            " ORDER BY id", [s.contact_id])
        consent = await tx.execute_query_dict(
            "SELECT state, source, actor_kind, actor FROM consent_events WHERE contact_id = $1 ORDER BY id",
            [s.contact_id])
        suppressed = await suppression_reason(tx, s.email)
        audit = await tx.execute_query_dict(
            "SELECT action, actor_kind, actor_label FROM audit_log WHERE action = 'privacy.unsubscribe'"
            " AND object_id = $1", [str(s.contact_id)])
    return {"recipient": r, "contact": c,
            "events": [(e["kind"], e["detail"] if isinstance(e["detail"], dict) else json.loads(e["detail"]))
                       for e in events],
            "timeline": [t["name"] for t in timeline], "consent": consent, "suppressed": suppressed,
            "audit": audit}


def tampered(token: str) -> str:
    """The token with the first character of its tag changed (not the last: base64's last
    character carries padding bits, so some changes there decode to the same bytes)."""
    body, tag = token.split(".")
    return f"{body}.{'A' if tag[0] != 'A' else 'B'}{tag[1:]}"


def forged(token: str, payload: list[Any]) -> str:
    """Another payload under the token's original tag (what a forger who edits the URL gets)."""
    body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).rstrip(b"=").decode()
    return f"{body}.{token.split('.')[1]}"


# --- open pixel and clicks -----------------------------------------------------------------


async def test_open_pixel_is_an_uncached_gif_and_records_the_first_open(workspace: Workspace) -> None:
    s = await sent_email(workspace)
    other = await sent_email(workspace, campaign_id=s.campaign_id)
    token = links.open_token(workspace.tenant_id, s.recipient_id)
    async with client() as c:
        head = await c.head(f"/e/o/{token}.gif")  # a link scanner's look records nothing
        assert head.status_code == 200
        assert (await state(s))["recipient"]["opened_at"] is None
        first = await c.get(f"/e/o/{token}.gif")
        again = await c.get(f"/e/o/{token}.gif")
        # a token Kith did not make still gets the image (no broken picture), and records nothing
        bad = await c.get(f"/e/o/{tampered(links.open_token(workspace.tenant_id, other.recipient_id))}.gif")
        unsub_as_open = await c.get(f"/e/o/{links.unsubscribe_token(workspace.tenant_id, other.recipient_id)}.gif")
    for resp in (first, again, bad, unsub_as_open):
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "image/gif"
        assert resp.content.startswith(b"GIF89a") and len(resp.content) == 43
        assert "no-store" in resp.headers["cache-control"]
    after = await state(s)
    assert after["recipient"]["opened_at"] is not None
    assert after["events"] == [("opened", {"first": True})]  # the reload added nothing
    assert after["timeline"] == ["campaign.opened"]
    untouched = await state(other)
    assert untouched["recipient"]["opened_at"] is None and untouched["events"] == []


async def test_click_redirects_only_to_the_signed_url(workspace: Workspace) -> None:
    s = await sent_email(workspace)
    token = links.click_token(workspace.tenant_id, s.recipient_id, TARGET)
    async with client() as c:
        resp = await c.get(f"/e/c/{token}")
        assert resp.status_code == 302
        assert resp.headers["location"] == TARGET
        assert resp.headers["referrer-policy"] == "no-referrer"
        again = await c.get(f"/e/c/{token}")
        assert again.status_code == 302 and again.headers["location"] == TARGET
        # tampered tag, a different URL under the old tag, another tenant, an open token: all 404, no redirect
        for bad in (tampered(token),
                    forged(token, [workspace.tenant_id, s.recipient_id, "https://evil.example/phish"]),
                    forged(token, [workspace.tenant_id + 1, s.recipient_id, TARGET]),
                    links.open_token(workspace.tenant_id, s.recipient_id),
                    "not-a-token", "a.b"):
            refused = await c.get(f"/e/c/{bad}")
            assert refused.status_code == 404, bad
            assert "location" not in refused.headers
            assert "This link does not work" in refused.text
    after = await state(s)
    # the click counts as the open the pixel never reported; one timeline event per kind
    assert after["recipient"]["opened_at"] is not None and after["recipient"]["clicked_at"] is not None
    assert after["events"] == [("opened", {"first": True}), ("clicked", {"url": TARGET, "first": True}),
                               ("clicked", {"url": TARGET, "first": False})]
    assert after["timeline"] == ["campaign.opened", "campaign.clicked"]


# --- unsubscribe ---------------------------------------------------------------------------


def assert_unsubscribed(after: dict[str, Any], method: str) -> None:
    assert after["contact"]["marketing_consent"] == "withdrawn"
    assert after["contact"]["consent_source"] == "unsubscribe link"
    assert after["contact"]["unsubscribed_at"] is not None and after["contact"]["consent_at"] is not None
    assert after["consent"][-1] == {"state": "withdrawn", "source": "unsubscribe link", "actor_kind": "system",
                                    "actor": "unsubscribe link"}
    assert after["suppressed"] == "unsubscribed"
    assert after["recipient"]["unsubscribed_at"] is not None
    assert [e for e in after["events"] if e[0] == "unsubscribed"] == [("unsubscribed", {"method": method})]
    assert [t for t in after["timeline"] if t == "campaign.unsubscribed"] == ["campaign.unsubscribed"]
    assert [(a["action"], a["actor_kind"], a["actor_label"]) for a in after["audit"]] == [
        ("privacy.unsubscribe", "system", "unsubscribe link")]


async def test_unsubscribe_page_then_post_without_login_or_csrf_takes_effect_at_once(workspace: Workspace) -> None:
    s = await sent_email(workspace, f"Mixed.Case-{uuid.uuid4().hex[:6]}@Example.org")
    url = f"/e/u/{links.unsubscribe_token(workspace.tenant_id, s.recipient_id)}"
    async with client() as c:
        page = await c.get(url)
        assert page.status_code == 200
        assert workspace.name in page.text and s.email in page.text
        assert "<button" in page.text and "Unsubscribe" in page.text
        assert "no-store" in page.headers["cache-control"]
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "set-cookie" not in page.headers  # a stranger's browser gets no cookie
        assert (await state(s))["suppressed"] is None
        done = await c.post(url, data={"confirm": "1"})  # no csrf_token, no session
        assert done.status_code == 200, done.text[:300]
        assert "You are unsubscribed" in done.text and "data-unsubscribed" in done.text
    after = await state(s)
    assert_unsubscribed(after, "page")
    async with tenant_scope(workspace.tenant_id) as tx:
        assert await is_suppressed(tx, s.email.upper())  # addresses compare without case
    # idempotent: a second POST (or a reload of the page) changes nothing more
    async with client() as c:
        second = await c.post(url, data={"confirm": "1"})
        assert second.status_code == 200 and "already unsubscribed" in second.text
        assert "already unsubscribed" in (await c.get(url)).text
    assert await state(s) == after


async def test_one_click_unsubscribe_answers_200_without_csrf(workspace: Workspace) -> None:
    s = await sent_email(workspace)
    url = f"/e/u/{links.unsubscribe_token(workspace.tenant_id, s.recipient_id)}"
    async with client() as c:
        resp = await c.post(url, data={"List-Unsubscribe": "One-Click"})
        assert resp.status_code == 200 and resp.text == "Unsubscribed."
        assert_unsubscribed(await state(s), "one-click")
        # multipart bodies are allowed by RFC 8058 too; a repeat changes nothing
        before = await state(s)
        repeat = await c.post(url, files={"List-Unsubscribe": (None, "One-Click")})
        assert repeat.status_code == 200
        assert await state(s) == before
        # a tampered link is refused and changes nothing anywhere
        other = await sent_email(workspace, campaign_id=s.campaign_id)
        bad = await c.post(f"/e/u/{tampered(links.unsubscribe_token(workspace.tenant_id, other.recipient_id))}",
                           data={"List-Unsubscribe": "One-Click"})
        assert bad.status_code == 404
        page = await c.post(f"/e/u/{tampered(links.unsubscribe_token(workspace.tenant_id, other.recipient_id))}")
        assert page.status_code == 404 and "This link does not work" in page.text
        assert (await state(other))["contact"]["marketing_consent"] == "granted"
        assert (await state(other))["suppressed"] is None


async def test_unsubscribe_works_in_a_read_only_workspace(workspace: Workspace) -> None:
    """Billing past its grace period makes a workspace read-only; an unsubscribe is a legal duty
    and still takes effect (its audit action is a privacy one)."""
    s = await sent_email(workspace)
    await current_subscription(workspace.tenant_id)
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.billing_subscriptions SET status = 'past_due', past_due_since ="
                               " now() - interval '60 days' WHERE tenant_id = $1", [workspace.tenant_id])
    async with acting_as(Actor.system(workspace.tenant_id, "check")) as session:
        with pytest.raises(WorkspaceReadOnly):
            await session.audit("contact.update", "contacts", s.contact_id, {})
    async with client() as c:
        url = f"/e/u/{links.unsubscribe_token(workspace.tenant_id, s.recipient_id)}"
        assert (await c.post(url, data={"List-Unsubscribe": "One-Click"})).status_code == 200
    assert_unsubscribed(await state(s), "one-click")


async def test_a_token_of_one_workspace_never_touches_another(workspace: Workspace,
                                                             other_workspace: Workspace) -> None:
    a = await sent_email(workspace)
    b = await sent_email(other_workspace)
    # both schemas number their rows alike: make the recipient ids collide to prove the tenant decides
    if b.recipient_id != a.recipient_id:
        async with tenant_scope(other_workspace.tenant_id) as tx:
            await tx.execute_query("DELETE FROM campaign_events WHERE recipient_id = $1", [b.recipient_id])
            await tx.execute_query("UPDATE campaign_recipients SET id = $2 WHERE id = $1",
                                   [b.recipient_id, a.recipient_id])
        b.recipient_id = a.recipient_id
    token = links.unsubscribe_token(workspace.tenant_id, a.recipient_id)
    async with client() as c:
        assert (await c.get(f"/e/o/{links.open_token(workspace.tenant_id, a.recipient_id)}.gif")).status_code == 200
        assert (await c.post(f"/e/u/{token}", data={"List-Unsubscribe": "One-Click"})).status_code == 200
        # the same ids with the other tenant's id under A's tag: refused
        forged_b = forged(token, [other_workspace.tenant_id, a.recipient_id])
        assert (await c.post(f"/e/u/{forged_b}", data={"List-Unsubscribe": "One-Click"})).status_code == 404
        assert (await c.get(f"/e/u/{forged_b}")).status_code == 404
    mine = await state(a)
    assert_unsubscribed(mine, "one-click")
    assert mine["recipient"]["opened_at"] is not None
    untouched = await state(b)
    assert untouched["contact"]["marketing_consent"] == "granted"
    assert untouched["suppressed"] is None and untouched["events"] == [] and untouched["timeline"] == []
    assert untouched["recipient"]["opened_at"] is None and untouched["recipient"]["unsubscribed_at"] is None


async def test_unsubscribe_link_of_a_deleted_campaign_says_so(workspace: Workspace) -> None:
    s = await sent_email(workspace)
    async with tenant_scope(workspace.tenant_id) as tx:
        await tx.execute_query("DELETE FROM campaigns WHERE id = $1", [s.campaign_id])
    url = f"/e/u/{links.unsubscribe_token(workspace.tenant_id, s.recipient_id)}"
    async with client() as c:
        assert (await c.get(url)).status_code == 404
        resp = await c.post(url, data={"List-Unsubscribe": "One-Click"})
        assert resp.status_code == 404


async def test_suppression_helpers(workspace: Workspace) -> None:
    async with tenant_scope(workspace.tenant_id) as tx:
        assert await suppress(tx, " Someone@Example.org ", "manual", "test") is True
        assert await suppress(tx, "someone@example.org", "bounced", "test") is False  # the first reason stays
        assert await suppression_reason(tx, "SOMEONE@example.org") == "manual"
        assert not await is_suppressed(tx, "nobody@example.org")
        assert not await is_suppressed(tx, "  ")
        with pytest.raises(ValueError, match="unknown suppression reason"):
            await suppress(tx, "x@example.org", "spam", "test")  # type: ignore[arg-type]


async def test_smtp_bounce_inside_the_senders_transaction(workspace: Workspace) -> None:
    """The sending engine reports an SMTP 5xx while it holds the recipient's row."""
    s = await sent_email(workspace)
    async with acting_as(Actor.system(workspace.tenant_id, "campaign sender")) as session:
        await session.tx.execute_query("SELECT 1 FROM campaign_recipients WHERE id = $1 FOR UPDATE",
                                       [s.recipient_id])
        assert await bounce_in(session, s.recipient_id, permanent=True, detail={"smtp": "550 no such user"})
        assert not await bounce_in(session, s.recipient_id, permanent=True, detail={"smtp": "550 again"})
    after = await state(s)
    assert after["suppressed"] == "bounced" and after["recipient"]["bounced_at"] is not None
    assert after["events"] == [("bounced", {"permanent": True, "smtp": "550 no such user"})]
    assert after["timeline"] == ["campaign.bounced"]


# --- SES notifications through SNS ---------------------------------------------------------


@dataclass
class FakeSns:
    """A certificate and key like SNS's, the PEM served over loopback, and the GETs seen."""

    base: str
    key: rsa.RSAPrivateKey
    requests: list[str]

    @property
    def cert_url(self) -> str:
        return f"{self.base}/SimpleNotificationService-test.pem"


def _certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.us-east-1.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def sns_server() -> Iterator[FakeSns]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = _certificate(key)
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            seen.append(self.path)
            body = pem if self.path.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakeSns(f"http://127.0.0.1:{server.server_address[1]}", key, seen)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def sns_env(db: Services, sns_server: FakeSns) -> AsyncIterator[FakeSns]:
    with restored_environment("KITH_SNS_CERT_HOSTS"):
        os.environ["KITH_SNS_CERT_HOSTS"] = sns_server.base.removeprefix("http://")
        reset_settings()
        sns.forget_certificates()
        sns_server.requests.clear()
        yield sns_server
    sns.forget_certificates()


SIGNED = {"Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
          "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn",
                                       "Type")}


def sign(fake: FakeSns, message: dict[str, Any], version: str = "1") -> dict[str, Any]:
    """Sign `message` as SNS does (written from AWS's documentation, apart from the code under test)."""
    text = "".join(f"{k}\n{message[k]}\n" for k in SIGNED[message["Type"]] if k in message)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 - SNS SignatureVersion 1
    signature = fake.key.sign(text.encode(), padding.PKCS1v15(), algorithm)
    return {**message, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode(),
            "SigningCertURL": message.get("SigningCertURL", fake.cert_url)}


def ses_message(s: Sent, kind: str, **section: Any) -> dict[str, Any]:
    """An SES notification about the email `s` was sent, as SES writes one."""
    mail = {"timestamp": "2024-05-01T10:00:00.000Z", "source": "news@kith.example", "messageId": s.message_id,
            "destination": [s.email], "headersTruncated": False,
            "headers": [{"name": "From", "value": "news@kith.example"}, {"name": "To", "value": s.email},
                        {"name": "X-Kith-Recipient", "value": f"{s.ws.tenant_id}.{s.recipient_id}"}],
            "commonHeaders": {"from": ["news@kith.example"], "to": [s.email], "subject": "Hello"}}
    return {"notificationType": kind, "mail": mail, **section}


def notification(fake: FakeSns, payload: dict[str, Any], version: str = "1", **extra: Any) -> dict[str, Any]:
    message = {"Type": "Notification", "MessageId": str(uuid.uuid4()),
               "TopicArn": "arn:aws:sns:us-east-1:123456789012:kith-ses", "Message": json.dumps(payload),
               "Timestamp": "2024-05-01T10:00:01.000Z",
               "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe", **extra}
    return sign(fake, message, version)


async def post_sns(message: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with client() as c:
        resp = await c.post("/webhooks/ses", content=json.dumps(message),
                            headers={"Content-Type": "text/plain; charset=UTF-8",
                                     "x-amz-sns-message-type": message["Type"]})
    return resp.status_code, resp.json()


def bounce(kind: str = "Permanent", at: str = "2024-05-01T10:00:02.000Z") -> dict[str, Any]:
    return {"bounce": {"bounceType": kind, "bounceSubType": "General", "timestamp": at,
                       "feedbackId": str(uuid.uuid4()),
                       "bouncedRecipients": [{"emailAddress": "x", "diagnosticCode": "smtp; 550 5.1.1 unknown"}]}}


async def test_ses_permanent_bounce_suppresses_once(workspace: Workspace, sns_env: FakeSns) -> None:
    s = await sent_email(workspace)
    message = notification(sns_env, ses_message(s, "Bounce", **bounce()), version="1")
    assert await post_sns(message) == (200, {"outcome": "bounce_recorded"})
    after = await state(s)
    assert after["suppressed"] == "bounced" and after["recipient"]["bounced_at"] == datetime(
        2024, 5, 1, 10, 0, 2, tzinfo=UTC)
    [(kind, detail)] = after["events"]
    assert kind == "bounced" and detail["permanent"] is True and detail["bounce_type"] == "Permanent"
    assert "550 5.1.1" in detail["diagnostic"]
    assert after["timeline"] == ["campaign.bounced"]
    # SNS delivers again (a lost 200): nothing more changes; the certificate was fetched once
    assert await post_sns(message) == (200, {"outcome": "duplicate"})
    assert await state(s) == after
    assert sns_env.requests == ["/SimpleNotificationService-test.pem"]


async def test_ses_transient_bounce_is_an_event_only(workspace: Workspace, sns_env: FakeSns) -> None:
    s = await sent_email(workspace)
    message = notification(sns_env, ses_message(s, "Bounce", **bounce("Transient")), version="2")
    assert await post_sns(message) == (200, {"outcome": "bounce_recorded"})
    assert await post_sns(message) == (200, {"outcome": "duplicate"})
    after = await state(s)
    assert after["suppressed"] is None and after["recipient"]["bounced_at"] is None
    assert [k for k, _ in after["events"]] == ["bounced"] and after["events"][0][1]["permanent"] is False
    assert after["timeline"] == []


async def test_ses_complaint_and_delivery(workspace: Workspace, sns_env: FakeSns) -> None:
    s = await sent_email(workspace)
    delivered = ses_message(s, "Delivery", delivery={"timestamp": "2024-05-01T10:00:03.000Z"})
    assert await post_sns(notification(sns_env, delivered, version="2")) == (200, {"outcome": "delivery_recorded"})
    complaint = ses_message(s, "Complaint", complaint={"complaintFeedbackType": "abuse", "feedbackId": "f-1",
                                                        "timestamp": "2024-05-02T08:00:00.000Z"})
    assert await post_sns(notification(sns_env, complaint, Subject="Amazon SES Email Event Notification")) == (
        200, {"outcome": "complaint_recorded"})
    assert await post_sns(notification(sns_env, complaint)) == (200, {"outcome": "duplicate"})
    after = await state(s)
    assert after["recipient"]["delivered_at"] is not None and after["recipient"]["complained_at"] is not None
    assert after["suppressed"] == "complained"
    assert [k for k, _ in after["events"]] == ["delivered", "complained"]
    assert after["timeline"] == ["campaign.complained"]


async def test_ses_bad_signature_or_foreign_certificate_is_400_and_changes_nothing(
        workspace: Workspace, sns_env: FakeSns) -> None:
    s = await sent_email(workspace)
    before = await state(s)
    good = notification(sns_env, ses_message(s, "Bounce", **bounce()))
    other = await sent_email(workspace, campaign_id=s.campaign_id)
    # the Message swapped for another recipient's after signing
    swapped = {**good, "Message": json.dumps(ses_message(other, "Bounce", **bounce()))}
    status, body = await post_sns(swapped)
    assert status == 400 and body["reason"] == "the signature does not match the message"
    # a signature that is not base64, a missing one, an unknown version
    assert (await post_sns({**good, "Signature": "%%%"}))[0] == 400
    assert (await post_sns({k: v for k, v in good.items() if k != "Signature"}))[0] == 400
    assert (await post_sns({**good, "SignatureVersion": "3"}))[0] == 400
    # a certificate on a host not allowed is never even fetched
    port = sns_env.base.rsplit(":", 1)[1]
    for url in (f"http://localhost:{port}/SimpleNotificationService-test.pem",
                "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
                f"http://sns.us-east-1.amazonaws.com:{port}/cert.pem"):
        status, body = await post_sns(notification(sns_env, ses_message(s, "Bounce", **bounce()),
                                                   SigningCertURL=url))
        assert status == 400 and body["reason"] == "SigningCertURL is not an SNS certificate URL", url
    async with client() as c:
        assert (await c.post("/webhooks/ses", content=b"{not json")).status_code == 400
    assert await state(s) == before
    assert (await state(other))["events"] == [] and (await state(other))["suppressed"] is None
    assert sns_env.requests == ["/SimpleNotificationService-test.pem"]  # only the allowed host, once


async def test_ses_notification_needs_the_recipients_own_message_id(workspace: Workspace,
                                                                    other_workspace: Workspace,
                                                                    sns_env: FakeSns) -> None:
    """The header names tenant and recipient; the SES MessageId must match that row too, so a
    header copied into some other email (or naming another workspace) moves nothing."""
    a = await sent_email(workspace)
    b = await sent_email(other_workspace)
    wrong_id = ses_message(a, "Bounce", **bounce())
    wrong_id["mail"]["messageId"] = b.message_id
    assert await post_sns(notification(sns_env, wrong_id)) == (200, {"outcome": "unknown_recipient"})
    other_tenant = ses_message(a, "Bounce", **bounce())
    other_tenant["mail"]["headers"][-1]["value"] = f"{other_workspace.tenant_id}.{a.recipient_id}"
    assert await post_sns(notification(sns_env, other_tenant)) == (200, {"outcome": "unknown_recipient"})
    no_header = ses_message(a, "Bounce", **bounce())
    no_header["mail"]["headers"].pop()
    assert await post_sns(notification(sns_env, no_header)) == (200, {"outcome": "unknown_recipient"})
    # SES kept our own Message-ID instead: that names the recipient as well
    no_header["mail"]["commonHeaders"]["messageId"] = f"<c{a.campaign_id}.r{a.recipient_id}.{workspace.tenant_id}@kith>"
    assert await post_sns(notification(sns_env, no_header)) == (200, {"outcome": "bounce_recorded"})
    assert (await state(a))["suppressed"] == "bounced"
    assert (await state(b))["suppressed"] is None and (await state(b))["events"] == []


async def test_ses_subscription_is_confirmed_only_on_an_allowed_host(sns_env: FakeSns) -> None:
    base = {"Type": "SubscriptionConfirmation", "MessageId": str(uuid.uuid4()), "Token": "tok-123",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:kith-ses",
            "Message": "You have chosen to subscribe to the topic.", "Timestamp": "2024-05-01T10:00:00.000Z"}
    confirm = f"{sns_env.base}/?Action=ConfirmSubscription&Token=tok-123"
    assert await post_sns(sign(sns_env, {**base, "SubscribeURL": confirm})) == (200, {"outcome": "subscribed"})
    assert sns_env.requests[-1] == "/?Action=ConfirmSubscription&Token=tok-123"
    seen = len(sns_env.requests)
    port = sns_env.base.rsplit(":", 1)[1]
    elsewhere = f"http://localhost:{port}/?Action=ConfirmSubscription&Token=tok-123"
    status, body = await post_sns(sign(sns_env, {**base, "SubscribeURL": elsewhere}))
    assert status == 400 and body["reason"] == "SubscribeURL is not an SNS URL"
    assert len(sns_env.requests) == seen


def test_allowed_sns_urls(services: Services) -> None:
    with restored_environment("KITH_SNS_CERT_HOSTS"):
        os.environ.pop("KITH_SNS_CERT_HOSTS", None)
        reset_settings()
        assert sns.allowed_sns_url("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem")
        assert sns.allowed_sns_url("https://sns.cn-north-1.amazonaws.com.cn/cert.pem")
        for bad in ("http://sns.eu-west-1.amazonaws.com/cert.pem",
                    "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem",
                    "https://evil.example/sns.eu-west-1.amazonaws.com/cert.pem",
                    "https://sns.eu-west-1.amazonaws.com@evil.example/cert.pem",
                    "https://sns.eu-west-1.amazonaws.com:8443/cert.pem",
                    "https://s3.eu-west-1.amazonaws.com/cert.pem",
                    "https://sns.eu_west.amazonaws.com/cert.pem", "file:///etc/passwd", ""):
            assert not sns.allowed_sns_url(bad), bad


# --- the report ----------------------------------------------------------------------------


async def test_campaign_report_counts_rates_and_series(workspace: Workspace) -> None:
    s = await sent_email(workspace, name="Report me")
    more = [await sent_email(workspace, campaign_id=s.campaign_id) for _ in range(3)]
    async with client() as c:
        for r in (s, more[0]):
            await c.get(f"/e/o/{links.open_token(workspace.tenant_id, r.recipient_id)}.gif")
        await c.get(f"/e/c/{links.click_token(workspace.tenant_id, s.recipient_id, TARGET)}")
        await c.get(f"/e/c/{links.click_token(workspace.tenant_id, s.recipient_id, TARGET)}")
        await c.post(f"/e/u/{links.unsubscribe_token(workspace.tenant_id, more[1].recipient_id)}",
                     data={"List-Unsubscribe": "One-Click"})
    async with tenant_scope(workspace.tenant_id) as tx:
        await tx.execute_query("INSERT INTO campaign_recipients (campaign_id, email) VALUES ($1, 'later@example.org')",
                               [s.campaign_id])
        await tx.execute_query("UPDATE campaign_recipients SET bounced_at = now() WHERE id = $1",
                               [more[2].recipient_id])
    owner = Actor(kind="user", tenant_id=workspace.tenant_id, role="owner", identity_id=workspace.identity_id,
                  label=workspace.email)
    async with acting_as(owner) as session:
        report = await campaign_report(session, s.campaign_id)
    assert report["campaign"]["name"] == "Report me"
    assert report["counts"] == {"recipients": 5, "pending": 1, "sent": 4, "delivered": 0, "opened": 2, "clicked": 1,
                                "bounced": 1, "unsubscribed": 1, "complained": 0, "failed": 0, "suppressed": 0}
    assert report["rates"]["opened"] == 0.5 and report["rates"]["clicked"] == 0.25
    assert report["rates"]["delivered"] == 0.0
    series = report["series"]
    assert series["bucket"] == "hour" and series["time_zone"] == "UTC"
    # the repeat click is not a point: the series adds up to the counts
    assert [sum(p[k] for p in series["points"]) for k in ("sent", "opened", "clicked")] == [4, 2, 1]
    assert all(p["at"].tzinfo is not None for p in series["points"])
    svg = report_chart_svg(series, labels={"sent": "已发送", "title": "活动 <报告>"})
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert 'role="img"' in svg and 'viewBox="0 0 480 220"' in svg and 'width="100%"' in svg
    assert "<title id=\"campaign-chart-title\">活动 &lt;报告&gt;</title>" in svg
    assert "已发送: 4 · Opened: 2 · Clicked: 1" in svg
    empty = report_chart_svg({"bucket": "hour", "time_zone": "UTC", "points": []})
    assert "Nothing sent yet." in empty
    async with acting_as(owner) as session:
        with pytest.raises(RecordsRefusal, match="There is no such campaign"):
            await campaign_report(session, 999_999)


async def test_report_series_switches_to_days_in_the_workspace_time_zone(workspace: Workspace) -> None:
    s = await sent_email(workspace)
    async with tenant_scope(workspace.tenant_id) as tx:
        await tx.execute_query("UPDATE public.tenants SET time_zone = 'Asia/Shanghai' WHERE id = $1",
                               [workspace.tenant_id])
        # sent 2024-05-01 17:00 UTC (01:00 on the 2nd in Shanghai); opened four days later
        await tx.execute_query("UPDATE campaign_events SET at = '2024-05-01T17:00:00Z' WHERE campaign_id = $1",
                               [s.campaign_id])
        await tx.execute_query(
            "INSERT INTO campaign_events (campaign_id, recipient_id, kind, at, detail) VALUES"
            " ($1, $2, 'opened', '2024-05-05T15:30:00Z', '{\"first\": true}')", [s.campaign_id, s.recipient_id])
    async with acting_as(Actor.system(workspace.tenant_id, "report test")) as session:
        series = (await campaign_report(session, s.campaign_id))["series"]
    assert series["bucket"] == "day" and series["time_zone"] == "Asia/Shanghai"
    days = [(p["at"].isoformat(), p["sent"], p["opened"]) for p in series["points"]]
    assert days == [("2024-05-01T16:00:00+00:00", 1, 0), ("2024-05-02T16:00:00+00:00", 0, 0),
                    ("2024-05-03T16:00:00+00:00", 0, 0), ("2024-05-04T16:00:00+00:00", 0, 1)]
    svg = report_chart_svg(series)
    assert "2024-05-02" in svg and "2024-05-05" in svg  # labels in Shanghai's calendar
