"""Global search: one query across companies, contacts, leads and deals, Chinese included.

Each kind of record is searched only when the actor may view it, inside that kind's record
scope (own, team, all), and fields hidden from the actor's role are neither matched nor
returned. Results come grouped by kind, at most `limit` each: names equal to or starting with
the query first (exact ones first), then other matches, newest first.

Which index serves a query depends on its length in characters (measured on 1,000,000
contacts, see tenants/migrations/0009_search.sql):
- 3 or more: the trigram indexes (`*_search_idx`, ILIKE '%q%'); a query of phone characters
  ("138 0013 8000") is matched against the reversed digits of stored numbers through a btree
  (`*_phone_suffix_idx`), so "+86 138 0013 8000" is found by its last digits whatever the spacing;
- 2 (a Chinese given name or surname + name: 张伟, 北京, 科技): trigrams cannot serve it, so a
  GIN index of each name's character pairs (`kith_bigrams`) does, over names and company names;
- 1: names starting with it, through a btree prefix index (`*_name_prefix_idx`), as are the
  exact and prefix matches of every query.

Newest-first with LIMIT is the classic trap of substring search: a planner that bets on walking
the primary key backwards stalls on a term that is rare (or absent from the actor's scope),
while an index bitmap is slow for a term half the table contains. So matches are first looked
for among the newest WINDOW records of the scope (cheap, enough for common terms), and only
when those do not fill the page through the index bitmap alone (cheap for rare terms, because
a term missing from the newest records is rare). Every search transaction plans each statement
for its actual values (plan_cache_mode), so prefix patterns and bigram arrays reach the index.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.search.text import (
    clean_query,
    contains_pattern,
    only_digits,
    phone_digits,
    phone_suffix_pattern,
    prefix_pattern,
)

DEFAULT_LIMIT = 5
PAGE_LIMIT = 20
MAX_LIMIT = 50
# how many of the newest records of the scope are searched before the index bitmap is used: the
# newest records of the whole table lie together on disk, those of one owner are spread out
WINDOW = 2000
SCOPED_WINDOW = 500
# the digits of a phone number read backwards: its btree index (migration 0009) finds numbers by
# their last digits, which is how people type them ("138 0013 8000", "8000", "010 1234 5678")
# (phone numbers hold only digits and + ( ) - . and spaces: translate drops those, far cheaper than a regexp)
PHONE_SUFFIX = "reverse(translate(phone, ' +()-.', '')) COLLATE \"C\""

Fetch = Callable[[str, list[Any]], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True)
class SearchType:
    """How one kind of record is searched: its index expressions (exactly as in the migrations)
    and the columns a hit carries."""

    object_type: str
    searched: tuple[str, ...]  # fields matched by queries of 3 characters or more
    indexed: str  # the trigram index's expression
    indexed_fields: tuple[str, ...]  # the fields concatenated in `indexed`
    short: tuple[str, ...]  # fields matched by 2-character queries
    short_indexed: str  # the bigram index's expression over `short`
    phone: bool  # whether the digits of `phone` are searched
    columns: tuple[str, ...]


TYPES: dict[str, SearchType] = {
    "companies": SearchType(
        "companies", ("name", "domain", "phone"), "(name || ' ' || domain || ' ' || phone)",
        ("name", "domain", "phone"), ("name",),
        "kith_bigrams(name)", True, ("id", "name", "domain", "phone", "city", "owner_id", "created_at")),
    "contacts": SearchType(
        "contacts", ("name", "email", "phone", "company_name"),
        "(name || ' ' || email || ' ' || phone || ' ' || company_name)", ("name", "email", "phone", "company_name"),
        ("name", "company_name"), "kith_bigrams(name || ' ' || company_name)", True,
        ("id", "name", "email", "phone", "company_name", "company_id", "owner_id", "created_at")),
    "leads": SearchType(
        "leads", ("name", "email", "phone", "company_name"),
        "(name || ' ' || email || ' ' || phone || ' ' || company_name)", ("name", "email", "phone", "company_name"),
        ("name", "company_name"), "kith_bigrams(name || ' ' || company_name)", True,
        ("id", "name", "email", "phone", "company_name", "status", "owner_id", "created_at")),
    "deals": SearchType(
        "deals", ("name",), "name", ("name",), ("name",), "kith_bigrams(name)", False,
        ("id", "name", "amount", "currency", "company_id", "owner_id", "created_at")),
}
# company names as deals are found by them: only the name, through the companies' indexes
COMPANY_NAMES = SearchType("companies", ("name",), "(name || ' ' || domain || ' ' || phone)",
                           ("name", "domain", "phone"), ("name",), "kith_bigrams(name)", False, ("id",))
SENSITIVE_TYPES = ("contacts", "leads")


class SearchInputError(ValueError):
    """A search parameter that cannot be used; `field` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


@dataclass
class SearchGroup:
    object_type: str
    items: list[dict[str, Any]]
    has_more: bool


@dataclass
class SearchResults:
    q: str
    groups: list[SearchGroup] = field(default_factory=list)

    def group(self, object_type: str) -> SearchGroup | None:
        return next((g for g in self.groups if g.object_type == object_type), None)


def parse_types(raw: str | Iterable[str] | None) -> tuple[str, ...]:
    """The kinds to search, in display order: all when `raw` is empty, else the comma-separated names."""
    if raw is None or raw == "":
        return tuple(TYPES)
    names = [n.strip() for n in raw.split(",")] if isinstance(raw, str) else [str(n) for n in raw]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in TYPES]
    if unknown:
        raise SearchInputError("types", f"unknown type {unknown[0]!r}; use any of {', '.join(TYPES)}")
    return tuple(t for t in TYPES if t in names)


def _param(params: list[Any], value: Any) -> str:
    params.append(value)
    return f"${len(params)}"


def scope_clause(owners: frozenset[int] | None, params: list[Any]) -> str | None:
    """`owner_id` within the actor's record scope (None: every record)."""
    if owners is None:
        return None
    ids = sorted(owners)
    if len(ids) == 1:  # an equality walks the (owner_id, id) index newest first
        return f"owner_id = {_param(params, ids[0])}"
    return f"owner_id = ANY({_param(params, ids)}::bigint[])"


def match_clause(spec: SearchType, q: str, hidden: frozenset[str], params: list[Any]) -> str | None:
    """The condition matching `q` anywhere in the visible searched fields, or None when no field
    can be matched (all hidden, or a 1-character query: see prefix_clause)."""
    if len(q) >= 3:
        visible = [f for f in spec.searched if f not in hidden]
        digits = phone_digits(q) if spec.phone and "phone" in visible else None
        # "138 0013 8000" is a phone number; "2024" may also be part of an email or a name
        text_fields = visible if digits is None or only_digits(q) else []
        conds: list[str] = []
        if text_fields:
            p = _param(params, contains_pattern(q))
            if tuple(text_fields) == spec.indexed_fields:
                conds.append(f"{spec.indexed} ILIKE {p}")
            else:  # the index narrows, the fields decide: a hidden field must not be matched
                fields = " OR ".join(f"{f} ILIKE {p}" for f in text_fields)
                conds.append(f"({spec.indexed} ILIKE {p} AND ({fields}))")
        if digits:
            conds.append(f"(phone <> '' AND {PHONE_SUFFIX} LIKE {_param(params, phone_suffix_pattern(digits))})")
        return "(" + " OR ".join(conds) + ")" if conds else None
    if len(q) == 2:
        visible = [f for f in spec.short if f not in hidden]
        if not visible:
            return None
        pair = _param(params, q)
        p = _param(params, contains_pattern(q))
        fields = " OR ".join(f"{f} ILIKE {p}" for f in visible)
        return f"({spec.short_indexed} @> ARRAY[lower({pair})] AND ({fields}))"
    return None


def prefix_clause(q: str, hidden: frozenset[str], params: list[Any]) -> str | None:
    """Names equal to or starting with `q` (the btree prefix index), or None when names are hidden."""
    if "name" in hidden:
        return None
    return f"lower(name) COLLATE \"C\" LIKE lower({_param(params, prefix_pattern(q))})"


def _where(*conds: str | None) -> str:
    kept = [c for c in conds if c]
    return " WHERE " + " AND ".join(kept) if kept else ""


async def find(
    fetch: Fetch,
    spec: SearchType,
    q: str,
    limit: int,
    *,
    hidden: frozenset[str] = frozenset(),
    owners: frozenset[int] | None = None,
    company_hidden: frozenset[str] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """The hits of one kind of record, ranked, and whether there are more than `limit`.

    `fetch(sql, params)` runs a statement in the caller's transaction. For deals,
    `company_hidden` (the company fields hidden from the actor, None when companies may not be
    viewed) decides whether deals are also found by their company's name."""
    if owners is not None and not owners:
        return [], False
    table, cols = spec.object_type, ", ".join(spec.columns)
    wanted = limit + 1
    params: list[Any] = []
    prefix = prefix_clause(q, hidden, params)
    ranked: list[dict[str, Any]] = []
    if prefix:
        scope = scope_clause(owners, params)
        ranked = await fetch(
            f"SELECT {cols} FROM {table}{_where(prefix, scope)}"  # noqa: S608 - fixed names
            f" ORDER BY lower(name) COLLATE \"C\", id DESC LIMIT {wanted}", params)
    if len(ranked) >= wanted:
        return ranked[:limit], True
    others: dict[int, dict[str, Any]] = {}
    params = []
    match = match_clause(spec, q, hidden, params)
    if match:
        for row in await _newest_matches(fetch, table, cols, match, params, owners, wanted + len(ranked)):
            others[row["id"]] = row
    if spec.object_type == "deals" and company_hidden is not None and "name" not in company_hidden:
        params = []
        cmatch = match_clause(COMPANY_NAMES, q, company_hidden, params) or prefix_clause(q, company_hidden, params)
        if cmatch:
            rows = await _deals_of_companies(fetch, cols, cmatch, params, owners, wanted + len(ranked))
            others.update((row["id"], row) for row in rows)
    seen = {row["id"] for row in ranked}
    ranked += [others[i] for i in sorted(others, reverse=True) if i not in seen]
    return ranked[:limit], len(ranked) > limit


async def _newest_matches(
    fetch: Fetch, table: str, cols: str, match: str, params: list[Any], owners: frozenset[int] | None, wanted: int
) -> list[dict[str, Any]]:
    """Up to `wanted` matches, newest first: among the newest WINDOW records of the scope first,
    then (when those do not fill the page) through the match's index alone."""
    first = list(params)
    scope = scope_clause(owners, first)
    window = WINDOW if owners is None else SCOPED_WINDOW
    rows = await fetch(
        f"SELECT {cols} FROM (SELECT * FROM {table}{_where(scope)} ORDER BY id DESC LIMIT {window}) AS {table}"
        f" WHERE {match} ORDER BY id DESC LIMIT {wanted}", first)  # noqa: S608 - fixed names
    if len(rows) >= wanted:
        return rows
    scope = scope_clause(owners, params)
    # OFFSET 0 is a fence: the planner neither walks the primary key backwards hoping for an early
    # match nor ANDs the (large) bitmap of the owners into the match's; the scope filters the matches
    return await fetch(
        f"SELECT {cols} FROM (SELECT * FROM {table} WHERE {match} OFFSET 0) AS {table}{_where(scope)}"
        f" ORDER BY id DESC LIMIT {wanted}", params)  # noqa: S608 - fixed names


async def _deals_of_companies(
    fetch: Fetch, cols: str, cmatch: str, params: list[Any], owners: frozenset[int] | None, wanted: int
) -> list[dict[str, Any]]:
    """Deals whose company's name matches, newest first: among the newest WINDOW deals of the scope
    first (a common word such as 科技 names thousands of companies), then through the companies'
    index (a rarer name names few)."""
    first = list(params)
    scope = scope_clause(owners, first)
    window = WINDOW if owners is None else SCOPED_WINDOW
    # inside EXISTS the bare column names are the company's
    rows = await fetch(
        f"SELECT {cols} FROM (SELECT * FROM deals{_where(scope)} ORDER BY id DESC LIMIT {window}) AS deals"
        f" WHERE EXISTS (SELECT 1 FROM companies WHERE companies.id = deals.company_id AND {cmatch})"
        f" ORDER BY id DESC LIMIT {wanted}", first)  # noqa: S608 - fixed names
    if len(rows) >= wanted:
        return rows
    scope = scope_clause(owners, params)
    return await fetch(
        f"SELECT {cols} FROM deals{_where(f'company_id IN (SELECT id FROM companies WHERE {cmatch})', scope)}"
        f" ORDER BY id DESC LIMIT {wanted}", params)  # noqa: S608 - fixed names


async def search_in(session: TenantSession, q: str, types: Iterable[str], limit: int) -> SearchResults:
    """Search inside an existing session (see `search`)."""
    results = SearchResults(q=q)
    if not q:
        return results
    await session.tx.execute_query("SET LOCAL plan_cache_mode = force_custom_plan")
    policy = session.policy

    async def fetch(sql: str, params: list[Any]) -> list[dict[str, Any]]:
        return list(await session.tx.execute_query_dict(sql, params))

    for object_type in types:
        if not policy.can(object_type, "view"):
            continue
        hidden = policy.hidden_fields(object_type)
        company_hidden = None
        if object_type == "deals" and policy.can("companies", "view") and "company_id" not in hidden:
            company_hidden = policy.hidden_fields("companies")
        rows, more = await find(fetch, TYPES[object_type], q, limit, hidden=hidden,
                                owners=policy.owner_ids(object_type), company_hidden=company_hidden)
        if company_hidden is not None and "name" not in company_hidden:
            await _add_company_names(fetch, rows)
        results.groups.append(SearchGroup(object_type, [session.visible(object_type, r) for r in rows], more))
    for group in results.groups:
        if group.object_type in SENSITIVE_TYPES:
            fields = [f for f in ("email", "phone") if any(item.get(f) for item in group.items)]
            ids = [item["id"] for item in group.items if any(item.get(f) for f in fields)]
            await session.audit_read(group.object_type, ids, fields, listing=True)
    return results


async def _add_company_names(fetch: Fetch, rows: list[dict[str, Any]]) -> None:
    ids = sorted({r["company_id"] for r in rows if r.get("company_id")})
    names = {r["id"]: r["name"] for r in await fetch("SELECT id, name FROM companies WHERE id = ANY($1::bigint[])",
                                                     [ids])} if ids else {}
    for row in rows:
        row["company_name"] = names.get(row.get("company_id"))


def clamp_limit(limit: int) -> int:
    """`limit` within 1..MAX_LIMIT."""
    return max(1, min(limit, MAX_LIMIT))


async def search(actor: Actor, q: str, *, types: Iterable[str] | str | None = None,
                 limit: int = DEFAULT_LIMIT) -> SearchResults:
    """Search companies, contacts, leads and deals for `q` (any script), as the actor may see them.

    At most `limit` hits per kind; a kind the actor may not view is left out. Sensitive values
    returned (contacts' and leads' email and phone) are audited as a listing read."""
    chosen = parse_types(types)
    if not 1 <= limit <= MAX_LIMIT:
        raise SearchInputError("limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    q = clean_query(q)
    if not q:
        return SearchResults(q="")
    async with acting_as(actor) as session:
        return await search_in(session, q, chosen, limit)
