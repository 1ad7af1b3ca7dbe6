"""The list engine: filters on any field (custom fields too), sort, search and keyset
pagination for every big list, inside the actor's permissions.

A list is a `RecordSpec` plus a `ListQuery`. The engine turns them into one SELECT with
numbered parameters only (field names come from the spec, never from the request), adds the
actor's record scope, refuses filters, sorts and columns on fields hidden from the actor's
role (filtering on a hidden field would reveal it), and pages by keyset on (sort value, id):
no OFFSET, so page 40,000 costs what page 1 costs when the sort has an index.

Query strings (pages and API share them): f=<field>:<op>:<value> (repeatable; custom fields
as custom.<key>; `in` takes values separated by |), sort=<field> or -<field>, q=<text>,
cursor=<next_cursor>, limit=1..100, columns=<field>,<field>.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.rules import PermissionDenied
from kith.platform.access.rules import object_type as registered_type
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.records.custom import CustomField, load_custom_fields
from kith.tenants.records.spec import OPERATORS, FieldSpec, Kind, RecordSpec
from kith.tenants.search.text import short_search_clause

MAX_LIMIT = 100
DEFAULT_LIMIT = 25
MAX_FILTERS = 20
CUSTOM_PREFIX = "custom."
# custom field kinds as list kinds: how they filter and sort
CUSTOM_KINDS: dict[str, Kind] = {
    "text": "text", "long_text": "text", "url": "text", "select": "choice", "multi_select": "tags",
    "number": "number", "currency": "money", "date": "date", "boolean": "bool",
}


class ListError(ValueError):
    """A list query that cannot run; `field` names the query part (filter, sort, cursor...)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(message)


@dataclass
class ListQuery:
    filters: list[tuple[str, str, str]] = field(default_factory=list)
    sort: str | None = None
    q: str = ""
    cursor: str | None = None
    limit: int = DEFAULT_LIMIT
    columns: list[str] | None = None

    def definition(self) -> dict[str, Any]:
        """The query as a saved view stores it (no cursor, no limit)."""
        return {"filters": [list(f) for f in self.filters], "sort": self.sort, "q": self.q, "columns": self.columns}

    def uses_custom_fields(self) -> bool:
        names = [f[0] for f in self.filters] + [(self.sort or "").lstrip("-")] + list(self.columns or [])
        return any(n.startswith(CUSTOM_PREFIX) for n in names)


@dataclass
class RecordPage:
    items: list[dict[str, Any]]
    next_cursor: str | None
    hidden: frozenset[str]
    columns: list[str]
    custom_fields: list[CustomField]


@dataclass(frozen=True)
class _Field:
    """A spec field or a custom field, resolved for one query."""

    name: str
    kind: Kind
    expr: str
    choices: tuple[str, ...]
    guard: str | None
    person: bool
    sortable: bool
    filterable: bool
    nullable: bool
    custom_key: str | None = None
    container: str = ""  # the jsonb column a custom field lives in


def _getlist(params: Any, name: str) -> list[str]:
    if hasattr(params, "getlist"):
        return [str(v) for v in params.getlist(name)]
    value = params.get(name) if isinstance(params, Mapping) else None
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def parse_filter(raw: str) -> tuple[str, str, str]:
    """"industry:eq:Software" -> ("industry", "eq", "Software"); the value may contain colons."""
    parts = raw.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ListError("filter", f"a filter is field:operator:value, not {raw[:80]!r}")
    return (parts[0], parts[1], parts[2] if len(parts) == 3 else "")


def parse_list_query(params: Any, *, default_limit: int = DEFAULT_LIMIT) -> ListQuery:
    """A ListQuery from query-string parameters (Starlette's QueryParams or a mapping)."""
    filters = [parse_filter(raw) for raw in _getlist(params, "f") if raw.strip()]
    if len(filters) > MAX_FILTERS:
        raise ListError("filter", f"at most {MAX_FILTERS} filters")
    limit_raw = (_getlist(params, "limit") or [str(default_limit)])[0]
    if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= MAX_LIMIT:
        raise ListError("limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    columns_raw = (_getlist(params, "columns") or [""])[0]
    return ListQuery(
        filters=filters,
        sort=(_getlist(params, "sort") or [None])[0] or None,
        q=(_getlist(params, "q") or [""])[0].strip()[:200],
        cursor=(_getlist(params, "cursor") or [None])[0] or None,
        limit=int(limit_raw),
        columns=[c.strip() for c in columns_raw.split(",") if c.strip()] or None,
    )


def query_from_definition(definition: Mapping[str, Any], *, limit: int = DEFAULT_LIMIT) -> ListQuery:
    """A ListQuery from a saved view's definition; ListError when its shape is wrong."""
    raw_filters = definition.get("filters") or []
    if not isinstance(raw_filters, list) or not all(
            isinstance(f, list | tuple) and len(f) == 3 and all(isinstance(p, str) for p in f) for f in raw_filters):
        raise ListError("filters", "filters must be a list of [field, operator, value] strings")
    if len(raw_filters) > MAX_FILTERS:
        raise ListError("filters", f"at most {MAX_FILTERS} filters")
    sort, q, columns = definition.get("sort"), definition.get("q") or "", definition.get("columns")
    if sort is not None and not isinstance(sort, str):
        raise ListError("sort", "sort must be a field name, with - for descending")
    if not isinstance(q, str):
        raise ListError("q", "q must be text")
    if columns is not None and (not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)):
        raise ListError("columns", "columns must be a list of field names")
    return ListQuery(filters=[(f[0], f[1], f[2]) for f in raw_filters], sort=sort or None, q=q.strip()[:200],
                     limit=limit, columns=columns or None)


def like_pattern(text: str, *, prefix: bool = False) -> str:
    """`text` as an ILIKE pattern matching it literally anywhere (or at the start)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%" if prefix else f"%{escaped}%"


def _resolve(spec: RecordSpec, name: str, custom: Sequence[CustomField]) -> _Field:
    if name.startswith(CUSTOM_PREFIX):
        key = name[len(CUSTOM_PREFIX):]
        definition = next((c for c in custom if c.key == key), None)
        if definition is None:
            raise ListError("filter", f"there is no custom field '{key}' on {spec.object_type}")
        kind = CUSTOM_KINDS[definition.kind]
        ref = f"{spec.table}.custom"
        expr = {
            "number": f"(({ref}->>'{key}')::numeric)", "money": f"(({ref}->>'{key}')::numeric)",
            "date": f"(({ref}->>'{key}')::date)", "bool": f"(({ref}->>'{key}')::boolean)",
            "tags": f"({ref}->'{key}')",
        }.get(kind, f"({ref}->>'{key}')")
        return _Field(name, kind, expr, definition.options, "custom", False, kind != "tags", True, True, key, ref)
    spec_field: FieldSpec | None = spec.field(name)
    if spec_field is None:
        raise ListError("filter", f"{spec.object_type} have no field '{name}'")
    return _Field(name, spec_field.kind, spec_field.expression(spec.table), spec_field.choices,
                  spec_field.guarded_by(), spec_field.person, spec_field.sortable, spec_field.filterable,
                  spec_field.may_be_null())


def _guard(session: TenantSession, spec: RecordSpec, f: _Field, hidden: frozenset[str]) -> None:
    if f.guard is not None and f.guard in hidden:
        raise PermissionDenied.hidden_field(session.policy.role.name, spec.object_type, f.guard)


class _Params:
    def __init__(self, initial: Iterable[Any] = ()) -> None:
        self.values: list[Any] = list(initial)

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _typed(f: _Field, raw: str, session: TenantSession, part: str = "filter") -> Any:
    """A filter or cursor value as the parameter type of the field's kind."""
    text = raw.strip()
    try:
        if f.kind in ("number", "money"):
            number = Decimal(text)
            if not number.is_finite():
                raise InvalidOperation
            return number
        if f.kind == "date":
            return date.fromisoformat(text)
        if f.kind == "datetime":
            if len(text) == 10:
                return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
            moment = datetime.fromisoformat(text)
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        if f.kind == "bool":
            if text.lower() not in ("true", "false"):
                raise ValueError
            return text.lower() == "true"
        if f.kind == "ref":
            if f.person and text == "me":
                return session.actor.identity_id or 0
            if not text.isdigit():
                raise ValueError
            return int(text)
    except (ValueError, InvalidOperation):
        expected = {"number": "a number", "money": "an amount", "date": "a date like 2026-11-23",
                    "datetime": "a date or an ISO 8601 time", "bool": "true or false",
                    "ref": "an id" + (" or me" if f.person else "")}[f.kind]
        raise ListError(part, f"{f.name}: {raw[:80]!r} is not {expected}") from None
    if f.kind == "choice" and f.choices and text not in f.choices:
        raise ListError(part, f"{f.name}: {raw[:80]!r} is not one of {', '.join(f.choices)}")
    return text


def _condition(f: _Field, op: str, raw: str, session: TenantSession, p: _Params) -> str:
    if op not in OPERATORS[f.kind]:
        raise ListError("filter", f"{f.name} takes the operators {', '.join(OPERATORS[f.kind])}, not '{op}'")
    e = f.expr
    if op in ("empty", "notempty"):
        if f.kind == "tags":
            test = f"(coalesce(cardinality({e}), 0) = 0)" if f.custom_key is None else \
                f"(coalesce(jsonb_array_length({e}), 0) = 0)"
        elif f.kind in ("text", "choice"):
            test = f"(coalesce({e}, '') = '')"
        else:
            test = f"({e} IS NULL)"
        return test if op == "empty" else f"(NOT {test})"
    if f.kind == "tags":  # has
        if f.custom_key is not None:  # the GIN index on custom answers containment
            return f"({f.container} @> {p.add(json.dumps({f.custom_key: [raw.strip()]}))}::jsonb)"
        return f"({e} @> ARRAY[{p.add(raw.strip())}]::text[])"
    if op == "in":
        values = [v for v in raw.split("|") if v.strip()]
        if not values:
            raise ListError("filter", f"{f.name}: in takes values separated by |")
        typed = [_typed(f, v, session) for v in values]
        cast = "bigint[]" if f.kind == "ref" else "text[]"
        return f"({e} = ANY({p.add(typed)}::{cast}))"
    value = _typed(f, raw, session)
    if f.custom_key is not None and op == "eq" and f.kind in ("choice", "bool"):
        return f"({f.container} @> {p.add(json.dumps({f.custom_key: value}))}::jsonb)"
    if f.kind == "text":
        if op == "contains":
            return f"({e} ILIKE {p.add(like_pattern(value))})"
        if op == "starts":
            return f"({e} ILIKE {p.add(like_pattern(value, prefix=True))})"
        if op == "eq":
            return f"(lower({e}) = lower({p.add(value)}))"
        return f"(lower(coalesce({e}, '')) <> lower({p.add(value)}))"
    symbol = {"eq": "=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}.get(op)
    if symbol:
        return f"({e} {symbol} {p.add(value)})"
    return f"({e} IS DISTINCT FROM {p.add(value)})"  # ne


def _sort_expr(f: _Field) -> str:
    return f"lower({f.expr})" if f.kind == "text" else f.expr


def _encode_cursor(value: Any, record_id: int) -> str:
    if isinstance(value, datetime | date | Decimal):
        value = value.isoformat() if not isinstance(value, Decimal) else str(value)
    raw = json.dumps([value, record_id], separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[Any, int]:
    try:
        value, record_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(record_id, int):
            raise ValueError
        return value, record_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ListError("cursor", "cursor must be the next_cursor value of a previous page") from None


def _after(f: _Field, descending: bool, cursor: str, session: TenantSession, p: _Params, id_expr: str) -> str:
    """Rows after the cursor's row in ORDER BY expr [DESC], id [DESC] (NULLs last ascending,
    first descending: PostgreSQL's order)."""
    raw, last_id = _decode_cursor(cursor)
    e = _sort_expr(f)
    cmp = "<" if descending else ">"
    if raw is None:
        if not f.nullable:
            raise ListError("cursor", "cursor must be the next_cursor value of a previous page")
        return f"({e} IS NULL AND {id_expr} {cmp} {p.add(last_id)})" if not descending else \
            f"(({e} IS NULL AND {id_expr} < {p.add(last_id)}) OR {e} IS NOT NULL)"
    if f.kind == "text" and isinstance(raw, str):
        # the row's own text, lowered by PostgreSQL as the ORDER BY is (Python's lower() differs
        # for a few letters: İ)
        pv = f"lower({p.add(raw)}::text)"
    else:
        pv = p.add(_typed(f, str(raw).lower() if f.kind == "bool" else str(raw), session, "cursor"))
    pid = p.add(last_id)
    keyset = f"(({e}, {id_expr}) {cmp} ({pv}, {pid}))"
    if f.nullable and not descending:
        return f"({keyset} OR {e} IS NULL)"
    return keyset


def validate_query(spec: RecordSpec, query: ListQuery, custom: Sequence[CustomField]) -> None:
    """Check a query's fields and operators against the spec, without permissions (saved views)."""
    for name, op, _value in query.filters:
        f = _resolve(spec, name, custom)
        if not f.filterable:
            raise ListError("filter", f"{name} cannot be filtered on")
        if op not in OPERATORS[f.kind]:
            raise ListError("filter", f"{name} takes the operators {', '.join(OPERATORS[f.kind])}, not '{op}'")
    if query.sort:
        f = _resolve(spec, query.sort.lstrip("-"), custom)
        if not f.sortable:
            raise ListError("sort", f"{f.name} cannot be sorted on")
    for column in query.columns or []:
        _resolve(spec, column, custom)


def present_rows(session: TenantSession, spec: RecordSpec, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as the actor may see them: hidden fields (and display fields guarded by them) dropped."""
    hidden = session.policy.hidden_fields(spec.object_type)
    if spec.present is not None:
        rows = [spec.present(session, row) for row in rows]
    if not hidden:  # the common case: nothing to drop, and this runs for every row of every page
        return list(rows)
    dropped = hidden | {f.name for f in spec.fields if f.guarded_by() in hidden}
    return [{k: v for k, v in row.items() if k not in dropped} for row in rows]


def present_row(session: TenantSession, spec: RecordSpec, row: dict[str, Any]) -> dict[str, Any]:
    """One row as the actor may see it (see present_rows)."""
    return present_rows(session, spec, [row])[0]


async def audit_sensitive_reads(session: TenantSession, object_type: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Record that sensitive values among `rows` (as returned) were shown: one entry per page."""
    declared = registered_type(object_type)
    if declared is None or not declared.sensitive:
        return
    fields = [f for f in declared.sensitive if any(row.get(f) for row in rows)]
    ids = [row["id"] for row in rows if any(row.get(f) for f in fields)]
    await session.audit_read(object_type, ids, fields, listing=True)


@dataclass
class _Statement:
    """A list query turned into SQL, before its cursor and LIMIT."""

    custom: list[CustomField]
    hidden: frozenset[str]
    p: _Params
    conditions: list[str]
    sort_field: _Field
    descending: bool
    id_expr: str


async def _statement(session: TenantSession, spec: RecordSpec, query: ListQuery, where: Sequence[str],
                     params: Sequence[Any], scoped: bool, with_custom_fields: bool) -> _Statement:
    hidden = session.policy.hidden_fields(spec.object_type)
    custom: list[CustomField] = []
    if spec.custom_fields and (with_custom_fields or query.uses_custom_fields()):
        custom = await load_custom_fields(session.tx, spec.object_type)
    p = _Params(params)
    conditions = [f"({w})" for w in where]
    conditions += _scope_and_filters(session, spec, query.filters, custom, hidden, p, scoped)
    if query.q:
        searched = [spec.field(n) for n in spec.searched]
        visible = [s for s in searched if s is not None and s.guarded_by() not in hidden]
        # a query too short for trigrams goes through the short-query indexes (see search/text.py)
        short = short_search_clause(spec.table, query.q, tuple(s.name for s in visible), p.add)
        pattern = p.add(like_pattern(query.q)) if short is None else ""
        if short is not None:
            conditions.append(f"({short})")
        elif len(visible) == len(spec.searched):
            conditions.append(f"({spec.search} ILIKE {pattern})")
        elif visible:  # a hidden field must not be matched, or search would reveal it
            conditions.append("(" + " OR ".join(f"{s.expression(spec.table)} ILIKE {pattern}" for s in visible) + ")")
        else:
            conditions.append("false")
    sort = query.sort or spec.default_sort
    descending = sort.startswith("-")
    sort_field = _resolve(spec, sort.lstrip("-"), custom) if sort.lstrip("-") != "id" else \
        _Field("id", "ref", f"{spec.table}.id", (), None, False, True, False, False)
    if not sort_field.sortable:
        raise ListError("sort", f"{sort_field.name} cannot be sorted on")
    _guard(session, spec, sort_field, hidden)
    return _Statement(custom, hidden, p, conditions, sort_field, descending, f"{spec.table}.id")


def _order(statement: _Statement) -> str:
    direction = " DESC" if statement.descending else ""
    if statement.sort_field.name == "id":
        return f"{statement.id_expr}{direction}"
    return f"{_sort_expr(statement.sort_field)}{direction}, {statement.id_expr}{direction}"


async def query_records(
    session: TenantSession,
    spec: RecordSpec,
    query: ListQuery,
    *,
    where: Sequence[str] = (),
    params: Sequence[Any] = (),
    scoped: bool = True,
    with_custom_fields: bool = False,
    audit_reads: bool = True,
    max_limit: int = MAX_LIMIT,
) -> RecordPage:
    """One page of `spec`'s records inside `session` (permission 'view' is the caller's check).

    `where` adds conditions of the caller's own with `params` as their $1..$n; `scoped=False`
    lists records outside the actor's owner scope (the public pool: records nobody owns).
    `audit_reads=False` is for callers that record the disclosure themselves (an export writes
    one entry for the whole file instead of one per page). `max_limit` lets Kith's own readers of
    whole lists (exports) take bigger pages than people and API clients may ask for.
    """
    st = await _statement(session, spec, query, where, params, scoped, with_custom_fields)
    p, conditions, sort_field = st.p, st.conditions, st.sort_field
    if query.cursor:
        conditions.append(_after(sort_field, st.descending, query.cursor, session, p, st.id_expr))
    columns = _columns(session, spec, query, st.custom, st.hidden)
    limit = max(1, min(query.limit, max_limit))
    sql = (f"{spec.select_sql} {spec.from_sql}" + (" WHERE " + " AND ".join(conditions) if conditions else "")
           + f" ORDER BY {_order(st)} LIMIT {p.add(limit + 1)}")
    rows = await session.tx.execute_query_dict(sql, p.values)
    items = present_rows(session, spec, rows[:limit])
    if audit_reads:
        await audit_sensitive_reads(session, spec.object_type, items)
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        sort_value = last["id"] if sort_field.name == "id" else _cursor_value(sort_field, last)
        next_cursor = _encode_cursor(sort_value, int(last["id"]))
    return RecordPage(items=items, next_cursor=next_cursor, hidden=st.hidden, columns=columns,
                      custom_fields=st.custom)


@dataclass(frozen=True)
class ListStatement:
    """A whole list query as SQL for statements other than a page (an export's COPY): the spec's
    FROM clause, the WHERE conditions (record scope, filters, search) with their parameters, and
    the ORDER BY a page reads by (sort value, then id). No cursor, no LIMIT."""

    from_sql: str
    conditions: list[str]
    params: list[Any]
    order: str
    columns: list[str]
    custom_fields: list[CustomField]

    @property
    def where(self) -> str:
        return " WHERE " + " AND ".join(self.conditions) if self.conditions else ""


async def list_statement(session: TenantSession, spec: RecordSpec, query: ListQuery, *,
                         with_custom_fields: bool = False) -> ListStatement:
    """The SQL `query_records` runs for `query`, every page at once: the same checks (unknown and
    hidden fields, bad values, the record scope) and the same conditions, parameters and order.
    The query's cursor and limit are ignored."""
    st = await _statement(session, spec, query, (), (), True, with_custom_fields)
    columns = _columns(session, spec, query, st.custom, st.hidden)
    return ListStatement(spec.from_sql, st.conditions, list(st.p.values), _order(st), columns, st.custom)


def _scope_and_filters(session: TenantSession, spec: RecordSpec, filters: Sequence[tuple[str, str, str]],
                       custom: Sequence[CustomField], hidden: frozenset[str], p: _Params, scoped: bool) -> list[str]:
    conditions: list[str] = []
    owners = session.policy.owner_ids(spec.object_type) if scoped and spec.owner_field else None
    if owners is not None:
        conditions.append(f"{spec.table}.{spec.owner_field} = ANY({p.add(sorted(owners))}::bigint[])")
    for name, op, value in filters:
        f = _resolve(spec, name, custom)
        if not f.filterable:
            raise ListError("filter", f"{name} cannot be filtered on")
        _guard(session, spec, f, hidden)
        conditions.append(_condition(f, op, value, session, p))
    return conditions


async def filter_conditions(session: TenantSession, spec: RecordSpec, filters: Sequence[tuple[str, str, str]], *,
                            params: Sequence[Any] = (), scoped: bool = True) -> tuple[list[str], list[Any]]:
    """The WHERE conditions of `filters` on `spec`'s table (with the actor's record scope unless
    scoped=False), and their parameters after `params`, for statements other than a list page
    (a segment's count, the recipients a campaign freezes). The same checks as a list: unknown
    fields, hidden fields and bad values are refused."""
    custom = await load_custom_fields(session.tx, spec.object_type) if spec.custom_fields else []
    p = _Params(params)
    conditions = _scope_and_filters(session, spec, filters, custom, session.policy.hidden_fields(spec.object_type),
                                    p, scoped)
    return conditions, list(p.values)


def _cursor_value(f: _Field, row: Mapping[str, Any]) -> Any:
    if f.custom_key is not None:
        custom = row.get("custom") or {}
        if isinstance(custom, str):
            custom = json.loads(custom)
        value = custom.get(f.custom_key)
    else:
        value = row.get(f.name)
    return value  # text as it is: the next page's condition lowers it in SQL


def _columns(session: TenantSession, spec: RecordSpec, query: ListQuery, custom: Sequence[CustomField],
             hidden: frozenset[str]) -> list[str]:
    if not query.columns:
        return [c for c in spec.default_columns if (spec.field(c) is None or spec.field(c).guarded_by() not in hidden)]
    for name in query.columns:
        try:
            f = _resolve(spec, name, custom)
        except ListError as exc:
            raise ListError("columns", exc.message) from None
        _guard(session, spec, f, hidden)
    return list(dict.fromkeys(query.columns))


async def list_records(actor: Actor, spec: RecordSpec, query: ListQuery, *, with_custom_fields: bool = False
                       ) -> RecordPage:
    """One page of `spec`'s records the actor may see (needs '<object type>: view')."""
    async with acting_as(actor) as session:
        session.require(spec.object_type, "view")
        return await query_records(session, spec, query, with_custom_fields=with_custom_fields)
