"""Deals as the list engine sees them (filters, sort, search, columns, saved views, bulk changes).

Importing this module registers the deals kind with the generic record features."""

from __future__ import annotations

from kith.platform.tenancy.settings import currencies
from kith.tenants.deals.actions import delete_in, update_in
from kith.tenants.deals.queries import visible_row
from kith.tenants.deals.schemas import DealPatch
from kith.tenants.records.kinds import RecordKind, register_kind
from kith.tenants.records.spec import FieldSpec, RecordSpec

SPEC = RecordSpec(
    object_type="deals",
    table="deals",
    fields=(
        FieldSpec("id", "ID", "number", permission_field=None),
        FieldSpec("name", "Name", "text"),
        FieldSpec("amount", "Amount", "money"),
        FieldSpec("currency", "Currency", "choice", choices=currencies()),
        FieldSpec("expected_close", "Expected close", "date"),
        FieldSpec("probability", "Probability", "number"),
        FieldSpec("pipeline_id", "Pipeline", "ref", permission_field="stage"),
        FieldSpec("stage_id", "Stage", "ref", permission_field="stage"),
        FieldSpec("stage_name", "Stage name", "text", sql="stages.name", sortable=False, filterable=False,
                  permission_field="stage"),
        FieldSpec("company_id", "Company", "ref"),
        FieldSpec("company_name", "Company name", "text", sql="companies.name", sortable=False, filterable=False,
                  permission_field="company_id"),
        FieldSpec("contact_id", "Contact", "ref"),
        FieldSpec("owner_id", "Owner", "ref", permission_field=None, person=True),
        FieldSpec("loss_reason", "Loss reason", "text", sortable=False),
        FieldSpec("tags", "Tags", "tags", sortable=False),
        FieldSpec("created_at", "Created", "datetime", permission_field=None),
        FieldSpec("closed_at", "Closed", "datetime", permission_field=None),
        FieldSpec("updated_at", "Updated", "datetime", permission_field=None),
        FieldSpec("last_activity_at", "Last activity", "datetime", permission_field=None),
    ),
    select=("SELECT deals.*, stages.name AS stage_name, stages.kind AS stage_kind,"
            " companies.name AS company_name"),
    from_=("FROM deals JOIN stages ON stages.id = deals.stage_id"
           " LEFT JOIN companies ON companies.id = deals.company_id"),
    # the expression of deals_search_idx (tenant migration 0007), so the trigram index serves search
    search="deals.name",
    searched=("name",),
    default_columns=("name", "company_name", "amount", "currency", "stage_name", "expected_close", "owner_id"),
    default_sort="-id",
    present=visible_row,
)

KIND = register_kind(RecordKind(object_type="deals", spec=SPEC, label="Deals", path="deals", patch_model=DealPatch,
                                update_in=update_in, delete_in=delete_in))
