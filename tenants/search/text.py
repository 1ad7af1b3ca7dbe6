"""What a search query looks like to SQL: LIKE patterns, phone digits, its length in characters.

Kept apart from the queries so the rules read in one place: patterns escape LIKE's own
characters (% _ \\), a query made only of phone characters is also matched against the digits
of stored phone numbers ("138 0013 8000" finds "+86 138 0013 8000"), and the length decides
which index can serve the query (trigrams need 3 characters, see search.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

MAX_QUERY = 200
# a query of digits and the characters people type between them is a phone number
_PHONE_QUERY = re.compile(r"^\+?[0-9()\-. ]+$")
_SEPARATORS = re.compile(r"[^0-9]")
# fewer digits than this match too many numbers to be worth the digits index
MIN_PHONE_DIGITS = 3


def clean_query(raw: str) -> str:
    """The query as searched: surrounding and repeated whitespace removed, at most MAX_QUERY characters."""
    return " ".join(raw.split())[:MAX_QUERY]


def escape_like(text: str) -> str:
    """`text` with LIKE's wildcard and escape characters taken literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def contains_pattern(text: str) -> str:
    """The ILIKE pattern matching `text` anywhere in a value."""
    return f"%{escape_like(text)}%"


def prefix_pattern(text: str) -> str:
    """The LIKE pattern matching values that start with `text` (lowercase it in SQL, as the index does)."""
    return f"{escape_like(text)}%"


def phone_digits(query: str) -> str | None:
    """The digits of a query that looks like a phone number (digits, spaces, + ( ) - .), or None."""
    if not _PHONE_QUERY.match(query):
        return None
    digits = _SEPARATORS.sub("", query)
    return digits if len(digits) >= MIN_PHONE_DIGITS else None


def only_digits(query: str) -> bool:
    """Whether the query is digits alone (it may then be part of an email or a name too)."""
    return query.isdigit()


def phone_suffix_pattern(digits: str) -> str:
    """The LIKE pattern finding stored numbers whose digits end with `digits`, on the reversed digits.

    A national number typed with its trunk prefix ("010 1234 5678") is stored in international form
    ("+86 10 1234 5678"), so leading zeros of a number long enough to be a whole one are dropped."""
    if len(digits) >= 7:
        digits = digits.lstrip("0") or digits
    return digits[::-1] + "%"


# the per-table indexes of short queries (tenant migration 0009): the bigram GIN expression and the
# fields it covers; every table also has a prefix btree on lower(name) COLLATE "C"
SHORT_INDEXES: dict[str, tuple[str, tuple[str, ...]]] = {
    "contacts": ("kith_bigrams(contacts.name || ' ' || contacts.company_name)", ("name", "company_name")),
    "leads": ("kith_bigrams(leads.name || ' ' || leads.company_name)", ("name", "company_name")),
    "companies": ("kith_bigrams(companies.name)", ("name",)),
    "deals": ("kith_bigrams(deals.name)", ("name",)),
}


def short_search_clause(table: str, q: str, visible: tuple[str, ...], add: Callable[[Any], str]) -> str | None:
    """An index-served condition for a list query `q` too short for trigrams, or None (use ILIKE).

    - 1 character: names starting with it (the prefix btree), when the name is visible;
    - 2 characters with one beyond ASCII (张伟, 北京): the bigram GIN index over the fields it covers
      (name, and company_name for contacts and leads). Emails, phone numbers and domains are not
      searched for them: phone numbers hold no such characters and emails and domains are ASCII in
      practice (an internationalized address is the rare exception this gives up).
    A plain ASCII pair ("li") may be part of any email or domain, so it keeps the full ILIKE.
    `visible` are the searched fields the actor may see; `add(value)` returns a parameter's $n."""
    known = SHORT_INDEXES.get(table)
    if known is None or len(q) >= 3:
        return None
    expression, covered = known
    if len(q) == 1:
        if "name" not in visible:
            return None
        return f"lower({table}.name) COLLATE \"C\" LIKE lower({add(prefix_pattern(q))})"
    if q.isascii():
        return None
    fields = [f for f in covered if f in visible]
    if not fields:
        return "false"
    pattern = add(contains_pattern(q))
    checks = " OR ".join(f"{table}.{f} ILIKE {pattern}" for f in fields)
    return f"({expression} @> ARRAY[lower({add(q)})] AND ({checks}))"
