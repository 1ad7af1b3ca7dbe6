"""`kith crm-bench generate|measure|run`: the CRM benchmark from the command line.

Importing this module is cheap (argparse only), so `kith --help` stays fast. The benchmark
itself lives in kith.tenants.bench, reached only by imports inside the commands, so imports
still flow one way (platform never imports tenants at module level).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from kith.platform.cli.common import EXIT_FAILED, CliError, positive_int, with_orm
from kith.platform.cli.services import embedded_services

T = TypeVar("T")
DEFAULT_DATABASE = "kith_crm_bench"
DEFAULT_SLUG = "crm-bench"
TARGET_KEYS = ("me", "list", "list_q", "search", "overview", "board")


def _non_negative(text: str) -> int:
    """argparse type: a whole number of at least 0 ("1_000" and "1,000" read as 1000)."""
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
    return value


@contextmanager
def _bench_database(database: str, *, redis: bool) -> Iterator[tuple[str, str]]:
    """DATABASE_URL's server (or the embedded one) with `database` on it, created and migrated,
    exported for Tortoise and for the web server the measurement starts. Yields (url, where)."""
    from kith.platform.config import reset_settings, restored_environment
    from kith.platform.db import with_database

    where = "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded"
    with embedded_services(redis=redis, quiet=True) as services:
        url = with_database(services.database_url, database)
        with restored_environment("DATABASE_URL", "DATABASE_DIRECT_URL"):
            os.environ["DATABASE_URL"] = os.environ["DATABASE_DIRECT_URL"] = url
            reset_settings()
            try:
                yield url, where
            finally:
                reset_settings()


async def _prepared(url: str, action: Callable[[], Awaitable[T]]) -> T:
    from kith.platform.embedded import ensure_database
    from kith.platform.migrations import runner

    await ensure_database(url)
    await runner.migrate(url=url)
    return await with_orm(action)


# The benchmark's own types (Sizes, MeasureOptions, Figures) are kith.tenants classes: typed Any
# here, so that platform names nothing of tenants outside a running command.


def _sizes(args: argparse.Namespace) -> Any:
    from kith.tenants.bench.generate import Sizes

    return Sizes(contacts=args.contacts, companies=args.companies, deals=args.deals,
                 activities=args.activities, tasks=args.tasks, batch=args.batch)


def _options(args: argparse.Namespace) -> Any:
    from kith.tenants.bench.runner import MeasureOptions

    only = tuple(k.strip() for k in (args.only or "").split(",") if k.strip())
    unknown = [k for k in only if k not in TARGET_KEYS]
    if unknown:
        raise CliError(f"--only: unknown endpoint {', '.join(unknown)}; choose from {', '.join(TARGET_KEYS)}")
    return MeasureOptions(role=args.as_role, workers=args.workers, concurrency=args.concurrency,
                          requests=args.requests, warmup=args.warmup, only=only, base_url=args.url.rstrip("/"),
                          log_path=Path(args.server_log), seed=args.seed)


def _exit_code(results: list[Any], strict: bool) -> int:
    missed = [m for f in results for m in f.missed()]
    return EXIT_FAILED if (missed and strict) else 0


def run_generate(args: argparse.Namespace) -> int:
    from kith.tenants.bench.generate import LoadError
    from kith.tenants.bench.runner import generate
    from kith.tenants.bench.workspace import BenchWorkspaceError

    sizes = _sizes(args)
    with _bench_database(args.database, redis=False) as (url, _where):
        try:
            asyncio.run(_prepared(url, lambda: generate(url, args.slug, sizes, seed=args.seed,
                                                        members=args.members)))
        except (BenchWorkspaceError, LoadError) as exc:
            raise CliError(str(exc)) from None
    return 0


def run_measure(args: argparse.Namespace) -> int:
    from kith.tenants.bench.runner import measure
    from kith.tenants.bench.workspace import BenchWorkspaceError

    options = _options(args)
    with _bench_database(args.database, redis=True) as (url, where):
        try:
            results = asyncio.run(_prepared(url, lambda: measure(url, args.slug, options, where=where)))
        except (BenchWorkspaceError, ValueError) as exc:
            raise CliError(str(exc)) from None
    return _exit_code(results, args.strict)


def run_all(args: argparse.Namespace) -> int:
    """Generate unless the workspace is already loaded, then measure."""
    from kith.tenants.bench.runner import generate, measure
    from kith.tenants.bench.workspace import BenchWorkspaceError, find_bench_workspace

    sizes = _sizes(args)
    options = _options(args)

    async def both() -> list[Any]:
        try:
            await find_bench_workspace(args.slug)
            print(f"workspace '{args.slug}' is already loaded in {args.database}: measuring it", flush=True)
        except BenchWorkspaceError:
            await generate(url, args.slug, sizes, seed=args.seed, members=args.members)
        return await measure(url, args.slug, options, where=where)

    with _bench_database(args.database, redis=True) as (url, where):
        try:
            results = asyncio.run(_prepared(url, both))
        except (BenchWorkspaceError, ValueError) as exc:
            raise CliError(str(exc)) from None
    return _exit_code(results, args.strict)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", default=DEFAULT_DATABASE,
                        help=f"database on DATABASE_URL's server (or the embedded one) to use; created and "
                             f"migrated when missing, never dropped (default {DEFAULT_DATABASE})")
    parser.add_argument("--slug", default=DEFAULT_SLUG, help=f"the benchmark workspace (default {DEFAULT_SLUG})")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the data and of the ids asked for")


def _add_generate_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--contacts", type=positive_int, default=1_000_000, help="contacts to load (default 1,000,000)")
    add("--companies", type=positive_int, default=100_000, help="companies to load (default 100,000)")
    add("--deals", type=positive_int, default=200_000, help="deals to load (default 200,000)")
    add("--activities", type=_non_negative, help="timeline entries (default one per 10 contacts)")
    add("--tasks", type=_non_negative, help="tasks (default one per 20 contacts)")
    add("--members", type=positive_int, default=20, help="sales members owning the records (default 20)")
    add("--batch", type=positive_int, default=50_000, help="rows per COPY batch (default 50,000)")


def _add_measure_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--as", dest="as_role", choices=("owner", "sales"), default="owner",
        help="whose API token: the owner (all records) or a sales member (own records only)")
    add("--workers", type=positive_int, default=2, help="`kith serve` processes (default 2)")
    add("--concurrency", type=positive_int, default=16, help="concurrent HTTP clients (default 16)")
    add("--requests", type=positive_int, default=2000,
        help="requests for the list and /me; half as many for search, 360 and list q=, a tenth for the board")
    add("--warmup", type=_non_negative, default=50, help="untimed requests before each endpoint (default 50)")
    add("--only", metavar="KEYS", help=f"comma-separated endpoints to measure: {', '.join(TARGET_KEYS)}")
    add("--url", default="", help="measure the server already running at this base URL instead of starting one")
    add("--server-log", default="test-artifacts/crm-bench-server.log", help="where the server's output goes")
    add("--strict", action="store_true", help="exit with 1 when a target is missed")


def add_crm_bench_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `kith crm-bench` and its actions on the `kith` command's subparsers."""
    raw = argparse.RawDescriptionHelpFormatter
    bench = commands.add_parser(
        "crm-bench", help="CRM benchmark: load a big workspace by COPY, measure the API over HTTP",
        formatter_class=raw, description="""\
The CRM benchmark of issue 3, on a dedicated database (default kith_crm_bench) that is kept:
  generate  sign up a workspace with 20 sales members and load 1,000,000 contacts, 100,000
            companies, 200,000 deals, activities and tasks by COPY (partly Chinese data);
  measure   start `kith serve --workers 2` on it and time, with an API token over HTTP: the
            contact list with a filter and a sort, global search, a contact's 360 page and the
            pipeline board (p50/p95/p99, requests/s, CPU per request);
  run       generate (unless already loaded), then measure.""",
    )
    actions = bench.add_subparsers(dest="crm_bench_command", metavar="<action>", required=True)
    generate = actions.add_parser("generate", help="create the workspace and load it",
                                  description="Create the benchmark workspace and load its CRM tables by COPY.")
    _add_common(generate)
    _add_generate_options(generate)
    generate.set_defaults(handler=run_generate)
    measure = actions.add_parser("measure", help="measure the endpoints over HTTP",
                                 description="Start the web server on the benchmark database and measure the "
                                             "endpoints with an API token.")
    _add_common(measure)
    _add_measure_options(measure)
    measure.set_defaults(handler=run_measure)
    both = actions.add_parser("run", help="generate (unless loaded), then measure",
                              description="Generate the benchmark workspace unless it exists, then measure it.")
    _add_common(both)
    _add_generate_options(both)
    _add_measure_options(both)
    both.set_defaults(handler=run_all)
