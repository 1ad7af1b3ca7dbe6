"""`kith bench`: schema-per-tenant figures on this machine, printed as a README-ready table.

On a dedicated database (`kith_bench`, created fresh, dropped at the end unless --keep),
on DATABASE_URL's server or else the embedded PostgreSQL under KITH_DATA_DIR:
1. apply the public migrations, provision --tenants tenants (1,000 by default);
2. time provisioning one more tenant (--samples times, p50/p95/max);
3. time the "which tenants are behind?" check with none and with all behind;
4. time rolling one metadata-only tenant migration over every tenant with the runner
   (and `kith migrate` with nothing left to apply);
5. measure ceilings in the same run, plain DDL over raw asyncpg with no bookkeeping,
   so the figures can be quoted as ratios on any machine.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from kith.platform.config import get_settings, reset_settings, restored_environment
from kith.platform.db import close_db, connect_kwargs, connect_raw, init_db, with_database
from kith.platform.embedded import drop_database, ensure_database
from kith.platform.migrations import runner
from kith.platform.tenancy.provisioning import provision_tenant
from kith.tenants.registry import TENANT_MODEL_MODULES

# Targets from the foundation issue, for 2 cores.
PROVISION_P95_TARGET_MS = 250.0
PENDING_TARGET_MS = 1000.0
ROLLOUT_TARGET_S_PER_1000 = 15.0
CEILING_SCHEMAS = 50
PENDING_RUNS = 20


def say(message: str) -> None:
    print(message, flush=True)


@dataclass
class Figures:
    tenants: int = 0
    setup_concurrency: int = 0
    setup_s: float = 0.0
    provision_ms: list[float] = field(default_factory=list)
    ceiling_provision_ms: list[float] = field(default_factory=list)
    pending_none_ms: list[float] = field(default_factory=list)
    pending_all_ms: list[float] = field(default_factory=list)
    pending_all_rows: int = 0
    rollout_tenants: int = 0
    rollout_s: float = 0.0
    rollout_concurrency: int = 0
    ceiling_rollout_schemas: int = 0
    ceiling_rollout_s: float = 0.0
    noop_migrate_s: float = 0.0
    machine: dict[str, str] = field(default_factory=dict)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p50 of 50 samples is the 25th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="kith bench",
        description="Measure provisioning, the pending-tenants check and a tenant roll-out "
        "on a dedicated database, and print a markdown table for README.",
    )
    add = parser.add_argument
    add("--tenants", type=int, default=1000, help="tenant schemas to create first (default 1000)")
    add("--samples", type=int, default=50, help="extra tenants provisioned one by one and timed")
    add("--database", default="kith_bench", help="database to create (dropped first if it exists)")
    add("--keep", action="store_true", help="keep the database afterwards")
    add("--setup-concurrency", type=int, default=4, help="tenants provisioned at once in set-up")
    add("--strict", action="store_true", help="exit with 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.tenants < 1 or args.samples < 1 or args.setup_concurrency < 1:
        parser.error("--tenants, --samples and --setup-concurrency must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code."""
    args = _parse(argv)

    async def measure(url: str, where: str) -> Figures:
        figures = Figures(tenants=args.tenants, setup_concurrency=args.setup_concurrency)
        await _measure(args, url, where, figures)
        return figures

    figures = on_fresh_database(args.database, keep=args.keep, measure=measure)
    missed = print_summary(figures)
    return 1 if (missed and args.strict) else 0


T = TypeVar("T")


def on_fresh_database(database: str, *, keep: bool, measure: Callable[[str, str], Awaitable[T]]) -> T:
    """Run `measure(url, where)` on a database created fresh and migrated, with Tortoise on it.

    The server is DATABASE_URL's, or else the embedded PostgreSQL under KITH_DATA_DIR; `where`
    names which, for the summary. The database is dropped afterwards unless `keep`.
    """
    settings = get_settings()
    embedded = None  # kept referenced until the end; the server stops when the process exits
    if settings.database_direct_url:
        server_url, where = settings.database_direct_url, "DATABASE_URL"
    else:
        from kith.platform.embedded import start_postgres

        say(f"starting the embedded PostgreSQL under {settings.data_dir} ...")
        embedded = start_postgres(settings.data_dir)
        server_url, where = embedded.url("postgres"), "embedded"
    url = with_database(server_url, database)
    with restored_environment("DATABASE_URL", "DATABASE_DIRECT_URL"):
        # provisioning goes through Tortoise, which reads its database from the settings
        os.environ["DATABASE_URL"] = os.environ["DATABASE_DIRECT_URL"] = url
        reset_settings()
        return asyncio.run(_on_fresh(url, where, keep, measure))


async def _on_fresh(url: str, where: str, keep: bool, measure: Callable[[str, str], Awaitable[T]]) -> T:
    name = str(connect_kwargs(url)["database"])
    say(f"database {name}: creating it fresh")
    await drop_database(url)
    await ensure_database(url)
    try:
        await runner.migrate(url=url, progress=lambda m: say(f"  {m}"))
        await init_db(TENANT_MODEL_MODULES)
        try:
            return await measure(url, where)
        finally:
            await close_db()
    finally:
        if keep:
            say(f"database {name} kept (--keep)")
        else:
            await drop_database(url)
            say(f"database {name} dropped")


async def _measure(args: argparse.Namespace, url: str, where: str, figures: Figures) -> None:
    conn = await connect_raw(url)
    try:
        figures.machine = await machine(conn, where)
        await create_tenants(args.tenants, args.setup_concurrency, figures)
        await time_provisioning(args.samples, figures)
        await time_ceiling_provisioning(conn, figures)
        await time_pending(conn, figures)
    finally:
        await conn.close()
    await time_rollout(url, figures)


async def create_tenants(count: int, concurrency: int, figures: Figures) -> None:
    say(f"creating {count:,} tenants ({concurrency} at a time) ...")
    started = time.perf_counter()
    step = max(1, count // 10)
    todo = deque(range(count))
    made = 0

    async def worker() -> None:
        nonlocal made
        while todo:
            n = todo.popleft()
            await provision_tenant(slug=f"bench-{n:05d}", name=f"Bench Company {n}")
            made += 1
            if made % step == 0 or made == count:
                say(f"  {made:,}/{count:,} tenants ({made * 100 // count}%) in {time.perf_counter() - started:.1f}s")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    figures.setup_s = time.perf_counter() - started


async def time_provisioning(samples: int, figures: Figures) -> None:
    say(f"provisioning {samples} more tenants one by one ...")
    for n in range(samples):
        started = time.perf_counter()
        await provision_tenant(slug=f"bench-extra-{n:03d}", name="Bench Extra")
        figures.provision_ms.append((time.perf_counter() - started) * 1000)
    p50, p95 = percentile(figures.provision_ms, 50), percentile(figures.provision_ms, 95)
    say(f"  p50 {p50:.1f} ms, p95 {p95:.1f} ms")


async def time_ceiling_provisioning(conn: asyncpg.Connection, figures: Figures) -> None:
    """The same DDL with none of provisioning's bookkeeping: no registry row, no ORM."""
    ddl = runner.tenant_sql_since(runner.tenant_migrations(), 0)
    say(f"ceiling: CREATE SCHEMA + tenant DDL over raw asyncpg, {CEILING_SCHEMAS} schemas ...")
    for n in range(CEILING_SCHEMAS):
        schema = f"bench_ceiling_{n}"

        async def create(schema: str = schema) -> None:
            async with conn.transaction():
                await conn.execute(f"CREATE SCHEMA {schema}; SET LOCAL search_path TO {schema};\n{ddl}")

        figures.ceiling_provision_ms.append(await timed(create))
    say(f"  p50 {percentile(figures.ceiling_provision_ms, 50):.1f} ms")


async def time_pending(conn: asyncpg.Connection, figures: Figures) -> None:
    latest = runner.latest_version(runner.tenant_migrations())
    say(f"pending-tenants check, {PENDING_RUNS} runs each with none and with all behind ...")
    for _ in range(PENDING_RUNS):
        figures.pending_none_ms.append(await timed(lambda: runner.pending_tenants(conn, latest)))
    for _ in range(PENDING_RUNS):
        started = time.perf_counter()
        rows = await runner.pending_tenants(conn, latest + 1)
        figures.pending_all_ms.append((time.perf_counter() - started) * 1000)
        figures.pending_all_rows = len(rows)
    say(f"  none behind p50 {percentile(figures.pending_none_ms, 50):.2f} ms;"
        f" {figures.pending_all_rows:,} behind p50 {percentile(figures.pending_all_ms, 50):.2f} ms")


async def time_rollout(url: str, figures: Figures) -> None:
    settings = get_settings()
    latest = runner.latest_version(runner.tenant_migrations())
    with tempfile.TemporaryDirectory(prefix="kith-bench-") as folder:
        # metadata only: a nullable column without a default rewrites nothing
        sql = "ALTER TABLE contacts ADD COLUMN bench_note text;"
        (Path(folder) / f"{latest + 1:04d}_bench_note.sql").write_text(sql)
        migrations = runner.tenant_migrations([Path(folder)])
        figures.rollout_concurrency = settings.migrate_concurrency
        say(f"rolling one metadata-only tenant migration, concurrency {settings.migrate_concurrency} ...")
        started = time.perf_counter()
        report = await runner.roll_tenants(
            migrations, concurrency=settings.migrate_concurrency, url=url,
            progress=lambda m: say(f"  {m}"),
        )
        figures.rollout_s = time.perf_counter() - started
        if not report.ok:
            raise RuntimeError(f"roll-out failed for {len(report.tenants_failed)} tenants: "
                               f"{report.tenants_failed[0].error}")
        figures.rollout_tenants = len(report.tenants_migrated)
        say(f"  {figures.rollout_tenants:,} tenants in {figures.rollout_s:.2f}s")

        say("ceiling: the same kind of DDL on every tenant schema over raw asyncpg, no bookkeeping ...")
        figures.ceiling_rollout_schemas, figures.ceiling_rollout_s = await ceiling_rollout(
            url, "ALTER TABLE contacts ADD COLUMN bench_ceiling text;", settings.migrate_concurrency
        )

        say("`kith migrate` with nothing left to apply ...")
        started = time.perf_counter()
        noop = await runner.migrate(url=url, extra_tenant_dirs=[Path(folder)])
        figures.noop_migrate_s = time.perf_counter() - started
        if noop.tenants_migrated or noop.public_applied:
            raise RuntimeError("`kith migrate` applied something on its second run")


async def ceiling_rollout(url: str, sql: str, concurrency: int) -> tuple[int, float]:
    """One transaction per tenant schema (BEGIN, SET LOCAL search_path + DDL, COMMIT) at the
    runner's concurrency, without its registry lock, version check or bookkeeping."""
    conns = [await connect_raw(url) for _ in range(concurrency)]
    try:
        rows = await conns[0].fetch("SELECT schema_name FROM public.tenants WHERE status = 'active' ORDER BY id")
        todo = deque(str(r["schema_name"]) for r in rows)

        async def worker(conn: asyncpg.Connection) -> None:
            while todo:
                schema = todo.popleft()
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL search_path TO {schema}; {sql}")

        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in conns))
        return len(rows), time.perf_counter() - started
    finally:
        for conn in conns:
            await conn.close()


async def machine(conn: asyncpg.Connection, where: str) -> dict[str, str]:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)
    memory = "?"
    model = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    version = str(await conn.fetchval("SHOW server_version")).split()[0]
    fsync = str(await conn.fetchval("SHOW fsync"))
    return {
        "cpus": str(cpus),
        "cpu": model,
        "memory": memory,
        "postgres": f"PostgreSQL {version} ({where}, fsync {fsync})",
        "python": sys.version.split()[0],
    }


def ratio(value: float, ceiling: float) -> str:
    return f"{value / ceiling:.2f}x" if ceiling else "n/a"


def print_summary(f: Figures) -> bool:
    """Print the markdown table; returns True when a target was missed."""
    p95 = percentile(f.provision_ms, 95)
    p50 = percentile(f.provision_ms, 50)
    ceiling = percentile(f.ceiling_provision_ms, 50)
    none50 = percentile(f.pending_none_ms, 50)
    all50 = percentile(f.pending_all_ms, 50)
    rate = f.rollout_tenants / f.rollout_s if f.rollout_s else 0.0
    ceiling_rate = f.ceiling_rollout_schemas / f.ceiling_rollout_s if f.ceiling_rollout_s else 0.0
    # the target is for 1,000 schemas; scale it for other counts
    rollout_target = ROLLOUT_TARGET_S_PER_1000 * max(1.0, f.rollout_tenants / 1000)
    checks = {
        "provision": p95 < PROVISION_P95_TARGET_MS,
        "pending": max(none50, all50) < PENDING_TARGET_MS,
        "rollout": f.rollout_s < rollout_target,
    }

    def mark(ok: bool) -> str:
        return "met" if ok else "**MISSED**"

    m = f.machine
    lines = [
        "",
        f"Machine: {m.get('cpus')} CPUs ({m.get('cpu')}), {m.get('memory')} memory, {m.get('postgres')}, "
        f"Python {m.get('python')}.",
        "",
        "| what | figure | target |",
        "| --- | --- | --- |",
        f"| set-up: provision {f.tenants:,} tenants, {f.setup_concurrency} at a time | {f.setup_s:.1f} s"
        f" ({f.tenants / f.setup_s:.0f} tenants/s) | |",
        f"| provision one more tenant ({len(f.provision_ms)} samples, {f.tenants:,} present) |"
        f" p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {max(f.provision_ms):.1f} ms |"
        f" p95 < {PROVISION_P95_TARGET_MS:.0f} ms: {mark(checks['provision'])} |",
        f"| ceiling: CREATE SCHEMA + the tenant DDL, raw asyncpg ({CEILING_SCHEMAS} schemas) |"
        f" p50 {ceiling:.1f} ms (provisioning p50 = {ratio(p50, ceiling)}) | |",
        f"| which tenants are behind? none behind ({PENDING_RUNS} runs) | p50 {none50:.2f} ms |"
        f" < {PENDING_TARGET_MS:.0f} ms: {mark(none50 < PENDING_TARGET_MS)} |",
        f"| which tenants are behind? all {f.pending_all_rows:,} behind ({PENDING_RUNS} runs) |"
        f" p50 {all50:.2f} ms |"
        f" < {PENDING_TARGET_MS:.0f} ms: {mark(all50 < PENDING_TARGET_MS)} |",
        f"| roll one metadata-only migration over {f.rollout_tenants:,} tenants"
        f" (concurrency {f.rollout_concurrency}) | {f.rollout_s:.2f} s ({rate:.0f} tenants/s) |"
        f" < {ROLLOUT_TARGET_S_PER_1000:.0f} s per 1,000 tenants: {mark(checks['rollout'])} |",
        f"| ceiling: same kind of DDL on all {f.ceiling_rollout_schemas:,} schemas, raw asyncpg,"
        " same concurrency |"
        f" {f.ceiling_rollout_s:.2f} s ({ceiling_rate:.0f} schemas/s; runner = {ratio(rate, ceiling_rate)}) | |",
        f"| `kith migrate` with nothing to apply ({f.rollout_tenants:,} tenants) |"
        f" {f.noop_migrate_s * 1000:.0f} ms | |",
        "",
    ]
    say("\n".join(lines))
    return not all(checks.values())


if __name__ == "__main__":
    sys.exit(main())
