"""The `kith` command: one entry point for developers and operators.

Command modules are imported only when their command runs, so `kith --help` stays fast
and works even when a part of the product (web, jobs) fails to import.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from kith.platform.cli.common import EXIT_FAILED, CliError, positive_int

Handler = Callable[[argparse.Namespace], int]

DESCRIPTION = """\
Kith, a hosted multi-tenant CRM.

Without DATABASE_URL / REDIS_URL, commands use an embedded PostgreSQL and Valkey whose
data lives in KITH_DATA_DIR (default .kith). Run `kith <command> --help` for details.
"""


def _port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError("must be at most 65535")
    return value


def _cmd_dev(args: argparse.Namespace) -> int:
    from kith.platform.cli.dev import run_dev

    return run_dev(args)


def _cmd_serve(args: argparse.Namespace) -> int:
    from kith.platform.cli.dev import run_serve

    return run_serve(args)


def _cmd_worker(args: argparse.Namespace) -> int:
    if not os.environ.get("DATABASE_URL") or not os.environ.get("REDIS_URL"):
        # An embedded Valkey started here would be one no web server enqueues into.
        raise CliError("kith worker needs DATABASE_URL and REDIS_URL; "
                       "`kith dev` starts the embedded servers and a worker for you")
    from kith.jobs.worker import run_worker

    run_worker()
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from kith.platform.cli.admin import run_migrate

    return run_migrate(args)


def _cmd_tenants_create(args: argparse.Namespace) -> int:
    from kith.platform.cli.admin import run_tenants_create

    return run_tenants_create(args)


def _cmd_tenants_list(args: argparse.Namespace) -> int:
    from kith.platform.cli.admin import run_tenants_list

    return run_tenants_list(args)


def _cmd_tokens_create(args: argparse.Namespace) -> int:
    from kith.platform.cli.admin import run_tokens_create

    return run_tokens_create(args)


def _cmd_bench(args: argparse.Namespace) -> int:
    try:
        from kith.platform.bench import main as bench_main
    except ModuleNotFoundError as exc:
        if exc.name != "kith.platform.bench":
            raise
        raise CliError("kith bench is not part of this installation (kith.platform.bench is missing)",
                       EXIT_FAILED) from None
    return bench_main(list(args.bench_args))


def _add_server_options(parser: argparse.ArgumentParser, default_host: str) -> None:
    parser.add_argument("--host", default=default_host, help=f"address to listen on (default {default_host})")
    parser.add_argument("--port", type=_port, default=8000, help="port to listen on (default 8000)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kith", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    dev = commands.add_parser(
        "dev", help="run everything locally: embedded servers, migrations, demo data, web and worker",
        formatter_class=raw,
        description="""\
Run the whole product on this machine, in the foreground:
  1. start an embedded PostgreSQL and Valkey when DATABASE_URL / REDIS_URL are unset
     (data in KITH_DATA_DIR, default .kith, kept across restarts);
  2. apply migrations (public schema, then every tenant schema);
  3. create the demo workspace with sample contacts, unless it already exists;
  4. start the web server and a background worker, and print the URL and demo login.
Ctrl-C stops the web server, the worker and the embedded servers.""",
    )
    _add_server_options(dev, "127.0.0.1")
    dev.set_defaults(handler=_cmd_dev)

    serve = commands.add_parser(
        "serve", help="run the web server (uvicorn)", formatter_class=raw,
        description="""\
Serve the web app with uvicorn. With DATABASE_URL and REDIS_URL set (production) this is
uvicorn alone; run `kith migrate` and `kith worker` beside it. With either unset, the
embedded servers are started as for `kith dev` (and migrated, and given a worker), without
demo data.""",
    )
    _add_server_options(serve, "127.0.0.1")
    serve.add_argument("--workers", type=positive_int, default=1, help="web server processes (default 1)")
    serve.set_defaults(handler=_cmd_serve)

    worker = commands.add_parser(
        "worker", help="run the background job worker (arq)",
        description="Run the arq worker in the foreground: it takes jobs from REDIS_URL and runs each "
                    "inside its tenant's scope. Needs DATABASE_URL and REDIS_URL.",
    )
    worker.set_defaults(handler=_cmd_worker)

    migrate = commands.add_parser(
        "migrate", help="apply migrations, or show which tenants are behind", formatter_class=raw,
        description="""\
Apply public migrations, then roll tenant migrations over every tenant schema (canary
tenants first, one by one; the rest concurrently). Safe to re-run: each tenant is
migrated in one transaction, so an interrupted run converges when run again.
Exit status: 0 when everything is current, 1 when a tenant failed (named in the message).""",
    )
    migrate.add_argument("--status", action="store_true",
                         help="only report pending public migrations and tenants behind; exit 1 if any")
    migrate.add_argument("--concurrency", type=positive_int, metavar="N",
                         help="tenant schemas migrated at once (default KITH_MIGRATE_CONCURRENCY)")
    migrate.add_argument("--wait", action="store_true",
                         help="wait for another running `kith migrate` instead of failing at once")
    migrate.set_defaults(handler=_cmd_migrate)

    tenants = commands.add_parser("tenants", help="create and list workspaces (tenants)",
                                  description="Create and list workspaces.")
    tenant_cmds = tenants.add_subparsers(dest="tenants_command", metavar="<action>", required=True)
    create = tenant_cmds.add_parser(
        "create", help="create a workspace with its own schema",
        description="Create a workspace and its schema at the current version, all or nothing. With "
                    "--owner-email, also its owner (an existing person must give their password).",
    )
    create.add_argument("--slug", required=True,
                        help="workspace address: 3-40 lowercase letters, digits, hyphens")
    create.add_argument("--name", required=True, help="company name")
    create.add_argument("--owner-email", help="email of the owner to create (or add, if they exist)")
    create.add_argument("--owner-password",
                        help="owner's password (asked for when --owner-email is given without it)")
    create.add_argument("--canary", action="store_true",
                        help="migrate this workspace first, before all others")
    create.set_defaults(handler=_cmd_tenants_create)
    listing = tenant_cmds.add_parser("list", help="list workspaces with status, schema and version",
                                     description="List every workspace: slug, name, status, schema, version.")
    listing.set_defaults(handler=_cmd_tenants_list)

    tokens = commands.add_parser("tokens", help="create API tokens", description="Manage API tokens.")
    token_cmds = tokens.add_subparsers(dest="tokens_command", metavar="<action>", required=True)
    token_create = token_cmds.add_parser(
        "create", help="create an API token for a person in a workspace",
        description="Create an API token for a member of a workspace and print it once, on stdout. "
                    "Use it as `Authorization: Bearer <token>`; only its hash is stored.",
    )
    token_create.add_argument("--tenant", required=True, metavar="SLUG", help="workspace slug")
    token_create.add_argument("--email", required=True, help="email of a member of that workspace")
    token_create.add_argument("--name", default="cli", help="a name to recognise the token by (default cli)")
    token_create.set_defaults(handler=_cmd_tokens_create)

    bench = commands.add_parser(
        "bench", help="benchmark tenant provisioning and migrations", add_help=False,
        description="Benchmark tenant provisioning and migration roll-outs; options are passed on "
                    "(run `kith bench --help` for them).",
    )
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    bench.set_defaults(handler=_cmd_bench)

    from kith.platform.cli.audit import add_audit_parser  # argparse only: cheap to import

    add_audit_parser(commands)
    from kith.platform.cli.keys import add_keys_parser  # argparse only: cheap to import

    add_keys_parser(commands)
    from kith.platform.cli.ops import add_ops_parser  # argparse only: cheap to import

    add_ops_parser(commands)

    from kith.platform.cli.crm_bench import add_crm_bench_parser  # argparse only: cheap to import

    add_crm_bench_parser(commands)
    from kith.platform.cli.import_bench import add_import_bench_parser  # argparse only: cheap to import

    add_import_bench_parser(commands)
    from kith.platform.cli.campaign_bench import add_campaign_bench_parser  # argparse only: cheap to import

    add_campaign_bench_parser(commands)

    from kith.platform.cli.backups import add_backups_parser  # argparse only: cheap to import

    add_backups_parser(commands)
    from kith.platform.cli.imports import add_imports_parser  # argparse only: cheap to import

    add_imports_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `kith` command; returns the process exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["bench"]:
        # argparse cannot pass "--help" and unknown options through untouched; bench parses its own
        args = argparse.Namespace(bench_args=arguments[1:], handler=_cmd_bench)
    else:
        args = build_parser().parse_args(arguments)
    handler: Handler = args.handler
    try:
        return handler(args)
    except CliError as exc:
        print(f"kith: error: {exc.message}", file=sys.stderr, flush=True)
        return exc.code
    except KeyboardInterrupt:
        print("kith: interrupted", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
