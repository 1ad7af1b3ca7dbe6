"""Encryption at rest: AES-256-GCM under a keyring read from KITH_ENCRYPTION_KEYS.

The keyring is "id1:base64key,id2:base64key": the first key encrypts, every key decrypts,
so a new key is put first, `kith keys rotate` re-encrypts, and the old one is removed.

A ciphertext is text, so it fits the columns that held the plain value:

    kc1:<key id>:<base64url(12-byte nonce || ciphertext || 16-byte tag)>

and it is bound by AES-GCM's associated data to where it lives (a `context` such as
"identities.totp_secret:42"): the same bytes copied into another row, another column or
another tenant fail to decrypt instead of being read as that row's value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "kc1"
KEY_BYTES = 32
NONCE_BYTES = 12
DEV_KEY_ID = "dev"
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_TOKEN = re.compile(r"^kc1:([A-Za-z0-9_-]{1,32}):([A-Za-z0-9_-]+)$")


class KeyringError(ValueError):
    """KITH_ENCRYPTION_KEYS is malformed; the message says how."""


class DecryptionError(ValueError):
    """A value could not be decrypted: unknown key, wrong key, altered, or moved from elsewhere."""


@dataclass(frozen=True)
class Keyring:
    """Keys by id, in the order given: `primary` (the first) encrypts, all decrypt."""

    keys: dict[str, bytes]
    primary: str

    def describe(self) -> str:
        """The keyring in KITH_ENCRYPTION_KEYS form (secret: for tests and operators' tooling)."""
        return ",".join(f"{kid}:{base64.b64encode(key).decode()}" for kid, key in self.keys.items())


def parse_keys(text: str) -> Keyring:
    """Parse "id1:base64key,id2:base64key" (32-byte keys, standard or URL-safe base64)."""
    keys: dict[str, bytes] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        kid, sep, encoded = part.partition(":")
        kid = kid.strip()
        if not sep or not _KEY_ID.match(kid):
            raise KeyringError("KITH_ENCRYPTION_KEYS must be 'id:base64key,...' with ids of letters, digits, "
                               f"'-' or '_' (at most 32); got an entry starting {part[:8]!r}")
        if kid in keys:
            raise KeyringError(f"KITH_ENCRYPTION_KEYS names key id {kid!r} twice")
        encoded = encoded.strip()
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=False)
        except (binascii.Error, ValueError):
            raise KeyringError(f"KITH_ENCRYPTION_KEYS: key {kid!r} is not base64") from None
        if len(key) != KEY_BYTES:
            raise KeyringError(f"KITH_ENCRYPTION_KEYS: key {kid!r} must be {KEY_BYTES} bytes (AES-256), "
                               f"not {len(key)}; make one with: python -c \"import base64, os; "
                               "print(base64.b64encode(os.urandom(32)).decode())\"")
        keys[kid] = key
    if not keys:
        raise KeyringError("KITH_ENCRYPTION_KEYS holds no key")
    return Keyring(keys=keys, primary=next(iter(keys)))


def derived_keys(secret_key: str) -> str:
    """The dev/test keyring when KITH_ENCRYPTION_KEYS is unset: one key derived from KITH_SECRET_KEY,
    stable across restarts of the same data folder so encrypted values stay readable."""
    key = hmac.new(secret_key.encode(), b"kith-encryption-key-v1", hashlib.sha256).digest()
    return f"{DEV_KEY_ID}:{base64.b64encode(key).decode()}"


_cache: tuple[str, Keyring] | None = None


def keyring() -> Keyring:
    """The process's keyring, from the settings (parsed once per distinct value)."""
    global _cache
    from kith.platform.config import get_settings  # config validates with parse_keys: import late

    text = get_settings().encryption_keys.reveal()
    if _cache is None or _cache[0] != text:
        _cache = (text, parse_keys(text))
    return _cache[1]


def _aad(key_id: str, context: str) -> bytes:
    # the key id is bound too, so a token relabelled with another id fails even under a shared key
    return f"{PREFIX}|{key_id}|{context}".encode()


def encrypt_bytes(plaintext: bytes, context: str, ring: Keyring | None = None) -> str:
    """Encrypt `plaintext` with the primary key, bound to `context`; returns a kc1 token."""
    ring = ring or keyring()
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(ring.keys[ring.primary]).encrypt(nonce, plaintext, _aad(ring.primary, context))
    return f"{PREFIX}:{ring.primary}:{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"


def decrypt_bytes(token: str, context: str, ring: Keyring | None = None) -> bytes:
    """Decrypt a kc1 token made for `context`; DecryptionError says why it cannot be read."""
    ring = ring or keyring()
    match = _TOKEN.match(token)
    if match is None:
        raise DecryptionError(f"{context}: the stored value is not a Kith ciphertext")
    key_id, body = match.groups()
    key = ring.keys.get(key_id)
    if key is None:
        raise DecryptionError(f"{context}: encrypted with key {key_id!r}, which is not in KITH_ENCRYPTION_KEYS "
                              f"(known: {', '.join(ring.keys)})")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    if len(raw) < NONCE_BYTES + 16:
        raise DecryptionError(f"{context}: the ciphertext is truncated")
    try:
        return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(key_id, context))
    except InvalidTag:
        raise DecryptionError(f"{context}: the ciphertext does not authenticate: it was altered, encrypted "
                              f"under another key with id {key_id!r}, or copied from another row") from None


def encrypt(plaintext: str, context: str, ring: Keyring | None = None) -> str:
    """Encrypt text with the primary key, bound to `context` (e.g. "identities.totp_secret:42")."""
    return encrypt_bytes(plaintext.encode(), context, ring)


def decrypt(token: str, context: str, ring: Keyring | None = None) -> str:
    """Decrypt a token made by `encrypt` for the same `context`."""
    return decrypt_bytes(token, context, ring).decode()


def is_encrypted(value: str | None) -> bool:
    """Whether a stored value is a kc1 token (legacy rows may still hold plain text)."""
    return bool(value) and _TOKEN.match(value or "") is not None


def key_id_of(token: str) -> str | None:
    """The id of the key a token was made with, or None for plain text."""
    match = _TOKEN.match(token)
    return match.group(1) if match else None


def reveal(value: str | None, context: str, ring: Keyring | None = None) -> str | None:
    """A stored value in clear: decrypted when it is a token, as is when it is legacy plain text."""
    if value is None or not is_encrypted(value):
        return value
    return decrypt(value, context, ring)


def needs_rotation(value: str | None, ring: Keyring | None = None) -> bool:
    """Whether a stored value should be (re-)encrypted: plain text, or made with a non-primary key."""
    if not value:
        return False
    ring = ring or keyring()
    return key_id_of(value) != ring.primary
