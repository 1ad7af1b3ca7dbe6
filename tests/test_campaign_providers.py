"""Campaign email providers against real servers: SMTP (an aiosmtpd sink on loopback), Amazon SES
(the real boto3 against moto in server mode, and against a loopback endpoint answering SES's own
error responses), and the dev outbox (rows in public.outbox_emails).

Bad input tried: a malformed and an empty from-address (and reply-to, and recipient), a
from-address the SMTP server refuses (553) or SES has not verified, a recipient the server does not
know (550), a greylisting server (451), a message refused as spam (554 after DATA), a port with
nothing listening, a wrong SMTP password, an idle connection the server closed, a server hanging up
before and after taking the message, refused AWS credentials, a dead SES endpoint, throttling, a
sandboxed SES account, header injection through the subject, a repeated message id in the outbox.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from kith.platform.config import reset_settings, restored_environment
from kith.platform.db import platform_tx, tenant_scope
from kith.tenants.campaigns.providers import (
    InvalidSender,
    OutboxProvider,
    OutgoingEmail,
    PermanentFailure,
    ProviderError,
    SesProvider,
    SmtpProvider,
    TemporaryFailure,
    build_message,
    provider_for,
)

from .conftest import Services, Workspace
from .live_server import free_port
from .test_backups_s3 import CREDENTIALS, moto_server

SUBJECT = "春季促销：全场八折 — Spring sale for 王小明, this week only at 金山软件"
FROM_NAME = "金山软件 · Marketing 市场部"
UNSUBSCRIBE = "<https://kith.example.com/e/u/" + "Zm9vYmFy" * 12 + ">"  # longer than one folded line
TEXT = "王小明，你好！\n\nOur spring sale starts today.\n.A line that starts with a dot\n" + "长" * 300 + "\n"
HTML = ("<html><body><p>王小明，你好！</p><p><a href=\"https://shop.example.com/?a=1&amp;b=2\">Shop</a></p>"
        "</body></html>")


def outgoing(to: str = "ada@example.org", *, message_id: str = "<c1.r1.1@kith>", **changes: Any) -> OutgoingEmail:
    fields: dict[str, Any] = {
        "to": to, "from_email": "news@shop.example.com", "from_name": FROM_NAME,
        "reply_to": "support@shop.example.com", "subject": SUBJECT, "html": HTML, "text": TEXT,
        "headers": {"List-Unsubscribe": UNSUBSCRIBE, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                    "X-Kith-Recipient": "1.1.1"},
        "message_id": message_id,
    }
    fields.update(changes)
    return OutgoingEmail(**fields)


def parsed(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=email_policy.default)
    assert isinstance(message, EmailMessage)
    return message


def body(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None, kind
    return str(part.get_content()).replace("\r\n", "\n")


def assert_is_the_email(raw: bytes, sent: OutgoingEmail, *, eight_bit: bool = False) -> None:
    """The delivered bytes decode back to exactly what was sent: 7-bit clean (no server needs
    8BITMIME or SMTPUTF8 for it), or with `eight_bit` its bodies as UTF-8 bytes."""
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    message = parsed(raw)
    encodings = {p["Content-Transfer-Encoding"] for p in message.iter_parts()}
    if eight_bit:
        assert not raw.isascii() and encodings == {"8bit"}
        assert sent.html.encode() in raw.replace(b"\r\n", b"\n")  # as it is, not encoded
    else:
        assert raw.isascii() and "8bit" not in encodings
    assert message["Subject"] == sent.subject
    assert message["From"].addresses[0].display_name == sent.from_name
    assert message["From"].addresses[0].addr_spec == sent.from_email
    assert message["To"] == sent.to
    assert message["Reply-To"] == sent.reply_to
    assert message["Message-ID"] == sent.message_id
    assert message["Date"].datetime is not None
    for name, value in sent.headers.items():
        assert message[name] == value, name
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert body(message, "plain") == sent.text
    assert body(message, "html") == sent.html


# --- the SMTP sink ----------------------------------------------------------------------------

class Sink:
    """aiosmtpd handler: keeps accepted messages and the connections they came on; refuses
    gone@ (550), greylists busy@ (451), refuses the data for spam@ (554) and for now for later@
    (451), and the sender blocked@ (553), like a real server would."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.sessions: list[Any] = []  # kept alive, so id() stays unique
        self.hung_up: list[str] = []

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,  # noqa: N802
                          mail_options: list[str]) -> str:
        if address.startswith("blocked@"):
            return f"553 5.7.1 <{address}>: Sender address rejected: not owned by user"
        if address.startswith("flaky@") and address not in self.hung_up:
            self.hung_up.append(address)  # hangs up once, before the message was handed over
            server.transport.close()
            return "421 4.3.2 Shutting down"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,  # noqa: N802
                          rcpt_options: list[str]) -> str:
        if address.startswith("gone@"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"
        if address.startswith("busy@"):
            return f"451 4.7.1 <{address}>: Recipient address rejected: Greylisted, try again in 5 minutes"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if any(r.startswith("spam@") for r in envelope.rcpt_tos):
            return "554 5.7.1 Message rejected as spam"
        if any(r.startswith("later@") for r in envelope.rcpt_tos):
            return "451 4.3.0 Queue full, try again later"
        if any(r.startswith("lost@") for r in envelope.rcpt_tos):
            self.envelopes.append(envelope)  # it has the message, and hangs up before saying so
            server.transport.close()
            return "250 2.0.0 Ok: queued"
        self.envelopes.append(envelope)
        if all(s is not session for s in self.sessions):
            self.sessions.append(session)
        return "250 2.0.0 Ok: queued"


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler = Sink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def smtp(port: int, **kwargs: Any) -> SmtpProvider:
    return SmtpProvider("127.0.0.1", port, starttls=False, timeout=10, **kwargs)


async def test_smtp_delivers_a_chinese_email_with_its_headers_and_both_bodies(sink: tuple[Sink, int]) -> None:
    handler, port = sink
    provider = smtp(port)
    sent = outgoing()
    try:
        assert await provider.send(sent) == "<c1.r1.1@kith>"  # SMTP has no id of its own: ours
    finally:
        await provider.close()
    [envelope] = handler.envelopes
    assert envelope.mail_from == "news@shop.example.com"
    assert envelope.mail_options == ["BODY=8BITMIME"]  # aiosmtpd offers 8BITMIME
    assert envelope.rcpt_tos == ["ada@example.org"]
    assert_is_the_email(envelope.original_content, sent, eight_bit=True)
    assert b"List-Unsubscribe: " + UNSUBSCRIBE.encode() + b"\r\n" in envelope.original_content  # one token


async def test_a_server_without_8bitmime_gets_a_7bit_clean_message() -> None:
    handler = Sink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=True)  # no 8BITMIME in EHLO
    controller.start()
    provider = smtp(port)
    sent = outgoing()
    try:
        await provider.send(sent)
    finally:
        await provider.close()
        controller.stop()
    [envelope] = handler.envelopes
    assert envelope.mail_options == []
    assert_is_the_email(envelope.original_content, sent)


def test_8bit_bodies_only_where_they_help_and_fit() -> None:
    sent = outgoing(html="<p>" + "价格" * 600 + "</p>", text="Plain ASCII only.")
    parts = list(parsed(build_message(sent, eight_bit=True)).iter_parts())
    # ASCII stays 7bit; a 3,600-byte line is too long for 8bit (998 at most): encoded instead
    assert [p["Content-Transfer-Encoding"] for p in parts] == ["7bit", "base64"]
    assert parts[1].get_content().strip() == sent.html
    short = build_message(outgoing(), eight_bit=True)
    assert len(short) < len(build_message(outgoing())) * 0.9  # Chinese as bytes, not base64


async def test_one_connection_carries_many_messages_and_one_per_sender(sink: tuple[Sink, int]) -> None:
    handler, port = sink
    providers = [smtp(port) for _ in range(3)]

    async def sender(n: int, provider: SmtpProvider) -> None:
        for i in range(10):
            await provider.send(outgoing(f"r{n}.{i}@example.org", message_id=f"<c1.r{n}{i}.1@kith>"))

    try:
        await asyncio.gather(*(sender(n, p) for n, p in enumerate(providers)))
    finally:
        for provider in providers:
            await provider.close()
    assert len(handler.envelopes) == 30
    assert sorted(r for e in handler.envelopes for r in e.rcpt_tos) == sorted(
        f"r{n}.{i}@example.org" for n in range(3) for i in range(10))
    assert len(handler.sessions) == 3  # one connection per sender, not one per message
    assert [p.connections for p in providers] == [1, 1, 1]


async def test_refused_recipients_and_data_classify_and_the_connection_goes_on(sink: tuple[Sink, int]) -> None:
    handler, port = sink
    provider = smtp(port)
    try:
        with pytest.raises(PermanentFailure) as gone:
            await provider.send(outgoing("gone@example.org"))
        assert str(gone.value) == (f"the mail server at 127.0.0.1:{port} refused gone@example.org: 550 5.1.1 "
                                   "<gone@example.org>: Recipient address rejected: User unknown in virtual "
                                   "mailbox table")
        assert gone.value.message == str(gone.value)

        with pytest.raises(TemporaryFailure) as busy:
            await provider.send(outgoing("busy@example.org"))
        assert f"127.0.0.1:{port} refused busy@example.org for now: 451 4.7.1" in str(busy.value)
        assert "Greylisted" in str(busy.value)

        with pytest.raises(PermanentFailure, match=r"refused the message to spam@example.org: 554 5\.7\.1 Message "
                                                   "rejected as spam"):
            await provider.send(outgoing("spam@example.org"))

        with pytest.raises(InvalidSender) as blocked:
            await provider.send(outgoing(from_email="blocked@shop.example.com"))
        assert str(blocked.value).startswith(f"the mail server at 127.0.0.1:{port} refused the from-address "
                                             "blocked@shop.example.com: 553 5.7.1")

        # every refusal ended its transaction (RSET): the same connection still delivers
        await provider.send(outgoing("ok@example.org"))
    finally:
        await provider.close()
    assert [e.rcpt_tos for e in handler.envelopes] == [["ok@example.org"]]
    assert provider.connections == 1 and len(handler.sessions) == 1


async def test_settle_runs_after_the_end_of_data_went_out_and_before_the_reply_is_read(
        sink: tuple[Sink, int]) -> None:
    """The sending engine's COMMIT (`settle`) must leave right after the final "." and before the
    server's answer is read: the server already has the message while settle runs, and send()
    waits for settle. A refusal before the data (RCPT) never settles; one of the data does."""
    handler, port = sink
    provider = smtp(port)
    had_it: list[int] = []

    async def settle() -> None:
        if not had_it:  # the first message: wait until the server shows it has the whole of it
            for _ in range(500):
                if handler.envelopes:
                    break
                await asyncio.sleep(0.01)
        had_it.append(len(handler.envelopes))

    dotted = outgoing(text="Line one\n.hidden starts with a dot\n.\nend")  # dot-stuffed on the wire
    try:
        assert await provider.send(dotted, settle) == dotted.message_id
        with pytest.raises(PermanentFailure, match="gone@example.org: 550"):
            await provider.send(outgoing("gone@example.org"), settle)
        with pytest.raises(PermanentFailure, match="spam@example.org: 554"):
            await provider.send(outgoing("spam@example.org"), settle)
        with pytest.raises(TemporaryFailure, match="later@example.org for now: 451"):
            await provider.send(outgoing("later@example.org"), settle)
        assert await provider.send(outgoing("ok@example.org"), settle) == "<c1.r1.1@kith>"
    finally:
        await provider.close()
    # settled for the first message (the server had it while settle ran), spam and later (refused
    # after their data) and ok; never for gone (refused at RCPT)
    assert len(had_it) == 4 and had_it[0] == 1
    assert [e.rcpt_tos for e in handler.envelopes] == [["ada@example.org"], ["ok@example.org"]]
    assert body(parsed(handler.envelopes[0].original_content), "plain").splitlines() == [
        "Line one", ".hidden starts with a dot", ".", "end"]
    assert provider.connections == 1


async def test_a_refusal_of_the_data_after_the_commit_is_corrected(workspace: Workspace,
                                                                  sink: tuple[Sink, int]) -> None:
    """The engine commits a recipient as sent before the server answers the data. A 554 then
    (spam@) turns the row into a bounce (failed, address suppressed, no 'sent' event or timeline
    entry left); a 451 (later@) puts it back to pending and backs the campaign off; the rest are
    sent once."""
    from kith.tenants.campaigns import campaigns as service
    from kith.tenants.campaigns.sending import send_campaign

    from .test_campaigns import _campaign, _contacts, owner

    _, port = sink
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_STARTTLS": "false"}

    async def send(campaign_id: int) -> str:
        with restored_environment(*env):
            os.environ.update(env)
            reset_settings()
            try:
                return (await send_campaign(workspace.tenant_id, campaign_id, seconds=20, senders=1)).stopped
            finally:
                reset_settings()

    async def recipients(campaign_id: int) -> dict[str, dict[str, Any]]:
        async with tenant_scope(workspace.tenant_id) as tx:
            rows = await tx.execute_query_dict(
                "SELECT r.email, r.status, r.message_id, r.attempts, r.error,"
                " (SELECT array_agg(kind ORDER BY kind) FROM campaign_events e WHERE e.recipient_id = r.id) AS events,"
                " (SELECT count(*) FROM activities a WHERE a.contact_id = r.contact_id"
                "  AND a.event->>'name' = 'campaign.sent' AND a.event->>'campaign_id' = $1::bigint::text)"
                " AS sent_entries"
                " FROM campaign_recipients r WHERE r.campaign_id = $1", [campaign_id])
        return {r["email"]: dict(r) for r in rows}

    await _contacts(workspace, [("Spam", "spam@example.org", "granted", "customer"),
                                ("张伟", "zw@example.cn", "granted", "customer")])
    first = await _campaign(workspace)
    await service.start_campaign(owner(workspace), first["id"])
    assert await send(first["id"]) == ""
    rows = await recipients(first["id"])
    spam = rows["spam@example.org"]
    assert (spam["status"], spam["message_id"], spam["attempts"], spam["events"], spam["sent_entries"]) == (
        "failed", "", 1, ["bounced"], 0)
    assert "554 5.7.1 Message rejected as spam" in spam["error"]
    zw = rows["zw@example.cn"]
    assert (zw["status"], zw["events"], zw["sent_entries"]) == ("sent", ["sent"], 1)

    await _contacts(workspace, [("Later", "later@example.org", "granted", "customer")])
    second = await _campaign(workspace)
    await service.start_campaign(owner(workspace), second["id"])
    assert "later@example.org for now: 451" in await send(second["id"])
    later = (await recipients(second["id"]))["later@example.org"]
    assert (later["status"], later["message_id"], later["attempts"], later["events"], later["sent_entries"]) == (
        "pending", "", 0, None, 0)
    async with tenant_scope(workspace.tenant_id) as tx:
        suppressed = [r["email"] for r in await tx.execute_query_dict("SELECT email FROM email_suppressions")]
        state = (await tx.execute_query_dict("SELECT status, failures FROM campaigns WHERE id = $1",
                                             [second["id"]]))[0]
    assert suppressed == ["spam@example.org"]
    assert dict(state) == {"status": "sending", "failures": 1}  # backs off, nothing lost


async def test_invalid_from_address_is_the_campaigns_error_and_nothing_is_sent(sink: tuple[Sink, int]) -> None:
    handler, port = sink
    provider = smtp(port)
    try:
        with pytest.raises(InvalidSender) as bad:
            await provider.send(outgoing(from_email="news at shop"))
        assert str(bad.value).startswith("the from-address 'news at shop' is not a valid email address: ")
        with pytest.raises(InvalidSender, match="the campaign has no from-address"):
            await provider.send(outgoing(from_email=" "))
        with pytest.raises(InvalidSender, match="the reply-to address 'support@' is not a valid email address"):
            await provider.send(outgoing(reply_to="support@"))
        with pytest.raises(PermanentFailure, match="'ada@@example.org' is not a valid email address"):
            await provider.send(outgoing("ada@@example.org"))
    finally:
        await provider.close()
    assert isinstance(bad.value, ProviderError) and not isinstance(bad.value, (PermanentFailure, TemporaryFailure))
    assert handler.envelopes == [] and provider.connections == 0  # refused before any connection


async def test_nothing_listening_is_a_temporary_failure_naming_the_server() -> None:
    port = free_port()  # nothing listens there
    provider = smtp(port)
    try:
        with pytest.raises(TemporaryFailure) as refused:
            await provider.send(outgoing())
    finally:
        await provider.close()
    assert str(refused.value).startswith(f"the mail server at 127.0.0.1:{port} refused the connection (")
    assert str(refused.value).endswith("will retry")


async def test_a_connection_the_server_closed_is_replaced() -> None:
    handler = Sink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, timeout=0.3)  # drops idle clients
    controller.start()
    provider = smtp(port)
    try:
        await provider.send(outgoing("first@example.org"))
        await asyncio.sleep(1.0)  # the server closes the idle connection meanwhile
        await provider.send(outgoing("second@example.org"))
    finally:
        await provider.close()
        controller.stop()
    assert [e.rcpt_tos for e in handler.envelopes] == [["first@example.org"], ["second@example.org"]]
    assert provider.connections == 2 and len(handler.sessions) == 2


async def test_a_hang_up_before_the_message_is_retried_once_and_after_it_never(sink: tuple[Sink, int]) -> None:
    handler, port = sink
    provider = smtp(port)
    try:
        await provider.send(outgoing("first@example.org"))
        # the server hangs up at MAIL FROM: nothing was handed over, so a new connection carries it
        await provider.send(outgoing("second@example.org", from_email="flaky@shop.example.com"))
        assert provider.connections == 2
        # the server hangs up after taking the data: it may have the message, so no second copy
        with pytest.raises(TemporaryFailure) as lost:
            await provider.send(outgoing("lost@example.org"))
        assert str(lost.value).startswith(f"the mail server at 127.0.0.1:{port} dropped the connection while "
                                          "taking the message to lost@example.org (")
        assert str(lost.value).endswith("it may have kept it")
        await provider.send(outgoing("third@example.org"))
    finally:
        await provider.close()
    assert [e.rcpt_tos for e in handler.envelopes] == [["first@example.org"], ["second@example.org"],
                                                        ["lost@example.org"], ["third@example.org"]]
    assert provider.connections == 3 and handler.hung_up == ["flaky@shop.example.com"]


async def test_a_refused_login_pauses_the_campaign() -> None:
    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"kith", b"right")
        return AuthResult(success=ok, handled=False, auth_data=data)  # aiosmtpd answers 535 when not ok

    handler = Sink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_require_tls=False)
    controller.start()
    wrong = smtp(port, username="kith", password="wrong")
    right = smtp(port, username="kith", password="right")
    try:
        with pytest.raises(ProviderError) as refused:
            await wrong.send(outgoing())
        await right.send(outgoing())
    finally:
        await wrong.close()
        await right.close()
        controller.stop()
    assert type(refused.value) is ProviderError  # neither a bounce nor "try later": a configuration error
    assert str(refused.value).startswith(f"the mail server at 127.0.0.1:{port} refused the login of "
                                         "SMTP_USERNAME 'kith': 535")
    assert len(handler.envelopes) == 1


def test_message_without_html_or_text_and_bad_headers() -> None:
    plain = parsed(build_message(outgoing(html="")))
    assert plain.get_content_type() == "text/plain" and plain.get_content().replace("\r\n", "\n") == TEXT
    html_only = parsed(build_message(outgoing(text="", subject="Plain ASCII subject", from_name="")))
    assert html_only.get_content_type() == "text/html"
    assert html_only["Subject"] == "Plain ASCII subject" and html_only["From"] == "news@shop.example.com"
    # a line break rendered into the subject cannot start a new header
    injected = parsed(build_message(outgoing(subject="Hi\r\nBcc: everyone@example.org")))
    assert injected["Subject"] == "Hi Bcc: everyone@example.org" and injected["Bcc"] is None
    with pytest.raises(ValueError, match="header 'Subject' cannot be set on a campaign email"):
        build_message(outgoing(headers={"Subject": "again"}))
    with pytest.raises(ValueError, match="header 'X-Kith-Recipient' has a line break in its value"):
        build_message(outgoing(headers={"X-Kith-Recipient": "1\nBcc: x@example.org"}))
    with pytest.raises(ValueError, match="message id 'c1.r1.1@kith' is not of the form <left@right>"):
        build_message(outgoing(message_id="c1.r1.1@kith"))
    # an internationalized domain goes out in its ASCII (IDNA) form
    idn = parsed(build_message(outgoing("ada@例子.中国", from_email="news@商店.中国")))
    assert idn["To"] == "ada@xn--fsqu00a.xn--fiqs8s"
    assert idn["From"].addresses[0].addr_spec == "news@xn--czrs0t.xn--fiqs8s"


# --- provider_for ------------------------------------------------------------------------------

def test_provider_for_follows_the_settings() -> None:
    names = ("SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_STARTTLS", "KITH_SES_REGION",
             "KITH_SES_ENDPOINT_URL")
    with restored_environment(*names):
        for name in names:
            os.environ.pop(name, None)
        reset_settings()
        outbox = provider_for(7)
        assert isinstance(outbox, OutboxProvider) and outbox.tenant_id == 7 and outbox.name == "outbox"

        os.environ.update({"SMTP_HOST": "mail.internal", "SMTP_PORT": "2525", "SMTP_USERNAME": "kith",
                           "SMTP_PASSWORD": "pw", "SMTP_STARTTLS": "false"})
        reset_settings()
        chosen = provider_for(7)
        assert isinstance(chosen, SmtpProvider) and chosen.name == "smtp" and chosen.where == "mail.internal:2525"

        # SES, when configured, carries campaigns even where SMTP_HOST serves the transactional mail
        os.environ.update({"KITH_SES_REGION": "eu-west-1", "KITH_SES_ENDPOINT_URL": "http://127.0.0.1:1/"})
        reset_settings()
        ses = provider_for(7)
        assert isinstance(ses, SesProvider) and ses.name == "ses" and ses.region == "eu-west-1"
        assert ses.endpoint == "http://127.0.0.1:1"
        assert ses.client.meta.endpoint_url == "http://127.0.0.1:1"
        ses.client.close()


# --- Amazon SES --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def aws() -> Iterator[None]:
    with restored_environment(*CREDENTIALS, "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE"):
        os.environ.update(CREDENTIALS)
        os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
        os.environ.pop("AWS_PROFILE", None)
        yield


@pytest.fixture(scope="module")
def ses_endpoint(aws: None) -> Iterator[str]:
    with moto_server() as endpoint:
        boto3.client("ses", endpoint_url=endpoint, region_name="eu-west-1").verify_email_identity(
            EmailAddress="news@shop.example.com")
        yield endpoint


def stored_by_moto(endpoint: str) -> dict[str, Any]:
    """The raw messages moto's SES kept, by MessageId."""
    data = httpx.get(f"{endpoint}/moto-api/data.json", timeout=10).json()
    return {m["id"]: m for m in data["ses"]["RawMessage"]}


async def test_ses_sends_the_raw_message_and_returns_its_message_id(ses_endpoint: str) -> None:
    provider = SesProvider("eu-west-1", endpoint_url=ses_endpoint)
    sent = outgoing()
    try:
        message_id = await provider.send(sent)
        second = await provider.send(outgoing("grace@example.org", message_id="<c1.r2.1@kith>"))
    finally:
        await provider.close()
    stored = stored_by_moto(ses_endpoint)
    assert message_id != sent.message_id and {message_id, second} <= set(stored)  # SES's own ids
    kept = stored[message_id]
    assert kept["source"] == "news@shop.example.com" and "ada@example.org" in kept["destinations"]
    assert_is_the_email(kept["raw_data"].encode("ascii"), sent)


async def test_ses_unverified_sender_pauses_and_dead_endpoint_waits(ses_endpoint: str) -> None:
    provider = SesProvider("eu-west-1", endpoint_url=ses_endpoint)
    try:
        with pytest.raises(InvalidSender) as unverified:
            await provider.send(outgoing(from_email="promo@elsewhere.example.com"))
    finally:
        await provider.close()
    assert str(unverified.value).startswith(f"{ses_endpoint} does not let Kith send as promo@elsewhere.example.com:")
    assert "verify the address or its domain in SES" in str(unverified.value)

    dead = f"http://127.0.0.1:{free_port()}"
    down = SesProvider("eu-west-1", endpoint_url=dead)
    try:
        with pytest.raises(TemporaryFailure) as unreachable:
            await down.send(outgoing())
    finally:
        await down.close()
    assert str(unreachable.value).startswith(f"cannot reach {dead} (")


async def test_ses_refused_credentials_pause_the_campaign(aws: None) -> None:
    with moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as strict:  # moto checking credentials
        provider = SesProvider("eu-west-1", endpoint_url=strict)
        try:
            with pytest.raises(ProviderError) as denied:
                await provider.send(outgoing())
        finally:
            await provider.close()
    assert type(denied.value) is ProviderError
    assert str(denied.value).startswith(f"{strict} refused Kith's AWS credentials (HTTP 403)")
    assert "ses:SendEmail" in str(denied.value)


class SesAnswers(BaseHTTPRequestHandler):
    """Answers every SendEmail with the error SES itself sends in one situation (set per test)."""

    answer: tuple[int, str, str] = (500, "InternalFailure", "")
    requests = 0

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).requests += 1
        status, code, message = self.answer
        payload = json.dumps({"message": message}).encode()
        self.send_response(status)
        self.send_header("x-amzn-ErrorType", code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        return None


@pytest.fixture(scope="module")
def ses_answers(aws: None) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), SesAnswers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("status", "code", "message", "expected", "says"), [
    (429, "TooManyRequestsException", "Maximum sending rate exceeded.", TemporaryFailure,
     "is not taking mail now (TooManyRequestsException: Maximum sending rate exceeded.); will retry"),
    (400, "MessageRejected", "Address blacklisted.", PermanentFailure,
     "rejected the message to ada@example.org: Address blacklisted."),
    (400, "MessageRejected", "Email address is not verified. The following identities failed the check in region "
     "EU-WEST-1: ada@example.org", ProviderError, "(the SES account is in the sandbox; request production access)"),
    (400, "MailFromDomainNotVerifiedException", "Mail-From domain not verified.", InvalidSender,
     "does not let Kith send as news@shop.example.com: Mail-From domain not verified."),
    (403, "AccessDeniedException", "User is not authorized to perform: ses:SendEmail", ProviderError,
     "refused Kith's AWS credentials (User is not authorized to perform: ses:SendEmail)"),
    (400, "AccountSuspendedException", "Your account has been suspended.", ProviderError,
     "refused to send (AccountSuspendedException: Your account has been suspended.)"),
])
async def test_ses_errors_say_what_the_campaign_should_do(ses_answers: str, status: int, code: str, message: str,
                                                          expected: type[ProviderError], says: str) -> None:
    SesAnswers.answer = (status, code, message)
    provider = SesProvider("eu-west-1", endpoint_url=ses_answers)
    try:
        with pytest.raises(ProviderError) as failed:
            await provider.send(outgoing())
    finally:
        await provider.close()
    assert type(failed.value) is expected
    assert str(failed.value).startswith(f"{ses_answers} ") and says in str(failed.value), str(failed.value)


# --- the dev outbox ----------------------------------------------------------------------------

async def _outbox_rows(dedupe_key: str) -> list[dict[str, Any]]:
    async with platform_tx() as tx:
        return list(await tx.execute_query_dict(
            "SELECT tenant_id, kind, to_address, subject, body_text, status, sent_at FROM public.outbox_emails"
            " WHERE dedupe_key = $1", [dedupe_key]))


async def test_dev_outbox_keeps_each_message_once(workspace: Workspace, other_workspace: Workspace) -> None:
    names = ("SMTP_HOST", "KITH_SES_REGION")
    with restored_environment(*names):
        for name in names:
            os.environ.pop(name, None)
        reset_settings()
        provider = provider_for(workspace.tenant_id)
    assert isinstance(provider, OutboxProvider)
    message_id = f"<c1.r1.{workspace.tenant_id}@kith>"
    sent = outgoing(message_id=message_id)
    assert await provider.send(sent) == message_id
    assert await provider.send(sent) == message_id  # the same message again: still one row
    await provider.close()
    [row] = await _outbox_rows(message_id)
    assert row["sent_at"] is not None
    del row["sent_at"]
    assert row == {"tenant_id": workspace.tenant_id, "kind": "campaign", "to_address": "ada@example.org",
                   "subject": SUBJECT, "body_text": TEXT, "status": "outbox"}

    other = OutboxProvider(other_workspace.tenant_id)
    other_id = f"<c1.r1.{other_workspace.tenant_id}@kith>"
    await other.send(outgoing(message_id=other_id))
    assert [r["tenant_id"] for r in await _outbox_rows(other_id)] == [other_workspace.tenant_id]

    with pytest.raises(InvalidSender):
        await provider.send(outgoing(from_email="nobody", message_id=f"<c1.r9.{workspace.tenant_id}@kith>"))
    assert await _outbox_rows(f"<c1.r9.{workspace.tenant_id}@kith>") == []


class Rollback(Exception):
    pass


async def test_dev_outbox_row_commits_or_rolls_back_with_the_senders_transaction(db: Services,
                                                                                 workspace: Workspace) -> None:
    provider = OutboxProvider(workspace.tenant_id)
    kept, dropped = (f"<c2.r{n}.{workspace.tenant_id}@kith>" for n in (1, 2))
    async with tenant_scope(workspace.tenant_id):
        await provider.send(outgoing(message_id=kept))
    with pytest.raises(Rollback):
        async with tenant_scope(workspace.tenant_id):
            await provider.send(outgoing(message_id=dropped))
            raise Rollback  # the worker died before its COMMIT: the recipient stays pending, no email
    assert len(await _outbox_rows(kept)) == 1
    assert await _outbox_rows(dropped) == []
