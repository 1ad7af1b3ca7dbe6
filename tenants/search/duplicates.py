"""Possible duplicates: contacts sharing an email, a phone number or a name at the same company,
and companies sharing a domain or a name.

Matching is on normalized values, each through an index of tenant migrations 0007/0009:
lower(email), the digits of the phone, lower(name) with lower(company_name) or the same
company_id; for companies lower(domain) and lower(name). Only records in the actor's scope are
compared, and a reason resting on a field hidden from the actor's role is never used (it would
tell the hidden value).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.search.records import kind_of, load_one, load_rows, scope_sql, shown

MAX_CANDIDATES = 50
GROUP_PAGE = 50
GROUP_MEMBERS = 5  # records shown per group
MIN_PHONE_DIGITS = 5
PHONE_DIGITS = "regexp_replace(phone, '[^0-9]', '', 'g')"


@dataclass(frozen=True)
class Reason:
    key: str
    fields: tuple[str, ...]  # the fields it compares (all must be visible)
    group_key: tuple[str, ...]  # the grouped expressions, in the order of their index
    group_where: str  # which rows can have a duplicate by this reason


REASONS: dict[str, tuple[Reason, ...]] = {
    "contacts": (
        Reason("email", ("email",), ("lower(email)",), "email <> ''"),
        # a few digits ("000") say nothing about a person
        Reason("phone", ("phone",), (PHONE_DIGITS,), f"phone <> '' AND length({PHONE_DIGITS}) >= {MIN_PHONE_DIGITS}"),
        Reason("name_company", ("name", "company_name"), ("lower(name)", "lower(company_name)"),
               "company_name <> ''"),
    ),
    "companies": (
        Reason("domain", ("domain",), ("lower(domain)",), "domain <> ''"),
        Reason("name", ("name",), ("lower(name)",), "true"),
    ),
}


class DuplicateInputError(ValueError):
    """A parameter of the duplicates list that cannot be used; `field` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


@dataclass
class Candidate:
    record: dict[str, Any]
    reasons: list[str]


@dataclass
class DuplicateGroup:
    reason: str
    key: list[str]
    count: int
    records: list[dict[str, Any]]


@dataclass
class GroupPage:
    object_type: str
    reason: str
    reasons: list[str]  # the reasons the actor may use
    groups: list[DuplicateGroup] = field(default_factory=list)
    next_cursor: str | None = None


def usable_reasons(session: TenantSession, object_type: str) -> list[Reason]:
    """The reasons whose fields the actor may all see."""
    hidden = session.policy.hidden_fields(object_type)
    return [r for r in REASONS[object_type] if not set(r.fields) & hidden]


async def _audit_shown(session: TenantSession, object_type: str, rows: list[dict[str, Any]], *, listing: bool) -> None:
    if object_type != "contacts" or not rows:
        return
    fields = [f for f in ("email", "phone") if any(r.get(f) for r in rows)]
    ids = [r["id"] for r in rows if any(r.get(f) for f in fields)]
    if ids:
        await session.audit_read("contacts", ids, fields, listing=listing)


def _conditions(object_type: str, row: dict[str, Any], usable: list[Reason], params: list[Any]) -> dict[str, str]:
    """reason -> the SQL condition finding rows that share it with `row` (only reasons `row` has a value for)."""

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    names = {r.key for r in usable}
    conds: dict[str, str] = {}
    if object_type == "contacts":
        if "email" in names and row["email"]:
            conds["email"] = f"(email <> '' AND lower(email) = lower({param(row['email'])}))"
        digits = "".join(ch for ch in row["phone"] if ch.isdigit())
        if "phone" in names and len(digits) >= MIN_PHONE_DIGITS:
            conds["phone"] = f"(phone <> '' AND {PHONE_DIGITS} = {param(digits)})"
        if "name_company" in names:
            same: list[str] = []
            if row["company_name"]:
                same.append(f"(company_name <> '' AND lower(company_name) = lower({param(row['company_name'])}))")
            if row.get("company_id") is not None:
                same.append(f"company_id = {param(row['company_id'])}")
            if same:
                conds["name_company"] = f"(lower(name) = lower({param(row['name'])}) AND ({' OR '.join(same)}))"
    else:
        if "domain" in names and row["domain"]:
            conds["domain"] = f"(domain <> '' AND lower(domain) = lower({param(row['domain'])}))"
        if "name" in names:
            conds["name"] = f"lower(name) = lower({param(row['name'])})"
    return conds


async def duplicates_in(session: TenantSession, object_type: str, record_id: int) -> list[Candidate]:
    """The possible duplicates of one record inside an existing session, newest first."""
    kind_of(object_type)
    session.require(object_type, "view")
    row = await load_one(session, object_type, record_id)
    params: list[Any] = [record_id]
    conds = _conditions(object_type, row, usable_reasons(session, object_type), params)
    if not conds:
        return []
    scope = scope_sql(session, object_type, params)
    flags = ", ".join(f"{cond} AS by_{key}" for key, cond in conds.items())
    rows = await session.tx.execute_query_dict(
        f"SELECT *, {flags} FROM {object_type} WHERE id <> $1 AND ({' OR '.join(conds.values())})"
        + (f" AND {scope}" if scope else "") + f" ORDER BY id DESC LIMIT {MAX_CANDIDATES}", params)  # noqa: S608
    found = [Candidate(shown(session, object_type, r), [k for k in conds if r[f"by_{k}"]]) for r in rows]
    await _audit_shown(session, object_type, [c.record for c in found], listing=True)
    return found


async def find_duplicates(actor: Actor, object_type: str, record_id: int) -> list[Candidate]:
    """The records that may be duplicates of `record_id` ("contacts" or "companies"), each with the
    reasons ("email", "phone", "name_company"; "domain", "name"). RecordNotFound when the record is
    missing or out of the actor's scope."""
    async with acting_as(actor) as session:
        return await duplicates_in(session, object_type, record_id)


def encode_cursor(key: list[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, ensure_ascii=False).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[str]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        key = None
    if not isinstance(key, list) or len(key) != size or not all(isinstance(k, str) for k in key):
        raise DuplicateInputError("cursor", "cursor must be the next_cursor value of a previous page")
    return key


async def duplicate_groups(actor: Actor, object_type: str, reason: str | None = None, *, cursor: str | None = None,
                           limit: int = GROUP_PAGE) -> GroupPage:
    """A page of groups of records sharing `reason`'s value across the workspace (the actor's scope),
    in the order of that value; pass next_cursor as `cursor` for the next page.

    Each page is one GROUP BY ... HAVING count(*) > 1 ... LIMIT over the reason's index, in
    index order, so a page costs at most one pass over that index, and usually far less."""
    kind_of(object_type)
    limit = max(1, min(limit, GROUP_PAGE))
    async with acting_as(actor) as session:
        session.require(object_type, "view")
        usable = usable_reasons(session, object_type)
        page = GroupPage(object_type, reason or "", [r.key for r in usable])
        if not usable:
            return page
        chosen = next((r for r in usable if r.key == reason), None) if reason else usable[0]
        if chosen is None:
            raise DuplicateInputError("reason", f"reason must be one of {', '.join(page.reasons)}")
        page.reason = chosen.key
        params: list[Any] = []
        where = [chosen.group_where]
        keys = ", ".join(chosen.group_key)
        if cursor:
            after = decode_cursor(cursor, len(chosen.group_key))
            marks = []
            for value in after:
                params.append(value)
                marks.append(f"${len(params)}")
            where.append(f"({keys}) > ({', '.join(marks)})" if len(marks) > 1 else f"{keys} > {marks[0]}")
        scope = scope_sql(session, object_type, params)
        if scope:
            where.append(scope)
        labels = ", ".join(f"{expr} AS k{i}" for i, expr in enumerate(chosen.group_key))
        rows = await session.tx.execute_query_dict(
            f"SELECT {labels}, count(*) AS n, (array_agg(id ORDER BY id))[1:{GROUP_MEMBERS}] AS ids"
            f" FROM {object_type} WHERE {' AND '.join(where)} GROUP BY {keys} HAVING count(*) > 1"
            f" ORDER BY {keys} LIMIT {limit + 1}", params)  # noqa: S608 - fixed names
        members = await load_rows(session, object_type, [i for r in rows[:limit] for i in r["ids"]])
        for r in rows[:limit]:
            records = [shown(session, object_type, members[i]) for i in r["ids"] if i in members]
            key = [str(r[f"k{i}"]) for i in range(len(chosen.group_key))]
            page.groups.append(DuplicateGroup(chosen.key, key, int(r["n"]), records))
        if len(rows) > limit:
            last = rows[limit - 1]
            page.next_cursor = encode_cursor([str(last[f"k{i}"]) for i in range(len(chosen.group_key))])
        await _audit_shown(session, object_type, [rec for g in page.groups for rec in g.records], listing=True)
        return page
