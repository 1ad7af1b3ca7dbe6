"""Amazon SNS message signatures, for the SES notifications that reach POST /webhooks/ses.

SES tells Kith about bounces, complaints and deliveries through an SNS topic that posts to our
endpoint. Anyone can post to that URL, so a message counts only when its signature verifies
against the certificate SNS names in SigningCertURL, and that URL must be SNS's own
(https://sns.<region>.amazonaws.com[.cn]/...): otherwise a forger would simply name a certificate
of their own. The check follows AWS's "Verifying the signatures of Amazon SNS messages":

- the string to sign is "Key\\nValue\\n" for a fixed, alphabetical list of keys that depends on
  the message type (Subject only when the message has one);
- SignatureVersion 1 signs it with RSA PKCS#1 v1.5 over SHA1, version 2 over SHA256;
- the certificate is fetched once per URL and kept in memory (SNS rotates it rarely, and a
  bounce storm must not become a storm of certificate downloads).

KITH_SNS_CERT_HOSTS adds hosts (host or host:port) that may serve certificates and subscription
URLs, over http as well: tests serve their own certificate from loopback. The subscription URL
of a SubscriptionConfirmation is visited only when its host passes the same check, so a forged
confirmation cannot make Kith fetch an arbitrary URL.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kith.platform.config import get_settings

# The keys signed for each message type, in the order they are signed (AWS's documentation).
SIGNED_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
# Keys a message may leave out (Subject is signed only when present).
OPTIONAL_KEYS: Final = frozenset({"Subject"})
AWS_SNS_HOST: Final = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")  # matched whole (fullmatch)
HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {"1": hashes.SHA1, "2": hashes.SHA256}
# A signing certificate is a couple of KB; anything much larger is not one.
MAX_CERT_BYTES: Final = 64 * 1024
FETCH_TIMEOUT_SECONDS: Final = 10.0
_CACHE_LIMIT: Final = 64

_certificates: dict[str, rsa.RSAPublicKey] = {}


class SnsRejected(ValueError):
    """A message that is not a genuine SNS message for us; `message` says why (for logs)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfirmationFailed(RuntimeError):
    """The subscription URL of a verified SubscriptionConfirmation could not be visited."""


def allowed_sns_url(url: str) -> bool:
    """True when `url` may be fetched as SNS's: https on sns.<region>.amazonaws.com[.cn], or
    http(s) on a host[:port] listed in KITH_SNS_CERT_HOSTS."""
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    if parts.username is not None or parts.password is not None or not host:
        return False
    extra = get_settings().sns_cert_hosts
    if parts.scheme in ("http", "https") and (host in extra or (port is not None and f"{host}:{port}" in extra)):
        return True
    return parts.scheme == "https" and port in (None, 443) and bool(AWS_SNS_HOST.fullmatch(host))


def canonical_string(message: dict[str, Any]) -> bytes:
    """The bytes SNS signed for `message`; SnsRejected when a signed key is missing or not text."""
    kind = message.get("Type")
    keys = SIGNED_KEYS.get(kind) if isinstance(kind, str) else None
    if keys is None:
        raise SnsRejected(f"unknown SNS message type {kind!r}")
    lines: list[str] = []
    for key in keys:
        value = message.get(key)
        if value is None and key in OPTIONAL_KEYS:
            continue
        if not isinstance(value, str):
            raise SnsRejected(f"the SNS message has no text {key}")
        lines.append(f"{key}\n{value}\n")
    return "".join(lines).encode("utf-8")


async def _public_key(url: str) -> rsa.RSAPublicKey:
    cached = _certificates.get(url)
    if cached is not None:
        return cached
    try:
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False) as http:
            response = await http.get(url)
    except httpx.HTTPError as exc:
        raise SnsRejected(f"the signing certificate could not be fetched: {exc.__class__.__name__}") from None
    if response.status_code != 200 or len(response.content) > MAX_CERT_BYTES:
        raise SnsRejected(f"the signing certificate URL answered {response.status_code}")
    try:
        certificate = x509.load_pem_x509_certificate(response.content)
    except ValueError:
        raise SnsRejected("the signing certificate is not a PEM certificate") from None
    now = datetime.now(UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise SnsRejected("the signing certificate is not valid now")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SnsRejected("the signing certificate does not hold an RSA key")
    if len(_certificates) >= _CACHE_LIMIT:
        _certificates.pop(next(iter(_certificates)))
    _certificates[url] = key
    return key


def forget_certificates() -> None:
    """Drop the cached certificates (tests; or after SNS rotated its key early)."""
    _certificates.clear()


async def verify_message(message: dict[str, Any]) -> None:
    """Raise SnsRejected unless `message` (the parsed JSON body SNS posted) is signed by SNS.

    Checks the SigningCertURL's scheme and host before anything is fetched, then the signature
    over the canonical string with the hash its SignatureVersion names."""
    if not isinstance(message, dict):
        raise SnsRejected("the body is not an SNS message")
    version = message.get("SignatureVersion")
    algorithm = HASHES.get(version) if isinstance(version, str) else None
    if algorithm is None:
        raise SnsRejected(f"unsupported SignatureVersion {version!r}")
    cert_url = message.get("SigningCertURL") or message.get("SigningCertUrl")
    if not isinstance(cert_url, str) or not allowed_sns_url(cert_url):
        raise SnsRejected("SigningCertURL is not an SNS certificate URL")
    signed = canonical_string(message)
    raw_signature = message.get("Signature")
    if not isinstance(raw_signature, str) or not raw_signature:
        raise SnsRejected("the SNS message has no Signature")
    try:
        signature = base64.b64decode(raw_signature, validate=True)
    except (binascii.Error, ValueError):
        raise SnsRejected("the Signature is not base64") from None
    key = await _public_key(cert_url)
    try:
        key.verify(signature, signed, padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise SnsRejected("the signature does not match the message") from None


async def confirm_subscription(message: dict[str, Any]) -> None:
    """Visit the SubscribeURL of a verified SubscriptionConfirmation, which tells SNS to start
    delivering; only a URL on an allowed SNS host is visited (SnsRejected otherwise)."""
    url = message.get("SubscribeURL")
    if not isinstance(url, str) or not allowed_sns_url(url):
        raise SnsRejected("SubscribeURL is not an SNS URL")
    try:
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False) as http:
            response = await http.get(url)
    except httpx.HTTPError as exc:
        raise ConfirmationFailed(f"SNS did not answer the confirmation: {exc.__class__.__name__}") from None
    if response.status_code != 200:
        raise ConfirmationFailed(f"SNS answered the confirmation with {response.status_code}")
