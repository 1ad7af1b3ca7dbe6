"""`kith backups create|list|restore|verify`: per-tenant backups from the command line.

Importing this module is cheap (argparse only), so `kith --help` stays fast; each command
imports what it needs when it runs. Bad input (unknown workspace or backup, a corrupted or
truncated archive) ends with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from kith.platform.cli.common import CliError
from kith.platform.cli.services import embedded_services


def _say(message: str) -> None:
    print(message, flush=True)


async def _tenant_id(slug: str) -> int:
    from kith.platform.db import connect_raw

    conn = await connect_raw()
    try:
        tenant_id = await conn.fetchval(
            "SELECT id FROM public.tenants WHERE slug = $1 AND status <> 'deleted'", slug.strip().lower()
        )
    finally:
        await conn.close()
    if tenant_id is None:
        raise CliError(f"no workspace with slug '{slug}'; see `kith tenants list`")
    return int(tenant_id)


def _run(action: Callable[[], Awaitable[int]]) -> int:
    from kith.platform.backups import BackupError

    async def guarded() -> int:
        try:
            return await action()
        except BackupError as exc:
            raise CliError(str(exc)) from None

    with embedded_services(redis=False, quiet=True):
        return asyncio.run(guarded())


def run_create(args: argparse.Namespace) -> int:
    async def action() -> int:
        from kith.platform.backups import backup_tenant

        result = await backup_tenant(await _tenant_id(args.tenant), progress=_say)
        _say(f"created backup {result.backup_id} of '{result.slug}' in {result.location} "
             f"({result.seconds:.1f} s)")
        return 0

    return _run(action)


def run_list(args: argparse.Namespace) -> int:
    async def action() -> int:
        from kith.platform.backups import LocalStorage

        found = LocalStorage().manifests(await _tenant_id(args.tenant))
        if not found:
            _say(f"no backups of '{args.tenant}' yet")
        for m in found:
            rows = sum(int(t["rows"]) for t in m.get("tables", {}).values())
            _say(f"{m['backup_id']}  {m['created_at']}  version {m['schema_version']}  {rows:,} rows  "
                 f"{int(m.get('size_bytes', 0)):,} bytes")
        return 0

    return _run(action)


def run_restore(args: argparse.Namespace) -> int:
    async def action() -> int:
        from kith.platform.backups import restore_tenant

        result = await restore_tenant(await _tenant_id(args.tenant), args.backup.strip(), switch=args.switch,
                                      progress=_say)
        if result.switched:
            _say(f"restored backup {result.backup_id} and switched '{args.tenant}' over to it; the previous "
                 f"data is kept in schema {result.old_schema}")
        else:
            _say(f"restored backup {result.backup_id} into schema {result.schema} (the workspace still uses its "
                 "own; add --switch to switch it over)")
        return 0

    return _run(action)


def run_verify(args: argparse.Namespace) -> int:
    async def action() -> int:
        from kith.platform.backups import verify_latest

        result = await verify_latest(await _tenant_id(args.tenant), progress=_say)
        _say(f"backup {result.backup_id} of '{args.tenant}' is good ({sum(result.rows.values()):,} rows, "
             f"{result.seconds:.1f} s)")
        return 0

    return _run(action)


def add_backups_parser(commands: Any) -> None:
    """Register `kith backups ...` on the top-level subparsers."""
    backups = commands.add_parser(
        "backups", help="back up, list, restore and verify a workspace's data",
        description="Per-workspace backups: one consistent snapshot of the workspace's schema, compressed "
                    "and encrypted with KITH_ENCRYPTION_KEYS, kept in <KITH_DATA_DIR>/backups.",
    )
    actions = backups.add_subparsers(dest="backups_command", metavar="<action>", required=True)
    create = actions.add_parser("create", help="back up a workspace now",
                                description="Back up a workspace now and print its backup id.")
    create.add_argument("--tenant", required=True, metavar="SLUG", help="workspace slug")
    create.set_defaults(handler=run_create)
    listing = actions.add_parser("list", help="list a workspace's backups, newest first",
                                 description="List a workspace's backups: id, time, schema version, rows, size.")
    listing.add_argument("--tenant", required=True, metavar="SLUG", help="workspace slug")
    listing.set_defaults(handler=run_list)
    restore = actions.add_parser(
        "restore", help="restore a backup into a new schema (and switch the workspace to it)",
        description="Restore a backup into a new schema and check it against its manifest. With --switch, "
                    "the workspace then uses the restored data (migrated to the current version); its "
                    "previous schema is kept as t_<id>_old_<time> until an operator drops it.",
    )
    restore.add_argument("--tenant", required=True, metavar="SLUG", help="workspace slug")
    restore.add_argument("--backup", required=True, metavar="ID", help="backup id (see `kith backups list`)")
    restore.add_argument("--switch", action="store_true", help="switch the workspace over to the restored data")
    restore.set_defaults(handler=run_restore)
    verify = actions.add_parser(
        "verify", help="restore the latest backup into a scratch schema and check it",
        description="Restore the workspace's latest backup into a scratch schema, check every table against "
                    "the manifest, then drop the scratch schema. Exit 0 when it is good.",
    )
    verify.add_argument("--tenant", required=True, metavar="SLUG", help="workspace slug")
    verify.set_defaults(handler=run_verify)
