"""Leads as an object type of the permission engine, scoped by `owner_id`. A lead is a person:
reads of their email and phone are audited like a contact's."""

from __future__ import annotations

from kith.platform.access.rules import ObjectType, register_object_type

LEADS = register_object_type(
    ObjectType(
        name="leads",
        label="Leads",
        fields=("name", "company_name", "title", "email", "phone", "status", "source", "notes", "tags", "custom"),
        owner_field="owner_id",
        sensitive=("email", "phone"),
    )
)
