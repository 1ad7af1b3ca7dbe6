"""`kith audit verify|archive|bench`: the audit log from the command line.

Importing this module is cheap (argparse only), so `kith --help` stays fast; each command
imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from kith.platform.cli.common import EXIT_FAILED, CliError, positive_int, with_orm
from kith.platform.cli.services import embedded_services


def _say(message: str) -> None:
    print(message, flush=True)


async def _tenant_id(conn: Any, slug: str) -> int:
    tenant_id = await conn.fetchval(
        "SELECT id FROM public.tenants WHERE slug = $1 AND status <> 'deleted'", slug.strip().lower()
    )
    if tenant_id is None:
        raise CliError(f"no workspace with slug '{slug}'; see `kith tenants list`")
    return int(tenant_id)


async def _verify(tenant: str | None, platform: bool) -> int:
    from kith.platform.audit.verify import verify_platform, verify_tenant
    from kith.platform.db import connect_raw

    conn = await connect_raw()
    try:
        if platform:
            report = await verify_platform(conn)
        else:
            assert tenant is not None
            report = await verify_tenant(conn, await _tenant_id(conn, tenant), scope=f"tenant {tenant}")
    finally:
        await conn.close()
    if not report.ok:
        raise CliError(report.summary(), EXIT_FAILED)
    _say(report.summary())
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """`kith audit verify`: exit 0 when the chain is intact, 1 naming the first bad entry."""
    if bool(args.tenant) == bool(args.platform):
        raise CliError("give either --tenant SLUG or --platform")
    with embedded_services(redis=False, quiet=True):
        return asyncio.run(_verify(args.tenant, args.platform))


async def _archive(slug: str) -> int:
    from kith.platform.audit.retention import archive_expired
    from kith.platform.db import connect_raw

    conn = await connect_raw()
    try:
        tenant_id = await _tenant_id(conn, slug)
    finally:
        await conn.close()
    result = await archive_expired(tenant_id)
    if result.rows:
        _say(f"archived {result.rows:,} audit entries of '{slug}' through seq {result.through_seq} "
             f"in {result.batches} batch(es)")
    else:
        _say(f"nothing to archive in '{slug}': no entry is older than its retention")
    return 0


def run_archive(args: argparse.Namespace) -> int:
    """`kith audit archive`: what the daily retention job does, for one workspace, now."""
    with embedded_services(redis=False, quiet=True):
        return asyncio.run(with_orm(lambda: _archive(args.tenant)))


def run_bench(args: argparse.Namespace) -> int:
    """`kith audit bench`: the audit benchmark on a fresh database."""
    from kith.platform.audit.bench import main as bench_main

    return bench_main(args)


def add_audit_parser(commands: Any) -> None:
    """Register `kith audit ...` on the top-level subparsers."""
    audit = commands.add_parser("audit", help="verify, archive and benchmark the audit log",
                                description="The tamper-evident audit log of each workspace.")
    actions = audit.add_subparsers(dest="audit_command", metavar="<action>", required=True)

    verify = actions.add_parser(
        "verify", help="recompute a chain and name the first entry altered, removed or inserted",
        description="Recompute the hash chain of one workspace's audit log (archive included) or of the "
                    "platform's own log, with KITH_AUDIT_KEY. Exit 0 when intact; 1 with a message naming "
                    "the first entry that was altered, removed or inserted.",
    )
    verify.add_argument("--tenant", metavar="SLUG", help="workspace slug")
    verify.add_argument("--platform", action="store_true", help="verify public.platform_audit instead")
    verify.set_defaults(handler=run_verify)

    archive = actions.add_parser(
        "archive", help="archive entries older than the workspace's retention now",
        description="Move entries older than the workspace's retention (Settings -> Audit log) into its "
                    "archive, with a checkpoint that keeps the chain verifiable. The worker does this daily.",
    )
    archive.add_argument("--tenant", metavar="SLUG", required=True, help="workspace slug")
    archive.set_defaults(handler=run_archive)

    bench = actions.add_parser(
        "bench", help="benchmark audit appends, contact-update overhead and verify",
        description="On a fresh database (dropped afterwards unless --keep): one workspace with --contacts "
                    "contacts; contact-update throughput with and without auditing; append p50/p95; then "
                    "--entries audit entries loaded with COPY and verified. Prints a markdown table.",
    )
    bench.add_argument("--contacts", type=positive_int, default=10_000, help="contacts in the workspace (10,000)")
    bench.add_argument("--updates", type=positive_int, default=3_000, help="contact updates per measured run (3,000)")
    bench.add_argument("--entries", type=positive_int, default=1_000_000, help="entries to load and verify (1,000,000)")
    bench.add_argument("--database", default="kith_audit_bench", help="database to create (dropped first)")
    bench.add_argument("--keep", action="store_true", help="keep the database afterwards")
    bench.add_argument("--strict", action="store_true", help="exit with 1 when a target is missed")
    bench.set_defaults(handler=run_bench)
