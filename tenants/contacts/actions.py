"""Changing contacts. Each action validates (via the schemas) and changes data in one
transaction inside the tenant's scope."""

from __future__ import annotations

from datetime import UTC, datetime

from kith.platform.db import tenant_scope
from kith.tenants.contacts.models import Contact
from kith.tenants.contacts.queries import ContactNotFound
from kith.tenants.contacts.schemas import ContactIn, ContactPatch


async def create_contact(tenant_id: int, actor_id: int | None, data: ContactIn) -> Contact:
    """Add a contact to the workspace."""
    async with tenant_scope(tenant_id):
        return await Contact.create(**data.model_dump(), created_by_id=actor_id)


async def update_contact(tenant_id: int, contact_id: int, changes: ContactPatch) -> Contact:
    """Change the fields given in `changes`; others keep their values."""
    fields = changes.model_dump(exclude_unset=True)
    if fields.get("name", "x") is None:
        raise ValueError("name cannot be empty")
    fields = {k: v for k, v in fields.items() if v is not None}
    async with tenant_scope(tenant_id):
        contact = await Contact.filter(id=contact_id).select_for_update().first()
        if contact is None:
            raise ContactNotFound(f"contact {contact_id} not found")
        if fields:
            contact.update_from_dict(fields)
            contact.updated_at = datetime.now(UTC)
            await contact.save(update_fields=[*fields, "updated_at"])
        return contact


async def delete_contact(tenant_id: int, contact_id: int) -> None:
    """Delete a contact; a missing one is reported, not ignored."""
    async with tenant_scope(tenant_id):
        deleted = await Contact.filter(id=contact_id).delete()
    if not deleted:
        raise ContactNotFound(f"contact {contact_id} not found")
