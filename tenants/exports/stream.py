"""An export from plan to file: what the API and the pages both call."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from kith.platform.access.actor import Actor
from kith.tenants.exports.formats import MEDIA_TYPES, file_chunks
from kith.tenants.exports.records import ExportPlan, export_rows, plan_export
from kith.tenants.records.listing import ListQuery


@dataclass
class ExportFile:
    filename: str
    media_type: str
    chunks: AsyncIterator[bytes]


async def open_export(actor: Actor, object_type: str, query: ListQuery, *, fmt: str, view_id: int | None = None,
                      all_columns: bool = False, label: Callable[[str], str] = str, time_zone: str = "UTC",
                      ) -> ExportFile:
    """Check and record the export now (errors raise here, before a response starts); the file's
    chunks come as they are iterated. `label` translates the spec fields' English labels."""
    plan: ExportPlan = await plan_export(actor, object_type, query, fmt=fmt, view_id=view_id,
                                         all_columns=all_columns)
    labels = [c.label if c.custom else label(c.label) for c in plan.columns]
    zone = ZoneInfo(time_zone)
    stamp = datetime.now(zone).strftime("%Y%m%d")  # the workspace's date
    chunks = file_chunks(fmt, labels, export_rows(actor, plan), zone, sheet=object_type)
    return ExportFile(f"{object_type}-{stamp}.{fmt}", MEDIA_TYPES[fmt], chunks)
