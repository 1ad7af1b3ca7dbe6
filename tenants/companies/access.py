"""Companies (accounts) as an object type of the permission engine, scoped by `owner_id`."""

from __future__ import annotations

from kith.platform.access.rules import ObjectType, register_object_type

COMPANIES = register_object_type(
    ObjectType(
        name="companies",
        label="Companies",
        fields=("name", "domain", "industry", "size", "phone", "address", "city", "country", "notes", "tags",
                "custom"),
        owner_field="owner_id",
    )
)
