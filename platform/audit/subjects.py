"""Crypto-shredding: personal values in audit diffs are encrypted per data subject.

Each subject (today a contact) gets a random 256-bit key in the tenant's `subject_keys`
table, wrapped with the platform keyring (kith.platform.crypto), which never reaches the
database. `append_entry(..., subject=...)` encrypts every value of the diff with it before
the entry is hashed, so the chain covers ciphertext. Erasure deletes the key: the values
can never be read again, and every entry still verifies because not one stored byte changed.

A value becomes the string "ks1:<key id>:<base64url(nonce || ciphertext || tag)>", bound by
AES-GCM's associated data to its field and position in the diff, so values cannot be swapped
between fields (or before/after) unnoticed. Field names stay readable: which fields changed
is what an auditor needs, and names no person.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kith.platform import crypto
from kith.platform.db import tenant_schema

ERASED = "[erased]"
UNREADABLE = "[unreadable]"
_VALUE = re.compile(r"^ks1:([0-9a-f]{16}):([A-Za-z0-9_-]+)$")
_NONCE = 12

Subject = tuple[str, str | int]


@dataclass(frozen=True)
class SubjectKey:
    """A subject's key in clear, for the length of one transaction."""

    key_id: str
    key: bytes


def wrap_context(schema: str, subject_type: str, subject_id: str, key_id: str) -> str:
    """The associated data of a wrapped subject key: bound to its tenant schema and subject, so a
    row copied to another subject or tenant does not unwrap."""
    return f"subject_keys:{schema}:{subject_type}:{subject_id}:{key_id}"


_GET_OR_CREATE = """
WITH made AS (
    INSERT INTO subject_keys (subject_type, subject_id, key_id, wrapped_key) VALUES ($1, $2, $3, $4)
    ON CONFLICT (subject_type, subject_id) DO NOTHING
    RETURNING key_id, wrapped_key
)
SELECT key_id, wrapped_key FROM made
UNION ALL
SELECT key_id, wrapped_key FROM subject_keys WHERE subject_type = $1 AND subject_id = $2
LIMIT 1
"""


async def subject_key(conn: asyncpg.Connection, tenant_id: int, subject: Subject) -> SubjectKey:
    """The subject's key, created (one round trip) the first time it is needed.

    Runs in the caller's tenant transaction: a key made for a change that rolls back goes with it.
    """
    subject_type, subject_id = subject[0], str(subject[1])
    schema = tenant_schema(tenant_id)
    key = AESGCM.generate_key(bit_length=256)
    key_id = secrets.token_hex(8)
    wrapped = crypto.encrypt_bytes(key, wrap_context(schema, subject_type, subject_id, key_id))
    row = await conn.fetchrow(_GET_OR_CREATE, subject_type, subject_id, key_id, wrapped)
    if row is None:
        # A concurrent transaction inserted the key after this statement's snapshot: read it now.
        row = await conn.fetchrow(
            "SELECT key_id, wrapped_key FROM subject_keys WHERE subject_type = $1 AND subject_id = $2",
            subject_type, subject_id)
    if row["key_id"] == key_id:
        return SubjectKey(key_id, key)
    return unwrap_subject_key(tenant_id, subject, str(row["key_id"]), str(row["wrapped_key"]))


def unwrap_subject_key(tenant_id: int, subject: Subject, key_id: str, wrapped_key: str) -> SubjectKey:
    """A subject's key from its `subject_keys` row (read by the caller, e.g. joined to the
    subject's own row), unwrapped with the keyring."""
    context = wrap_context(tenant_schema(tenant_id), subject[0], str(subject[1]), key_id)
    return SubjectKey(key_id, crypto.decrypt_bytes(wrapped_key, context))


def _aad(key_id: str, field: str, position: str) -> bytes:
    return f"ks1|{key_id}|{field}|{position}".encode()


def _seal(key: SubjectKey, value: Any, field: str, position: str) -> str:
    nonce = os.urandom(_NONCE)
    plain = json.dumps(value, default=str, ensure_ascii=False).encode()
    sealed = AESGCM(key.key).encrypt(nonce, plain, _aad(key.key_id, field, position))
    return f"ks1:{key.key_id}:{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"


def encrypt_diff(diff: dict[str, Any], key: SubjectKey) -> dict[str, Any]:
    """The diff with every value encrypted under the subject's key (None stays None: it says
    only that a field was empty, and keeps "set" / "cleared" readable after erasure)."""
    out: dict[str, Any] = {}
    for field, value in diff.items():
        if isinstance(value, list):
            out[field] = [None if v is None else _seal(key, v, field, str(i)) for i, v in enumerate(value)]
        else:
            out[field] = None if value is None else _seal(key, value, field, "v")
    return out


def _key_ids(diff: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(diff, dict):
        for value in diff.values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str):
                    match = _VALUE.match(item)
                    if match:
                        found.add(match.group(1))
    return found


async def _unwrapped(conn: asyncpg.Connection, key_ids: Iterable[str]) -> dict[str, bytes | None]:
    wanted = sorted(set(key_ids))
    if not wanted:
        return {}
    rows = await conn.fetch(
        "SELECT current_schema() AS schema, subject_type, subject_id, key_id, wrapped_key FROM subject_keys"
        " WHERE key_id = ANY($1::text[])", wanted)
    keys: dict[str, bytes | None] = dict.fromkeys(wanted)
    for r in rows:
        context = wrap_context(str(r["schema"]), str(r["subject_type"]), str(r["subject_id"]), str(r["key_id"]))
        try:
            keys[str(r["key_id"])] = crypto.decrypt_bytes(str(r["wrapped_key"]), context)
        except crypto.DecryptionError:
            keys[str(r["key_id"])] = b""  # present but not openable: shown as unreadable, not erased
    return keys


def _open(keys: dict[str, bytes | None], item: Any, field: str, position: str) -> Any:
    if not isinstance(item, str):
        return item
    match = _VALUE.match(item)
    if match is None:
        return item
    key_id, body = match.groups()
    key = keys.get(key_id)
    if key is None:
        return ERASED
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    try:
        plain = AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], _aad(key_id, field, position)) if key else b""
    except (InvalidTag, ValueError):
        return UNREADABLE
    return json.loads(plain) if plain else UNREADABLE


def open_diff(diff: Any, keys: dict[str, bytes | None]) -> Any:
    """A stored diff with its encrypted values in clear, or ERASED where the key was destroyed."""
    if not isinstance(diff, dict) or not _key_ids(diff):
        return diff
    out: dict[str, Any] = {}
    for field, value in diff.items():
        if isinstance(value, list):
            out[field] = [_open(keys, v, field, str(i)) for i, v in enumerate(value)]
        else:
            out[field] = _open(keys, value, field, "v")
    return out


async def open_diffs(conn: asyncpg.Connection, diffs: list[Any]) -> list[Any]:
    """Decrypt many stored diffs with one query for their keys (inside the tenant's scope)."""
    ids: set[str] = set()
    for diff in diffs:
        ids |= _key_ids(diff)
    keys = await _unwrapped(conn, ids)
    return [open_diff(diff, keys) for diff in diffs]


async def destroy_subject_key(conn: asyncpg.Connection, subject: Subject) -> bool:
    """Delete the subject's key (crypto-shredding); True when there was one."""
    deleted = await conn.fetchval(
        "WITH gone AS (DELETE FROM subject_keys WHERE subject_type = $1 AND subject_id = $2 RETURNING 1)"
        " SELECT count(*) FROM gone", subject[0], str(subject[1]))
    return bool(deleted)
