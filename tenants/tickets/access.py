"""Tickets as an object type of the permission engine, scoped by `owner_id` (the agent working on
the ticket). The built-in support role, which creates nothing elsewhere, opens tickets: taking a
customer's request is its job."""

from __future__ import annotations

from kith.platform.access.rules import ObjectType, register_object_type

TICKETS = register_object_type(
    ObjectType(
        name="tickets",
        label="Tickets",
        fields=("subject", "description", "status", "priority", "channel", "company_id", "contact_id", "tags",
                "custom"),
        owner_field="owner_id",
        role_extras=(("support", ("create",)),),
    )
)
