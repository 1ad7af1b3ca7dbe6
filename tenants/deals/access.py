"""Deals as an object type of the permission engine, scoped by `owner_id`."""

from __future__ import annotations

from kith.platform.access.rules import ObjectType, register_object_type

DEALS = register_object_type(
    ObjectType(
        name="deals",
        label="Deals",
        fields=("name", "amount", "currency", "expected_close", "probability", "stage", "company_id", "contact_id",
                "loss_reason", "notes", "tags", "custom"),
        owner_field="owner_id",
    )
)
