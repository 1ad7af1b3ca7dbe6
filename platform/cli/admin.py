"""Operator commands: `kith migrate`, `kith tenants create|list`, `kith tokens create`.

Each runs against DATABASE_URL, or against the embedded PostgreSQL under KITH_DATA_DIR when
it is unset (attaching to the one a running `kith dev` uses).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kith.platform.cli.common import EXIT_FAILED, CliError, with_orm
from kith.platform.cli.services import embedded_services
from kith.platform.config import get_settings

if TYPE_CHECKING:
    from kith.platform.migrations.runner import RolloutReport

_MAX_NAMES_SHOWN = 50


def _say(message: str) -> None:
    print(message, flush=True)


def failure_message(report: RolloutReport) -> str:
    """One line naming the tenants that failed to migrate, and why the first one did."""
    failed = report.tenants_failed
    names = ", ".join(f.slug for f in failed[:_MAX_NAMES_SHOWN])
    more = f" and {len(failed) - _MAX_NAMES_SHOWN} more" if len(failed) > _MAX_NAMES_SHOWN else ""
    stopped = " (a canary failed, so the roll-out stopped there)" if report.canaries_failed else ""
    first = failed[0].error.splitlines()[0] if failed and failed[0].error else "unknown error"
    return f"{len(failed)} tenant(s) failed to migrate{stopped}: {names}{more}; first error: {first}"


# --- kith migrate --------------------------------------------------------------------------


async def _migration_status() -> int:
    from kith.platform.db import connect_raw
    from kith.platform.migrations import runner

    conn = await connect_raw()
    try:
        done: set[int] = set()
        if await conn.fetchval("SELECT to_regclass('public.schema_migrations')") is not None:
            done = {r["version"] for r in await conn.fetch("SELECT version FROM public.schema_migrations")}
        public_pending = [m for m in runner.public_migrations() if m.version not in done]
        latest = runner.latest_version(runner.tenant_migrations())
        behind = []
        if await conn.fetchval("SELECT to_regclass('public.tenants')") is not None:
            behind = await runner.pending_tenants(conn, latest)
    finally:
        await conn.close()
    if public_pending:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in public_pending)
        _say(f"public: {len(public_pending)} migration(s) pending: {names}")
    else:
        _say("public: up to date")
    if behind:
        _say(f"tenants: {len(behind)} behind version {latest}:")
        for row in behind[:_MAX_NAMES_SHOWN]:
            _say(f"  {row['slug']} (version {row['schema_version']})")
        if len(behind) > _MAX_NAMES_SHOWN:
            _say(f"  ... and {len(behind) - _MAX_NAMES_SHOWN} more")
    else:
        _say(f"tenants: all at version {latest}")
    return EXIT_FAILED if public_pending or behind else 0


async def _migrate(concurrency: int | None, wait: bool) -> int:
    from kith.platform.migrations import runner

    settings = get_settings()
    try:
        report = await runner.migrate(
            concurrency=concurrency or settings.migrate_concurrency,
            canary_slugs=settings.canary_tenants,
            progress=_say,
            wait_for_lock=wait,
        )
    except runner.MigrationLocked as exc:
        raise CliError(f"{exc} (or pass --wait)", EXIT_FAILED) from None
    if not report.ok:
        raise CliError(failure_message(report), EXIT_FAILED)
    _say(f"migrate: done in {report.seconds:.2f} s; public migrations applied: {len(report.public_applied)}, "
         f"tenants migrated: {len(report.tenants_migrated)}")
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    with embedded_services(redis=False, quiet=True):
        if args.status:
            return asyncio.run(_migration_status())
        return asyncio.run(_migrate(args.concurrency, args.wait))


# --- kith tenants ----------------------------------------------------------------------------


def _owner_password(given: str | None) -> str:
    if given:
        return given
    if not sys.stdin.isatty():
        raise CliError("--owner-password is required when kith is not run from a terminal")
    first = getpass.getpass("Owner password: ")
    if getpass.getpass("Repeat it: ") != first:
        raise CliError("the two passwords differ")
    return first


async def _create_tenant(args: argparse.Namespace, password: str | None) -> int:
    from kith.platform.tenancy.models import Tenant
    from kith.platform.tenancy.provisioning import TenantNameError, provision_tenant
    from kith.platform.tenancy.signup import SignupError, sign_up
    from kith.platform.tenancy.slugs import SlugError

    slug = args.slug.strip().lower()
    owner = ""
    if password is not None:
        try:
            result = await sign_up(
                company_name=args.name, slug=slug, email=args.owner_email, password=password
            )
        except SignupError as exc:
            raise CliError("; ".join(f"{field}: {msg}" for field, msg in exc.fields.items())) from None
        tenant = result.tenant
        owner = f", owner {result.identity.email}"
        if args.canary:
            # sign_up has no canary option; the flag only orders migrations, so setting it
            # right after the all-or-nothing signup is safe
            await Tenant.filter(id=tenant.id).update(canary=True)
    else:
        try:
            tenant = await provision_tenant(slug=slug, name=args.name, canary=args.canary)
        except (SlugError, TenantNameError) as exc:
            raise CliError(str(exc)) from None
    canary = ", canary" if args.canary else ""
    _say(f"Created workspace '{tenant.slug}' ({tenant.name}): schema {tenant.schema_name}, "
         f"version {tenant.schema_version}{owner}{canary}")
    return 0


def _width(text: str) -> int:
    # CJK characters take two terminal columns; without this, Chinese names break the table
    return sum(2 if unicodedata.east_asian_width(ch) in {"W", "F"} else 1 for ch in text)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, measured in terminal cells."""
    widths = [max(_width(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [cell + " " * (widths[i] - _width(cell)) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


async def _list_tenants() -> int:
    from kith.platform.tenancy.models import Tenant

    tenants = await Tenant.all().order_by("id")
    if not tenants:
        _say("no workspaces yet; create one with `kith tenants create` (or run `kith dev` for the demo)")
        return 0
    rows = [
        [t.slug, t.name, str(t.status), t.schema_name, f"{t.schema_version}{' (canary)' if t.canary else ''}"]
        for t in tenants
    ]
    _say(format_table(["SLUG", "NAME", "STATUS", "SCHEMA", "VERSION"], rows))
    return 0


def run_tenants_create(args: argparse.Namespace) -> int:
    if args.owner_password and not args.owner_email:
        raise CliError("--owner-password needs --owner-email")
    password = _owner_password(args.owner_password) if args.owner_email else None
    with embedded_services(redis=False, quiet=True):
        return asyncio.run(with_orm(lambda: _create_tenant(args, password)))


def run_tenants_list(args: argparse.Namespace) -> int:
    with embedded_services(redis=False, quiet=True):
        return asyncio.run(with_orm(_list_tenants))


# --- kith tokens -----------------------------------------------------------------------------


async def _create_token(slug: str, email: str, name: str) -> int:
    from kith.platform.identity.models import Identity
    from kith.platform.identity.tokens import TokenError, create_api_token
    from kith.platform.tenancy.models import Tenant, TenantStatus

    tenant = await Tenant.filter(slug=slug.strip().lower()).exclude(status=TenantStatus.DELETED).first()
    if tenant is None:
        raise CliError(f"no workspace with slug '{slug}'; see `kith tenants list`")
    identity = await Identity.filter(email__iexact=email.strip()).first()
    if identity is None:
        raise CliError(f"no person with email '{email}'")
    try:
        token, raw = await create_api_token(tenant_id=tenant.id, identity_id=identity.id, name=name)
    except TokenError as exc:
        raise CliError(f"cannot create a token for {email} in '{tenant.slug}': {exc}") from None
    print(raw, flush=True)
    print(f"API token '{token.name}' ({token.prefix}...) for {identity.email} in workspace '{tenant.slug}'. "
          "It is shown only this once; store it now.", file=sys.stderr, flush=True)
    return 0


def run_tokens_create(args: argparse.Namespace) -> int:
    with embedded_services(redis=False, quiet=True):
        return asyncio.run(with_orm(lambda: _create_token(args.tenant, args.email, args.name)))
