"""`kith crm-bench generate | measure | run`: the steps behind the command, with their printout.

The database is a dedicated one (`kith_crm_bench` by default) on DATABASE_URL's server, created
and migrated when missing and kept afterwards, so a measurement can be repeated without loading
the million contacts again. Tortoise must be initialised on it (the CLI does that).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kith.platform.bench import machine
from kith.platform.db import connect_raw, tenant_schema
from kith.tenants.bench.generate import LoadReport, Sizes, load_crm_data
from kith.tenants.bench.http import CpuProbe, Figures, default_targets, measure_all, summary_table, web_server
from kith.tenants.bench.workspace import BenchWorkspace, create_bench_workspace, find_bench_workspace, issue_token

Say = Callable[[str], None]


def say(message: str) -> None:
    print(message, flush=True)


async def generate(url: str, slug: str, sizes: Sizes, *, seed: int = 1, members: int = 20,
                   progress: Say = say) -> tuple[BenchWorkspace, LoadReport]:
    """Create the benchmark workspace `slug` and load it; prints progress and a summary."""
    started = time.perf_counter()
    progress(f"creating workspace '{slug}' (signup, {members} sales members, Enterprise plan) ...")
    workspace, password = await create_bench_workspace(slug, members=members)
    progress(f"  tenant {workspace.tenant_id} (schema {tenant_schema(workspace.tenant_id)}), owner "
             f"{workspace.owner_email} / {password}, in {time.perf_counter() - started:.1f} s")
    progress(f"loading {sizes.contacts:,} contacts, {sizes.companies:,} companies, {sizes.deals:,} deals, "
             f"{sizes.count('activities'):,} activities, {sizes.count('tasks'):,} tasks "
             f"(COPY batches of {sizes.batch:,}, seed {seed}) ...")
    report = await load_crm_data(url, workspace, sizes, seed=seed, progress=progress)
    progress(load_summary(report))
    return workspace, report


def load_summary(report: LoadReport) -> str:
    """A markdown table of the load: rows/s per table, with the share spent in COPY."""
    lines = ["| table | rows | seconds | rows/s | making rows s | COPY s | size MB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for t in report.tables:
        lines.append(f"| {t.table} | {t.rows:,} | {t.seconds:.1f} | {t.rows_per_second:,.0f} | {t.make_seconds:.1f}"
                     f" | {t.copy_seconds:.1f} | {report.sizes_mb.get(t.table, 0):,.0f} |")
    lines.append(f"\nVACUUM (ANALYZE): {report.vacuum_seconds:.1f} s; whole load: {report.total_seconds:.1f} s "
                 f"({report.total_seconds / 60:.1f} min)")
    return "\n".join(lines)


@dataclass(frozen=True)
class MeasureOptions:
    role: str = "owner"  # whose token: the owner (sees all) or a sales member (own records only)
    workers: int = 2
    concurrency: int = 16
    requests: int = 2000
    warmup: int = 50
    only: tuple[str, ...] = ()  # target keys to measure; empty: all
    base_url: str = ""  # measure a server already running there instead of starting one
    log_path: Path = Path("test-artifacts/crm-bench-server.log")
    seed: int = 1


async def measure(url: str, slug: str, options: MeasureOptions, *, where: str = "DATABASE_URL",
                  progress: Say = say) -> list[Figures]:
    """Start `kith serve` on the benchmark database and measure the endpoints; prints the figures."""
    workspace = await find_bench_workspace(slug)
    if options.role == "owner":
        identity_id = workspace.owner_id
    elif workspace.member_ids:
        identity_id = workspace.member_ids[0]
    else:
        raise ValueError(f"workspace '{slug}' has no sales member to measure as")
    token = await issue_token(workspace, identity_id, name=f"crm-bench-{options.role}")
    schema = tenant_schema(workspace.tenant_id)
    conn = await connect_raw(url)
    try:
        facts = await machine(conn, where)
        low, high = await conn.fetchrow(f"SELECT min(id), max(id) FROM {schema}.contacts")
        if low is None:
            raise ValueError(f"workspace '{slug}' has no contacts; run `kith crm-bench generate` first")
        counts = {t: await conn.fetchval(f"SELECT reltuples::bigint FROM pg_class WHERE oid = '{schema}.{t}'::regclass")
                  for t in ("contacts", "companies", "deals", "activities")}
        own_pid = conn.get_server_pid()

        async def db_pids() -> list[int]:
            rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                                    " AND backend_type = 'client backend' AND pid <> $1", own_pid)
            return [int(r["pid"]) for r in rows]

        targets = default_targets((int(low), int(high)), requests=options.requests, seed=options.seed)
        if options.only:
            targets = [t for t in targets if t.key in options.only]
        load_before = os.getloadavg()
        if options.base_url:
            results = await measure_all(options.base_url, token, targets, CpuProbe(None, db_pids),
                                        concurrency=options.concurrency, warmup=options.warmup, progress=progress)
        else:
            progress(f"starting `kith serve --workers {options.workers}` (log: {options.log_path}) ...")
            with web_server(workers=options.workers, log_path=options.log_path, env={}) as server:
                results = await measure_all(server.base_url, token, targets, CpuProbe(server.pid, db_pids),
                                            concurrency=options.concurrency, warmup=options.warmup,
                                            progress=progress)
    finally:
        await conn.close()
    progress("")
    progress(f"Machine: {facts['cpus']} CPUs ({facts['cpu']}), {facts['memory']} RAM, {facts['postgres']}, "
             f"Python {facts['python']}; load average before the run {load_before[0]:.2f}")
    progress(f"Data: workspace '{slug}', ~{counts['contacts']:,} contacts, ~{counts['companies']:,} companies, "
             f"~{counts['deals']:,} deals, ~{counts['activities']:,} activities; token of the {options.role}; "
             f"{options.workers if not options.base_url else '?'} server processes, {options.concurrency} "
             f"concurrent clients (httpx, in this process)")
    progress("")
    progress(summary_table(results))
    busy = [f"{f.label} {f.machine_busy:.0%}" for f in results if f.machine_busy is not None]
    if busy:
        progress("\nMachine CPU busy during each run (all processes, others' included): " + ", ".join(busy))
    notes = [f"- {f.label}: {f.note}" for f in results if f.note]
    if notes:
        progress("\nNotes:\n" + "\n".join(notes))
    missed = [m for f in results for m in f.missed()]
    progress("\nTargets missed:\n" + "\n".join(f"- {m}" for m in missed) if missed else "\nAll targets met.")
    sys.stdout.flush()
    return results
