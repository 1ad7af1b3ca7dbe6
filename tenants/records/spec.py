"""How a kind of CRM record is listed: its table, its fields and what each field allows.

Every list in Kith (companies, contacts, leads, deals) is one `RecordSpec` handed to the
list engine (`kith.tenants.records.listing`), which builds the filter, sort, search and
keyset pagination SQL from it, inside the actor's permissions. A domain declares its spec
once (tenants/<domain>/spec.py) and gets every list feature: filters on any field including
custom fields, sorting, search, column choice, saved views and bulk changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from kith.platform.access.session import TenantSession

# text: free text (filters: eq, ne, contains, starts, empty, notempty; sorted case-insensitively)
# choice: one of `choices` (eq, ne, in, empty, notempty)
# number / money: Decimal (eq, ne, lt, lte, gt, gte, empty, notempty)
# date / datetime: ISO 8601 (eq, lt, lte, gt, gte, empty, notempty); datetimes compare in UTC
# bool: true / false (eq)
# ref: the id of another record or a member (eq, ne, in, empty, notempty); owner fields take "me"
# tags: text[] (has: contains the tag; empty, notempty); not sortable
Kind = Literal["text", "choice", "number", "money", "date", "datetime", "bool", "ref", "tags"]

OPERATORS: dict[str, tuple[str, ...]] = {
    "text": ("eq", "ne", "contains", "starts", "empty", "notempty"),
    "choice": ("eq", "ne", "in", "empty", "notempty"),
    "number": ("eq", "ne", "lt", "lte", "gt", "gte", "empty", "notempty"),
    "money": ("eq", "ne", "lt", "lte", "gt", "gte", "empty", "notempty"),
    "date": ("eq", "lt", "lte", "gt", "gte", "empty", "notempty"),
    "datetime": ("lt", "lte", "gt", "gte", "empty", "notempty"),
    "bool": ("eq",),
    "ref": ("eq", "ne", "in", "empty", "notempty"),
    "tags": ("has", "empty", "notempty"),
}


@dataclass(frozen=True)
class FieldSpec:
    """One listable field. `sql` is its expression in the spec's FROM clause (default:
    "<table>.<name>"); `permission_field` is the field of the object type the role rules hide
    (default: the name itself; None for fields no role can hide, such as id)."""

    name: str
    label: str
    kind: Kind
    sql: str | None = None
    choices: tuple[str, ...] = ()
    sortable: bool = True
    filterable: bool = True
    permission_field: str | None | Literal[False] = False  # False: same as name
    # a field whose filter on "me" means the acting person (owner_id, assignee_id)
    person: bool = False
    # whether the expression can be NULL (decides the keyset condition; NULLs sort last
    # ascending, first descending, as PostgreSQL's default order and indexes have them).
    # None: by kind (ref, number, money, date and datetime may be NULL; the others not)
    nullable: bool | None = None

    def may_be_null(self) -> bool:
        if self.nullable is not None:
            return self.nullable
        return self.kind in ("ref", "number", "money", "date", "datetime")

    def expression(self, table: str) -> str:
        return self.sql or f"{table}.{self.name}"

    def guarded_by(self) -> str | None:
        """The object type's field whose hiding also hides this one, or None."""
        return self.name if self.permission_field is False else self.permission_field


@dataclass(frozen=True)
class RecordSpec:
    """A kind of record as the list engine sees it.

    `object_type` is its name in the permission engine (and custom_fields.object_type);
    `select` and `from_` make the row (joins for display names are fine: the engine only adds
    WHERE, ORDER BY and LIMIT); `search` is the trigram-indexed expression full-text search
    matches with ILIKE, and `searched` the fields it covers (if any of them is hidden from the
    actor's role, the engine searches the visible ones one by one instead, so search never
    reveals a hidden value).
    """

    object_type: str
    table: str
    fields: tuple[FieldSpec, ...]
    search: str
    searched: tuple[str, ...]
    default_columns: tuple[str, ...]
    select: str = ""
    from_: str = ""
    default_sort: str = "-id"
    custom_fields: bool = True
    owner_field: str = "owner_id"
    extra: dict[str, str] = field(default_factory=dict)
    # how a row is shown to the actor, if more than dropping hidden fields is needed
    # (contacts drop the consent details with marketing_consent): (session, row) -> row
    present: Callable[[TenantSession, dict[str, Any]], dict[str, Any]] | None = None

    def field(self, name: str) -> FieldSpec | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    @property
    def select_sql(self) -> str:
        return self.select or f"SELECT {self.table}.*"

    @property
    def from_sql(self) -> str:
        return self.from_ or f"FROM {self.table}"
