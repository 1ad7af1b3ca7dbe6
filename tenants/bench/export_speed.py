"""The export benchmark (`make bench-export`, `python -m kith.tenants.bench.export_speed`): how fast
every contact leaves as CSV.

On a database created fresh for the run (or the one a previous run kept, with --reuse):
1. a workspace on the Enterprise plan with `rows` contacts (and their companies) loaded by COPY,
   the import benchmark's loader, and optionally five custom fields on contacts (text, number,
   date, boolean, multi-select) filled for every contact;
2. every contact exported to CSV with the contact's own fields (the import benchmark's export),
   then with every field, custom fields included; each twice: through the row-by-row Python
   writer (the reference, and the way before COPY: `export_rows` + `csv_chunks`, pages of 2,000
   rows) and through `open_export`, what the API streams (PostgreSQL's COPY writes the rows);
3. both files of each hashed: they must be the same bytes.

Prints the figures as a README-ready table with rows/s for both ways and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import asyncpg

from kith.platform.access.actor import Actor
from kith.platform.bench import machine, on_fresh_database, say
from kith.platform.config import get_settings, reset_settings, restored_environment
from kith.platform.db import close_db, connect_raw, init_db, tenant_schema, with_database
from kith.tenants.bench.imports import load_workspace
from kith.tenants.bench.workspace import BenchWorkspace, BenchWorkspaceError, find_bench_workspace
from kith.tenants.exports.formats import csv_chunks
from kith.tenants.exports.records import export_rows, plan_export
from kith.tenants.exports.stream import open_export
from kith.tenants.records.kinds import record_kind
from kith.tenants.records.listing import ListQuery
from kith.tenants.registry import TENANT_MODEL_MODULES

SLUG = "export-bench"
DEFAULT_DATABASE = "kith_export_bench"
TIME_ZONE = "Asia/Shanghai"  # every timestamp is converted: the costly case
# custom fields of contacts, one of each kind that formats differently, filled for every contact
CUSTOM_FIELDS = (("nickname", "昵称", "text", "[]"), ("score", "Score", "number", "[]"),
                 ("since", "Customer since", "date", "[]"), ("vip", "VIP", "boolean", "[]"),
                 ("interests", "Interests", "multi_select", '["CRM", "ERP", "BI", "=cmd"]'))
FILL_CUSTOM = """UPDATE contacts SET custom = jsonb_build_object(
    'nickname', CASE WHEN id % 7 = 0 THEN '=老' || id ELSE '小' || (id % 100) END,
    'score', ((id % 20000) - 5000)::text || '.' || lpad((id % 100)::text, 2, '0'),
    'since', to_char(date '2015-01-01' + (id % 3650)::int, 'YYYY-MM-DD'),
    'vip', id % 3 = 0,
    'interests', CASE id % 4 WHEN 0 THEN '["CRM", "ERP"]'::jsonb WHEN 1 THEN '["=cmd"]'::jsonb
                            WHEN 2 THEN '[]'::jsonb ELSE '["BI"]'::jsonb END)"""


@dataclass(frozen=True)
class ExportBenchOptions:
    rows: int = 200_000
    custom_fields: bool = True
    columns: str = "both"  # "own" (the contact's own fields, as the import benchmark), "all" (custom too), "both"
    database: str = DEFAULT_DATABASE
    keep: bool = False
    reuse: bool = False
    seed: int = 1


@dataclass
class Timed:
    seconds: float = 0.0
    size: int = 0
    rows: int = 0
    digest: str = ""
    load: float = 0.0  # 1-minute load average when it started

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclass
class Pair:
    """One export both ways: the Python writer's and the API's."""

    what: str
    columns: int = 0
    python: Timed = field(default_factory=Timed)
    api: Timed = field(default_factory=Timed)

    @property
    def same_bytes(self) -> bool:
        return bool(self.python.digest) and self.python.digest == self.api.digest


@dataclass
class ExportFigures:
    options: ExportBenchOptions
    machine: dict[str, str] = field(default_factory=dict)
    contacts: int = 0
    load_seconds: float = 0.0
    pairs: list[Pair] = field(default_factory=list)

    @property
    def same_bytes(self) -> bool:
        return bool(self.pairs) and all(p.same_bytes for p in self.pairs)


async def _add_custom_fields(conn: asyncpg.Connection, workspace: BenchWorkspace) -> None:
    await conn.execute(f"SET search_path TO {tenant_schema(workspace.tenant_id)}, public")
    for key, label, kind, options in CUSTOM_FIELDS:
        await conn.execute("INSERT INTO custom_fields (object_type, key, label, kind, options) VALUES"
                           " ('contacts', $1, $2, $3, $4::jsonb)", key, label, kind, options)
    await conn.execute(FILL_CUSTOM)
    await conn.execute("VACUUM (ANALYZE) contacts")
    await conn.execute("SET search_path TO public")


async def prepare(url: str, options: ExportBenchOptions, progress: Callable[[str], None]) -> BenchWorkspace:
    """The bench workspace: found (--reuse) or signed up and loaded."""
    if options.reuse:
        try:
            return await find_bench_workspace(SLUG)
        except BenchWorkspaceError:
            progress(f"no workspace '{SLUG}' to reuse: loading one")
    workspace = await load_workspace(url, SLUG, options.rows, deals=0, members=3, seed=options.seed,
                                     progress=progress)
    if options.custom_fields:
        progress(f"five custom fields on contacts, filled for all {options.rows:,} ...")
        conn = await connect_raw(url)
        try:
            await _add_custom_fields(conn, workspace)
        finally:
            await conn.close()
    return workspace


async def _drain(chunks: AsyncIterator[bytes], timed: Timed) -> None:
    digest = hashlib.sha256()
    ends = 0
    async for chunk in chunks:
        digest.update(chunk)
        timed.size += len(chunk)
        ends += chunk.count(b"\r\n")
    timed.digest = digest.hexdigest()
    timed.rows = ends - 1  # less the header (no value of the bench data holds a line break)


async def time_export(make: Callable[[], Awaitable[AsyncIterator[bytes]]]) -> Timed:
    """Seconds from the export's checks to its last byte, the bytes' digest and size."""
    timed = Timed(load=os.getloadavg()[0])
    started = time.perf_counter()
    await _drain(await make(), timed)
    timed.seconds = time.perf_counter() - started
    return timed


async def time_pair(actor: Actor, pair: Pair, query: ListQuery, all_columns: bool,
                    progress: Callable[[str], None]) -> None:
    """The export of `query` through the Python writer, then through open_export."""

    async def python_way() -> AsyncIterator[bytes]:
        plan = await plan_export(actor, "contacts", query, fmt="csv", all_columns=all_columns)
        pair.columns = len(plan.columns)
        return csv_chunks([c.label for c in plan.columns], export_rows(actor, plan), ZoneInfo(TIME_ZONE))

    async def api_way() -> AsyncIterator[bytes]:
        export = await open_export(actor, "contacts", query, fmt="csv", all_columns=all_columns, time_zone=TIME_ZONE)
        return export.chunks

    progress(f"{pair.what}: row by row in Python (the reference; load average {os.getloadavg()[0]:.2f}) ...")
    pair.python = await time_export(python_way)
    progress(f"  {_line(pair.python)}")
    progress(f"{pair.what}: through open_export, as the API streams (load average {os.getloadavg()[0]:.2f}) ...")
    pair.api = await time_export(api_way)
    progress(f"  {_line(pair.api)}" + ("" if pair.same_bytes else " -- NOT the same bytes"))


async def run_export_bench(url: str, where: str, options: ExportBenchOptions,
                           progress: Callable[[str], None] = say) -> ExportFigures:
    """The steps of the module docstring on the database at `url`; prints as it goes."""
    figures = ExportFigures(options)
    conn = await connect_raw(url)
    try:
        figures.machine = await machine(conn, where)
        started = time.perf_counter()
        workspace = await prepare(url, options, progress)
        figures.load_seconds = time.perf_counter() - started
        schema = tenant_schema(workspace.tenant_id)
        figures.contacts = int(await conn.fetchval(f"SELECT count(*) FROM {schema}.contacts"))  # noqa: S608
        has_custom = bool(await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {schema}.custom_fields WHERE object_type = 'contacts')"))  # noqa: S608
    finally:
        await conn.close()
    actor = Actor(kind="user", tenant_id=workspace.tenant_id, role="owner", identity_id=workspace.owner_id,
                  label=workspace.owner_email)
    spec = record_kind("contacts").spec  # type: ignore[union-attr]
    if options.columns in ("own", "both"):
        pair = Pair("every field of the contact itself")
        await time_pair(actor, pair, ListQuery(columns=[f.name for f in spec.fields]), False, progress)
        figures.pairs.append(pair)
    if options.columns in ("all", "both") and has_custom:
        pair = Pair("every field, custom fields included")
        await time_pair(actor, pair, ListQuery(), True, progress)
        figures.pairs.append(pair)
    progress("")
    progress(summary(figures))
    return figures


def _line(timed: Timed) -> str:
    return (f"{timed.rows:,} rows, {timed.size / 1e6:,.1f} MB in {timed.seconds:.2f} s "
            f"({timed.rows_per_second:,.0f} rows/s)")


def summary(f: ExportFigures) -> str:
    """The machine, then a markdown table of the exports."""
    m = f.machine
    lines = [
        f"Machine: {m.get('cpus', '?')} cores ({m.get('cpu', '')}), {m.get('memory', '?')} RAM, "
        f"{m.get('postgres', '?')}, Python {m.get('python', '?')}",
        f"Data: {f.contacts:,} contacts, times in {TIME_ZONE}",
        "",
        "| export of every contact to CSV | row by row in Python (before) | as the API streams it, COPY (after) "
        "| faster | same bytes |",
        "| --- | --- | --- | --- | --- |",
    ]
    for p in f.pairs:
        ratio = p.python.seconds / p.api.seconds if p.api.seconds else 0.0
        lines.append(
            f"| {p.what} ({p.columns} columns, {p.api.size / 1e6:,.1f} MB) | {p.python.seconds:.2f} s, "
            f"{p.python.rows_per_second:,.0f} rows/s (load {p.python.load:.2f}) | {p.api.seconds:.2f} s, "
            f"{p.api.rows_per_second:,.0f} rows/s (load {p.api.load:.2f}) | {ratio:.1f}x | "
            f"{'yes (SHA-256)' if p.same_bytes else '**no**'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m kith.tenants.bench.export_speed`: the benchmark; 1 when the files differ."""
    parser = argparse.ArgumentParser(prog="python -m kith.tenants.bench.export_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--rows", type=int, default=200_000, help="contacts to load and export (default 200,000)")
    add("--no-custom-fields", action="store_true", help="load no custom fields")
    add("--columns", choices=("own", "all", "both"), default="both",
        help="export the contact's own fields (as the import benchmark), every field with custom ones, or both")
    add("--database", default=DEFAULT_DATABASE, help=f"database to use (default {DEFAULT_DATABASE})")
    add("--keep", action="store_true", help="keep the database afterwards")
    add("--reuse", action="store_true", help="use the database a previous --keep run left, as it is")
    add("--seed", type=int, default=1, help="random seed of the data (default 1)")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    options = ExportBenchOptions(rows=args.rows, custom_fields=not args.no_custom_fields, columns=args.columns,
                                 database=args.database,
                                 keep=args.keep or args.reuse, reuse=args.reuse, seed=args.seed)

    async def measure(url: str, where: str) -> ExportFigures:
        return await run_export_bench(url, where, options)

    if options.reuse:
        figures = on_kept_database(options.database, measure)
    else:
        figures = on_fresh_database(options.database, keep=options.keep, measure=measure)
    return 0 if figures.same_bytes else 1


def on_kept_database(database: str, measure: Callable[[str, str], Awaitable[ExportFigures]]) -> ExportFigures:
    """`measure(url, where)` on the database a previous --keep run left (DATABASE_URL's server)."""
    settings = get_settings()
    if not settings.database_direct_url:
        raise SystemExit("--reuse needs DATABASE_URL: the embedded server's databases are not kept")
    url = with_database(settings.database_direct_url, database)

    async def run() -> ExportFigures:
        await init_db(TENANT_MODEL_MODULES)
        try:
            return await measure(url, "DATABASE_URL")
        finally:
            await close_db()

    with restored_environment("DATABASE_URL", "DATABASE_DIRECT_URL"):
        os.environ["DATABASE_URL"] = os.environ["DATABASE_DIRECT_URL"] = url
        reset_settings()
        return asyncio.run(run())


if __name__ == "__main__":
    raise SystemExit(main())
