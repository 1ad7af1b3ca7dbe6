"""`kith keys rotate`: re-encrypt every value encrypted at rest with the first key of
KITH_ENCRYPTION_KEYS.

What the keyring encrypts: the TOTP secrets in `public.identities` (active and pending) and,
in every tenant schema, the wrapped per-person keys in `subject_keys` (audit diffs are
encrypted with those per-person keys, so rotating the keyring re-wraps them and never touches
the append-only audit log) and the secrets of the workspace's own email provider
(`email_provider.smtp_password` and `ses_secret_access_key`). TOTP secrets stored before
encryption existed are plain text; this command encrypts them too.

Each batch is its own transaction and picks only values not yet under the first key, so the
command is idempotent and an interrupted run resumes where it stopped. Once a run reports
nothing left to do and nothing unreadable, the old keys can be removed from the keyring.

Importing this module is cheap (argparse only); the work imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kith.platform.cli.common import EXIT_FAILED, CliError, positive_int
from kith.platform.cli.services import embedded_services

BATCH = 500
IDENTITY_COLUMNS = ("totp_secret", "totp_pending_secret")
# the one-row table of a workspace's own email provider (kith.tenants.campaigns.provider_settings)
EMAIL_PROVIDER_COLUMNS = ("smtp_password", "ses_secret_access_key")

Say = Callable[[str], None]


@dataclass
class ScopeCount:
    """What one scope (a column, or a tenant's subject keys) held and what was done."""

    scope: str
    rotated: int = 0
    current: int = 0
    failed: list[str] = field(default_factory=list)


@dataclass
class RotationReport:
    """Counts per scope, for the closing lines and for tests."""

    primary: str
    scopes: list[ScopeCount] = field(default_factory=list)
    tenants: int = 0

    @property
    def rotated(self) -> int:
        return sum(s.rotated for s in self.scopes)

    @property
    def current(self) -> int:
        return sum(s.current for s in self.scopes)

    @property
    def failed(self) -> list[str]:
        return [f for s in self.scopes for f in s.failed]


def _say(message: str) -> None:
    print(message, flush=True)


async def _rotate_identities(conn: Any, column: str, say: Say, batch: int) -> ScopeCount:
    from kith.platform.crypto import DecryptionError, encrypt, keyring, reveal
    from kith.platform.identity.totp import secret_context

    ring = keyring()
    prefix = f"kc1:{ring.primary}:"
    count = ScopeCount(f"public.identities.{column}")
    # the column name comes from IDENTITY_COLUMNS, never from input
    count.current = int(await conn.fetchval(
        f"SELECT count(*) FROM public.identities WHERE starts_with({column}, $1)", prefix))
    todo = int(await conn.fetchval(
        f"SELECT count(*) FROM public.identities WHERE {column} IS NOT NULL AND NOT starts_with({column}, $1)",
        prefix))
    say(f"{count.scope}: {todo:,} to re-encrypt, {count.current:,} already under key {ring.primary!r}")
    last = 0
    while todo:
        async with conn.transaction():
            rows = await conn.fetch(
                f"SELECT id, {column} AS value FROM public.identities WHERE id > $1 AND {column} IS NOT NULL"
                f" AND NOT starts_with({column}, $2) ORDER BY id LIMIT $3 FOR UPDATE", last, prefix, batch)
            updates: list[tuple[int, str]] = []
            for r in rows:
                context = secret_context(column, int(r["id"]))
                try:
                    plain = reveal(str(r["value"]), context, ring)
                except DecryptionError as exc:
                    count.failed.append(str(exc))
                    continue
                updates.append((int(r["id"]), encrypt(str(plain), context, ring)))
            if updates:
                await conn.executemany(f"UPDATE public.identities SET {column} = $2 WHERE id = $1", updates)
        if not rows:
            break
        last = int(rows[-1]["id"])
        count.rotated += len(updates)
        say(f"{count.scope}: {count.rotated:,}/{todo:,} re-encrypted")
    return count


async def _rotate_tenant(conn: Any, tenant_id: int, slug: str, say: Say, batch: int) -> ScopeCount | None:
    import asyncpg

    from kith.platform.audit.subjects import wrap_context
    from kith.platform.crypto import DecryptionError, decrypt_bytes, encrypt_bytes, keyring

    ring = keyring()
    prefix = f"kc1:{ring.primary}:"
    count = ScopeCount(f"t_{tenant_id} ({slug}) subject_keys")
    after: tuple[str, str] = ("", "")
    first = True
    while True:
        try:
            async with conn.transaction():
                # the one door into a tenant: refuses a deleted one, sets search_path for this transaction
                await conn.execute("SELECT public.kith_enter_tenant($1)", tenant_id)
                if await conn.fetchval("SELECT to_regclass('subject_keys')") is None:
                    return None  # not migrated to the privacy schema yet: it holds no keys
                if first:
                    count.current = int(await conn.fetchval(
                        "SELECT count(*) FROM subject_keys WHERE starts_with(wrapped_key, $1)", prefix))
                    first = False
                rows = await conn.fetch(
                    "SELECT current_schema() AS schema, subject_type, subject_id, key_id, wrapped_key"
                    " FROM subject_keys WHERE (subject_type, subject_id) > ($1, $2)"
                    " AND NOT starts_with(wrapped_key, $3) ORDER BY subject_type, subject_id LIMIT $4 FOR UPDATE",
                    after[0], after[1], prefix, batch)
                updates: list[tuple[str, str, str]] = []
                for r in rows:
                    context = wrap_context(str(r["schema"]), str(r["subject_type"]), str(r["subject_id"]),
                                           str(r["key_id"]))
                    try:
                        key = decrypt_bytes(str(r["wrapped_key"]), context, ring)
                    except DecryptionError as exc:
                        count.failed.append(str(exc))
                        continue
                    updates.append((str(r["subject_type"]), str(r["subject_id"]), encrypt_bytes(key, context, ring)))
                if updates:
                    await conn.executemany(
                        "UPDATE subject_keys SET wrapped_key = $3 WHERE subject_type = $1 AND subject_id = $2",
                        updates)
        except asyncpg.RaiseError:
            return None  # deleted meanwhile: nothing of it is read any more
        if not rows:
            break
        after = (str(rows[-1]["subject_type"]), str(rows[-1]["subject_id"]))
        count.rotated += len(updates)
        say(f"{count.scope}: {count.rotated:,} re-encrypted")
    return count


async def _rotate_email_provider(conn: Any, tenant_id: int, slug: str, say: Say) -> ScopeCount | None:
    """Re-encrypt the secrets of the workspace's own email provider: one row, one transaction."""
    import asyncpg

    from kith.platform.crypto import DecryptionError, encrypt, keyring, needs_rotation, reveal
    from kith.tenants.campaigns.provider_settings import secret_context

    ring = keyring()
    count = ScopeCount(f"t_{tenant_id} ({slug}) email_provider")
    try:
        async with conn.transaction():
            await conn.execute("SELECT public.kith_enter_tenant($1)", tenant_id)
            if await conn.fetchval("SELECT to_regclass('email_provider')") is None:
                return None  # not migrated to 0014 yet: nothing stored
            row = await conn.fetchrow(
                f"SELECT {', '.join(EMAIL_PROVIDER_COLUMNS)} FROM email_provider WHERE id = 1 FOR UPDATE")
            if row is None:
                return None
            updates: dict[str, str] = {}
            for column in EMAIL_PROVIDER_COLUMNS:
                value = row[column]
                if value is None:
                    continue
                if not needs_rotation(str(value), ring):
                    count.current += 1
                    continue
                context = secret_context(column, tenant_id)
                try:
                    updates[column] = encrypt(str(reveal(str(value), context, ring)), context, ring)
                except DecryptionError as exc:
                    count.failed.append(str(exc))
            if updates:
                # the column names come from EMAIL_PROVIDER_COLUMNS, never from input
                sets = ", ".join(f"{column} = ${i}" for i, column in enumerate(updates, start=1))
                await conn.execute(f"UPDATE email_provider SET {sets} WHERE id = 1", *updates.values())
    except asyncpg.RaiseError:
        return None  # deleted meanwhile
    count.rotated = len(updates)
    if count.rotated or count.failed:
        say(f"{count.scope}: {count.rotated} re-encrypted")
    return count


async def rotate_keys(*, batch: int = BATCH, say: Say = _say) -> RotationReport:
    """Re-encrypt everything encrypted at rest with the keyring's first key; see the module's docstring.

    `say` gets one progress line per batch (after the batch commits) and per scope.
    """
    from kith.platform.crypto import keyring
    from kith.platform.db import connect_raw

    report = RotationReport(primary=keyring().primary)
    say(f"re-encrypting with key {report.primary!r}")
    conn = await connect_raw()
    try:
        for column in IDENTITY_COLUMNS:
            report.scopes.append(await _rotate_identities(conn, column, say, batch))
        tenants = await conn.fetch(
            "SELECT id, slug FROM public.tenants WHERE status IN ('active', 'suspended') ORDER BY id")
        for t in tenants:
            count = await _rotate_tenant(conn, int(t["id"]), str(t["slug"]), say, batch)
            if count is not None:
                report.tenants += 1
                report.scopes.append(count)
            provider = await _rotate_email_provider(conn, int(t["id"]), str(t["slug"]), say)
            if provider is not None:
                report.scopes.append(provider)
    finally:
        await conn.close()
    return report


async def _run(batch: int) -> int:
    report = await rotate_keys(batch=batch)
    _say(f"done: {report.rotated:,} values re-encrypted, {report.current:,} already under key "
         f"{report.primary!r}, over {report.tenants:,} workspace(s) and the public schema")
    if report.failed:
        shown = "; ".join(report.failed[:5])
        more = f" (and {len(report.failed) - 5} more)" if len(report.failed) > 5 else ""
        raise CliError(f"{len(report.failed)} value(s) could not be decrypted with KITH_ENCRYPTION_KEYS and were "
                       f"left as they are: {shown}{more}", EXIT_FAILED)
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    """`kith keys rotate`: exit 0 when everything is under the first key, 1 naming what could not be read."""
    from kith.platform.crypto import KeyringError, keyring

    try:
        keyring()
    except (KeyringError, RuntimeError) as exc:
        raise CliError(str(exc)) from None
    with embedded_services(redis=False, quiet=True):
        return asyncio.run(_run(args.batch))


def add_keys_parser(commands: Any) -> None:
    """Register `kith keys ...` on the top-level subparsers."""
    keys = commands.add_parser("keys", help="manage the keys of encryption at rest",
                               description="The keys in KITH_ENCRYPTION_KEYS that encrypt data at rest.")
    actions = keys.add_subparsers(dest="keys_command", metavar="<action>", required=True)
    rotate = actions.add_parser(
        "rotate", help="re-encrypt every encrypted value with the first key of KITH_ENCRYPTION_KEYS",
        description="Re-encrypt TOTP secrets (public schema), the wrapped per-person audit keys and the email "
                    "provider's secrets (every workspace schema) with the first key of KITH_ENCRYPTION_KEYS; "
                    "plain values left from before encryption are encrypted too. Batches commit one by one, so "
                    "the command can be interrupted and run again. Exit 0 when done; 1 naming values no key "
                    "could decrypt.",
    )
    rotate.add_argument("--batch", type=positive_int, default=BATCH, help=f"rows per transaction (default {BATCH})")
    rotate.set_defaults(handler=run_rotate)
