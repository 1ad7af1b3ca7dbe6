"""Verifying an audit chain: `kith audit verify --tenant SLUG` / `--platform`.

The chain is recomputed in seq order, archive first (entries the retention job moved out),
then the live log, streamed through a server-side cursor in one REPEATABLE READ transaction
(a consistent picture while appends and archiving go on). The first problem is named:

- an entry whose hash does not match its contents: altered, or inserted without the key
  (reordering rows also lands here, since seq is part of the MAC);
- a gap in seq: entries removed;
- a seq seen twice, or a prev_hash that is not the previous entry's hash: inserted or removed;
- a retention checkpoint whose MAC is wrong or that disagrees with the chain.

What a hash chain cannot show by itself: the newest entries cut off the end (the remaining
chain is valid). `VerifyReport.head_hash` is printed so an operator can keep it elsewhere and
compare later; anchoring the head outside the database is future work.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from kith.platform.audit.log import PLATFORM_TENANT_ID, checkpoint_mac, entry_mac, known_keys

BATCH = 10_000
# Column order for the MAC: everything but `hash`, which comes last.
_SELECT = (
    "SELECT seq, at, actor_kind, actor_id, token_id, actor_label, ip, user_agent, request_id,"
    " object_type, object_id, action, diff::text, prev_hash, key_id, hash, {extra} FROM {table} ORDER BY seq"
)
# Format 2 hashes diff_text; the jsonb `diff` people read must still say the same.
_TENANT_EXTRA = ("hash_format, diff_text,"
                 " (hash_format < 2 OR diff IS NOT DISTINCT FROM diff_text::jsonb) AS diff_agrees")
_PLATFORM_EXTRA = "1 AS hash_format, NULL::text AS diff_text, true AS diff_agrees"


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with a chain."""

    seq: int
    table: str
    kind: str  # altered | removed | inserted | unknown_key | checkpoint
    message: str


@dataclass
class VerifyReport:
    scope: str  # "tenant <slug>" or "platform"
    checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: str = ""
    checkpoints: int = 0
    seconds: float = 0.0
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def summary(self) -> str:
        """One line for people: intact (with the head to keep), or the first problem."""
        if self.problem is not None:
            return f"audit chain of {self.scope} is BROKEN: {self.problem.message}"
        if not self.checked:
            return f"audit chain of {self.scope}: no entries yet"
        return (f"audit chain of {self.scope} is intact: {self.checked:,} entries, seq {self.first_seq}.."
                f"{self.last_seq}, head {self.head_hash} ({self.seconds:.1f} s)")


class _Chain:
    """Walks entries in seq order, remembering only what the next entry must link to."""

    def __init__(self, tenant_id: int, keys: dict[str, bytes], report: VerifyReport,
                 checkpoints: dict[int, str]) -> None:
        self.tenant_id = tenant_id
        self.keys = keys
        self.report = report
        self.checkpoints = checkpoints
        self.expected_seq = 1
        self.prev_hash = ""

    def start_after(self, seq: int, last_hash: str) -> None:
        self.expected_seq = seq + 1
        self.prev_hash = last_hash

    def feed(self, table: str, rows: Sequence[Any]) -> Problem | None:
        keys = self.keys
        tenant_id = self.tenant_id
        for record in rows:
            row = tuple(record)
            seq: int = row[0]
            if seq > self.expected_seq:
                missing = (f"entry seq {self.expected_seq} was removed" if seq == self.expected_seq + 1 else
                           f"entries seq {self.expected_seq}..{seq - 1} were removed")
                return Problem(self.expected_seq, table, "removed",
                               f"{missing} (the next entry present in {table} is seq {seq})")
            if seq < self.expected_seq:
                return Problem(seq, table, "inserted", f"entry seq {seq} in {table} appears twice: one was inserted")
            key = keys.get(row[14])
            if key is None:
                return Problem(seq, table, "unknown_key",
                               f"entry seq {seq} in {table} names key {row[14]!r}, which is not a known audit key")
            if row[16] == 2:
                mac_row = (*row[:12], row[17], *row[13:15])
                if not row[18]:
                    return Problem(seq, table, "altered",
                                   f"entry seq {seq} in {table}: its diff no longer matches the text it was "
                                   "hashed with: it was altered")
            else:
                mac_row = row[:15]
            if entry_mac(key, tenant_id, mac_row, fmt=row[16]) != row[15]:
                return Problem(seq, table, "altered",
                               f"entry seq {seq} in {table} does not match its hash: it was altered, "
                               "moved, or inserted without the key")
            if row[13] != self.prev_hash:
                return Problem(seq, table, "inserted",
                               f"entry seq {seq} in {table} does not follow entry seq {seq - 1} (prev_hash differs): "
                               "an entry before it was removed or inserted")
            cp = self.checkpoints.get(seq)
            if cp is not None and cp != row[15]:
                return Problem(seq, table, "checkpoint",
                               f"the retention checkpoint at seq {seq} does not match entry seq {seq}")
            self.prev_hash = row[15]
            self.expected_seq = seq + 1
            report = self.report
            if report.first_seq is None:
                report.first_seq = seq
            report.last_seq = seq
            report.checked += 1
        return None


async def _stream(conn: asyncpg.Connection, chain: _Chain, table: str, batch: int) -> Problem | None:
    extra = _PLATFORM_EXTRA if table.startswith("public.") else _TENANT_EXTRA
    cursor = await conn.cursor(_SELECT.format(table=table, extra=extra))
    while True:
        rows = await cursor.fetch(batch)
        if not rows:
            return None
        problem = chain.feed(table, rows)
        if problem is not None:
            return problem


async def _checkpoints(conn: asyncpg.Connection, tenant_id: int, keys: dict[str, bytes],
                       report: VerifyReport) -> tuple[dict[int, str], Problem | None, tuple[int, str] | None]:
    rows = await conn.fetch(
        "SELECT archived_through_seq, last_hash, key_id, mac FROM audit_checkpoint ORDER BY archived_through_seq"
    )
    found: dict[int, str] = {}
    latest: tuple[int, str] | None = None
    for r in rows:
        seq, last_hash, key_id = int(r["archived_through_seq"]), str(r["last_hash"]), str(r["key_id"])
        key = keys.get(key_id)
        if key is None or checkpoint_mac(key, tenant_id, seq, last_hash, key_id) != r["mac"]:
            return found, Problem(seq, "audit_checkpoint", "checkpoint",
                                  f"the retention checkpoint at seq {seq} does not match its MAC: it was forged "
                                  "or altered"), latest
        found[seq] = last_hash
        latest = (seq, last_hash)
    report.checkpoints = len(found)
    return found, None, latest


async def verify_tenant(conn: asyncpg.Connection, tenant_id: int, *, scope: str = "",
                        batch: int = BATCH) -> VerifyReport:
    """Recompute one tenant's chain (archive, then log) on `conn`, outside any transaction."""
    report = VerifyReport(scope=scope or f"tenant {tenant_id}")
    started = time.perf_counter()
    keys = known_keys()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        # the one door into a tenant: refuses a deleted one, sets search_path for this transaction
        await conn.execute("SELECT public.kith_enter_tenant($1)", tenant_id)
        checkpoints, problem, latest = await _checkpoints(conn, tenant_id, keys, report)
        chain = _Chain(tenant_id, keys, report, checkpoints)
        if problem is None:
            archived = await conn.fetchval("SELECT min(seq) FROM audit_archive")
            if archived is None and latest is not None:
                # The archive was exported and emptied: the checkpoint's MAC vouches for the
                # chain up to it, and the live log must continue from there.
                chain.start_after(*latest)
            problem = await _stream(conn, chain, "audit_archive", batch)
        if problem is None:
            problem = await _stream(conn, chain, "audit_log", batch)
    report.problem = problem
    report.head_hash = chain.prev_hash
    report.seconds = time.perf_counter() - started
    return report


async def verify_platform(conn: asyncpg.Connection, *, batch: int = BATCH) -> VerifyReport:
    """Recompute the chain of `public.platform_audit` on `conn`, outside any transaction."""
    report = VerifyReport(scope="platform")
    started = time.perf_counter()
    chain = _Chain(PLATFORM_TENANT_ID, known_keys(), report, {})
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        report.problem = await _stream(conn, chain, "public.platform_audit", batch)
    report.head_hash = chain.prev_hash
    report.seconds = time.perf_counter() - started
    return report
