"""Writing the audit log: one hash-chained, gapless sequence of entries per tenant.

An entry is appended inside the caller's tenant transaction, so it commits or rolls back
with the change it records. Appends of one tenant are serialized by a transaction-level
advisory lock (class AUDIT_LOCK_CLASS, taken in the schema's `audit_head()`), so seq is
last + 1 with no gaps, and each entry's hash is

    HMAC-SHA256(KITH_AUDIT_KEY, canonical JSON of [format, tenant id, seq, at, actor...,
                object..., action, diff, prev_hash, key_id])

computed here, in Python: the key never reaches the database, so someone with SQL access
alone cannot rebuild a valid chain after changing a row.

Tenant entries use hash format 2 (tenant migration 0005): the process remembers each tenant's
chain head, computes the entry's hash over it, and `audit_append()` inserts it under the lock
if the head is still that one: one round trip in the common case, two when the guess was
stale. The platform log keeps format 1: `audit_head()` (lock, last seq and hash, the server's
clock, the diff as the database prints it), then the INSERT.

Identity events (logins, logouts, password and 2FA changes) go to every workspace the person
is an active member of, or to `public.platform_audit` when there is none.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from kith.platform.access.actor import Actor
from kith.platform.audit.subjects import Subject, SubjectKey, encrypt_diff, subject_key, unwrap_subject_key
from kith.platform.config import get_settings
from kith.platform.db import TenantUnavailable, platform_tx, tenant_scope

# Advisory lock class 'kaud' (ASCII): distinct from TENANT_LOCK_CLASS ('kith') and
# MIGRATION_LOCK_KEY ('kmig') in kith.platform.db. The SQL functions spell it 1801549156.
AUDIT_LOCK_CLASS = 0x6B617564
# The platform log has no tenant; tenant ids start at 1, so 0 names it in the lock and the MAC.
PLATFORM_TENANT_ID = 0
# Bumped if the canonical form ever changes, so old entries still verify under the old rules.
HASH_FORMAT = 1

# Stored columns, in table order (audit_log, audit_archive and public.platform_audit share them).
COLUMNS: tuple[str, ...] = (
    "seq", "at", "actor_kind", "actor_id", "token_id", "actor_label", "ip", "user_agent", "request_id",
    "object_type", "object_id", "action", "diff", "prev_hash", "hash", "key_id",
)
_MAX_TEXT = {"actor_label": 320, "ip": 64, "user_agent": 512, "request_id": 64, "object_type": 64,
             "object_id": 200, "action": 100}

_INSERT_COLUMNS = ", ".join(COLUMNS)
_PLACEHOLDERS = ", ".join(f"${n}" for n in range(1, len(COLUMNS) + 1))
_PLATFORM_HEAD = "SELECT last_seq, last_hash, entry_at, $1::jsonb::text AS diff FROM public.platform_audit_head()"
_PLATFORM_INSERT = f"INSERT INTO public.platform_audit ({_INSERT_COLUMNS}) VALUES ({_PLACEHOLDERS})"


# --- keys -------------------------------------------------------------------------------------


def audit_key() -> bytes:
    """The HMAC key of the audit chain (KITH_AUDIT_KEY, or derived from KITH_SECRET_KEY in dev/test)."""
    return get_settings().audit_key.reveal().encode()


def key_id_for(key: bytes) -> str:
    """A short, stable name for a key, stored with each entry so keys can rotate later.

    A one-way digest of a high-entropy key reveals nothing usable about it.
    """
    return "k1-" + hashlib.sha256(b"kith-audit-key-id\x00" + key).hexdigest()[:12]


def known_keys() -> dict[str, bytes]:
    """Key id -> key for every key `verify` accepts. Today one; rotation would add the retired ones."""
    key = audit_key()
    return {key_id_for(key): key}


# --- the canonical form -----------------------------------------------------------------------


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# The C encoder (one shot, no indent): the MAC is on the hot path of append and verify.
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def entry_mac(key: bytes, tenant_id: int, row: Sequence[Any], fmt: int = HASH_FORMAT) -> str:
    """HMAC-SHA256 of one entry. `row` holds seq .. diff (diff as the database's jsonb text),
    then prev_hash and key_id: COLUMNS without `hash`.

    The canonical form is the JSON array [format, tenant id, seq, time in microseconds since
    1970 UTC, actor..., object..., action, diff text, prev_hash, key_id]. The diff is taken as
    PostgreSQL's own jsonb text (`$n::jsonb::text` at append, `diff::text` at verify), which
    is deterministic for a value (keys ordered, numbers normalised), so append and verify
    agree whatever form the caller passed in. The tenant id is part of the MAC, so entries
    copied from one tenant's log into another's do not verify there.

    Format 2 (tenant logs, tenant migration 0005) is the same array with the diff as the exact
    text the writer stored in `diff_text` (canonical_diff), so it needs no round trip to learn
    how the database prints it.
    """
    payload = [fmt, tenant_id, *row]
    payload[3] = (row[1] - _EPOCH) // _MICROSECOND
    return hmac.digest(key, _dumps(payload).encode(), "sha256").hex()


def checkpoint_mac(key: bytes, tenant_id: int, through_seq: int, last_hash: str, key_id: str) -> str:
    """HMAC of a retention checkpoint, so one cannot be forged to hide removed entries."""
    message = json.dumps(["checkpoint", HASH_FORMAT, tenant_id, through_seq, last_hash, key_id],
                         separators=(",", ":")).encode()
    return hmac.digest(key, message, "sha256").hex()


def canonical_diff(diff: dict[str, Any] | None) -> str | None:
    """The diff as format 2 hashes and stores it: sorted keys, no spaces, text for dates and decimals."""
    if diff is None:
        return None
    return json.dumps(diff, default=str, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def diff_json(diff: dict[str, Any] | None) -> str | None:
    """The diff as JSON text for the database; values JSON cannot hold (dates, decimals) become text."""
    if diff is None:
        return None
    return json.dumps(diff, default=str, ensure_ascii=False)


def _clip(name: str, value: str) -> str:
    return value[: _MAX_TEXT[name]]


# --- appending --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryFields:
    """What an entry says, before the chain gives it a seq, a time and a hash."""

    actor_kind: str
    actor_id: str
    token_id: int | None
    actor_label: str
    ip: str
    user_agent: str
    request_id: str
    object_type: str
    object_id: str
    action: str
    diff: dict[str, Any] | None

    @classmethod
    def of(cls, actor: Actor, *, action: str, object_type: str, object_id: str | int | None,
           diff: dict[str, Any] | None) -> EntryFields:
        return cls(
            actor_kind=actor.kind,
            actor_id=str(actor.identity_id) if actor.identity_id is not None else "",
            token_id=actor.token_id,
            actor_label=_clip("actor_label", actor.label),
            ip=_clip("ip", actor.ip),
            user_agent=_clip("user_agent", actor.user_agent),
            request_id=_clip("request_id", actor.request_id),
            object_type=_clip("object_type", object_type),
            object_id=_clip("object_id", "" if object_id is None else str(object_id)),
            action=_clip("action", action),
            diff=diff,
        )


def raw_connection(tx: Any) -> asyncpg.Connection:
    """The asyncpg connection under a Tortoise transaction (or the connection itself)."""
    # Tortoise's transaction client wraps the asyncpg connection it holds for the transaction;
    # an asyncpg connection passed directly (bench, retention) is used as is.
    conn = getattr(tx, "_connection", tx)
    return conn


async def _append_platform(conn: asyncpg.Connection, fields: EntryFields) -> int:
    """Append a format-1 entry to public.platform_audit (low volume: two round trips)."""
    tenant_id = PLATFORM_TENANT_ID
    head = await conn.fetchrow(_PLATFORM_HEAD, diff_json(fields.diff))
    key = audit_key()
    key_id = key_id_for(key)
    seq = int(head["last_seq"]) + 1
    row = [
        seq, head["entry_at"], fields.actor_kind, fields.actor_id, fields.token_id, fields.actor_label, fields.ip,
        fields.user_agent, fields.request_id, fields.object_type, fields.object_id, fields.action, head["diff"],
        head["last_hash"], key_id,
    ]
    digest = entry_mac(key, tenant_id, row)
    await conn.execute(_PLATFORM_INSERT, *row[:-1], digest, key_id)
    return seq


async def append_entry(
    tx: Any,
    actor: Actor,
    *,
    action: str,
    object_type: str,
    object_id: str | int | None,
    diff: dict[str, Any] | None = None,
    subject: Subject | None = None,
    stored_key: tuple[str, str] | None = None,
    async_commit: bool = False,
) -> int:
    """Append one entry to the tenant's audit log inside `tx`; returns its seq.

    `tx` is the transaction of `tenant_scope(actor.tenant_id)` (or an asyncpg connection in
    a transaction whose search_path is the tenant's schema): the entry commits or rolls back
    with the change it records. It holds the tenant's audit lock until that transaction ends,
    so keep the rest of the transaction short. `diff` is {"field": [before, after], ...} for
    updates, or any JSON object describing the event.

    `subject` (e.g. ("contacts", 42)) names the person the diff's values are about: they are
    encrypted with that person's key (kith.platform.audit.subjects) before the entry is hashed,
    so erasing the person later destroys the values and leaves the chain intact.
    `stored_key` is that subject's (key_id, wrapped_key) when the caller already read it with
    the subject's row in this transaction: it saves the round trip for the key.
    `async_commit` also turns synchronous commit off for the transaction (`SET LOCAL
    synchronous_commit = off`), in the same statement as the append: for read entries only
    (see TenantSession.audit_read), never for a transaction that records a change.
    """
    conn = raw_connection(tx)
    tenant_id = int(actor.tenant_id)
    if subject is None or not diff:
        fields = EntryFields.of(actor, action=action, object_type=object_type, object_id=object_id, diff=diff)
        seq = await _append_v2(conn, tenant_id, fields, async_commit=async_commit)
        assert seq is not None
        return seq
    remembered = (tenant_id, str(subject[0]), str(subject[1]))
    key = _subject_keys.get(remembered)
    if key is None and stored_key is not None:
        key = unwrap_subject_key(tenant_id, subject, *stored_key)
        _remember_subject_key(remembered, key)
    if key is not None:
        _subject_keys.move_to_end(remembered)
        fields = EntryFields.of(actor, action=action, object_type=object_type, object_id=object_id,
                                diff=encrypt_diff(diff, key))
        seq = await _append_v2(conn, tenant_id, fields, key_check=(remembered[1], remembered[2], key.key_id),
                               async_commit=async_commit)
        if seq is not None:
            return seq
        _subject_keys.pop(remembered, None)  # erased meanwhile: a new key, as for a new subject
    key = await subject_key(conn, tenant_id, subject)
    fields = EntryFields.of(actor, action=action, object_type=object_type, object_id=object_id,
                            diff=encrypt_diff(diff, key))
    seq = await _append_v2(conn, tenant_id, fields, async_commit=async_commit)
    assert seq is not None
    _remember_subject_key(remembered, key)
    return seq


# The chain head of each tenant as this process last wrote or saw it: a right guess makes an
# append one round trip. A wrong one (another process appended, a transaction rolled back,
# another database with the same tenant id) costs one more: audit_append() answers with the
# real head while holding the lock, so the second try cannot be stale.
_heads: dict[int, tuple[int, str]] = {}
_APPEND = (
    "SELECT outcome, last_seq, last_hash FROM audit_append("
    "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
)
# The same, also setting synchronous_commit off for the rest of the transaction (is_local => true,
# so it ends with it): a read entry's transaction then commits without waiting for the WAL flush,
# and it costs no round trip of its own.
_APPEND_ASYNC_COMMIT = _APPEND.replace(
    "SELECT outcome, last_seq, last_hash FROM",
    "SELECT outcome, last_seq, last_hash, set_config('synchronous_commit', 'off', true) FROM", 1)


async def _append_v2(conn: asyncpg.Connection, tenant_id: int, fields: EntryFields,
                     key_check: tuple[str, str, str] | None = None, *, async_commit: bool = False) -> int | None:
    """Append a format-2 entry; None (nothing written) when `key_check`'s subject key is gone."""
    key = audit_key()
    key_id = key_id_for(key)
    diff_text = canonical_diff(fields.diff)
    at = datetime.now(UTC)
    check: tuple[str | None, str | None, str | None] = key_check or (None, None, None)
    head = _heads.get(tenant_id)
    if head is None:
        row = await conn.fetchrow("SELECT last_seq, last_hash FROM audit_head($1)", tenant_id)
        head = (int(row["last_seq"]), str(row["last_hash"]))
    for _ in range(3):
        seq = head[0] + 1
        entry = [
            seq, at, fields.actor_kind, fields.actor_id, fields.token_id, fields.actor_label, fields.ip,
            fields.user_agent, fields.request_id, fields.object_type, fields.object_id, fields.action, diff_text,
            head[1], key_id,
        ]
        digest = entry_mac(key, tenant_id, entry, fmt=2)
        answer = await conn.fetchrow(
            _APPEND_ASYNC_COMMIT if async_commit else _APPEND, tenant_id, head[0], head[1], *check, at,
            fields.actor_kind, fields.actor_id, fields.token_id,
            fields.actor_label, fields.ip, fields.user_agent, fields.request_id, fields.object_type,
            fields.object_id, fields.action, diff_text, digest, key_id,
        )
        head = (int(answer["last_seq"]), str(answer["last_hash"]))
        _heads[tenant_id] = head
        if answer["outcome"] == "ok":
            return seq
        if answer["outcome"] == "key":
            return None
    raise RuntimeError(f"audit chain head of tenant {tenant_id} kept moving while its lock was held")


# Subject keys this process used lately, so an audited change to a contact costs no extra round
# trip for its key. Safe across processes: every use re-checks, in the same statement that takes
# the chain lock, that the key still exists, and falls back to the table when it was erased.
# A remembered key of a change that then rolls back is harmless: the key's row rolled back too,
# so the check fails and the next change makes a new one.
_subject_keys: OrderedDict[tuple[int, str, str], SubjectKey] = OrderedDict()
_SUBJECT_KEYS_KEPT = 4096


def _remember_subject_key(remembered: tuple[int, str, str], key: SubjectKey) -> None:
    _subject_keys[remembered] = key
    _subject_keys.move_to_end(remembered)
    while len(_subject_keys) > _SUBJECT_KEYS_KEPT:
        _subject_keys.popitem(last=False)


async def append_platform_entry(tx: Any, fields: EntryFields) -> int:
    """Append one entry to `public.platform_audit` inside `tx` (a platform transaction); returns its seq."""
    return await _append_platform(raw_connection(tx), fields)


async def _workspaces_of(identity_id: int) -> tuple[str, list[tuple[int, str]]]:
    """The identity's email and its active memberships (tenant id, role) in live workspaces."""
    async with platform_tx() as tx:
        conn = raw_connection(tx)
        email = await conn.fetchval("SELECT email FROM public.identities WHERE id = $1", identity_id)
        rows = await conn.fetch(
            "SELECT m.tenant_id, m.role FROM public.memberships m JOIN public.tenants t ON t.id = m.tenant_id"
            " WHERE m.identity_id = $1 AND m.is_active AND t.status IN ('active', 'suspended') ORDER BY m.tenant_id",
            identity_id,
        )
    return (email or ""), [(int(r["tenant_id"]), str(r["role"])) for r in rows]


async def record_identity_event(
    identity_id: int | None,
    action: str,
    *,
    email: str = "",
    ip: str = "",
    user_agent: str = "",
    request_id: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """Record a login (success or failure), logout, password or 2FA change.

    One entry goes into the audit log of every workspace where the identity is an active
    member, each in that tenant's own scope and transaction; with no identity (an unknown
    email) or no workspace, one entry goes into `public.platform_audit`. Call it outside any
    transaction (tenant scopes cannot nest), after the change it records has committed.
    """
    known_email, workspaces = ("", []) if identity_id is None else await _workspaces_of(int(identity_id))
    label = known_email or email
    written = 0
    for tenant_id, role in workspaces:
        actor = Actor(kind="user", tenant_id=tenant_id, role=role, identity_id=identity_id, label=label,
                      ip=ip, user_agent=user_agent, request_id=request_id)
        try:
            async with tenant_scope(tenant_id) as tx:
                await append_entry(tx, actor, action=action, object_type="identity", object_id=identity_id,
                                   diff=detail)
        except TenantUnavailable:
            continue  # deleted since the lookup: it keeps no log any more
        written += 1
    if written:
        return
    fields = EntryFields(
        actor_kind="user" if identity_id is not None else "anonymous",
        actor_id="" if identity_id is None else str(identity_id),
        token_id=None,
        actor_label=_clip("actor_label", label),
        ip=_clip("ip", ip),
        user_agent=_clip("user_agent", user_agent),
        request_id=_clip("request_id", request_id),
        object_type="identity",
        object_id="" if identity_id is None else str(identity_id),
        action=_clip("action", action),
        diff=detail,
    )
    async with platform_tx() as tx:
        await append_platform_entry(tx, fields)


