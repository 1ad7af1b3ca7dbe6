"""Loading the benchmark tenant: companies, contacts, deals, activities and tasks by COPY.

A bulk load is the one place that writes a tenant's tables without `acting_as`: it runs on a
direct connection with search_path set to the tenant's schema (t_<id>), in COPY batches of
~50k rows, so a million contacts load in minutes. Nothing is dropped first: every index of the
migrations stays and is maintained row by row, as it would be in production; the figures show
that cost. One audit entry ("crm_bench.load") records what was loaded. Afterwards VACUUM
(ANALYZE) gives the planner its statistics, flushes the GIN pending lists and sets the
visibility map, the state autovacuum would reach on its own a little later.

Rows are made in a worker thread while the previous batch is in COPY, so the two cores split
the work: Python makes rows, PostgreSQL maintains indexes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from kith.platform.access.actor import Actor
from kith.platform.access.session import acting_as
from kith.platform.db import connect_raw, tenant_schema
from kith.tenants.bench.rows import (
    ACTIVITY_COLUMNS,
    COMPANY_COLUMNS,
    CONTACT_COLUMNS,
    DEAL_COLUMNS,
    TASK_COLUMNS,
    DataMaker,
    Row,
    Stage,
)
from kith.tenants.bench.workspace import BenchWorkspace

TABLES = ("companies", "contacts", "deals", "activities", "tasks")
Progress = Callable[[str], None]


class LoadError(RuntimeError):
    """The tenant cannot take the benchmark's data (it already has CRM records, or no default pipeline)."""


@dataclass(frozen=True)
class Sizes:
    """How much to load; activities and tasks default to one per 10 and one per 20 contacts."""

    contacts: int = 1_000_000
    companies: int = 100_000
    deals: int = 200_000
    activities: int | None = None
    tasks: int | None = None
    batch: int = 50_000

    def count(self, table: str) -> int:
        if table == "activities":
            return self.contacts // 10 if self.activities is None else self.activities
        if table == "tasks":
            return self.contacts // 20 if self.tasks is None else self.tasks
        return int(getattr(self, table))


@dataclass
class TableLoad:
    table: str
    rows: int = 0
    seconds: float = 0.0  # wall clock from the first batch made to the last one copied
    make_seconds: float = 0.0  # making rows (in the worker thread, overlapping COPY)
    copy_seconds: float = 0.0  # waiting for COPY (index maintenance included)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclass
class LoadReport:
    tables: list[TableLoad] = field(default_factory=list)
    vacuum_seconds: float = 0.0
    total_seconds: float = 0.0
    sizes_mb: dict[str, float] = field(default_factory=dict)  # table + indexes, after VACUUM


@dataclass(frozen=True)
class _Batch:
    table: str
    columns: tuple[str, ...]
    first_id: int
    count: int


async def _default_pipeline(conn: asyncpg.Connection) -> tuple[int, list[Stage]]:
    rows = await conn.fetch(
        "SELECT p.id AS pipeline_id, s.id, s.name, s.kind FROM pipelines p JOIN stages s ON s.pipeline_id = p.id"
        " WHERE p.is_default ORDER BY s.position, s.id")
    if not rows:
        raise LoadError("the workspace has no default pipeline (tenant migration 0007 makes one)")
    return int(rows[0]["pipeline_id"]), [Stage(int(r["id"]), str(r["name"]), str(r["kind"])) for r in rows]


async def _refuse_loaded(conn: asyncpg.Connection) -> None:
    for table in TABLES:
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
            raise LoadError(f"the workspace already has {table}; the benchmark loads into an empty workspace")


def _plan(sizes: Sizes) -> list[_Batch]:
    columns = {"companies": COMPANY_COLUMNS, "contacts": CONTACT_COLUMNS, "deals": DEAL_COLUMNS,
               "activities": ACTIVITY_COLUMNS, "tasks": TASK_COLUMNS}
    batches: list[_Batch] = []
    for table in TABLES:
        total = sizes.count(table)
        for start in range(0, total, sizes.batch):
            batches.append(_Batch(table, columns[table], start + 1, min(sizes.batch, total - start)))
    return batches


def _make(maker: DataMaker, batch: _Batch) -> tuple[list[Row], float]:
    started = time.perf_counter()
    if batch.table == "companies":
        rows = maker.companies(batch.first_id, batch.count)
    elif batch.table == "contacts":
        rows = maker.contacts(batch.first_id, batch.count)
    elif batch.table == "deals":
        rows = maker.deals(batch.first_id, batch.count)
    elif batch.table == "activities":
        rows = maker.activities(batch.count)
    else:
        rows = maker.tasks(batch.count)
    return rows, time.perf_counter() - started


async def load_crm_data(url: str, workspace: BenchWorkspace, sizes: Sizes, *, seed: int = 1,
                        progress: Progress = print) -> LoadReport:
    """Fill the workspace's CRM tables with `sizes` rows made from `seed`, then VACUUM (ANALYZE) them.

    `url` is a direct database URL (not PgBouncer: the load keeps one session). Ids of companies,
    contacts and deals start at 1 and the sequences are moved past them afterwards. LoadError when
    the workspace already holds CRM records.
    """
    if not workspace.member_ids:
        raise LoadError("the workspace has no sales members to own the records")
    report = LoadReport()
    started = time.perf_counter()
    schema = tenant_schema(workspace.tenant_id)
    conn = await connect_raw(url)
    try:
        await conn.execute(f"SET search_path TO {schema}, public")
        # a bulk load may lose its last batch in a crash (it is re-run from scratch anyway), and
        # the GIN pending-list clean-ups it triggers sort in work_mem
        await conn.execute("SET synchronous_commit = off; SET work_mem = '64MB'")
        await _refuse_loaded(conn)
        pipeline_id, stages = await _default_pipeline(conn)
        maker = DataMaker(seed=seed, member_ids=workspace.member_ids, stages=stages, pipeline_id=pipeline_id,
                          now=datetime.now(UTC))
        await _copy_all(conn, schema, maker, sizes, report, progress)
        for table in ("companies", "contacts", "deals", "activities", "tasks"):
            await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                               f" greatest((SELECT max(id) FROM {table}), 1))")
        progress("VACUUM (ANALYZE) of the loaded tables ...")
        vacuum_started = time.perf_counter()
        for table in TABLES:
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        report.vacuum_seconds = time.perf_counter() - vacuum_started
        for table in TABLES:
            size = await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", f"{schema}.{table}")
            report.sizes_mb[table] = int(size) / 1024 / 1024
    finally:
        await conn.close()
    report.total_seconds = time.perf_counter() - started
    await _record_load(workspace, sizes, seed)
    return report


async def _copy_all(conn: asyncpg.Connection, schema: str, maker: DataMaker, sizes: Sizes, report: LoadReport,
                    progress: Progress) -> None:
    batches = _plan(sizes)
    loads = {table: TableLoad(table) for table in TABLES}
    report.tables = [loads[t] for t in TABLES]
    table_started: dict[str, float] = {}
    pending = asyncio.create_task(asyncio.to_thread(_make, maker, batches[0])) if batches else None
    for i, batch in enumerate(batches):
        assert pending is not None  # noqa: S101 - one task is always in flight for the next batch
        table_started.setdefault(batch.table, time.perf_counter())
        rows, make_seconds = await pending
        # make the next batch while this one is copied (Python on one core, PostgreSQL on the other)
        pending = (asyncio.create_task(asyncio.to_thread(_make, maker, batches[i + 1]))
                   if i + 1 < len(batches) else None)
        load = loads[batch.table]
        load.make_seconds += make_seconds
        copy_started = time.perf_counter()
        await conn.copy_records_to_table(batch.table, records=rows, columns=list(batch.columns), schema_name=schema)
        load.copy_seconds += time.perf_counter() - copy_started
        load.rows += len(rows)
        load.seconds = time.perf_counter() - table_started[batch.table]
        total = sizes.count(batch.table)
        progress(f"  {batch.table:<10} {load.rows:>10,}/{total:,} {load.rows * 100 // total:>3d}%"
                 f"  {load.rows_per_second:>8,.0f} rows/s  (making rows {load.make_seconds:.1f}s,"
                 f" COPY {load.copy_seconds:.1f}s)")


async def _record_load(workspace: BenchWorkspace, sizes: Sizes, seed: int) -> None:
    loaded = {table: sizes.count(table) for table in TABLES}
    async with acting_as(Actor.system(workspace.tenant_id, "crm-bench")) as session:
        await session.audit("crm_bench.load", "workspace", workspace.tenant_id,
                            {"loaded": [None, loaded], "seed": [None, seed]})
