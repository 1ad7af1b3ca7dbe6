"""Signed links in campaign emails: unsubscribe, open pixel and click redirect.

A recipient reaches these URLs without logging in, so the URL itself must prove that Kith made
it for that recipient: the token is base64url(JSON payload) + "." + base64url(HMAC-SHA256 tag).
The payload carries the tenant id and the campaign recipient's id (and, for a click, the target
URL as written in the template); nothing is stored per link, so millions of emails cost no rows.

Each kind of link has its own key, derived from KITH_SECRET_KEY with a purpose label (like the
audit and encryption keys in platform/config.py), so an open token can never be replayed as an
unsubscribe or a click token, and a click token's URL cannot be changed into an open redirect.
The tag is HMAC-SHA256 truncated to 128 bits (RFC 2104 section 5 allows truncation; 128 bits
leaves forging out of reach) to keep URLs short. Links do not expire: people unsubscribe from
emails they open months later, and the law wants that link to keep working.

URLs: /e/u/<token> (unsubscribe page), /e/o/<token>.gif (open pixel), /e/c/<token> (click).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Final

from kith.platform.config import get_settings

UNSUBSCRIBE: Final = "unsubscribe"
OPEN: Final = "open"
CLICK: Final = "click"
_PURPOSES: Final = (UNSUBSCRIBE, OPEN, CLICK)
_TAG_BYTES: Final = 16
# A click token carries its URL; anything longer than this is not a link we made.
MAX_TOKEN_LENGTH: Final = 6000
MAX_CLICK_URL_LENGTH: Final = 4000


class BadLink(ValueError):
    """A token that Kith did not make for this purpose: tampered, truncated, or of another kind."""

    def __init__(self, message: str = "This link is not valid. It may have been changed or cut short.") -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class LinkTarget:
    """What a parsed token names: the workspace, the campaign recipient and, for clicks, the URL."""

    tenant_id: int
    recipient_id: int
    url: str = ""


def _key(purpose: str) -> bytes:
    """The HMAC key of one kind of link: derived, so KITH_SECRET_KEY stays the one secret to keep."""
    if purpose not in _PURPOSES:
        raise ValueError(f"unknown link purpose {purpose!r}")
    return _derived(get_settings().secret_key.reveal(), purpose)


@functools.lru_cache(maxsize=16)
def _derived(secret: str, purpose: str) -> bytes:
    # cached per key: a campaign signs several links for every recipient
    return hmac.new(secret.encode(), f"kith-email-link-v1:{purpose}".encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _check_id(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, not {value!r}")
    return value


def _check_url(url: str) -> str:
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise ValueError(f"only http(s) links are tracked, not {url!r}")
    if len(url) > MAX_CLICK_URL_LENGTH:
        raise ValueError(f"a tracked link may be at most {MAX_CLICK_URL_LENGTH} characters long")
    return url


def _sign(purpose: str, payload: list[object]) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    tag = hmac.new(_key(purpose), body.encode("ascii"), hashlib.sha256).digest()[:_TAG_BYTES]
    return f"{body}.{_b64(tag)}"


def _verify(purpose: str, token: str) -> list[object]:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        raise BadLink()
    body, tag_text = token.split(".")
    try:
        body.encode("ascii")
        tag = _unb64(tag_text)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise BadLink() from None
    expected = hmac.new(_key(purpose), body.encode("ascii"), hashlib.sha256).digest()[:_TAG_BYTES]
    if not hmac.compare_digest(tag, expected):
        raise BadLink()
    try:
        payload = json.loads(_unb64(body).decode("utf-8"))
    except (binascii.Error, ValueError):
        raise BadLink() from None
    if not isinstance(payload, list):
        raise BadLink()
    return payload


def _ids(payload: list[object], size: int) -> tuple[int, int]:
    if len(payload) != size:
        raise BadLink()
    tenant_id, recipient_id = payload[0], payload[1]
    for value in (tenant_id, recipient_id):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise BadLink()
    return tenant_id, recipient_id  # type: ignore[return-value]


def unsubscribe_token(tenant_id: int, recipient_id: int) -> str:
    """The token of a recipient's unsubscribe link (never expires)."""
    return _sign(UNSUBSCRIBE, [_check_id(tenant_id, "tenant_id"), _check_id(recipient_id, "recipient_id")])


def open_token(tenant_id: int, recipient_id: int) -> str:
    """The token of a recipient's open-tracking pixel."""
    return _sign(OPEN, [_check_id(tenant_id, "tenant_id"), _check_id(recipient_id, "recipient_id")])


def click_token(tenant_id: int, recipient_id: int, url: str) -> str:
    """The token of a tracked link: the redirect goes to `url` and nowhere else."""
    return _sign(CLICK, [_check_id(tenant_id, "tenant_id"), _check_id(recipient_id, "recipient_id"),
                         _check_url(url)])


def parse_unsubscribe_token(token: str) -> LinkTarget:
    """The recipient an unsubscribe token names; BadLink when Kith did not make it as one."""
    tenant_id, recipient_id = _ids(_verify(UNSUBSCRIBE, token), 2)
    return LinkTarget(tenant_id, recipient_id)


def parse_open_token(token: str) -> LinkTarget:
    """The recipient an open-pixel token names (a trailing ".gif" is accepted); BadLink otherwise."""
    if isinstance(token, str) and token.endswith(".gif"):
        token = token[:-4]
    tenant_id, recipient_id = _ids(_verify(OPEN, token), 2)
    return LinkTarget(tenant_id, recipient_id)


def parse_click_token(token: str) -> LinkTarget:
    """The recipient and target URL a click token names; BadLink when it was not made by Kith."""
    payload = _verify(CLICK, token)
    tenant_id, recipient_id = _ids(payload, 3)
    url = payload[2]
    if not isinstance(url, str):
        raise BadLink()
    try:
        _check_url(url)
    except ValueError:
        raise BadLink() from None
    return LinkTarget(tenant_id, recipient_id, url)


def _base(base_url: str) -> str:
    return base_url.rstrip("/")


def unsubscribe_url(base_url: str, tenant_id: int, recipient_id: int) -> str:
    """The absolute unsubscribe URL of a recipient (page without login, plus RFC 8058 one-click POST)."""
    return f"{_base(base_url)}/e/u/{unsubscribe_token(tenant_id, recipient_id)}"


def open_pixel_url(base_url: str, tenant_id: int, recipient_id: int) -> str:
    """The absolute URL of a recipient's 1x1 open-tracking GIF."""
    return f"{_base(base_url)}/e/o/{open_token(tenant_id, recipient_id)}.gif"


def click_url(base_url: str, tenant_id: int, recipient_id: int, url: str) -> str:
    """The absolute tracked URL that records a click and redirects to `url`."""
    return f"{_base(base_url)}/e/c/{click_token(tenant_id, recipient_id, url)}"
