"""The SQL of global search: every kind searched in ONE statement, each access path run only when needed.

For each kind of record the statement holds a chain of materialized CTEs; a later stage is
gated on the row counts of the earlier ones (a WHERE with only an InitPlan in it becomes a
"One-Time Filter": PostgreSQL never starts the gated branch when it is false), so one round
trip does what used to take a dozen statements:

1. `pre`: names equal to or starting with the query (the btree prefix index); when it fills the
   page nothing else of that kind runs;
2. `probe` (only where a cheap index exists: a 2-character query's bigram, a phone number's
   reversed digits): up to PROBE matches through that index alone. Fewer than PROBE means the
   term is rare and the probe holds every match: the newest are taken from it, nothing else runs;
3. `win`: matches among the newest WINDOW records of the scope (cheap for common terms);
4. `all`: matches through the match's index alone, newest first (cheap for rare terms), only
   when the window did not fill the page.

Deals are also found by their company's name: the ids of up to COMPANY_IDS matching companies
(newest first, found the same way) and then the deals whose company_id is among them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# how many of the newest records of the scope are searched before the index bitmap is used: the
# newest records of the whole table lie together on disk, those of one owner are spread out
WINDOW = 2000
SCOPED_WINDOW = 1000
# a cheap index returning fewer matches than this returned them all
PROBE = 300
# deals are found through at most this many companies whose name matches (the newest)
COMPANY_IDS = 100
# the columns of every kind's hits, and their types (a kind without a column returns NULL)
COLUMN_TYPES: dict[str, str] = {
    "id": "bigint", "name": "text", "email": "text", "phone": "text", "company_name": "text",
    "company_id": "bigint", "domain": "text", "city": "text", "status": "text", "amount": "numeric",
    "currency": "text", "owner_id": "bigint", "created_at": "timestamptz",
}


class Params:
    """Numbered parameters of one statement."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


@dataclass(frozen=True)
class Match:
    """How one kind's records matching the query are found.

    `match` is the condition (through its index: trigram, bigram or phone digits); `probe` a
    condition served by a cheap index that finds exactly the same records (None when there is
    none); `scope` the record-scope condition on owner_id (None: every record)."""

    table: str
    match: str
    probe: str | None
    scope: str | None
    window: int


def all_of(*conds: str | None) -> str:
    kept = [c for c in conds if c]
    return " AND ".join(kept) if kept else "true"


def id_stages(name: str, m: Match, wanted: int, exclude: str | None) -> list[str]:
    """CTEs ending in `<name>_ids`: up to `wanted` ids of matching records, newest first (not
    ordered: the caller orders). `exclude` is a CTE of ids already found (prefix matches) or None."""
    t, scope = m.table, m.scope
    skip = f"{t}.id <> ALL(ARRAY(SELECT id FROM {exclude}))" if exclude else None
    ctes: list[str] = []
    branches: list[str] = []
    full_gate: list[str] = []
    if m.probe:
        # the probe counts matches whatever the scope: how rare the term is in the table decides,
        # and a scoped probe of a common term would read thousands of other owners' records
        ctes.append(
            f"{name}_probe AS MATERIALIZED (SELECT id, owner_id FROM (SELECT id, owner_id FROM {t} WHERE {m.probe}"
            f" OFFSET 0) AS {t} WHERE {all_of(skip)} LIMIT {PROBE})")
        rare = f"(SELECT count(*) FROM {name}_probe) < {PROBE}"
        branches.append(f"SELECT id FROM (SELECT id FROM {name}_probe WHERE {all_of(scope)} ORDER BY id DESC"
                        f" LIMIT {wanted}) AS p WHERE {rare}")
        full_gate.append(f"(SELECT count(*) FROM {name}_probe) >= {PROBE}")
    # the window: the newest records of the scope, the match tested on each
    ctes.append(
        f"{name}_win AS MATERIALIZED (SELECT id FROM (SELECT * FROM {t}{' WHERE ' + scope if scope else ''}"
        f" ORDER BY id DESC LIMIT {m.window}) AS {t} WHERE {all_of(m.match, skip)} ORDER BY id DESC LIMIT {wanted})")
    # OFFSET 0 is a fence: the planner neither walks the primary key backwards hoping for an early
    # match nor ANDs the (large) bitmap of the owners into the match's; the scope filters the matches
    ctes.append(
        f"{name}_all AS MATERIALIZED (SELECT id FROM (SELECT id, owner_id FROM {t} WHERE {m.match} OFFSET 0)"
        f" AS {t} WHERE {all_of(scope, skip)} ORDER BY id DESC LIMIT {wanted})")
    branches.append(f"SELECT id FROM {name}_win WHERE {all_of(*full_gate)}")
    short = f"(SELECT count(*) FROM {name}_win) < {wanted}"
    branches.append(f"SELECT id FROM {name}_all WHERE {all_of(*full_gate, short)}")
    ctes.append(f"{name}_ids AS ({' UNION ALL '.join(branches)})")
    return ctes


def prefix_stage(name: str, table: str, prefix: str, scope: str | None, wanted: int) -> str:
    """The CTE `<name>_pre`: up to `wanted` records whose name starts with the query, in name order."""
    return (f"{name}_pre AS MATERIALIZED (SELECT id, lower(name) COLLATE \"C\" AS sort_name FROM {table}"
            f" WHERE {all_of(prefix, scope)} ORDER BY lower(name) COLLATE \"C\", id DESC LIMIT {wanted})")


def hit_columns(table: str, columns: tuple[str, ...], extra: dict[str, str] | None = None) -> str:
    """The select list of one kind's hits, every kind with the same columns."""
    extra = extra or {}
    out = []
    for column, kind in COLUMN_TYPES.items():
        if column in extra:
            out.append(f"{extra[column]} AS {column}")
        elif column in columns:
            out.append(f"{table}.{column}")
        else:
            out.append(f"NULL::{kind} AS {column}")
    return ", ".join(out)
