"""The checks every CRM record's change makes of its owner and its custom field values, refused in
the domain's own words (a RecordError subclass, so the API and the pages answer 422 per field)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kith.platform.access.session import TenantSession
from kith.tenants.companies.errors import InvalidFields
from kith.tenants.companies.queries import check_owner
from kith.tenants.records.custom import CustomFieldError, clean_custom_values, load_custom_fields
from kith.tenants.records.refusals import RecordError


async def owner_checked(session: TenantSession, object_type: str, owner_id: int | None,
                        refusal: type[RecordError]) -> None:
    """`check_owner` (an active member, within the actor's scope), refused as `refusal`."""
    try:
        await check_owner(session, object_type, owner_id)
    except InvalidFields as exc:
        raise refusal.of(exc.fields) from None


async def custom_checked(session: TenantSession, object_type: str, values: Mapping[str, Any],
                         current: Mapping[str, Any] | None, refusal: type[RecordError]) -> dict[str, Any]:
    """Custom field values checked against the workspace's definitions: a whole set for a new record,
    or (with `current`) the changes merged into the stored values; refused as `refusal`."""
    definitions = await load_custom_fields(session.tx, object_type)
    try:
        return clean_custom_values(definitions, values, partial=current is not None, current=current)
    except CustomFieldError as exc:
        raise refusal.of(dict(exc.errors)) from None
