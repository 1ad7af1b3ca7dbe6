"""Where campaign emails go: an SMTP server, Amazon SES, or the dev outbox.

The sending engine (sending.py) holds one provider per concurrent sender and calls `send` once
per recipient, inside the transaction that marks the recipient sent. What a failure means for
the campaign is carried by its class, so the engine never has to read SMTP codes or AWS errors:

- PermanentFailure: this address will never take this message (SMTP 5xx on RCPT/DATA, SES
  MessageRejected): the recipient failed, a bounce.
- TemporaryFailure: try again later (SMTP 4xx, throttling, a server that refused the connection
  or went away): the recipient stays pending and the campaign backs off.
- Any other ProviderError (InvalidSender among them): the campaign's configuration is wrong
  (a from-address that is malformed or not allowed, refused credentials, STARTTLS unsupported...):
  every further recipient would fail the same way, so the campaign pauses with the message.

Speed matters (the engine aims at 500 emails/s on 2 cores): an SMTP provider keeps one
connection open across messages (one TCP connect, EHLO and login per sender, not per email),
the local host name is looked up once per process, a from-address is validated once, and the
MIME message is written directly (about 0.1 ms) instead of through `EmailMessage.as_bytes()`
(about 3 ms, and its folding turns a List-Unsubscribe URL longer than one line into RFC 2047
encoded words that mail clients no longer recognise as a link). A Chinese subject is written
as RFC 2047 base64 encoded words here; a sender's display name is encoded by the stdlib's
email policy (once per campaign: it is cached).
"""

from __future__ import annotations

import asyncio
import binascii
import ipaddress
import re
import secrets
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email import policy as email_policy
from email.utils import formataddr, formatdate
from functools import lru_cache
from typing import Any, Protocol

import aiosmtplib
import boto3
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from aiosmtplib.typing import SMTPStatus
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from email_validator import EmailNotValidError, validate_email
from tortoise.connection import get_connection

from kith.platform.config import Settings, get_settings
from kith.platform.email.delivery import SMTP_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """One rendered campaign email for one recipient."""

    to: str
    from_email: str
    from_name: str
    reply_to: str
    subject: str
    html: str
    text: str
    headers: dict[str, str]  # List-Unsubscribe, List-Unsubscribe-Post, X-Kith-Recipient...
    message_id: str  # "<c{campaign}.r{recipient}.{tenant}@kith>": set by us, kept by every provider


class ProviderError(Exception):
    """The provider cannot send for a reason that is the campaign's configuration: pause it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PermanentFailure(ProviderError):
    """This address will never take this message (a bounce at send time)."""


class TemporaryFailure(ProviderError):
    """Nothing is wrong with the address or the campaign; try again later."""


class Unconfirmed(TemporaryFailure):
    """The connection was lost after the message was handed over, before the server's reply:
    the server most likely kept it."""


class InvalidSender(ProviderError):
    """The from-address is malformed or the provider does not let us send as it."""


Settle = Callable[[], Awaitable[None]]


class Provider(Protocol):
    name: str

    async def send(self, email: OutgoingEmail, settle: Settle | None = None) -> str:
        """Hand the email over; return the provider's message id (SES's, or email.message_id).

        `settle` (the sending engine's COMMIT) is awaited once, at the point after which the
        provider may have the message: for SMTP right after the end of DATA was written and
        before the server's reply is read; for SES after its answer; for the outbox after its
        row was written in the caller's transaction. A failure raised before that point never
        called it; one raised after it (a 5xx or 4xx reply to the data) did, and the caller
        corrects what it committed."""
        ...

    async def close(self) -> None:
        """Close what the provider keeps open (its SMTP connection)."""
        ...


# --- addresses --------------------------------------------------------------------------------

@lru_cache(maxsize=512)
def sender_address(from_email: str) -> str:
    """The from-address in the ASCII form SMTP and SES take (IDNA domain); InvalidSender if it is
    not an address. Cached: a campaign's thousands of emails share one sender."""
    value = from_email.strip()
    if not value:
        raise InvalidSender("the campaign has no from-address; set one before sending")
    try:
        valid = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidSender(f"the from-address {value!r} is not a valid email address: {exc}") from None
    if valid.ascii_email is None:
        raise InvalidSender(f"the from-address {value!r} has a non-ASCII name before the @, which mail "
                            "servers without SMTPUTF8 cannot take; use an ASCII address")
    return valid.ascii_email


# An ASCII address of the usual shape goes straight through (contacts' addresses were validated
# when they were saved); anything else is checked and converted by email_validator.
_PLAIN_ADDRESS = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9.-]{1,253}$")


def recipient_address(to: str) -> str:
    """The recipient's address in ASCII form; PermanentFailure when no server could take it."""
    value = to.strip()
    if _PLAIN_ADDRESS.match(value):
        return value
    try:
        valid = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise PermanentFailure(f"{value!r} is not a valid email address: {exc}") from None
    if valid.ascii_email is None:
        raise PermanentFailure(f"{value} has a non-ASCII name before the @ (it needs SMTPUTF8, which Kith "
                               "does not use)")
    return valid.ascii_email


# --- the MIME message -------------------------------------------------------------------------

# SMTP's policy with "\n" line ends: the message is built with "\n" and turned into CRLF once.
_POLICY = email_policy.SMTP.clone(linesep="\n")
_MAX_LINE = 998  # RFC 5322: no line longer than this, CRLF excluded
_OUR_HEADERS = frozenset({"from", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id", "mime-version",
                          "content-type", "content-transfer-encoding", "sender", "return-path"})
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # printable ASCII without ':' (RFC 5322 ftext)
_MESSAGE_ID = re.compile(r"^<[^<>@\s]+@[^<>@\s]+>$")
_LINE_BREAKS = re.compile(r"[\r\n]+\s*")


def _one_line(value: str) -> str:
    # a template that renders a line break into the subject must not start a new header
    return _LINE_BREAKS.sub(" ", value).strip()


@lru_cache(maxsize=1024)
def _header(name: str, value: str) -> str:
    """One header line; over-long ASCII values folded by the stdlib, non-ASCII ones RFC 2047-encoded
    (`_encoded_words`). Cached: many campaigns give every recipient the same subject."""
    if value.isascii() and len(name) + len(value) + 2 <= _MAX_LINE:
        # No folding of ASCII that fits: a long URL (List-Unsubscribe) must stay one token.
        return f"{name}: {value}\n"
    if value.isascii():
        return str(_POLICY.header_factory(name, value).fold(policy=_POLICY))  # folded at spaces, not encoded
    return f"{name}: {_encoded_words(value)}\n"


_WORD_BYTES = 39  # UTF-8 bytes per encoded word: "=?utf-8?b?" + 52 base64 characters + "?=" is 64


def _encoded_words(value: str) -> str:
    """RFC 2047 base64 encoded words of `value`, one per folded line, never splitting a character
    (about 10 µs where email.header takes 0.1 ms: a campaign's subjects differ by recipient)."""
    words: list[str] = []
    chunk = bytearray()
    for char in value:
        data = char.encode("utf-8")
        if len(chunk) + len(data) > _WORD_BYTES:
            words.append(binascii.b2a_base64(bytes(chunk), newline=False).decode("ascii"))
            chunk.clear()
        chunk += data
    if chunk:
        words.append(binascii.b2a_base64(bytes(chunk), newline=False).decode("ascii"))
    return "\n ".join(f"=?utf-8?b?{word}?=" for word in words)


@lru_cache(maxsize=512)
def _address_header(name: str, display_name: str, address: str) -> str:
    # the stdlib parses and encodes a display name (about 0.35 ms): cached, one sender per campaign
    display_name = _one_line(display_name)
    if not display_name:
        return f"{name}: {address}\n"
    return str(_POLICY.header_factory(name, formataddr((display_name, address))).fold(policy=_POLICY))


def _part(subtype: str, body: str, eight_bit: bool = False) -> str:
    """A text part: 7bit when it is short-lined ASCII; 8bit (UTF-8 as it is) when the server
    takes 8BITMIME and no line is too long; else quoted-printable or base64, whichever is
    shorter (as the stdlib chooses)."""
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    data = body.encode("utf-8")
    longest = max(map(len, data.split(b"\n")))
    if data.isascii() and longest <= _MAX_LINE:
        cte, payload = "7bit", body
    elif eight_bit and longest <= _MAX_LINE:
        # a third of quoted-printable's size for Chinese text (one byte per byte, not "=E4"),
        # and no encoding at either end
        cte, payload = "8bit", body
    else:
        qp = binascii.b2a_qp(data, istext=True)
        if len(qp) <= len(data) * 4 // 3 + len(data) // 57:  # no longer than base64 would be
            cte, payload = "quoted-printable", qp.decode("ascii")
        else:
            # base64 encodes the canonical form (CRLF line ends, RFC 2045), in lines of 76
            b64 = binascii.b2a_base64(data.replace(b"\n", b"\r\n"), newline=False).decode("ascii")
            cte, payload = "base64", "\n".join(b64[i:i + 76] for i in range(0, len(b64), 76))
    return (f'Content-Type: text/{subtype}; charset="utf-8"\nContent-Transfer-Encoding: {cte}\n\n'
            f"{payload}")


def reply_to_address(value: str) -> str:
    """A campaign's reply-to address, checked as the from-address is (InvalidSender names it)."""
    try:
        return sender_address(value)
    except InvalidSender as exc:
        raise InvalidSender(exc.message.replace("the from-address", "the reply-to address", 1)) from None


def build_message(email: OutgoingEmail, *, eight_bit: bool = False) -> bytes:
    """The email as RFC 5322 bytes with CRLF line ends: multipart/alternative (text, then HTML)
    when both bodies are given, else the one given. With `eight_bit` (the server offers
    8BITMIME, RFC 6152) bodies may go as UTF-8 bytes: the result is then not all ASCII, and the
    MAIL command must say BODY=8BITMIME.

    Raises InvalidSender for a bad from-address, PermanentFailure for a recipient address no
    server could take, ValueError for headers our own code got wrong.
    """
    sender = sender_address(email.from_email)
    to = recipient_address(email.to)
    if not _MESSAGE_ID.match(email.message_id):
        raise ValueError(f"message id {email.message_id!r} is not of the form <left@right>")
    lines = [_address_header("From", email.from_name, sender), f"To: {to}\n"]
    if email.reply_to.strip():
        lines.append(f"Reply-To: {reply_to_address(email.reply_to)}\n")
    lines += [_header("Subject", _one_line(email.subject)), f"Date: {formatdate(usegmt=True)}\n",
              f"Message-ID: {email.message_id}\n"]
    for name, value in email.headers.items():
        if not _HEADER_NAME.match(name) or name.lower() in _OUR_HEADERS:
            raise ValueError(f"header {name!r} cannot be set on a campaign email")
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r} has a line break in its value")
        lines.append(_header(name, value))
    lines.append("MIME-Version: 1.0\n")
    if email.html and email.text:
        boundary = f"=_kith_{secrets.token_hex(12)}"  # "=_" never occurs in base64 or quoted-printable
        lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"\n\n')
        # the line break before each delimiter belongs to the delimiter (RFC 2046), not to the body
        lines += [f"--{boundary}\n", _part("plain", email.text, eight_bit), f"\n--{boundary}\n",
                  _part("html", email.html, eight_bit), f"\n--{boundary}--\n"]
    else:
        lines += [_part("html", email.html, eight_bit) if email.html else _part("plain", email.text, eight_bit),
                  "\n"]
    # headers are always ASCII (encoded words); only an 8bit body brings other bytes
    return "".join(lines).encode("utf-8" if eight_bit else "ascii").replace(b"\n", b"\r\n")


# --- SMTP -------------------------------------------------------------------------------------

_local_hostname: str | None = None


async def _ehlo_name() -> str:
    """This host's name for EHLO, looked up once per process (not once per connection)."""
    global _local_hostname
    if _local_hostname is None:
        _local_hostname = await asyncio.to_thread(socket.getfqdn)
    return _local_hostname


def _reply(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {exc.message}".strip()


class SmtpProvider:
    """One SMTP connection, kept open and reused for every message this provider sends.

    A connection the server dropped while idle is replaced before the next message; one that
    drops before the message was handed over is replaced once and the message tried again.
    A connection lost after the message's data went out is not retried: the server may have
    accepted it, so it is a TemporaryFailure for the engine to decide on.
    """

    name = "smtp"

    def __init__(self, host: str, port: int, *, username: str = "", password: str = "", starttls: bool = True,
                 timeout: float = SMTP_TIMEOUT_S, own: bool = False, private_ok: bool = True) -> None:
        self.host = host
        self.port = port
        self.where = f"{host}:{port}"
        self.username = username
        self._password = password
        self.starttls = starttls
        # a workspace's own server (Settings › Email sending) or the platform's (SMTP_* variables):
        # what a refusal tells people to check
        self._user_words = "" if own else "SMTP_USERNAME "
        self._check_words = ("the STARTTLS setting and the user name in Settings › Email sending" if own
                             else "SMTP_STARTTLS and SMTP_USERNAME")
        self._timeout = timeout
        # a workspace's own server must be public unless KITH_WORKSPACE_SMTP_PRIVATE says otherwise
        self._private_ok = private_ok
        self._smtp: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()  # one transaction at a time on the one connection
        self.connections = 0  # connections opened so far (reuse is visible in tests and logs)

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpProvider:
        return cls(settings.smtp_host, settings.smtp_port, username=settings.smtp_username,
                   password=settings.smtp_password.reveal() if settings.smtp_username else "",
                   starttls=settings.smtp_starttls)

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        self._drop()
        if not self._private_ok:
            await self._refuse_private()
        smtp = aiosmtplib.SMTP(hostname=self.host, port=self.port, local_hostname=await _ehlo_name(),
                               start_tls=self.starttls, username=self.username or None,
                               password=self._password if self.username else None, timeout=self._timeout)
        try:
            await smtp.connect()  # connects, STARTTLS when configured, logs in when a user is set
            await smtp._ehlo_or_helo_if_needed()  # on a plain connection EHLO waits for the first command
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise ProviderError(f"the mail server at {self.where} refused the login of "
                                f"{self._user_words}{self.username!r}: {_reply(exc)}") from None
        except aiosmtplib.SMTPTimeoutError:  # connecting, or a greeting/EHLO/login reply that never came
            raise TemporaryFailure(f"the mail server at {self.where} did not answer within {self._timeout:g} s; "
                                   "will retry") from None
        except aiosmtplib.SMTPResponseException as exc:  # greeting, EHLO or STARTTLS refused
            if exc.code >= 500:
                raise ProviderError(f"the mail server at {self.where} refused Kith: {_reply(exc)}") from None
            raise TemporaryFailure(f"the mail server at {self.where} is not taking mail now: {_reply(exc)}; "
                                   "will retry") from None
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
            if isinstance(exc, ssl.SSLError):
                raise ProviderError(f"TLS with the mail server at {self.where} failed: {exc}") from None
            raise TemporaryFailure(f"the mail server at {self.where} refused the connection ({exc}); "
                                   "will retry") from None
        except aiosmtplib.SMTPException as exc:  # e.g. STARTTLS asked for and not offered
            raise ProviderError(f"the mail server at {self.where}: {exc} (check {self._check_words})") from None
        self._smtp = smtp
        self.connections += 1
        return smtp

    async def _refuse_private(self) -> None:
        """ProviderError when the host is, or resolves to, an address that is not public (loopback,
        private, link-local, shared, reserved): a workspace must not reach the platform's own
        network through its mail settings. A name that does not resolve is left to the connect."""
        try:
            found = await asyncio.get_running_loop().getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except OSError:
            return
        for *_, address in found:
            ip = ipaddress.ip_address(str(address[0]).split("%", 1)[0])
            if not ip.is_global:
                shown = "" if str(ip) == self.host else f" resolves to {ip}, which"
                raise ProviderError(f"the mail server {self.host}{shown} is not a public address; a workspace's own "
                                    "server must be reachable on the internet")

    async def check(self) -> str:
        """Connect as sending would (STARTTLS and login as configured), then QUIT: the first line of
        the server's EHLO answer, or the ProviderError sending would meet."""
        try:
            smtp = await self._connected()
            ehlo = smtp.last_ehlo_response
            return ehlo.message.splitlines()[0].strip() if ehlo is not None and ehlo.message else ""
        finally:
            await self.close()

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    async def _reset(self, smtp: aiosmtplib.SMTP) -> None:
        """End a refused transaction so the connection can carry the next message."""
        try:
            await smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            self._drop()

    async def send(self, email: OutgoingEmail, settle: Settle | None = None) -> str:
        sender = sender_address(email.from_email)  # bad addresses fail before connecting
        to = recipient_address(email.to)
        if email.reply_to.strip():
            reply_to_address(email.reply_to)
        async with self._lock:
            try:
                # 8bit bodies when this connection's server takes them (EHLO said 8BITMIME)
                raw = build_message(email, eight_bit=(await self._connected()).supports_extension("8bitmime"))
                smtp = await self._envelope(sender, to, eight_bit=not raw.isascii())
                try:
                    await self._data(smtp, raw, settle)
                except aiosmtplib.SMTPResponseException as exc:
                    await self._reset(smtp)
                    raise self._refused(exc, f"refused the message to {to}") from None
                except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
                    self._drop()
                    raise Unconfirmed(f"the mail server at {self.where} dropped the connection while taking "
                                      f"the message to {to} ({exc}); it may have kept it") from None
            except asyncio.CancelledError:
                # cancelled mid-transaction (worker shutdown, job timeout): the connection is in an
                # unknown state, so the next message starts on a new one
                self._drop()
                raise
        return email.message_id

    async def _data(self, smtp: aiosmtplib.SMTP, raw: bytes, settle: Settle | None) -> None:
        """DATA, the message, and the end of data, with `settle` between the end of data and the
        server's reply.

        From the moment the final "." is written the server may take the message, so the caller's
        COMMIT must leave right after it: written in the same step of the event loop (nothing is
        awaited between the two writes once the message's bytes are in the kernel), a SIGKILL can
        only land between two system calls, microseconds, instead of the round trip of the reply.
        aiosmtplib's `data()` reads the reply itself, so this is its DATA phase (same quoting,
        same line endings) on the protocol it keeps, holding its command lock.
        """
        protocol = smtp.protocol
        if protocol is None or protocol.transport is None or protocol._command_lock is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        message = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(raw))
        transport = protocol.transport
        async with protocol._command_lock:
            protocol._response_pending = True
            protocol.write(b"DATA\r\n")
            start = await protocol.read_response(timeout=self._timeout)
            if start.code != SMTPStatus.start_input:
                raise aiosmtplib.SMTPDataError(start.code, start.message)
            protocol._response_pending = True
            protocol.write(message)
            while transport.get_write_buffer_size():  # a large message: all of it in the kernel first
                if transport.is_closing():
                    raise aiosmtplib.SMTPServerDisconnected("Connection lost")
                await asyncio.sleep(0.001)
            protocol.write(b".\r\n")
            if settle is not None:
                while transport.get_write_buffer_size():  # the kernel refused the 3 bytes: wait for them
                    await asyncio.sleep(0.001)
                await settle()
            reply = await protocol.read_response(timeout=self._timeout)
            if reply.code != SMTPStatus.completed:
                raise aiosmtplib.SMTPDataError(reply.code, reply.message)

    async def _envelope(self, sender: str, to: str, *, eight_bit: bool = False) -> aiosmtplib.SMTP:
        """MAIL FROM (with BODY=8BITMIME for an 8bit message) and RCPT TO on the open connection;
        a connection that turns out dead before anything was handed over is replaced once."""
        for attempt in (1, 2):
            smtp = await self._connected()
            if eight_bit and not smtp.supports_extension("8bitmime"):  # a new connection, another server
                raise TemporaryFailure(f"the mail server at {self.where} stopped offering 8BITMIME; will retry")
            try:
                # the addresses were checked and made ASCII already: aiosmtplib's mail() and rcpt()
                # would parse them again with the stdlib (about 0.1 ms each)
                mail = f"FROM:<{sender}>" + (" BODY=8BITMIME" if eight_bit else "")
                reply = await smtp.execute_command(b"MAIL", mail.encode("ascii"))
                if reply.code != SMTPStatus.completed:
                    raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, sender)
                reply = await smtp.execute_command(b"RCPT", f"TO:<{to}>".encode("ascii"))
                if reply.code not in (SMTPStatus.completed, SMTPStatus.will_forward):
                    raise aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, to)
                return smtp
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
                self._drop()
                if attempt == 1 and not isinstance(exc, aiosmtplib.SMTPTimeoutError):
                    continue  # dropped (not slow): once more, on a new connection
                raise TemporaryFailure(f"the mail server at {self.where} dropped the connection ({exc}); "
                                       "will retry") from None
            except aiosmtplib.SMTPSenderRefused as exc:
                await self._reset(smtp)
                if exc.code >= 500:
                    raise InvalidSender(f"the mail server at {self.where} refused the from-address {sender}: "
                                        f"{_reply(exc)}") from None
                raise TemporaryFailure(f"the mail server at {self.where} deferred the from-address {sender}: "
                                       f"{_reply(exc)}; will retry") from None
            except aiosmtplib.SMTPResponseException as exc:  # RCPT refused
                await self._reset(smtp)
                raise self._refused(exc, f"refused {to}") from None
        raise TemporaryFailure(f"the mail server at {self.where} dropped two connections in a row; will retry")

    def _refused(self, exc: aiosmtplib.SMTPResponseException, what: str) -> ProviderError:
        if exc.code >= 500:
            return PermanentFailure(f"the mail server at {self.where} {what}: {_reply(exc)}")
        return TemporaryFailure(f"the mail server at {self.where} {what} for now: {_reply(exc)}; will retry")

    async def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            if smtp.is_connected:
                await smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            smtp.close()


# --- Amazon SES -------------------------------------------------------------------------------

_SES_DENIED = {"AccessDenied", "AccessDeniedException", "InvalidClientTokenId", "UnrecognizedClientException",
               "SignatureDoesNotMatch", "IncompleteSignature", "ExpiredToken", "ExpiredTokenException",
               "InvalidAccessKeyId", "MissingAuthenticationToken"}
_SES_LATER = {"Throttling", "ThrottlingException", "TooManyRequestsException", "LimitExceededException",
              "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure", "InternalServerError",
              "RequestTimeout", "RequestTimeoutException"}
_SES_SENDER = {"MailFromDomainNotVerified", "MailFromDomainNotVerifiedException", "FromEmailAddressNotVerified",
               "FromEmailAddressNotVerifiedException"}
_SES_ADDRESS = {"InvalidParameterValue", "BadRequestException"}


class SesProvider:
    """Amazon SES through boto3's sesv2 SendEmail with the raw message, in a thread (boto3 blocks).

    The client (and its HTTPS connection pool) is made once per provider; credentials are the
    access key given (a workspace's own SES account) or, without one, boto3's usual chain (the
    platform's). The returned id is SES's MessageId, which its bounce and complaint
    notifications carry.
    """

    name = "ses"

    def __init__(self, region: str, *, endpoint_url: str | None = None, access_key_id: str = "",
                 secret_access_key: str = "") -> None:
        self.region = region
        self.endpoint = endpoint_url or f"SES in {region}"
        # what a refusal of the credentials tells people to check
        self._credentials = ("the access key in Settings › Email sending" if access_key_id
                             else "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
        self.client: Any = boto3.session.Session().client(
            "sesv2", region_name=region, endpoint_url=endpoint_url or None,
            aws_access_key_id=access_key_id or None, aws_secret_access_key=secret_access_key or None,
            # one quick retry inside boto3; longer waits are the engine's back-off
            config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"}),
        )

    async def send(self, email: OutgoingEmail, settle: Settle | None = None) -> str:
        raw = build_message(email)
        sender = sender_address(email.from_email)
        to = recipient_address(email.to)
        try:
            response = await asyncio.to_thread(
                self.client.send_email, FromEmailAddress=sender, Destination={"ToAddresses": [to]},
                Content={"Raw": {"Data": raw}},
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._failure(exc, sender, to) from None
        if settle is not None:  # an HTTP API answers as one: the commit can only follow its answer
            await settle()
        return str(response["MessageId"])

    def _failure(self, exc: Exception, sender: str, to: str) -> ProviderError:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            # an answer botocore could not parse (a proxy's page) has the status for code and the body for message
            message = f"HTTP {status}" if code.isdigit() else str(error.get("Message", "")) or code
            if code in _SES_DENIED or status in {401, 403}:
                return ProviderError(f"{self.endpoint} refused Kith's AWS credentials ({message}); check "
                                     f"{self._credentials} and the IAM policy (ses:SendEmail)")
            if code in _SES_LATER or status >= 500:
                return TemporaryFailure(f"{self.endpoint} is not taking mail now ({code}: {message}); will retry")
            if code in _SES_SENDER:
                return InvalidSender(f"{self.endpoint} does not let Kith send as {sender}: {message}")
            if code in {"MessageRejected", "MessageRejectedException"}:
                lowered = message.lower()
                domain = sender.rpartition("@")[2].lower()
                if "authority" in lowered or ("not verified" in lowered and (sender.lower() in lowered
                                                                              or domain in lowered)):
                    # the sender's identity is not verified: no recipient would get it
                    return InvalidSender(f"{self.endpoint} does not let Kith send as {sender}: {message} (verify "
                                         "the address or its domain in SES)")
                if "not verified" in lowered:
                    # the account is in the SES sandbox, where every recipient must be verified
                    return ProviderError(f"{self.endpoint} refused {to}: {message} (the SES account is in the "
                                         "sandbox; request production access)")
                return PermanentFailure(f"{self.endpoint} rejected the message to {to}: {message}")
            if code in _SES_ADDRESS:
                return PermanentFailure(f"{self.endpoint} refused the message to {to}: {message}")
            return ProviderError(f"{self.endpoint} refused to send ({code}: {message})")
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return ProviderError(f"no AWS credentials for {self.endpoint}: set AWS_ACCESS_KEY_ID and "
                                 "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or an instance role)")
        if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)):
            return TemporaryFailure(f"cannot reach {self.endpoint} ({exc}); will retry")
        return ProviderError(f"{self.endpoint}: sending failed: {exc}")

    async def close(self) -> None:
        await asyncio.to_thread(self.client.close)


# --- the dev outbox ---------------------------------------------------------------------------

class OutboxProvider:
    """No SMTP server and no SES: each email becomes a row of public.outbox_emails (status
    'outbox', kind 'campaign'), shown at /dev/outbox.

    The row is written on the caller's connection: inside the engine's tenant transaction it
    commits or rolls back with the recipient's status, so even the dev outbox holds each
    recipient's email exactly once. The message id is the row's dedupe key: the same message
    is never written twice.
    """

    name = "outbox"

    def __init__(self, tenant_id: int | None = None) -> None:
        self.tenant_id = tenant_id

    async def send(self, email: OutgoingEmail, settle: Settle | None = None) -> str:
        build_message(email)  # the same checks (sender, recipient, headers) as a real provider
        await get_connection("default").execute_query(
            "INSERT INTO public.outbox_emails"
            " (tenant_id, kind, dedupe_key, to_address, subject, body_text, status, sent_at)"
            " VALUES ($1, 'campaign', $2, $3, $4, $5, 'outbox', now()) ON CONFLICT (dedupe_key) DO NOTHING",
            [self.tenant_id, email.message_id, recipient_address(email.to), _one_line(email.subject), email.text],
        )
        if settle is not None:
            await settle()
        return email.message_id

    async def close(self) -> None:
        return None


def provider_for(tenant_id: int | None = None) -> Provider:
    """A new provider for one sender, chosen by the platform's settings: Amazon SES when
    KITH_SES_REGION is set, else SMTP when SMTP_HOST is set, else the dev outbox.

    Call once per concurrent sender and `close()` it when the sender stops: an SMTP provider
    holds one open connection.
    """
    settings = get_settings()
    if settings.ses_region:
        return SesProvider(settings.ses_region, endpoint_url=settings.ses_endpoint_url or None)
    if settings.smtp_host:
        return SmtpProvider.from_settings(settings)
    return OutboxProvider(tenant_id)
