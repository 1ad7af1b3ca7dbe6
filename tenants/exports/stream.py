"""An export from plan to file: what the API, the pages and the background job all call.

A CSV is written by PostgreSQL (copy_csv.py: one COPY, every value formatted in SQL as the
Python writer formats it) unless the export holds custom values only Python prints right; an
XLSX, and such a CSV, go row by row through `export_rows` and the writers of formats.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

from kith.platform.access.actor import Actor
from kith.platform.observability import get_logger
from kith.tenants.exports.copy_csv import CopyOutcome, CopyRefused, ExportProgress, copy_chunks
from kith.tenants.exports.formats import MEDIA_TYPES, csv_header, csv_row_chunks, file_chunks
from kith.tenants.exports.records import ExportPlan, export_rows, plan_export
from kith.tenants.records.listing import ListQuery

log = get_logger("kith.exports")


@dataclass
class ExportFile:
    filename: str
    media_type: str
    chunks: AsyncIterator[bytes]


async def counted_rows(rows: AsyncIterator[list[Any]], progress: ExportProgress) -> AsyncIterator[list[Any]]:
    """The rows, counted for the progress writes; they stop early once a cancel is seen. Ending the
    rows (rather than raising through the file writer) lets the XLSX writer close its workbook and
    temporary files as usual; the caller then discards the file."""
    # closed at once when a cancel stops the rows: export_rows holds no transaction between batches
    async with contextlib.aclosing(cast(AsyncGenerator[list[Any], None], rows)):
        async for values in rows:
            if progress.cancelled:
                return
            progress.rows += 1
            yield values


async def export_chunks(actor: Actor, plan: ExportPlan, labels: Sequence[str], time_zone: str, *,
                        spool: bool = False, progress: ExportProgress | None = None,
                        outcome: CopyOutcome | None = None) -> AsyncIterator[bytes]:
    """The planned export's file as chunks, headers `labels`, times in `time_zone`.

    `progress` (a background export) counts the rows and stops the file early when it says
    cancelled. `spool` (a download) lets the COPY run ahead of the reader through a temporary
    file, so a slow client never holds its transaction. `outcome` says which way it went."""
    zone = ZoneInfo(time_zone)
    outcome = outcome if outcome is not None else CopyOutcome()
    if plan.fmt == "csv":
        yield csv_header(labels)
        try:
            async for chunk in copy_chunks(actor, plan, time_zone, spool=spool, progress=progress, outcome=outcome):
                yield chunk
            return
        except CopyRefused as refused:  # before any row: the Python writer writes them all
            outcome.reason = str(refused)
            log.info("export_csv_by_python", object_type=plan.object_type, reason=outcome.reason)
    outcome.method = "python"
    rows: AsyncIterator[list[Any]] = export_rows(actor, plan)
    if progress is not None:
        rows = counted_rows(rows, progress)
    chunks = csv_row_chunks(rows, zone) if plan.fmt == "csv" else file_chunks(plan.fmt, labels, rows, zone,
                                                                               sheet=plan.object_type)
    async for chunk in chunks:
        yield chunk
    if progress is not None:
        outcome.rows = progress.rows


async def open_export(actor: Actor, object_type: str, query: ListQuery, *, fmt: str, view_id: int | None = None,
                      all_columns: bool = False, label: Callable[[str], str] = str, time_zone: str = "UTC",
                      ) -> ExportFile:
    """Check and record the export now (errors raise here, before a response starts); the file's
    chunks come as they are iterated. `label` translates the spec fields' English labels."""
    plan: ExportPlan = await plan_export(actor, object_type, query, fmt=fmt, view_id=view_id,
                                         all_columns=all_columns)
    labels = [c.label if c.custom else label(c.label) for c in plan.columns]
    stamp = datetime.now(ZoneInfo(time_zone)).strftime("%Y%m%d")  # the workspace's date
    chunks = export_chunks(actor, plan, labels, time_zone, spool=True)
    return ExportFile(f"{object_type}-{stamp}.{fmt}", MEDIA_TYPES[fmt], chunks)
