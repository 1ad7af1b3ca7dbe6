"""Tickets as the list engine sees them (filters, sort, search, columns, saved views, bulk changes)."""

from __future__ import annotations

from typing import Any

from kith.platform.access.session import TenantSession
from kith.tenants.records.spec import FieldSpec, RecordSpec
from kith.tenants.tickets.schemas import CHANNELS, PRIORITIES, STATUSES


def _present(session: TenantSession, row: dict[str, Any]) -> dict[str, Any]:
    from kith.tenants.tickets.queries import visible_row

    return visible_row(session, row)


SPEC = RecordSpec(
    object_type="tickets",
    table="tickets",
    fields=(
        FieldSpec("id", "ID", "number", permission_field=None),
        FieldSpec("subject", "Subject", "text"),
        FieldSpec("status", "Status", "choice", choices=STATUSES),
        FieldSpec("priority", "Priority", "choice", choices=PRIORITIES),
        FieldSpec("channel", "Channel", "choice", choices=CHANNELS),
        FieldSpec("contact_id", "Contact", "ref"),
        FieldSpec("contact_name", "Contact name", "text", sql="contacts.name", sortable=False, filterable=False,
                  permission_field="contact_id"),
        FieldSpec("company_id", "Company", "ref"),
        FieldSpec("company_name", "Company name", "text", sql="companies.name", sortable=False, filterable=False,
                  permission_field="company_id"),
        FieldSpec("owner_id", "Assignee", "ref", permission_field=None, person=True),
        FieldSpec("tags", "Tags", "tags", sortable=False),
        FieldSpec("first_response_due_at", "First reply due", "datetime", permission_field=None),
        FieldSpec("resolution_due_at", "Resolution due", "datetime", permission_field=None),
        FieldSpec("first_responded_at", "First replied", "datetime", permission_field=None),
        FieldSpec("resolved_at", "Resolved", "datetime", permission_field=None),
        FieldSpec("created_at", "Created", "datetime", permission_field=None),
        FieldSpec("updated_at", "Updated", "datetime", permission_field=None),
    ),
    select="SELECT tickets.*, contacts.name AS contact_name, companies.name AS company_name",
    from_=("FROM tickets LEFT JOIN contacts ON contacts.id = tickets.contact_id"
           " LEFT JOIN companies ON companies.id = tickets.company_id"),
    # the expression of tickets_search_idx (tenant migration 0016), so the trigram index serves search
    search="tickets.subject",
    searched=("subject",),
    default_columns=("subject", "status", "priority", "contact_name", "owner_id", "resolution_due_at"),
    default_sort="-id",
    present=_present,
)
