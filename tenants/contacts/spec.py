"""Contacts as the list engine sees them (filters, sort, search, columns, saved views)."""

from __future__ import annotations

from kith.tenants.contacts.queries import visible_row
from kith.tenants.contacts.schemas import LIFECYCLE_STAGES
from kith.tenants.records.spec import FieldSpec, RecordSpec

SPEC = RecordSpec(
    object_type="contacts",
    table="contacts",
    fields=(
        FieldSpec("id", "ID", "number", permission_field=None),
        FieldSpec("name", "Name", "text"),
        FieldSpec("email", "Email", "text"),
        FieldSpec("phone", "Phone", "text"),
        FieldSpec("company_name", "Company", "text"),
        FieldSpec("company_id", "Company record", "ref", permission_field=None),
        FieldSpec("title", "Job title", "text"),
        FieldSpec("lifecycle_stage", "Lifecycle stage", "choice", choices=LIFECYCLE_STAGES),
        FieldSpec("source", "Source", "text"),
        FieldSpec("marketing_consent", "Marketing consent", "choice", choices=("unknown", "granted", "withdrawn")),
        FieldSpec("owner_id", "Owner", "ref", permission_field=None, person=True),
        FieldSpec("tags", "Tags", "tags", sortable=False),
        FieldSpec("created_at", "Created", "datetime", permission_field=None),
        FieldSpec("updated_at", "Updated", "datetime", permission_field=None),
        FieldSpec("last_activity_at", "Last activity", "datetime", permission_field=None),
    ),
    # the expression of contacts_search_idx (tenant migration 0001), so the trigram index serves search
    search="(contacts.name || ' ' || contacts.email || ' ' || contacts.phone || ' ' || contacts.company_name)",
    searched=("name", "email", "phone", "company_name"),
    default_columns=("name", "email", "phone", "company_name", "lifecycle_stage", "owner_id"),
    default_sort="-id",
    present=visible_row,
)
