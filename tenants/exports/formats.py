"""Export files, written as they stream: CSV (UTF-8 with a BOM, so Excel reads Chinese text
right; RFC 4180 quoting; formula-safe) and XLSX (xlsxwriter in constant-memory mode: rows go
to a temporary file as they come, the file is streamed out once the workbook is closed).

Formula safety (OWASP "CSV injection"): a CSV cell starting with = + - @, a tab or a carriage
return gets a leading apostrophe, so a spreadsheet shows it as text and never runs it. In XLSX
every text value is written as a string cell, never as a formula, and numbers and dates keep
their types.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import tempfile
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import xlsxwriter

BOM = "\ufeff"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CSV_BATCH_ROWS = 500
XLSX_CHUNK = 64 * 1024
XLSX_MAX_ROWS = 1_048_575  # a worksheet's rows, less the header
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


class ExportTooLarge(Exception):
    """More rows than one XLSX worksheet holds."""


def safe_text(text: str) -> str:
    """`text` as a spreadsheet shows it and never runs it as a formula."""
    return "'" + text if text.startswith(FORMULA_START) else text


def _local(moment: datetime, zone: ZoneInfo) -> datetime:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(zone)


def csv_text(value: Any, zone: ZoneInfo) -> str:
    """A typed value as CSV text: amounts exact, times in the workspace's zone, text formula-safe.
    Numbers are left alone (-2 is a number, not a formula); text like "-2+3" gets the apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal | int):
        return str(value)
    if isinstance(value, datetime):
        return _local(value, zone).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return safe_text(str(value))


def _csv_lines(rows: Sequence[Sequence[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)  # RFC 4180: quotes doubled, CRLF line ends
    return buffer.getvalue()


def csv_header(labels: Sequence[str]) -> bytes:
    """The CSV file's first bytes: the BOM and the header line."""
    return (BOM + _csv_lines([[safe_text(label) for label in labels]])).encode()


async def csv_chunks(labels: Sequence[str], rows: AsyncIterator[list[Any]], zone: ZoneInfo) -> AsyncIterator[bytes]:
    """The CSV file as UTF-8 chunks: the BOM and the header first, then batches of rows."""
    yield csv_header(labels)
    async for chunk in csv_row_chunks(rows, zone):
        yield chunk


async def csv_row_chunks(rows: AsyncIterator[list[Any]], zone: ZoneInfo) -> AsyncIterator[bytes]:
    """The CSV lines of `rows` as UTF-8 chunks of CSV_BATCH_ROWS rows."""
    batch: list[list[str]] = []
    async for values in rows:
        batch.append([csv_text(v, zone) for v in values])
        if len(batch) >= CSV_BATCH_ROWS:
            yield _csv_lines(batch).encode()
            batch = []
    if batch:
        yield _csv_lines(batch).encode()


async def xlsx_chunks(labels: Sequence[str], rows: AsyncIterator[list[Any]], zone: ZoneInfo,
                      sheet: str = "Export") -> AsyncIterator[bytes]:
    """The XLSX file as chunks. Rows are written to a temporary file as they come (constant
    memory); an XLSX is a zip whose directory comes last, so it streams once complete."""
    handle, path = tempfile.mkstemp(suffix=".xlsx")
    os.close(handle)
    try:
        book = xlsxwriter.Workbook(path, {
            "constant_memory": True, "tmpdir": tempfile.gettempdir(),
            "strings_to_formulas": False, "strings_to_numbers": False, "strings_to_urls": False,
        })
        header = book.add_format({"bold": True})
        date_format = book.add_format({"num_format": "yyyy-mm-dd"})
        time_format = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        ws = book.add_worksheet(sheet[:31])
        for col, label in enumerate(labels):
            ws.write_string(0, col, label, header)
        row_index = 0
        async for values in rows:
            row_index += 1
            if row_index > XLSX_MAX_ROWS:
                book.close()
                raise ExportTooLarge(f"An XLSX sheet holds at most {XLSX_MAX_ROWS} rows; export as CSV instead.")
            for col, value in enumerate(values):
                if value is None:
                    continue
                if isinstance(value, bool):
                    ws.write_boolean(row_index, col, value)
                elif isinstance(value, Decimal | int):
                    ws.write_number(row_index, col, float(value))
                elif isinstance(value, datetime):
                    ws.write_datetime(row_index, col, _local(value, zone).replace(tzinfo=None), time_format)
                elif isinstance(value, date):
                    ws.write_datetime(row_index, col, value, date_format)
                else:
                    ws.write_string(row_index, col, str(value))
        await asyncio.to_thread(book.close)
        with open(path, "rb") as f:  # noqa: ASYNC230 - a local temporary file, read in chunks
            while chunk := f.read(XLSX_CHUNK):
                yield chunk
    finally:
        # rows that raised part-way (a refusal, a dropped download) leave the workbook open: close it,
        # or xlsxwriter's temporary files stay open until garbage collection
        with contextlib.suppress(Exception):
            if not book.fileclosed:
                book.close()
        os.unlink(path)


def file_chunks(fmt: str, labels: Sequence[str], rows: AsyncIterator[list[Any]], zone: ZoneInfo,
                sheet: str = "Export") -> AsyncIterator[bytes]:
    """The export file's chunks in format `fmt` ("csv" or "xlsx")."""
    return csv_chunks(labels, rows, zone) if fmt == "csv" else xlsx_chunks(labels, rows, zone, sheet)
