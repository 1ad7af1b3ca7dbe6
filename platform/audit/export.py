"""Exporting a tenant's audit log as CSV or JSON lines, itself audited ("audit.export").

The export entry is committed before any data leaves (so an export cut short is still
recorded), and names the filters and the newest seq included; the entries are then streamed
in keyset batches, each batch a short transaction of its own, so a large export never holds
a connection or the tenant's audit lock for long.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator

from kith.platform.access.actor import Actor
from kith.platform.access.session import acting_as
from kith.platform.audit.entries import MAX_PAGE, AuditEntry, AuditFilter, head_seq, read_entries

FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}
CSV_COLUMNS = ("seq", "at", "actor_kind", "actor_id", "token_id", "actor_label", "ip", "user_agent", "request_id",
               "object_type", "object_id", "action", "diff", "prev_hash", "hash", "key_id")
EXPORT_BATCH = MAX_PAGE
# A cell starting with one of these runs as a formula in spreadsheet programs; user agents,
# labels and ids are typed by outsiders, so CSV cells get a leading apostrophe (OWASP's advice).
# JSON lines carry the exact values.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ExportFormatError(ValueError):
    """An export format other than csv or jsonl."""


async def start_export(actor: Actor, f: AuditFilter, fmt: str) -> int:
    """Check the permission ("manage_settings"), record the export, return the newest seq it covers."""
    if fmt not in FORMATS:
        raise ExportFormatError(f"Export format must be one of: {', '.join(FORMATS)}.")
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_settings")
        through = await head_seq(session.tx)
        await session.audit("audit.export", "audit_log", None,
                            {"format": fmt, "filters": f.described(), "through_seq": through})
    return through


def _csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_line(values: list[object]) -> str:
    """One CSV record (RFC 4180 quoting, CRLF)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow([_csv_cell(v) for v in values])
    return buffer.getvalue()


def render_entry(entry: AuditEntry, fmt: str) -> str:
    """One entry as a CSV record or a JSON line."""
    data = entry.as_json()
    if fmt == "jsonl":
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"
    data["diff"] = "" if entry.diff is None else json.dumps(entry.diff, ensure_ascii=False, sort_keys=True)
    return csv_line([data[c] for c in CSV_COLUMNS])


async def stream_export(actor: Actor, f: AuditFilter, fmt: str, through_seq: int) -> AsyncIterator[str]:
    """The entries matching `f` up to `through_seq`, newest first, as text chunks (after start_export)."""
    if fmt == "csv":
        yield csv_line(list(CSV_COLUMNS))
    before: int | None = None
    while True:
        async with acting_as(actor) as session:
            page = await read_entries(session, f, before_seq=before, limit=EXPORT_BATCH, through_seq=through_seq)
        if page.items:
            yield "".join(render_entry(e, fmt) for e in page.items)
        if page.next_before is None:
            return
        before = page.next_before
