"""The import benchmark (issue 7, `kith import-bench`): import, export, backup at a million rows.

On a database created fresh for the run (the CLI does that, with Tortoise on it):
1. a workspace on the Enterprise plan with `existing` contacts loaded by COPY (the CRM
   benchmark's signup and loader), and a small workspace beside it;
2. the small workspace's backup timed with `few_tenants` tenant schemas in the database;
3. the GBK CSV written to disk (import_file.py), then imported by `kith imports run --key email
   --on-duplicate skip` in a child process, timed from start to exit, its peak RSS read from
   wait4() when it exits; the counts the import recorded are checked against the file's;
4. every contact exported to CSV through `open_export` (what the API streams), to a file;
5. the big workspace backed up (`backup_tenant`) and the backup restored and verified
   (`verify_latest`);
6. more tenants provisioned (`provision_tenant`, as `kith bench` does) up to `many_tenants`,
   and the small workspace's backup timed again: it must not grow with the number of schemas.

Everything prints progress as it goes and ends with a README-ready table, each target met or
missed, and the machine it ran on with its load average (other work on the machine shows there).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from kith.platform.access.actor import Actor
from kith.platform.backups import LocalStorage, backup_tenant, verify_latest
from kith.platform.bench import machine
from kith.platform.config import get_settings
from kith.platform.db import connect_raw, tenant_schema
from kith.platform.tenancy.provisioning import provision_tenant
from kith.tenants.bench.generate import Sizes, load_crm_data
from kith.tenants.bench.import_file import ImportFile, write_import_file
from kith.tenants.bench.workspace import BenchWorkspace, create_bench_workspace
from kith.tenants.exports.stream import open_export
from kith.tenants.records.listing import ListQuery

# Targets of issue 7, for 2 cores (at 1,000,000 rows).
IMPORT_TARGET_S = 60.0
IMPORT_RSS_TARGET_MB = 400.0
EXPORT_TARGET_S = 20.0
BACKUP_RESTORE_TARGET_S = 120.0
# "flat": the small workspace's backup at many tenants within this factor (or this many ms) of
# its time at few; a backup of a small workspace takes tens of milliseconds, where noise is ms
FLAT_FACTOR = 1.5
FLAT_SLACK_MS = 50.0
BIG_SLUG = "import-bench"
SMALL_SLUG = "import-bench-small"
OUTPUT_TAIL = 60  # lines of the import's output kept to show when it fails

Say = Callable[[str], None]


def say(message: str) -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class ImportBenchOptions:
    rows: int = 1_000_000
    existing: int = 100_000
    few_tenants: int = 10
    many_tenants: int = 1_000
    small_contacts: int = 500
    backup_samples: int = 5
    all_columns: bool = True  # export every field, not the list's default columns
    setup_concurrency: int = 4
    work_dir: Path = Path("test-artifacts/import-bench")
    keep_files: bool = False
    seed: int = 1


@dataclass
class ImportRun:
    """The `kith imports run` child: how long, how much memory, what it recorded."""

    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    cpu_seconds: float = 0.0
    exit_code: int = 0
    status: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    error: str = ""
    output_tail: list[str] = field(default_factory=list)
    load: float = 0.0  # 1-minute load average when it started


@dataclass
class SmallBackups:
    tenants: int = 0
    seconds: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000 if self.seconds else 0.0

    @property
    def max_ms(self) -> float:
        return max(self.seconds) * 1000 if self.seconds else 0.0


@dataclass
class Figures:
    options: ImportBenchOptions
    machine: dict[str, str] = field(default_factory=dict)
    load_at_start: float = 0.0
    existing_seconds: float = 0.0
    small_rows: int = 0
    file: ImportFile | None = None
    run: ImportRun | None = None
    contacts_after: int = 0
    export_seconds: float = 0.0
    export_rows: int = 0
    export_columns: int = 0
    export_bytes: int = 0
    export_load: float = 0.0
    backup_seconds: float = 0.0
    backup_bytes: int = 0
    backup_rows: int = 0
    verify_seconds: float = 0.0
    backup_load: float = 0.0
    few: SmallBackups = field(default_factory=SmallBackups)
    many: SmallBackups = field(default_factory=SmallBackups)

    def counts_expected(self) -> list[str]:
        """Where the import's counts differ from what the file holds (empty when they agree)."""
        if self.file is None or self.run is None or self.run.status != "imported":
            return ["the import did not finish"]
        counts, made = self.run.counts, self.file
        skipped = counts.get("skipped", 0) + counts.get("duplicates_in_file", 0)
        wrong = []
        for what, got, want in (("rows", counts.get("rows", 0), made.rows),
                                ("created", counts.get("created", 0), made.new_rows),
                                ("rejected", counts.get("rejected", 0), made.invalid_rows),
                                ("skipped as duplicates", skipped, made.duplicates),
                                ("updated", counts.get("updated", 0), 0)):
            if got != want:
                wrong.append(f"{what} {got:,}, the file has {want:,}")
        return wrong

    def missed(self) -> list[str]:
        found = []
        run = self.run
        if run is None or run.status != "imported":
            found.append("the import did not finish")
        else:
            if run.seconds >= IMPORT_TARGET_S:
                found.append(f"import {run.seconds:.1f} s (target < {IMPORT_TARGET_S:.0f} s)")
            if run.peak_rss_mb >= IMPORT_RSS_TARGET_MB:
                found.append(f"import peak RSS {run.peak_rss_mb:.0f} MB (target < {IMPORT_RSS_TARGET_MB:.0f} MB)")
            found += [f"import counts: {w}" for w in self.counts_expected()]
        if self.export_seconds >= EXPORT_TARGET_S:
            found.append(f"export {self.export_seconds:.1f} s (target < {EXPORT_TARGET_S:.0f} s)")
        if self.backup_seconds + self.verify_seconds >= BACKUP_RESTORE_TARGET_S:
            found.append(f"backup + verified restore {self.backup_seconds + self.verify_seconds:.1f} s "
                         f"(target < {BACKUP_RESTORE_TARGET_S:.0f} s)")
        if self.many.seconds and not self.flat():
            found.append(f"small backup {self.few.median_ms:.0f} ms at {self.few.tenants:,} tenants, "
                         f"{self.many.median_ms:.0f} ms at {self.many.tenants:,}: not flat")
        return found

    def flat(self) -> bool:
        few, many = self.few.median_ms, self.many.median_ms
        return many <= few * FLAT_FACTOR or many - few <= FLAT_SLACK_MS


# --- the steps --------------------------------------------------------------------------------

async def load_workspace(url: str, slug: str, contacts: int, *, deals: int, members: int, seed: int,
                         progress: Say) -> BenchWorkspace:
    """Sign up `slug` on the Enterprise plan and load `contacts` contacts (and their companies) by COPY."""
    workspace, _ = await create_bench_workspace(slug, members=members)
    sizes = Sizes(contacts=contacts, companies=max(1, contacts // 10), deals=deals,
                  activities=contacts // 10 if deals else 0, tasks=contacts // 20 if deals else 0, batch=50_000)
    await load_crm_data(url, workspace, sizes, seed=seed, progress=progress)
    return workspace


async def tenant_count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM public.tenants WHERE status <> 'deleted'"
                                   " AND schema_name <> ''"))


async def fill_tenants(conn: asyncpg.Connection, total: int, concurrency: int, progress: Say) -> int:
    """Provision empty tenants until the database has `total` tenant schemas; returns the count."""
    have = await tenant_count(conn)
    missing = max(0, total - have)
    if not missing:
        return have
    progress(f"provisioning {missing:,} tenants ({have:,} -> {total:,} tenant schemas, {concurrency} at a time) ...")
    started = time.perf_counter()
    todo = deque(range(have, total))
    step = max(1, missing // 10)
    made = 0

    async def worker() -> None:
        nonlocal made
        while todo:
            n = todo.popleft()
            await provision_tenant(slug=f"import-fill-{n:05d}", name=f"Import Bench Filler {n}")
            made += 1
            if made % step == 0 or made == missing:
                progress(f"  {made:,}/{missing:,} ({time.perf_counter() - started:.1f} s)")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return await tenant_count(conn)


async def time_small_backups(conn: asyncpg.Connection, workspace: BenchWorkspace, store: LocalStorage, url: str,
                             samples: int, progress: Say) -> SmallBackups:
    """Back the small workspace up once untimed (warm caches), then `samples` times, timed."""
    found = SmallBackups(tenants=await tenant_count(conn))
    warm = await backup_tenant(workspace.tenant_id, storage=store, url=url)
    for _ in range(samples):
        found.seconds.append((await backup_tenant(workspace.tenant_id, storage=store, url=url)).seconds)
    progress(f"  small workspace backup with {found.tenants:,} tenant schemas: median {found.median_ms:.1f} ms, "
             f"max {found.max_ms:.1f} ms ({samples} runs, {warm.rows:,} rows)")
    return found


async def existing_emails(conn: asyncpg.Connection, workspace: BenchWorkspace) -> list[str]:
    rows = await conn.fetch(f"SELECT email FROM {tenant_schema(workspace.tenant_id)}.contacts"  # noqa: S608
                            " WHERE email <> '' ORDER BY id")
    return [str(r["email"]) for r in rows]


def run_import_child(url: str, slug: str, email: str, path: Path, data_dir: Path, progress: Say) -> ImportRun:
    """`kith imports run` in a child process, its output passed on; wall time and peak RSS.

    The child gets its own KITH_DATA_DIR (where the import keeps its copy of the file) and this
    process's secret key, so what it encrypts and the audit entries it writes use the same keys."""
    env = {**os.environ, "DATABASE_URL": url, "DATABASE_DIRECT_URL": url, "KITH_DATA_DIR": str(data_dir),
           "KITH_SECRET_KEY": get_settings().secret_key.reveal(), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "kith.platform.cli.main", "imports", "run", "--tenant", slug, "--as", email,
           str(path), "--type", "contacts", "--key", "email", "--on-duplicate", "skip"]
    run = ImportRun(load=os.getloadavg()[0])
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,  # noqa: S603
                            text=True, encoding="utf-8", errors="replace")
    assert proc.stdout is not None  # noqa: S101 - asked for with PIPE
    for line in proc.stdout:
        line = line.rstrip("\n")
        tail.append(line)
        progress(f"    | {line}")
    # wait4: this child's own resource usage (peak RSS), not every child's of this process
    _, status, usage = os.wait4(proc.pid, 0)
    run.seconds = time.perf_counter() - started
    proc.returncode = run.exit_code = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    run.peak_rss_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
    run.cpu_seconds = usage.ru_utime + usage.ru_stime
    run.output_tail = list(tail)
    return run


async def read_import(conn: asyncpg.Connection, workspace: BenchWorkspace, run: ImportRun) -> None:
    """The latest import's status, counts and error, as the import recorded them."""
    row = await conn.fetchrow(f"SELECT status, counts, error FROM {tenant_schema(workspace.tenant_id)}.imports"  # noqa: S608
                              " ORDER BY id DESC LIMIT 1")
    if row is None:
        run.status, run.error = "missing", "no import was recorded"
        return
    counts = row["counts"]
    run.status, run.error = str(row["status"]), str(row["error"] or "")
    run.counts = {k: int(v) for k, v in (json.loads(counts) if isinstance(counts, str) else counts or {}).items()}


async def time_export(workspace: BenchWorkspace, path: Path, *, all_columns: bool) -> tuple[float, int]:
    """Export every contact to `path` as the API streams it (CSV); seconds and bytes."""
    actor = Actor(kind="user", tenant_id=workspace.tenant_id, role="owner", identity_id=workspace.owner_id,
                  label=workspace.owner_email)
    started = time.perf_counter()
    export = await open_export(actor, "contacts", ListQuery(), fmt="csv", all_columns=all_columns)
    size = 0
    with path.open("wb") as out:
        async for chunk in export.chunks:
            out.write(chunk)
            size += len(chunk)
    return time.perf_counter() - started, size


def count_csv(path: Path) -> tuple[int, int]:
    """Data rows and columns of an exported CSV (UTF-8 with a BOM)."""
    with path.open(encoding="utf-8-sig", newline="") as source:
        reader = csv.reader(source)
        header = next(reader, [])
        return sum(1 for _ in reader), len(header)


# --- the whole run ----------------------------------------------------------------------------

async def run_import_bench(url: str, where: str, options: ImportBenchOptions, progress: Say = say) -> Figures:
    """Every step of the module docstring on the (fresh) database at `url`; prints as it goes."""
    figures = Figures(options)
    work = options.work_dir.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    store = LocalStorage(work / "backups")
    conn = await connect_raw(url)
    try:
        figures.machine = await machine(conn, where)
        figures.machine["shared_buffers"] = str(await conn.fetchval("SHOW shared_buffers"))
        figures.load_at_start = os.getloadavg()[0]
        started = time.perf_counter()
        progress(f"workspace '{BIG_SLUG}' (Enterprise plan) with {options.existing:,} contacts by COPY ...")
        big = await load_workspace(url, BIG_SLUG, options.existing, deals=0, members=3, seed=options.seed,
                                   progress=progress)
        figures.existing_seconds = time.perf_counter() - started
        progress(f"small workspace '{SMALL_SLUG}' with {options.small_contacts:,} contacts, their companies, "
                 "deals, activities and tasks ...")
        small = await load_workspace(url, SMALL_SLUG, options.small_contacts, deals=max(1, options.small_contacts // 5),
                                     members=2, seed=options.seed + 1, progress=lambda _: None)
        await fill_tenants(conn, options.few_tenants, options.setup_concurrency, progress)
        progress(f"timing the small workspace's backup ({options.backup_samples} runs) ...")
        figures.few = await time_small_backups(conn, small, store, url, options.backup_samples, progress)
        figures.small_rows = sum(int(t["rows"]) for t in store.manifests(small.tenant_id)[0]["tables"].values())

        emails = await existing_emails(conn, big)
        source = work / "contacts-gbk.csv"
        progress(f"writing {options.rows:,} rows to {source} (GBK; {len(emails):,} existing addresses to "
                 "duplicate) ...")
        made = await asyncio.to_thread(write_import_file, source, options.rows, emails, seed=options.seed,
                                       progress=progress)
        figures.file = made
        progress(f"  {made.size_bytes / 1e6:,.1f} MB in {made.seconds:.1f} s: {made.invalid_rows:,} invalid "
                 f"({', '.join(f'{k} {n:,}' for k, n in made.invalid.items())}), {made.duplicates:,} duplicates of "
                 f"existing contacts, {made.chinese_names:,} Chinese names")

        progress(f"importing it: `kith imports run --key email --on-duplicate skip` (load average "
                 f"{os.getloadavg()[0]:.2f}) ...")
        run = await asyncio.to_thread(run_import_child, url, BIG_SLUG, big.owner_email, source, work / "data",
                                      progress)
        await read_import(conn, big, run)
        figures.run = run
        progress(f"  {run.status or 'failed'} in {run.seconds:.1f} s (exit {run.exit_code}), peak RSS "
                 f"{run.peak_rss_mb:.0f} MB, CPU {run.cpu_seconds:.1f} s; counts {run.counts}")
        if run.status != "imported":
            progress("  the import failed; its last lines:\n" + "\n".join(f"    {t}" for t in run.output_tail))
        figures.contacts_after = int(await conn.fetchval(
            f"SELECT count(*) FROM {tenant_schema(big.tenant_id)}.contacts"))  # noqa: S608

        export_path = work / "contacts-export.csv"
        figures.export_load = os.getloadavg()[0]
        columns = "every field" if options.all_columns else "the default columns"
        progress(f"exporting all {figures.contacts_after:,} contacts to CSV ({columns}, load average "
                 f"{figures.export_load:.2f}) ...")
        figures.export_seconds, figures.export_bytes = await time_export(big, export_path,
                                                                         all_columns=options.all_columns)
        figures.export_rows, figures.export_columns = await asyncio.to_thread(count_csv, export_path)
        progress(f"  {figures.export_rows:,} rows x {figures.export_columns} columns, "
                 f"{figures.export_bytes / 1e6:,.1f} MB in {figures.export_seconds:.1f} s")

        figures.backup_load = os.getloadavg()[0]
        progress(f"backing up '{BIG_SLUG}' (load average {figures.backup_load:.2f}) ...")
        backup = await backup_tenant(big.tenant_id, storage=store, url=url)
        figures.backup_seconds, figures.backup_bytes = backup.seconds, backup.size_bytes
        figures.backup_rows = backup.rows
        progress(f"  {backup.rows:,} rows, {backup.size_bytes / 1e6:,.1f} MB in {backup.seconds:.1f} s; "
                 "restoring it into a scratch schema and verifying ...")
        verified = await verify_latest(big.tenant_id, storage=store, url=url)
        figures.verify_seconds = verified.seconds
        progress(f"  verified in {verified.seconds:.1f} s")

        if options.many_tenants > figures.few.tenants:
            await fill_tenants(conn, options.many_tenants, options.setup_concurrency, progress)
            progress(f"timing the small workspace's backup again ({options.backup_samples} runs) ...")
            figures.many = await time_small_backups(conn, small, store, url, options.backup_samples, progress)
    finally:
        await conn.close()
        if not options.keep_files:
            shutil.rmtree(work, ignore_errors=True)
    progress("")
    progress(summary(figures))
    return figures


# --- the printout -----------------------------------------------------------------------------

def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def summary(f: Figures) -> str:
    """The machine, then a markdown table of every figure with its target, then what was missed."""
    o, m = f.options, f.machine
    lines = [f"Machine: {m.get('cpus', '?')} cores ({m.get('cpu', '')}), {m.get('memory', '?')} RAM, "
             f"{m.get('postgres', '?')}, shared_buffers {m.get('shared_buffers', '?')}, Python {m.get('python', '?')}; "
             f"load average {f.load_at_start:.2f} at the start",
             f"Data: {o.existing:,} existing contacts (loaded by COPY in {f.existing_seconds:.1f} s), a "
             f"{o.rows:,}-row GBK CSV of 12 columns",
             "",
             "| what | figure | target |",
             "| --- | --- | --- |"]
    made, run = f.file, f.run
    if made is not None and run is not None:
        if run.status == "imported":
            rate = made.rows / run.seconds if run.seconds else 0.0
            lines.append(f"| import of {made.rows:,} rows ({made.size_bytes / 1e6:,.0f} MB GBK CSV), "
                         f"`kith imports run`, wall time | {run.seconds:.1f} s ({rate:,.0f} rows/s; "
                         f"CPU {run.cpu_seconds:.1f} s; load {run.load:.2f}) | < {IMPORT_TARGET_S:.0f} s: "
                         f"{_met(run.seconds < IMPORT_TARGET_S)} |")
        else:
            lines.append(f"| import of {made.rows:,} rows | **failed** ({run.status or 'no status'}, exit "
                         f"{run.exit_code}) after {run.seconds:.1f} s: {run.error or 'see the output above'} | "
                         f"< {IMPORT_TARGET_S:.0f} s: **missed** |")
        lines.append(f"| import peak RSS (the `kith imports run` process) | {run.peak_rss_mb:.0f} MB | "
                     f"< {IMPORT_RSS_TARGET_MB:.0f} MB: {_met(run.peak_rss_mb < IMPORT_RSS_TARGET_MB)} |")
        c = run.counts
        wrong = f.counts_expected()
        lines.append(f"| import counts: created / skipped as duplicates / rejected | {c.get('created', 0):,} / "
                     f"{c.get('skipped', 0) + c.get('duplicates_in_file', 0):,} / {c.get('rejected', 0):,} | "
                     f"the file's {made.new_rows:,} / {made.duplicates:,} / {made.invalid_rows:,}: "
                     + ("as expected |" if not wrong else f"**{'; '.join(wrong)}** |"))
    columns = "every field" if o.all_columns else "default columns"
    lines.append(f"| export of {f.export_rows:,} contacts to CSV ({f.export_columns} columns, {columns}; "
                 f"{f.export_bytes / 1e6:,.0f} MB) | {f.export_seconds:.1f} s (load {f.export_load:.2f}) | "
                 f"< {EXPORT_TARGET_S:.0f} s: {_met(f.export_seconds < EXPORT_TARGET_S)} |")
    lines.append(f"| backup of that workspace ({f.backup_rows:,} rows, {f.backup_bytes / 1e6:,.1f} MB compressed and "
                 f"encrypted) | {f.backup_seconds:.1f} s (load {f.backup_load:.2f}) | |")
    lines.append(f"| verified restore of it (scratch schema, checked against the manifest, dropped) | "
                 f"{f.verify_seconds:.1f} s | |")
    total = f.backup_seconds + f.verify_seconds
    lines.append(f"| backup + verified restore | {total:.1f} s | < {BACKUP_RESTORE_TARGET_S:.0f} s: "
                 f"{_met(total < BACKUP_RESTORE_TARGET_S)} |")
    lines.append(f"| small workspace's backup ({f.small_rows:,} rows), {f.few.tenants:,} tenant schemas | median "
                 f"{f.few.median_ms:.0f} ms (max {f.few.max_ms:.0f}) | |")
    if f.many.seconds:
        ratio = f.many.median_ms / f.few.median_ms if f.few.median_ms else 0.0
        lines.append(f"| same, {f.many.tenants:,} tenant schemas | median {f.many.median_ms:.0f} ms (max "
                     f"{f.many.max_ms:.0f}; {ratio:.2f}x) | flat (within {FLAT_FACTOR}x or {FLAT_SLACK_MS:.0f} ms): "
                     f"{_met(f.flat())} |")
    missed = f.missed()
    lines.append("")
    lines.append("Targets missed:\n" + "\n".join(f"- {m}" for m in missed) if missed else "All targets met.")
    return "\n".join(lines)
