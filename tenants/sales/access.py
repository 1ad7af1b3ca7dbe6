"""Products and orders as object types of the permission engine. The product catalogue belongs
to the whole workspace (no owner: a record scope does not narrow it), so it is a catalogue:
sales, support and read-only members view it, owners, admins and managers maintain it; orders
are scoped by `owner_id`."""

from __future__ import annotations

from kith.platform.access.rules import ObjectType, register_object_type

PRODUCTS = register_object_type(
    ObjectType(name="products", label="Products", fields=("sku", "name", "description", "unit_price", "active"),
               owner_field="", catalogue=True)
)
ORDERS = register_object_type(
    ObjectType(name="orders", label="Orders", fields=("number", "status", "notes", "total"), owner_field="owner_id")
)
