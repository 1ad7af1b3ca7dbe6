"""Tokens of emailed links (invitations, password resets, email verification).

A link carries a random 256-bit token; the database keeps only HMAC-SHA256 of it keyed with
KITH_SECRET_KEY, so a database reader cannot turn a stored value into a working link, and
nobody without the key can make one. `purpose` is mixed into the hash so a token of one kind
of link never matches a row of another kind.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from kith.platform.config import get_settings


def new_link_token() -> str:
    """A fresh random token for an emailed link (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def token_digest(raw: str, purpose: str) -> str:
    """The keyed hash stored for an emailed link's token; `purpose` keeps kinds of link apart."""
    key = get_settings().secret_key.reveal().encode()
    return hmac.new(key, f"{purpose}\x00{raw}".encode(), hashlib.sha256).hexdigest()
