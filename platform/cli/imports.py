"""`kith imports run|list|undo`: imports from the command line, with progress printed as they go.

The command acts as a member of the workspace (`--as EMAIL`), with that member's permissions, and
runs the work in this process (no worker needed) through the same service and runner the pages
use. Importing this module is cheap (argparse only); kith.tenants is reached inside the commands.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kith.platform.cli.common import EXIT_FAILED, CliError, with_orm
from kith.platform.cli.services import embedded_services


def _say(message: str) -> None:
    print(message, flush=True)


async def _member(slug: str, email: str) -> tuple[int, str | None, Any]:
    from kith.platform.db import fetchrow_alone
    from kith.tenants.imports.runner import member_actor

    row = await fetchrow_alone(
        "SELECT t.id, t.default_phone_region, i.id AS identity_id FROM public.tenants t"
        " JOIN public.memberships m ON m.tenant_id = t.id JOIN public.identities i ON i.id = m.identity_id"
        " WHERE t.slug = $1 AND t.status <> 'deleted' AND lower(i.email) = lower($2)",
        slug.strip().lower(), email.strip())
    if row is None:
        raise CliError(f"'{email}' is not a member of a workspace '{slug}'; see `kith tenants list`")
    try:
        actor = await member_actor(row["id"], row["identity_id"], "command line")
    except PermissionError as exc:
        raise CliError(str(exc)) from None
    return int(row["id"]), row["default_phone_region"], actor


def _run(action: Callable[[], Awaitable[int]]) -> int:
    from kith.platform.access.rules import PermissionDenied
    from kith.tenants.records.refusals import RecordsRefusal

    async def guarded() -> int:
        try:
            return await action()
        except RecordsRefusal as exc:
            raise CliError(exc.message) from None
        except PermissionDenied as exc:
            raise CliError(str(exc)) from None

    with embedded_services(redis=False, quiet=True):
        return asyncio.run(with_orm(guarded))


def _parse_mapping(text: str) -> dict[int, str]:
    """"1=name,2=email" (columns counted from 1) -> {0: "name", 1: "email"}."""
    found: dict[int, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        column, _, field = part.partition("=")
        if not column.strip().isdigit() or int(column) < 1:
            raise CliError(f"--map: '{part}' should look like 3=email (column number, from 1, = field)")
        found[int(column) - 1] = field.strip()
    return found


def run_import_command(args: argparse.Namespace) -> int:
    async def action() -> int:
        from kith.tenants.imports import service
        from kith.tenants.imports.runner import execute

        path = Path(args.file)
        if not path.is_file():
            raise CliError(f"no file at {path}")
        tenant_id, region, actor = await _member(args.tenant, args.as_email)
        item = await service.create_import(actor, args.type, path, path.name, encoding=args.encoding,
                                           delimiter=args.delimiter)
        mapping = (_parse_mapping(args.map) if args.map
                   else {int(k): v for k, v in item["mapping"].items()})
        for index, header in enumerate(item["headers"]):
            _say(f"  column {index + 1} {header!r} -> {mapping.get(index) or '(not imported)'}")
        item = await service.configure_import(
            actor, item["id"], mapping=mapping, match_key=item["match_key"] if args.key is None else args.key,
            on_duplicate=args.on_duplicate)
        _say(f"import #{item['id']}: {item['file_format']} {item['encoding'] or ''} "
             f"{item['rows_estimate'] or 0:,} rows (estimate); duplicates by {item['match_key'] or '(none)'}: "
             f"{item['on_duplicate']}")
        kind = "check" if args.check else "import"
        await service.start_import(actor, item["id"], check_only=args.check, enqueue=False)
        outcome = await execute(tenant_id, region, item["id"], kind, say=_say)
        final = await service.get_import(actor, item["id"])
        _say(final["outcome"])
        rejected = service.rejected_file(tenant_id, item["id"])
        if rejected is not None and final["counts"].get("rejected"):
            _say(f"rejected rows with their reasons: {rejected}")
        return 0 if outcome.status in ("imported", "checked") else EXIT_FAILED

    return _run(action)


def run_list(args: argparse.Namespace) -> int:
    async def action() -> int:
        from kith.tenants.imports import service

        _, _, actor = await _member(args.tenant, args.as_email)
        found = await service.list_imports(actor)
        if not found:
            _say(f"no imports in '{args.tenant}' yet")
        for item in found:
            _say(f"#{item['id']}  {item['created_at']:%Y-%m-%d %H:%M}  {item['object_type']}  {item['file_name']}  "
                 f"{item['status']}  {item['outcome']}")
        return 0

    return _run(action)


def run_undo(args: argparse.Namespace) -> int:
    async def action() -> int:
        from kith.tenants.imports import service
        from kith.tenants.imports.runner import execute

        tenant_id, region, actor = await _member(args.tenant, args.as_email)
        await service.undo_import(actor, args.id, enqueue=False)
        outcome = await execute(tenant_id, region, args.id, "undo", say=_say)
        return 0 if outcome.status == "undone" else EXIT_FAILED

    return _run(action)


def add_imports_parser(commands: Any) -> None:
    """Register `kith imports ...` on the top-level subparsers."""
    imports = commands.add_parser(
        "imports", help="import contacts, companies or leads from CSV/XLSX files, list and undo imports",
        description="Import records from a CSV or XLSX file as a member of a workspace, with the member's "
                    "permissions, showing progress; list a workspace's imports; undo one.")
    sub = imports.add_subparsers(dest="imports_command", metavar="<command>", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--tenant", required=True, help="the workspace's slug")
        parser.add_argument("--as", dest="as_email", required=True, metavar="EMAIL",
                            help="the member to act as (their role decides what is allowed)")

    run = sub.add_parser("run", help="import a file (or only check it with --check)")
    common(run)
    run.add_argument("file", help="the CSV or XLSX file")
    run.add_argument("--type", default="contacts", choices=("contacts", "companies", "leads"))
    run.add_argument("--encoding", default=None, help="the CSV's encoding (default: detected), e.g. gb18030, big5")
    run.add_argument("--delimiter", default=None, help="the CSV's delimiter (default: detected)")
    run.add_argument("--map", default="", help="columns to fields, e.g. '1=name,2=email,3=phone' (default: "
                                               "remembered or suggested from the headers)")
    run.add_argument("--key", default=None, help="find duplicates by email, phone, name or domain ('' for none)")
    run.add_argument("--on-duplicate", default="skip", choices=("skip", "update", "create"))
    run.add_argument("--check", action="store_true", help="check only (dry run): count and list rejects, write "
                                                          "nothing")
    run.set_defaults(handler=run_import_command)
    listing = sub.add_parser("list", help="the workspace's latest imports")
    common(listing)
    listing.set_defaults(handler=run_list)
    undo = sub.add_parser("undo", help="undo an import: remove what it created, restore what it changed")
    common(undo)
    undo.add_argument("id", type=int, help="the import's number (see `kith imports list`)")
    undo.set_defaults(handler=run_undo)
