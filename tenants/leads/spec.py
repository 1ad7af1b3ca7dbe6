"""Leads as the list engine sees them (filters, sort, search, columns, saved views)."""

from __future__ import annotations

import json
from typing import Any

from kith.platform.access.session import TenantSession
from kith.tenants.leads.schemas import STATUSES
from kith.tenants.records.spec import FieldSpec, RecordSpec


def _present(session: TenantSession, row: dict[str, Any]) -> dict[str, Any]:
    """custom as a dict (asyncpg gives jsonb as text) and tags as a list, as the API returns them."""
    custom = row.get("custom")
    return {**row, "custom": (json.loads(custom) if isinstance(custom, str) else custom) or {},
            "tags": list(row.get("tags") or [])}


SPEC = RecordSpec(
    object_type="leads",
    table="leads",
    fields=(
        FieldSpec("id", "ID", "number", permission_field=None),
        FieldSpec("name", "Name", "text"),
        FieldSpec("company_name", "Company", "text"),
        FieldSpec("title", "Job title", "text"),
        FieldSpec("email", "Email", "text"),
        FieldSpec("phone", "Phone", "text"),
        FieldSpec("status", "Status", "choice", choices=STATUSES),
        FieldSpec("source", "Source", "text"),
        FieldSpec("owner_id", "Owner", "ref", permission_field=None, person=True),
        FieldSpec("tags", "Tags", "tags", sortable=False),
        FieldSpec("created_at", "Created", "datetime", permission_field=None),
        FieldSpec("updated_at", "Updated", "datetime", permission_field=None),
        FieldSpec("last_activity_at", "Last activity", "datetime", permission_field=None),
    ),
    # the expression of leads_search_idx (tenant migration 0007), so the trigram index serves search
    search="(leads.name || ' ' || leads.email || ' ' || leads.phone || ' ' || leads.company_name)",
    searched=("name", "email", "phone", "company_name"),
    default_columns=("name", "company_name", "email", "phone", "status", "owner_id"),
    default_sort="-id",
    present=_present,
)
