"""Contacts as an object type of the permission engine: roles grant actions on it, scope
its records by `owner_id`, and may hide any of these fields."""

from __future__ import annotations

from kith.platform.access.rules import ObjectType, register_object_type

CONTACTS = register_object_type(
    ObjectType(
        name="contacts",
        label="Contacts",
        fields=("name", "email", "phone", "company_name", "notes", "marketing_consent", "title", "lifecycle_stage",
                "source", "tags", "custom"),
        owner_field="owner_id",
        # personal data whose every read is audited (contacts.read_sensitive)
        sensitive=("email", "phone"),
    )
)
