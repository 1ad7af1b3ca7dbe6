"""`kith import-bench`: the import benchmark of issue 7 from the command line.

Importing this module is cheap (argparse only), so `kith --help` stays fast. The benchmark lives
in kith.tenants.bench.imports, reached only inside the command, so imports still flow one way
(platform never imports tenants at module level).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kith.platform.cli.common import EXIT_FAILED, CliError, positive_int

DEFAULT_DATABASE = "kith_import_bench"
DEFAULT_WORK_DIR = "test-artifacts/import-bench"


def run_import_bench(args: argparse.Namespace) -> int:
    from kith.platform.bench import on_fresh_database
    from kith.tenants.bench.imports import ImportBenchOptions, run_import_bench

    if args.many_tenants and args.many_tenants <= args.few_tenants:
        raise CliError(f"--many-tenants ({args.many_tenants:,}) must be more than --few-tenants "
                       f"({args.few_tenants:,}), or 0 to skip the second measure")
    if args.few_tenants < 2:
        raise CliError("--few-tenants must be at least 2: the benchmark's own two workspaces are tenants")
    options = ImportBenchOptions(
        rows=args.rows, existing=args.existing, few_tenants=args.few_tenants, many_tenants=args.many_tenants,
        small_contacts=args.small_contacts, backup_samples=args.backup_samples,
        all_columns=args.export_columns == "all", setup_concurrency=args.setup_concurrency,
        work_dir=Path(args.work_dir), keep_files=args.keep, seed=args.seed)

    async def measure(url: str, where: str) -> Any:
        return await run_import_bench(url, where, options)

    figures = on_fresh_database(args.database, keep=args.keep, measure=measure)
    return EXIT_FAILED if (args.strict and figures.missed()) else 0


def _count(text: str) -> int:
    """argparse type: a whole number of at least 0 ("1_000" and "1,000" read as 1000)."""
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
    return value


def add_import_bench_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `kith import-bench` on the `kith` command's subparsers."""
    parser = commands.add_parser(
        "import-bench", help="import benchmark: a 1M-row GBK CSV imported, exported, backed up and restored",
        formatter_class=argparse.RawDescriptionHelpFormatter, description="""\
The import benchmark of issue 7, on a database created fresh (default kith_import_bench, dropped
at the end unless --keep), on DATABASE_URL's server or the embedded one:
  - a workspace on the Enterprise plan with 100,000 contacts loaded by COPY;
  - a 1,000,000-row CSV of 12 Chinese-headed columns, GBK-encoded, 5% invalid rows and 10%
    duplicates of existing contacts, imported by `kith imports run --key email --on-duplicate
    skip` in a child process: wall time and peak RSS (target < 60 s, < 400 MB on 2 cores);
  - every contact exported to CSV as the API streams it (target < 20 s);
  - the workspace backed up and the backup restored and verified (target < 120 s together);
  - a small workspace's backup with 10, then 1,000 tenant schemas in the database (flat).
Prints progress, then a README-ready table with each target met or missed.""")
    add = parser.add_argument
    add("--rows", type=positive_int, default=1_000_000, help="rows of the CSV file (default 1,000,000)")
    add("--existing", type=_count, default=100_000, help="contacts loaded before the import (default 100,000)")
    add("--few-tenants", type=positive_int, default=10,
        help="tenant schemas for the first small-backup measure (default 10)")
    add("--many-tenants", type=_count, default=1_000,
        help="tenant schemas for the second small-backup measure (default 1,000; 0 skips it)")
    add("--small-contacts", type=positive_int, default=500,
        help="contacts of the small workspace, with companies, deals, activities, tasks (default 500)")
    add("--backup-samples", type=positive_int, default=5, help="timed backups of the small workspace per measure")
    add("--export-columns", choices=("all", "default"), default="all",
        help="export every field (default) or the contact list's default columns")
    add("--setup-concurrency", type=positive_int, default=4, help="tenants provisioned at once (default 4)")
    add("--database", default=DEFAULT_DATABASE,
        help=f"database to create on the server (dropped first if it exists; default {DEFAULT_DATABASE})")
    add("--work-dir", default=DEFAULT_WORK_DIR,
        help=f"folder for the CSV, the export and the backups, emptied first (default {DEFAULT_WORK_DIR})")
    add("--keep", action="store_true", help="keep the database and the work folder afterwards")
    add("--seed", type=int, default=1, help="random seed of the data (default 1)")
    add("--strict", action="store_true", help="exit with 1 when a target is missed")
    parser.set_defaults(handler=run_import_bench)
