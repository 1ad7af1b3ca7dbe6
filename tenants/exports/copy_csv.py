"""CSV exports written by PostgreSQL: one COPY instead of a Python loop over every value.

    COPY (SELECT <every column formatted in SQL> FROM <the list's FROM> WHERE <the list engine's
          conditions> ORDER BY <its order>) TO STDOUT (FORMAT csv)

The list engine builds the conditions, parameters and order (`list_statement`: record scope,
filters, search, hidden-field checks), exactly as for a page; this module formats each column
the way `formats.csv_text` formats the typed value `records._value` makes of it, so the bytes are
those of the row-by-row writer (tests/test_export_copy.py compares both on the same data):
text formula-safe (a cell starting with = + - @, a tab or a CR gets a leading apostrophe),
numbers and amounts as PostgreSQL prints them (what str() of the Decimal or int gives), times in
the workspace's zone as "YYYY-MM-DD HH:MM:SS", dates ISO, booleans true/false, tags joined with
", ", owners as their member's email, custom fields from the jsonb column, empty values empty.

What PostgreSQL's CSV does differently is put right as the bytes pass: its lines end in LF where
Python's csv module (RFC 4180) ends them in CRLF (a line break inside a quoted value stays as it
is, in both), an empty string is written as NULL (PostgreSQL would quote it), and in a
one-column file an empty value is written "" and a value \\. is not quoted, as Python does.

Custom values that Kith itself never stores (a JSON float in a number field, a list in a text
field, a number string not in Decimal's own spelling...) would print differently in SQL than in
Python; a check before the COPY looks for them among the export's rows, and if any is found the
export goes through the Python writer instead (`CopyRefused`), as it does for XLSX.

The COPY runs in one transaction, which checks '<type>: export' and the columns again (the role
may have changed since the plan) and records "<type>.exported" with the row count the COPY
reports; the last bytes of the file are handed over only after that commits, as the row-by-row
writer hands over its last batch after its last transaction. One statement reads one snapshot,
so the file is consistent, unlike pages read in separate transactions. No read entries are
written, as none are per page today: the export's two entries record it.

A download reads the COPY's output through a temporary file (`_Spool`, unlinked at once), so
the transaction, its pooled connection and the tenant's shared lock last as long as PostgreSQL
takes to write the rows (seconds for a million), not as long as a slow client takes to read
them; memory stays flat and the disk holds at most the file, as for an XLSX. A background job
writes its own file as fast, so it reads through a short queue instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.platform.audit.log import raw_connection
from kith.tenants.exports.formats import FORMULA_START, safe_text
from kith.tenants.exports.records import MEMBER_COLUMNS, ExportColumn, ExportPlan, exported_entry
from kith.tenants.records.kinds import record_kind
from kith.tenants.records.listing import CUSTOM_PREFIX, ListQuery, list_statement
from kith.tenants.records.spec import RecordSpec
from kith.tenants.records.views import load_members

# the first characters formats.safe_text guards, as ascii() (a code point) gives them
_GUARDED = ", ".join(str(ord(c)) for c in FORMULA_START)
# what str() of a finite Decimal prints: plain when its exponent is <= 0 and its adjusted
# exponent >= -6, else scientific ("1E+3", "1.5E-7"); clean_value stores numbers that way
# ([.] rather than an escaped dot: nothing to escape in Python or SQL)
_PLAIN_DECIMAL = "^-?([1-9][0-9]*([.][0-9]+)?|0|0[.]0{0,5}[1-9][0-9]*|0[.]0{1,6})$"
_SCIENTIFIC_DECIMAL = "^-?([1-9]([.][0-9]+)?|0)E([+](0|[1-9][0-9]*)|-[1-9][0-9]*)$"
_ISO_DATE = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
CHUNK_BYTES = 256 * 1024
QUEUED_CHUNKS = 8  # chunks between COPY and a consumer that keeps up (a job writing its file)
SPOOL_READ = 1024 * 1024


class CopyRefused(Exception):
    """The export cannot be written by COPY byte for byte as the Python writer would: use that."""


class ExportProgress(Protocol):
    """What a background export shows while it runs: rows written so far, and whether to stop."""

    rows: int
    cancelled: bool


# --- SQL --------------------------------------------------------------------------------------


def _guard(text_sql: str) -> str:
    """`text_sql` formula-safe (formats.safe_text) in SQL."""
    return f"CASE WHEN ascii({text_sql}) IN ({_GUARDED}) THEN '''' || {text_sql} ELSE {text_sql} END"


class _Sql:
    """The COPY's own parameters, numbered after the list engine's as they are first used (an
    unused parameter would have no type)."""

    def __init__(self, params: list[Any], time_zone: str, members: dict[str, str]) -> None:
        self.params = params
        self._values = {"time_zone": (time_zone, "text"), "members": (json.dumps(members, ensure_ascii=False),
                                                                      "jsonb")}
        self._numbers: dict[str, str] = {}

    def _param(self, name: str) -> str:
        if name not in self._numbers:
            value, cast = self._values[name]
            self.params.append(value)
            self._numbers[name] = f"${len(self.params)}::{cast}"
        return self._numbers[name]

    @property
    def time_zone(self) -> str:
        return self._param("time_zone")

    @property
    def members(self) -> str:
        return self._param("members")


def _spec_column(spec: RecordSpec, column: ExportColumn, sql: _Sql) -> str:
    spec_field = spec.field(column.name)
    if spec_field is None:
        raise CopyRefused(f"{spec.object_type} have no field '{column.name}'")
    e = f"({spec_field.expression(spec.table)})"
    kind = column.kind
    if kind in ("text", "choice"):
        return f"NULLIF({_guard(f'{e}::text')}, '')"
    if kind in ("number", "money"):
        return f"{e}::text"
    if kind == "ref":
        if column.name in MEMBER_COLUMNS:  # the member's email, else the id as text (formula-safe)
            return (f"NULLIF(coalesce({sql.members} ->> {e}::text,"
                    f" CASE WHEN {e} < 0 THEN '''' ELSE '' END || {e}::text), '')")
        return f"{e}::text"
    if kind == "date":
        return f"to_char({e}::timestamp, 'YYYY-MM-DD')"
    if kind == "datetime":
        # FMYYYY: strftime's %Y does not pad years before 1000 either
        return f"to_char({e} AT TIME ZONE {sql.time_zone}, 'FMYYYY-MM-DD HH24:MI:SS')"
    if kind == "bool":
        return f"CASE WHEN {e} THEN 'true' WHEN NOT {e} THEN 'false' END"
    if kind == "tags":  # str(None) for a NULL element, as ", ".join(str(v) ...) writes it
        joined = f"array_to_string({e}, ', ', 'None')"
        return f"NULLIF({_guard(joined)}, '')"
    raise CopyRefused(f"no SQL format for a {kind} column")


def _custom_refs(spec: RecordSpec, column: ExportColumn) -> tuple[str, str, str]:
    """The value as jsonb, as text (->>) and the key, of a custom column."""
    key = column.name[len(CUSTOM_PREFIX):]
    quoted = key.replace("'", "''")
    return f"({spec.table}.custom -> '{quoted}')", f"({spec.table}.custom ->> '{quoted}')", key


def _custom_column(spec: RecordSpec, column: ExportColumn) -> str:
    """A custom value, in the form clean_value stores for its kind (the check of copy_statement
    makes sure of that), as records._value and csv_text print what json.loads gives."""
    j, s, _ = _custom_refs(spec, column)
    kind = column.kind
    if kind in ("text", "choice"):
        return f"NULLIF({_guard(s)}, '')"
    if kind in ("number", "money", "bool"):
        # a number in Decimal's own spelling prints as itself; a JSON boolean's text is true or false
        return s
    if kind == "date":  # as stored; the cast fails on a date that does not exist, as date.fromisoformat does
        return f"CASE WHEN {s}::date IS NOT NULL THEN {s} END"
    if kind == "tags":
        # the jsonb text of a list of strings without escapes is ["a", "b"]: joined with ", " as it
        # is; one with an escaped character goes through jsonb_array_elements_text
        each = (f"(SELECT {_guard('g')} FROM (SELECT string_agg(x, ', ' ORDER BY n) AS g"
                f" FROM jsonb_array_elements_text({j}) WITH ORDINALITY AS a(x, n)) AS tags)")
        joined = f"replace(left(right({s}, -2), -2), '\", \"', ', ')"  # '' from [] and [""]
        quote = "''''"
        return (f"NULLIF(CASE WHEN strpos({s}, '\\') > 0 THEN {each}"
                f" WHEN ascii(substr({s}, 3, 1)) IN ({_GUARDED}) THEN {quote} || {joined} ELSE {joined} END, '')")
    raise CopyRefused(f"no SQL format for a custom {kind} column")


def _custom_suspect(column: ExportColumn, key: str) -> str:
    """A jsonpath predicate true for every value whose JSON type is not the one clean_value
    stores for its kind (numbers and dates are spelled right as well: see `_custom_misspelled`)."""
    k = f'@."{key}"'
    kind = column.kind
    if kind == "bool":
        return f'{k}.type() != "boolean"'
    if kind == "tags":
        return f'{k}.type() != "array" || {k}[*].type() != "string"'
    return f'{k}.type() != "string"'


def _custom_misspelled(spec: RecordSpec, column: ExportColumn) -> str | None:
    """SQL true for a number or date spelled otherwise than clean_value spells it (and for numbers
    in scientific notation, which `_custom_unusual` then tells apart); None for other kinds. A
    regular expression in SQL costs a third of the same in a jsonpath here."""
    _, s, _ = _custom_refs(spec, column)
    if column.kind in ("number", "money"):
        return f"{s} !~ '{_PLAIN_DECIMAL}'"
    if column.kind == "date":
        return f"{s} !~ '{_ISO_DATE}'"
    return None


def _custom_unusual(spec: RecordSpec, column: ExportColumn) -> str:
    """True for a value not in the form clean_value stores for its kind (SQL, exact)."""
    j, s, _ = _custom_refs(spec, column)
    t = f"jsonb_typeof({j})"
    kind = column.kind
    if kind in ("text", "choice"):
        usual = f"{t} = 'string'"
    elif kind in ("number", "money"):
        # str(Decimal) is scientific when the exponent is above 0 or the adjusted exponent below -6
        digits = f"length(replace(split_part(ltrim({s}, '-'), 'E', 1), '.', ''))"
        exponent = f"split_part({s}, 'E', 2)::numeric"
        usual = (f"({t} = 'string' AND ({s} ~ '{_PLAIN_DECIMAL}' OR ({s} ~ '{_SCIENTIFIC_DECIMAL}' AND"
                 f" ({exponent} - ({digits} - 1) > 0 OR {exponent} < -6))))")
    elif kind == "date":
        usual = f"({t} = 'string' AND {s} ~ '{_ISO_DATE}')"
    elif kind == "bool":
        usual = f"{t} = 'boolean'"
    else:  # tags
        usual = f"({t} = 'array' AND NOT jsonb_path_exists({j}, 'strict $[*] ? (@.type() != \"string\")'))"
    return f"NOT ({j} IS NULL OR {usual})"


@dataclass(frozen=True)
class CopyStatement:
    sql: str  # the SELECT inside COPY (...), parameters as $n
    params: list[Any]
    check: str | None  # a SELECT counting the rows that hold a custom value Kith never stores
    check_params: list[Any]


async def copy_statement(session: TenantSession, plan: ExportPlan, time_zone: str) -> CopyStatement:
    """The planned export as one SELECT of CSV text, checked as a page of the list would be (and
    raising as it does). Columns hidden from the role since the plan are empty, as the Python
    writer leaves them (the row it reads no longer holds them)."""
    kind = record_kind(plan.object_type)
    if kind is None:
        raise CopyRefused(f"no list of {plan.object_type}")
    spec = kind.spec
    query = ListQuery(filters=list(plan.query.filters), sort=plan.query.sort, q=plan.query.q,
                      columns=plan.query.columns)
    statement = await list_statement(session, spec, query, with_custom_fields=True)
    hidden = session.policy.hidden_fields(plan.object_type)
    params = list(statement.params)
    members = {str(m.identity_id): safe_text(m.email) for m in await load_members(session)}
    sql = _Sql(params, time_zone, members)
    values: list[str] = []
    suspect: list[str] = []
    unusual: list[str] = []
    misspelled: list[str] = []
    for column in plan.columns:
        spec_field = spec.field(column.name)
        guard = "custom" if column.custom else (spec_field.guarded_by() if spec_field is not None else None)
        if guard is not None and guard in hidden:
            values.append("NULL::text")
        elif column.custom:
            values.append(_custom_column(spec, column))
            suspect.append(_custom_suspect(column, _custom_refs(spec, column)[2]))
            unusual.append(_custom_unusual(spec, column))
            if (spelling := _custom_misspelled(spec, column)) is not None:
                misspelled.append(spelling)
        else:
            values.append(_spec_column(spec, column, sql))
    if len(values) == 1:
        # Python writes a row of one empty field as "" (PostgreSQL would write an empty line)
        values = [f"coalesce({v}, '')" for v in values]
    select = (f"SELECT {', '.join(values)} {statement.from_sql}{statement.where}"  # noqa: S608 - spec SQL only
              f" ORDER BY {statement.order}")
    check = None
    check_params = list(statement.params)
    if unusual:
        # the cheap tests find the few rows worth the exact one: one jsonpath per row for the types,
        # a regular expression for the spelling of numbers and dates
        check_params.append("$ ? (" + " || ".join(f"({p})" for p in suspect) + ")")
        cheap = [f"{spec.table}.custom @? ${len(check_params)}::jsonpath", *misspelled]
        # count(*) rather than EXISTS: every row is read anyway when none is unusual (the rule), and
        # an aggregate may be spread over parallel workers; CASE, or the planner would test the
        # costlier condition first
        check = (f"SELECT count(*) AS unusual {statement.from_sql}{statement.where}"  # noqa: S608 - spec SQL only
                 f" {'AND' if statement.conditions else 'WHERE'} CASE WHEN {' OR '.join(cheap)}"
                 f" THEN {' OR '.join(unusual)} ELSE false END")
    return CopyStatement(select, params, check, check_params)


def _type_name(t: Any) -> str:
    name = "_" + t.name[:-2] if t.name.endswith("[]") else t.name
    return '"{}"."{}"'.format(t.schema.replace('"', '""'), name.replace('"', '""'))


async def inline_parameters(conn: asyncpg.Connection, sql: str, params: Sequence[Any]) -> str:
    """`sql` with its $n replaced by the values as typed literals (COPY takes no parameters).

    asyncpg's own copy_from_query(*args) does this without the types, which can change what
    PostgreSQL makes of an untyped literal; PostgreSQL quotes each value here (quote_literal).
    The statement must hold $n only as parameters, never inside a quoted literal."""
    if not params:
        return sql
    prepared = await conn.prepare(sql)
    types = [_type_name(t) for t in prepared.get_parameters()]
    quoted = await conn.fetchrow(
        "SELECT " + ", ".join(f"quote_literal(${i}::{t}::text)" for i, t in enumerate(types, start=1)), *params)
    assert quoted is not None  # noqa: S101 - a SELECT without FROM returns one row

    def literal(match: re.Match[str]) -> str:
        index = int(match.group(1)) - 1
        value = quoted[index]
        return f"{value if value is not None else 'NULL'}::{types[index]}"

    return re.sub(r"\$(\d+)\b", literal, sql)


# --- bytes ------------------------------------------------------------------------------------


class CsvLines:
    """PostgreSQL's CSV output as Python's csv module writes it: CRLF after each record (an LF
    inside a quoted value stays), and in a one-column file a lone \\. unquoted. Records are
    handed on whole; `rows` counts them."""

    def __init__(self, *, single_column: bool) -> None:
        self.single_column = single_column
        self.rows = 0
        self._tail = b""

    def feed(self, data: bytes) -> bytes:
        data = self._tail + data if self._tail else data
        parts = data.split(b"\n")
        if b'"' not in data or not any(p.count(b'"') & 1 for p in parts):  # no line break inside a value
            records, self._tail = parts[:-1], parts[-1]
        else:
            records, self._tail = self._split_quoted(parts)
        if not records:
            return b""
        if self.single_column and b'"\\."' in data:
            records = [b"\\." if r == b'"\\."' else r for r in records]
        self.rows += len(records)
        return b"\r\n".join(records) + b"\r\n"

    @staticmethod
    def _split_quoted(parts: list[bytes]) -> tuple[list[bytes], bytes]:
        """Records from LF-separated parts, an LF inside quotes (odd quotes so far) kept in the value."""
        records: list[bytes] = []
        current: list[bytes] = []
        inside = False
        for part in parts[:-1]:
            current.append(part)
            if part.count(b'"') & 1:
                inside = not inside
            if not inside:
                records.append(b"\n".join(current))
                current = []
        current.append(parts[-1])
        return records, b"\n".join(current)

    def close(self) -> bytes:
        """What is left after the last line end (nothing, from a complete COPY)."""
        tail, self._tail = self._tail, b""
        return tail


# --- running it -------------------------------------------------------------------------------


class _Fallback:
    """The first item of a COPY that did not start: the Python writer takes over."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


@dataclass
class _Finished:
    rows: int


@dataclass
class _Failed:
    error: BaseException


class _Queue:
    """Chunks handed from the COPY to its consumer through a short queue: COPY waits for a slow
    consumer (a background job's file writes keep up)."""

    def __init__(self) -> None:
        self._items: asyncio.Queue[Any] = asyncio.Queue(maxsize=QUEUED_CHUNKS)

    async def put(self, item: Any) -> None:
        await self._items.put(item)

    async def items(self) -> AsyncIterator[Any]:
        while True:
            item = await self._items.get()
            yield item
            if not isinstance(item, bytes):
                return

    async def close(self) -> None:
        return None


class _Spool:
    """Chunks handed from the COPY to its consumer through a temporary file: the COPY (and its
    transaction, pooled connection and tenant lock) runs at PostgreSQL's pace, never at a slow
    download's, while the consumer reads what is written as it comes. Memory stays flat. The
    file is unlinked at once: only its descriptor reaches it, and nothing is left behind even by
    a process that dies."""

    def __init__(self) -> None:
        self._fd, path = tempfile.mkstemp(suffix=".csv.spool")
        os.unlink(path)
        self._written = 0
        self._end: Any = None
        self._more = asyncio.Event()

    async def put(self, item: Any) -> None:
        if isinstance(item, bytes):
            await asyncio.to_thread(os.pwrite, self._fd, item, self._written)
            self._written += len(item)
        else:
            self._end = item
        self._more.set()

    async def items(self) -> AsyncIterator[Any]:
        offset = 0
        while True:
            if offset < self._written:
                data = await asyncio.to_thread(os.pread, self._fd, min(SPOOL_READ, self._written - offset), offset)
                offset += len(data)
                yield data
                continue
            if self._end is not None:
                yield self._end
                return
            self._more.clear()
            await self._more.wait()

    async def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


async def _produce(actor: Actor, plan: ExportPlan, time_zone: str, channel: _Queue | _Spool,
                   progress: ExportProgress | None) -> None:
    try:
        rows = await _copy(actor, plan, time_zone, channel, progress)
    except asyncio.CancelledError:
        raise
    except CopyRefused as exc:
        await channel.put(_Fallback(str(exc)))
    except BaseException as exc:  # handed to the consumer, which raises it where the Python writer would
        await channel.put(_Failed(exc))
    else:
        await channel.put(_Finished(rows))


async def _copy(actor: Actor, plan: ExportPlan, time_zone: str, channel: _Queue | _Spool,
                progress: ExportProgress | None) -> int:
    lines = CsvLines(single_column=len(plan.columns) == 1)
    # bytes gathered into chunks of CHUNK_BYTES (asyncpg hands over what one read brought, ~40 kB);
    # the last ones are handed over once "<type>.exported" is committed
    held: list[bytes] = []
    size = 0

    async def sink(data: bytes) -> None:
        nonlocal held, size
        converted = lines.feed(data)
        if size >= CHUNK_BYTES:
            await channel.put(b"".join(held))
            held, size = [], 0
            if progress is not None:
                progress.rows = lines.rows
        if converted:
            held.append(converted)
            size += len(converted)

    async with acting_as(actor) as session:
        # the role may have changed since the plan: checked again, as the Python writer does per batch
        session.require(plan.object_type, "export")
        statement = await copy_statement(session, plan, time_zone)
        if statement.check is not None:
            found = await session.tx.execute_query_dict(statement.check, statement.check_params)
            if found[0]["unusual"]:
                raise CopyRefused("custom values Kith does not store itself")
        conn = raw_connection(session.tx)
        sql = await inline_parameters(conn, statement.sql, statement.params)
        status = await conn.copy_from_query(sql, output=sink, format="csv")
        rest = lines.close()
        rows = int(str(status).rsplit(" ", 1)[-1])
        await session.audit(f"{plan.object_type}.exported", plan.object_type, None, exported_entry(plan, rows))
    if size or rest:
        await channel.put(b"".join(held) + rest)
    if progress is not None:
        progress.rows = rows
    return rows


@dataclass
class CopyOutcome:
    """How a CSV export was written: "copy" or "python" (and why), and its rows."""

    method: str = ""
    reason: str = ""
    rows: int = 0


async def copy_chunks(actor: Actor, plan: ExportPlan, time_zone: str, *, spool: bool = False,
                      progress: ExportProgress | None = None, outcome: CopyOutcome | None = None,
                      ) -> AsyncIterator[bytes]:
    """The CSV's rows (no header) as PostgreSQL writes them. Raises CopyRefused before any byte
    when the export needs the Python writer. With `progress`, rows are counted as they pass and
    the COPY stops (its transaction rolls back, nothing more is recorded) once `cancelled` is set.
    `spool`: through a temporary file, so a slow reader never holds the transaction open."""
    channel: _Queue | _Spool = _Spool() if spool else _Queue()
    task = asyncio.get_running_loop().create_task(_produce(actor, plan, time_zone, channel, progress))
    try:
        first = True
        async for item in channel.items():
            if isinstance(item, _Fallback):
                raise CopyRefused(item.reason)
            if first and outcome is not None:
                outcome.method = "copy"
            first = False
            if isinstance(item, _Failed):
                raise item.error
            if isinstance(item, _Finished):
                if outcome is not None:
                    outcome.rows = item.rows
                return
            if progress is not None and progress.cancelled:
                return
            yield item
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await channel.close()
