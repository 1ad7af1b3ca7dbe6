"""`kith backups create|list|restore|verify` (per workspace) and `kith backups platform
create|list|verify|restore` (the public schema) from the command line.

Importing this module is cheap (argparse only), so `kith --help` stays fast; each command
imports what it needs when it runs. Backups go where `backup_storage()` says (the S3 bucket of
KITH_BACKUP_S3_BUCKET, else KITH_DATA_DIR/backups). Bad input (unknown workspace or backup, a
corrupted or truncated archive, a missing bucket) ends with one line on stderr and exit status 2.
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
        from kith.platform.backups import backup_storage

        found = await asyncio.to_thread(backup_storage().manifests, await _tenant_id(args.tenant))
        if not found:
            _say(f"no backups of '{args.tenant}' yet")
        for m in found:
            _say(_list_line(m, "schema_version"))
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


def _list_line(manifest: dict[str, Any], version_key: str) -> str:
    rows = sum(int(t["rows"]) for t in manifest.get("tables", {}).values())
    return (f"{manifest['backup_id']}  {manifest['created_at']}  version {manifest[version_key]}  {rows:,} rows  "
            f"{int(manifest.get('size_bytes', 0)):,} bytes")


def run_platform_create(args: argparse.Namespace) -> int:
    async def action() -> int:
        from kith.platform.backups.platform_schema import backup_platform

        result = await backup_platform(progress=_say)
        _say(f"created platform backup {result.backup_id} in {result.location} ({result.seconds:.1f} s)")
        return 0

    return _run(action)


def run_platform_list(args: argparse.Namespace) -> int:
    async def action() -> int:
        from kith.platform.backups.platform_schema import platform_backups

        found = await platform_backups()
        if not found:
            _say("no platform backups yet")
        for m in found:
            _say(_list_line(m, "public_version"))
        return 0

    return _run(action)


def run_platform_verify(args: argparse.Namespace) -> int:
    async def action() -> int:
        from kith.platform.backups.platform_schema import verify_platform

        backup_id = args.backup.strip() if args.backup else None
        result = await verify_platform(backup_id, progress=_say)
        _say(f"platform backup {result.backup_id} is good ({sum(result.rows.values()):,} rows, "
             f"{result.seconds:.1f} s)")
        return 0

    return _run(action)


def run_platform_restore(args: argparse.Namespace) -> int:
    async def action() -> int:
        from kith.platform.backups.platform_schema import restore_platform

        result = await restore_platform(args.backup.strip(), progress=_say)
        _say(f"restored platform backup {result.backup_id} into schema {result.schema} (the live public schema "
             "is untouched; copy what you need from it, then drop it)")
        return 0

    return _run(action)


def _add_platform_parser(actions: Any) -> None:
    platform = actions.add_parser(
        "platform", help="back up, list, verify and restore the platform's own data (the public schema)",
        description="The platform's own backup: every table of the public schema (workspaces, accounts, "
                    "billing, operators, the platform audit log...) in one consistent snapshot, compressed and "
                    "encrypted like a workspace's, kept under platform/ beside the workspaces' backups.",
    )
    steps = platform.add_subparsers(dest="platform_command", metavar="<action>", required=True)
    steps.add_parser("create", help="back up the public schema now",
                     description="Back up every table of the public schema now and print the backup id."
                     ).set_defaults(handler=run_platform_create)
    steps.add_parser("list", help="list the platform's backups, newest first",
                     description="List the platform's backups: id, time, public migration version, rows, size."
                     ).set_defaults(handler=run_platform_list)
    verify = steps.add_parser(
        "verify", help="load a platform backup into a scratch schema and check it",
        description="Load the latest platform backup (or --backup ID) into a scratch schema, check every table "
                    "against the manifest, then drop the scratch schema. Exit 0 when it is good.",
    )
    verify.add_argument("--backup", metavar="ID", help="backup id (default: the latest)")
    verify.set_defaults(handler=run_platform_verify)
    restore = steps.add_parser(
        "restore", help="load a platform backup into a new schema, for an operator to copy from",
        description="Load a platform backup into a new schema kith_platform_r<time>, checked against its "
                    "manifest, and keep it. The live public schema is not touched: copy the rows you need from "
                    "it, then drop it.",
    )
    restore.add_argument("--backup", required=True, metavar="ID", help="backup id (see `kith backups platform list`)")
    restore.set_defaults(handler=run_platform_restore)


def add_backups_parser(commands: Any) -> None:
    """Register `kith backups ...` on the top-level subparsers."""
    backups = commands.add_parser(
        "backups", help="back up, list, restore and verify a workspace's data (or the platform's)",
        description="Per-workspace backups: one consistent snapshot of the workspace's schema, compressed "
                    "and encrypted with KITH_ENCRYPTION_KEYS, kept in the S3 bucket KITH_BACKUP_S3_BUCKET, or "
                    "in <KITH_DATA_DIR>/backups when it is unset. `kith backups platform` does the same for the "
                    "platform's own tables (the public schema).",
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
    _add_platform_parser(actions)
