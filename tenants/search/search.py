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

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.search.plan import (
    COMPANY_IDS,
    SCOPED_WINDOW,
    WINDOW,
    Match,
    Params,
    all_of,
    hit_columns,
    id_stages,
    prefix_stage,
)
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
# the digits of a phone number read backwards: its btree index (migration 0009) finds numbers by
# their last digits, which is how people type them ("138 0013 8000", "8000", "010 1234 5678")
# (phone numbers hold only digits and + ( ) - . and spaces: translate drops those, far cheaper than a regexp)
PHONE_SUFFIX = "reverse(translate(phone, ' +()-.', '')) COLLATE \"C\""


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


def scope_clause(owners: frozenset[int] | None, p: Params) -> str | None:
    """`owner_id` within the actor's record scope (None: every record)."""
    if owners is None:
        return None
    ids = sorted(owners)
    if len(ids) == 1:  # an equality walks the (owner_id, id) index newest first
        return f"owner_id = {p.add(ids[0])}"
    return f"owner_id = ANY({p.add(ids)}::bigint[])"


def match_clause(spec: SearchType, q: str, hidden: frozenset[str], p: Params) -> str | None:
    """The condition matching `q` anywhere in the visible searched fields, or None when no field
    can be matched (all hidden, or a 1-character query: see prefix_clause)."""
    if len(q) >= 3:
        visible = [f for f in spec.searched if f not in hidden]
        digits = phone_digits(q) if spec.phone and "phone" in visible else None
        # "138 0013 8000" is a phone number; "2024" may also be part of an email or a name
        text_fields = visible if digits is None or only_digits(q) else []
        conds: list[str] = []
        if text_fields:
            pattern = p.add(contains_pattern(q))
            if tuple(text_fields) == spec.indexed_fields:
                conds.append(f"{spec.indexed} ILIKE {pattern}")
            else:  # the index narrows, the fields decide: a hidden field must not be matched
                fields = " OR ".join(f"{f} ILIKE {pattern}" for f in text_fields)
                conds.append(f"({spec.indexed} ILIKE {pattern} AND ({fields}))")
        if digits:
            conds.append(f"(phone <> '' AND {PHONE_SUFFIX} LIKE {p.add(phone_suffix_pattern(digits))})")
        return "(" + " OR ".join(conds) + ")" if conds else None
    if len(q) == 2:
        visible = [f for f in spec.short if f not in hidden]
        if not visible:
            return None
        pair = p.add(q)
        pattern = p.add(contains_pattern(q))
        fields = " OR ".join(f"{f} ILIKE {pattern}" for f in visible)
        return f"({spec.short_indexed} @> ARRAY[lower({pair})] AND ({fields}))"
    return None


def cheap_match(spec: SearchType, q: str, hidden: frozenset[str]) -> bool:
    """Whether match_clause's condition is probed through its index before the newest window is
    scanned: a 2-character query's bigram (one key of the GIN index), a phone number's reversed
    digits (a btree range), and text with characters beyond ASCII (Chinese: its trigrams are
    selective, so the GIN scan is cheap). A rare term is then answered by the probe alone.

    Measured on the benchmark (1M contacts): plain ASCII text ("carter", "contoso analytics") is
    made of trigrams every tenth record shares, whose GIN scan costs 10-20 ms, while the newest
    window of a common word fills the page in 1-3 ms; such queries scan the window first."""
    if len(q) == 2:
        return True
    if not q.isascii():
        return True
    visible = [f for f in spec.searched if f not in hidden]
    return (len(q) >= 3 and spec.phone and "phone" in visible and phone_digits(q) is not None
            and not only_digits(q))


def prefix_clause(q: str, hidden: frozenset[str], p: Params) -> str | None:
    """Names equal to or starting with `q` (the btree prefix index), or None when names are hidden."""
    if "name" in hidden:
        return None
    return f"lower(name) COLLATE \"C\" LIKE lower({p.add(prefix_pattern(q))})"


def _hit(spec: SearchType, row: dict[str, Any], company_names: bool) -> dict[str, Any]:
    hit = {c: row[c] for c in spec.columns}
    if company_names:
        hit["company_name"] = row["company_name"]
    return hit


def kind_sql(spec: SearchType, q: str, limit: int, p: Params, *, hidden: frozenset[str],
             owners: frozenset[int] | None, company_hidden: frozenset[str] | None) -> tuple[list[str], list[str]]:
    """The CTEs and the hit branches finding one kind's records (see plan.py)."""
    table, name = spec.object_type, spec.object_type
    wanted = limit + 1
    scope = scope_clause(owners, p)
    ctes: list[str] = []
    prefix = prefix_clause(q, hidden, p)
    exclude = None
    if prefix:
        ctes.append(prefix_stage(name, table, prefix, scope, wanted))
        exclude = f"{name}_pre"
    window = WINDOW if owners is None else SCOPED_WINDOW
    match = match_clause(spec, q, hidden, p)
    if match:
        cheap = match if cheap_match(spec, q, hidden) else None
        ctes += id_stages(name, Match(table, match, cheap, scope, window), wanted, exclude)
    by_company = (spec.object_type == "deals" and company_hidden is not None and "name" not in company_hidden)
    if by_company:
        assert company_hidden is not None
        cmatch = match_clause(COMPANY_NAMES, q, company_hidden, p)
        if cmatch:
            cheap = cmatch if cheap_match(COMPANY_NAMES, q, company_hidden) else None
            ctes += id_stages("company", Match("companies", cmatch, cheap, None, WINDOW), COMPANY_IDS, None)
        else:  # 1 character: companies whose name starts with it
            ctes.append(prefix_stage("company", "companies", prefix_clause(q, company_hidden, p) or "false", None,
                                     COMPANY_IDS))
            ctes.append("company_ids AS (SELECT id FROM company_pre)")
    extra = {"company_name": "(SELECT c.name FROM companies AS c WHERE c.id = deals.company_id)"} if by_company \
        else {}
    cols = hit_columns(table, spec.columns, extra)
    branches: list[str] = []
    full = f"(SELECT count(*) FROM {name}_pre) < {wanted}" if prefix else None
    if prefix:
        branches.append(f"SELECT '{name}' AS kind, {name}_pre.sort_name, {cols} FROM {name}_pre"
                        f" JOIN {table} ON {table}.id = {name}_pre.id")
    found = []
    if match:
        found.append(f"SELECT id FROM {name}_ids")
    if by_company:
        of_companies = all_of("company_id = ANY(ARRAY(SELECT id FROM company_ids))", scope)
        found.append(f"SELECT id FROM (SELECT id FROM deals WHERE {of_companies} ORDER BY id DESC LIMIT {wanted}) AS d")
    if found:
        union = " UNION ".join(found)
        branches.append(f"SELECT '{name}' AS kind, NULL AS sort_name, {cols} FROM {table}"
                        f" WHERE {all_of(f'{table}.id = ANY(ARRAY({union}))', full)}"
                        f" ORDER BY {table}.id DESC LIMIT {wanted}")
    return ctes, branches


async def search_in(session: TenantSession, q: str, types: Iterable[str], limit: int) -> SearchResults:
    """Search inside an existing session (see `search`): one statement for every kind."""
    results = SearchResults(q=q)
    if not q:
        return results
    policy = session.policy
    p = Params()
    ctes: list[str] = []
    branches: list[str] = []
    with_names: dict[str, bool] = {}
    for object_type in types:
        if not policy.can(object_type, "view"):
            continue
        hidden = policy.hidden_fields(object_type)
        company_hidden = None
        if object_type == "deals" and policy.can("companies", "view") and "company_id" not in hidden:
            company_hidden = policy.hidden_fields("companies")
        with_names[object_type] = company_hidden is not None and "name" not in company_hidden
        owners = policy.owner_ids(object_type)
        if owners is not None and not owners:
            continue
        kind_ctes, kind_branches = kind_sql(TYPES[object_type], q, limit, p, hidden=hidden, owners=owners,
                                            company_hidden=company_hidden)
        ctes += kind_ctes
        branches += [f"({b})" for b in kind_branches]
    rows: list[dict[str, Any]] = []
    if branches:
        # each statement planned for its actual values, so prefix patterns and bigram arrays reach the index
        await session.tx.execute_query("SET LOCAL plan_cache_mode = force_custom_plan")
        sql = ("WITH " + ", ".join(ctes) + " " if ctes else "") + " UNION ALL ".join(branches)
        rows = list(await session.tx.execute_query_dict(sql, p.values))
    for object_type in with_names:
        spec = TYPES[object_type]
        mine = [r for r in rows if r["kind"] == object_type]
        ranked = sorted((r for r in mine if r["sort_name"] is not None), key=lambda r: (r["sort_name"], -r["id"]))
        seen = {r["id"] for r in ranked}
        ranked += sorted((r for r in mine if r["sort_name"] is None and r["id"] not in seen), key=lambda r: -r["id"])
        hits = [_hit(spec, r, with_names[object_type]) for r in ranked[:limit]]
        results.groups.append(SearchGroup(object_type, [session.visible(object_type, h) for h in hits],
                                          len(ranked) > limit))
    for group in results.groups:
        if group.object_type in SENSITIVE_TYPES:
            fields = [f for f in ("email", "phone") if any(item.get(f) for item in group.items)]
            ids = [item["id"] for item in group.items if any(item.get(f) for f in fields)]
            await session.audit_read(group.object_type, ids, fields, listing=True)
    return results


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
