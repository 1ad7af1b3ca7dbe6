"""`kith campaign-bench`: the email campaign benchmark of issue 6 from the command line.

Importing this module is cheap (argparse only), so `kith --help` stays fast. The benchmark lives
in kith.tenants.bench.campaigns, reached only inside the command, so imports still flow one way
(platform never imports tenants at module level).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from kith.platform.cli.common import EXIT_FAILED, CliError, positive_int

DEFAULT_DATABASE = "kith_campaign_bench"
DEFAULT_WORK_DIR = "test-artifacts/campaign-bench"


def _share(text: str) -> float:
    """argparse type: a share between 0 and 1 (0 turns the kill off)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError("must be at least 0 and below 1 (0: no worker is killed)")
    return value


def run_campaign_bench(args: argparse.Namespace) -> int:
    try:
        import aiosmtpd  # noqa: F401 - the sink; a test dependency, so say how to get it
    except ModuleNotFoundError:
        raise CliError("kith campaign-bench needs aiosmtpd for its SMTP sink: pip install -e '.[test]' "
                       "(make bench-campaign does)", EXIT_FAILED) from None
    from kith.platform.bench import on_fresh_database
    from kith.platform.cli.services import embedded_services
    from kith.platform.config import reset_settings, restored_environment
    from kith.tenants.bench.campaigns import CampaignBenchOptions, run_campaign_bench

    if args.workers < 2 and args.kill_at > 0:
        raise CliError("--kill-at needs at least 2 workers (--workers): one is killed, the other goes on; "
                       "or --kill-at 0 for a run without a kill")
    options = CampaignBenchOptions(
        recipients=args.recipients, workers=args.workers, senders=args.senders, kill_at=args.kill_at,
        rate_per_minute=args.rate_per_minute, work_dir=Path(args.work_dir), keep_files=args.keep,
        timeout_s=float(args.timeout))

    async def measure(url: str, where: str) -> Any:
        return await run_campaign_bench(url, where, options)

    # the workers it starts take jobs from a queue of its own, not from a `kith dev` on the same Redis
    with embedded_services(database=False, redis=True), restored_environment("KITH_QUEUE_NAME"):
        os.environ["KITH_QUEUE_NAME"] = f"arq:kith-campaign-bench-{os.getpid()}"
        reset_settings()
        figures = on_fresh_database(args.database, keep=args.keep, measure=measure)
    return EXIT_FAILED if (args.strict and figures.missed()) else 0


def add_campaign_bench_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `kith campaign-bench` on the `kith` command's subparsers."""
    parser = commands.add_parser(
        "campaign-bench", help="campaign benchmark: 100,000 emails to a local SMTP sink, a worker killed mid-way",
        formatter_class=argparse.RawDescriptionHelpFormatter, description="""\
The email campaign benchmark of issue 6, on a database created fresh (default
kith_campaign_bench, dropped at the end unless --keep), on DATABASE_URL's server or the
embedded one, with REDIS_URL's Redis or an embedded Valkey:
  - a workspace with 100,000 consenting contacts loaded by COPY, a segment and a campaign;
  - an aiosmtpd sink in its own process recording every message it accepts;
  - 2 `kith worker` processes sending the campaign to it; when half is sent the worker
    holding SMTP connections is killed with SIGKILL and a new one started;
  - emails per second at the sink (first to last message), duplicates and missing against
    the recipient rows (targets: at least 500/s, 0, 0), the machine and its load average.
Prints progress, then a README-ready table with each target met or missed.""")
    add = parser.add_argument
    add("--recipients", type=positive_int, default=100_000, help="contacts and so recipients (default 100,000)")
    add("--workers", type=positive_int, default=2, help="`kith worker` processes (default 2)")
    add("--senders", type=positive_int, default=8,
        help="KITH_CAMPAIGN_SENDERS of each worker: emails it sends at once (default 8)")
    add("--kill-at", type=_share, default=0.5,
        help="share of the recipients sent when a worker is killed with SIGKILL (default 0.5; 0: none)")
    add("--rate-per-minute", type=positive_int, default=6_000_000,
        help="KITH_CAMPAIGN_RATE_PER_MINUTE of the workers (default 6,000,000: no cap on 2 cores)")
    add("--timeout", type=positive_int, default=1800, help="seconds to wait for the campaign to be sent (default 1800)")
    add("--database", default=DEFAULT_DATABASE,
        help=f"database to create on the server (dropped first if it exists; default {DEFAULT_DATABASE})")
    add("--work-dir", default=DEFAULT_WORK_DIR,
        help=f"folder for the sink's record and the processes' logs, emptied first (default {DEFAULT_WORK_DIR})")
    add("--keep", action="store_true", help="keep the database and the work folder afterwards")
    add("--strict", action="store_true", help="exit with 1 when a target is missed")
    parser.set_defaults(handler=run_campaign_bench)
