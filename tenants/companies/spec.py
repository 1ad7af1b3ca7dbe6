"""Companies as the list engine sees them (filters, sort, search, columns, saved views)."""

from __future__ import annotations

from kith.tenants.companies.queries import visible_row
from kith.tenants.companies.schemas import SIZES
from kith.tenants.records.spec import FieldSpec, RecordSpec

SPEC = RecordSpec(
    object_type="companies",
    table="companies",
    fields=(
        FieldSpec("id", "ID", "number", permission_field=None),
        FieldSpec("name", "Name", "text"),
        FieldSpec("domain", "Domain", "text"),
        FieldSpec("industry", "Industry", "text"),
        FieldSpec("size", "Size", "choice", choices=SIZES),
        FieldSpec("phone", "Phone", "text"),
        FieldSpec("city", "City", "text"),
        FieldSpec("country", "Country", "text"),
        FieldSpec("owner_id", "Owner", "ref", permission_field=None, person=True),
        FieldSpec("tags", "Tags", "tags", sortable=False),
        FieldSpec("created_at", "Created", "datetime", permission_field=None),
        FieldSpec("updated_at", "Updated", "datetime", permission_field=None),
        FieldSpec("last_activity_at", "Last activity", "datetime", permission_field=None),
    ),
    # the expression of companies_search_idx (tenant migration 0007), so the trigram index serves search
    search="(companies.name || ' ' || companies.domain || ' ' || companies.phone)",
    searched=("name", "domain", "phone"),
    default_columns=("name", "domain", "industry", "city", "owner_id", "updated_at"),
    default_sort="-id",
    present=visible_row,
)
