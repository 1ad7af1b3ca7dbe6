"""The kinds of record that get the generic list features (filters, saved views, bulk changes).

A domain registers its kind once, at import: the list spec, the model of a partial update,
and its single-record change and deletion done inside an existing session. Bulk changes run
those for each selected record in one transaction, so a bulk edit is all or nothing and every
record gets the same checks and audit entry as a change made one at a time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from kith.platform.access.session import TenantSession
from kith.tenants.records.spec import RecordSpec

UpdateIn = Callable[[TenantSession, int, Any], Awaitable[dict[str, Any]]]
DeleteIn = Callable[[TenantSession, int], Awaitable[None]]


@dataclass(frozen=True)
class RecordKind:
    object_type: str
    spec: RecordSpec
    label: str  # plural, for pages: "Companies"
    path: str  # the list's path under /t/<slug>/: "companies"
    patch_model: type[BaseModel]
    update_in: UpdateIn
    delete_in: DeleteIn


_KINDS: dict[str, RecordKind] = {}


def register_kind(kind: RecordKind) -> RecordKind:
    """Declare a kind of record (re-registering the same kind on re-import is harmless)."""
    _KINDS[kind.object_type] = kind
    return kind


def record_kind(object_type: str) -> RecordKind | None:
    return _KINDS.get(object_type)


def record_kinds() -> tuple[RecordKind, ...]:
    return tuple(_KINDS.values())
