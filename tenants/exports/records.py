"""Which records and columns an export of a list holds, read page by page.

An export is a list query (or a saved view) run to its end: `plan_export` checks the
permission ('<object type>: export'), the query and the columns, and records the export
("<object type>.export": the query definition, the view, the columns and the format; never a
value) in a short transaction of its own, committed before any data leaves, so an export cut
short is still on record. `export_rows` then reads every page of the query with the list
engine's keyset pagination and yields the rows as typed values; its last transaction records
"<object type>.exported" with the number of rows.

A CSV is written by PostgreSQL instead when it can be (copy_csv.py: one COPY in one
transaction, the same checks, columns and entries); `export_rows` is the way for XLSX, for
CSVs holding custom values only Python prints right, and the reference the COPY is tested
against.

The rows are read in batches of pages, each batch one short transaction of its own (as the
audit log export does). A single REPEATABLE READ snapshot is not possible here: the tenant
scope's entry query is the transaction's first statement, and the isolation level can only be
set before it. Under READ COMMITTED every statement reads its own snapshot, so one long
transaction would be no more consistent than one per batch, while it would hold a connection
(and the tenant's shared lock) for as long as a slow consumer takes. No read entries are
written per page (query_records(audit_reads=False)): the export's two entries record it.
Keyset pagination visits each row at most once in the query's order; a row whose sort value
changes during the export may be missed or seen again, as on any paginated list.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.records.custom import CustomField, load_custom_fields
from kith.tenants.records.kinds import RecordKind, record_kind
from kith.tenants.records.listing import (
    CUSTOM_KINDS,
    CUSTOM_PREFIX,
    MAX_LIMIT,
    ListError,
    ListQuery,
    query_records,
    validate_query,
)
from kith.tenants.records.refusals import RecordsRefusal
from kith.tenants.records.spec import Kind, RecordSpec
from kith.tenants.records.views import ViewDefinition, list_query_of, load_members, visible_view

FORMATS = ("csv", "xlsx")
# An export reads pages far bigger than a list's (100): per query the cost is mostly the round
# trip and the keyset seek, so 2,000 rows a page cut a million-row export's queries twentyfold.
EXPORT_PAGE = 2_000
PAGES_PER_BATCH = 5  # 10,000 rows per short transaction
ALL_COLUMNS = "all"
# ref columns naming a member: exported as the member's email
MEMBER_COLUMNS = ("owner_id", "assignee_id", "created_by_id")


@dataclass(frozen=True)
class ExportColumn:
    """One column of an export: the list field's name, its label (English for spec fields, the
    workspace's own for custom fields) and its kind."""

    name: str
    label: str
    kind: Kind
    custom: bool = False


@dataclass
class ExportPlan:
    object_type: str
    query: ListQuery
    columns: list[ExportColumn]
    fmt: str
    view_id: int | None = None
    definition: dict[str, Any] = field(default_factory=dict)


def _kind(object_type: str) -> RecordKind:
    kind = record_kind(object_type)
    if kind is None:
        raise RecordsRefusal(404, "not_found", f"There is no list of '{object_type}'.")
    return kind


def _column_of(spec: RecordSpec, name: str, custom: Sequence[CustomField]) -> ExportColumn:
    if name.startswith(CUSTOM_PREFIX):
        key = name[len(CUSTOM_PREFIX):]
        found = next(c for c in custom if c.key == key)  # validated by the list engine before
        return ExportColumn(name, found.label, CUSTOM_KINDS[found.kind], custom=True)
    spec_field = spec.field(name)
    if spec_field is None:
        raise ListError("columns", f"{spec.object_type} have no field '{name}'")
    return ExportColumn(name, spec_field.label, spec_field.kind)


def _all_columns(spec: RecordSpec, hidden: frozenset[str], custom: Sequence[CustomField]) -> list[str]:
    names = [f.name for f in spec.fields if f.guarded_by() not in hidden]
    if spec.custom_fields and "custom" not in hidden:
        names += [CUSTOM_PREFIX + c.key for c in custom]
    return names


async def _resolve(session: TenantSession, object_type: str, query: ListQuery, view_id: int | None,
                   all_columns: bool) -> tuple[ListQuery, list[ExportColumn]]:
    """The query to run (the view's, if any) and its columns, checked against the actor's role."""
    spec = _kind(object_type).spec
    session.require(object_type, "export")
    if view_id is not None:
        row = await visible_view(session, view_id)
        if row["object_type"] != object_type:
            raise RecordsRefusal(404, "not_found", "There is no such saved view.")
        raw = row["definition"]
        query = list_query_of(ViewDefinition.model_validate(json.loads(raw) if isinstance(raw, str) else raw or {}))
    custom = await load_custom_fields(session.tx, object_type) if spec.custom_fields else []
    hidden = session.policy.hidden_fields(object_type)
    query = ListQuery(filters=list(query.filters), sort=query.sort, q=query.q, cursor=None, limit=MAX_LIMIT,
                      columns=_all_columns(spec, hidden, custom) if all_columns else query.columns)
    validate_query(spec, query, custom)
    # one row through the engine checks hidden fields in filters, sort and columns the way a list does
    page = await query_records(session, spec, ListQuery(filters=query.filters, sort=query.sort, q=query.q,
                                                        limit=1, columns=query.columns), with_custom_fields=True,
                              audit_reads=False)
    return query, [_column_of(spec, name, custom) for name in page.columns]


async def plan_export(actor: Actor, object_type: str, query: ListQuery, *, fmt: str = "csv",
                      view_id: int | None = None, all_columns: bool = False) -> ExportPlan:
    """Check and record an export of a list (or of the saved view `view_id`) before it streams.

    Raises PermissionDenied without '<object type>: export' (or for a hidden field named in the
    query), ListError for a query the list engine refuses, RecordsRefusal(404) for an unknown
    list or view and RecordsRefusal(422) for an unknown format."""
    if fmt not in FORMATS:
        raise RecordsRefusal(422, "invalid_input", "format must be csv or xlsx.",
                             fields={"format": "format must be csv or xlsx."})
    async with acting_as(actor) as session:
        resolved, columns = await _resolve(session, object_type, query, view_id, all_columns)
        definition = resolved.definition()
        await session.audit(f"{object_type}.export", object_type, None, {
            "format": fmt, "view_id": view_id, "query": definition, "columns": [c.name for c in columns],
        })
    return ExportPlan(object_type, resolved, columns, fmt, view_id, definition)


def _value(column: ExportColumn, row: dict[str, Any], members: dict[int, str]) -> Any:
    """A cell's typed value: Decimal, date, datetime, bool, str or None."""
    if column.custom:
        custom = row.get("custom") or {}
        if isinstance(custom, str):
            custom = json.loads(custom)
        value = custom.get(column.name[len(CUSTOM_PREFIX):]) if isinstance(custom, dict) else None
    else:
        value = row.get(column.name)
    if value is None or value == "" or value == []:
        return None
    if column.kind == "tags":
        return ", ".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)
    if column.kind in ("number", "money"):
        try:
            return value if isinstance(value, Decimal | int) else Decimal(str(value))
        except ArithmeticError:
            return str(value)
    if column.kind == "ref":
        if column.name in MEMBER_COLUMNS:
            return members.get(int(value), str(value))
        return int(value) if isinstance(value, int) else str(value)
    if column.kind == "date" and isinstance(value, str):
        return date.fromisoformat(value)
    if column.kind == "datetime" and isinstance(value, str):
        return datetime.fromisoformat(value)
    if column.kind == "bool":
        return bool(value)
    return value if isinstance(value, date | datetime) else str(value)


def exported_entry(plan: ExportPlan, rows: int) -> dict[str, Any]:
    """The diff of "<object type>.exported": what was exported and how many rows, never a value."""
    return {"format": plan.fmt, "view_id": plan.view_id, "query": plan.definition,
            "columns": [c.name for c in plan.columns], "rows": rows}


async def export_rows(actor: Actor, plan: ExportPlan) -> AsyncIterator[list[Any]]:
    """Every row of the planned export as a list of typed values, in the query's order."""
    spec = _kind(plan.object_type).spec
    query = ListQuery(filters=list(plan.query.filters), sort=plan.query.sort, q=plan.query.q, cursor=None,
                      limit=EXPORT_PAGE, columns=plan.query.columns)
    count = 0
    done = False
    while not done:
        batch: list[list[Any]] = []
        async with acting_as(actor) as session:
            # the role may have changed since the plan; the checks run again in every batch
            session.require(plan.object_type, "export")
            members = {m.identity_id: m.email for m in await load_members(session)}
            for _ in range(PAGES_PER_BATCH):
                page = await query_records(session, spec, query, with_custom_fields=True, audit_reads=False,
                                           max_limit=EXPORT_PAGE)
                batch += [[_value(c, row, members) for c in plan.columns] for row in page.items]
                query.cursor = page.next_cursor
                if page.next_cursor is None:
                    done = True
                    break
            count += len(batch)
            if done:
                await session.audit(f"{plan.object_type}.exported", plan.object_type, None,
                                    exported_entry(plan, count))
        for values in batch:
            yield values
