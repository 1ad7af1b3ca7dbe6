"""Global search, duplicates and merges as the API returns and accepts them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FieldChoice = Literal["kept", "other"]


class SearchHit(BaseModel):
    """One record found. Only the fields of its kind appear; a field hidden from the caller's role is absent."""

    id: int
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    company_name: str | None = Field(default=None, description="Contacts and leads: as typed; deals: their company's.")
    company_id: int | None = None
    domain: str | None = None
    city: str | None = None
    status: str | None = None
    amount: Decimal | None = Field(default=None, description="Deals: a decimal string, never a float.")
    currency: str | None = None
    owner_id: int | None = None
    created_at: datetime | None = None


class SearchGroupOut(BaseModel):
    """The hits of one kind of record: exact and prefix name matches first, then newest first."""

    type: Literal["companies", "contacts", "leads", "deals"]
    items: list[SearchHit]
    has_more: bool = Field(description="More records match than were returned (raise limit, or use the type's list).")


class SearchResultsOut(BaseModel):
    """Search results grouped by kind; kinds the caller may not view are left out."""

    q: str
    groups: list[SearchGroupOut]


class DuplicateCandidateOut(BaseModel):
    """A record that may be a duplicate, and why: email, phone, name_company (contacts); domain, name (companies)."""

    record: dict[str, Any]
    reasons: list[str]


class DuplicateList(BaseModel):
    items: list[DuplicateCandidateOut]


class DuplicateGroupOut(BaseModel):
    """Records sharing one normalized value (`key`: the lowercased email, the phone digits, name and company...)."""

    reason: str
    key: list[str]
    count: int
    records: list[dict[str, Any]] = Field(description="Up to 5 of the group's records, oldest first.")


class DuplicateGroupPage(BaseModel):
    """One page of duplicate groups for a reason, in the order of its key; pass next_cursor as `cursor`."""

    object_type: str
    reason: str
    reasons: list[str]
    groups: list[DuplicateGroupOut]
    next_cursor: str | None = None


class _MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    other_id: int = Field(gt=0, description="The record merged into this one, then deleted.")
    fields: dict[str, FieldChoice] = Field(
        default_factory=dict,
        description="Per field, whose value the kept record takes: 'kept' (default) or 'other'.")


class ContactMergeIn(_MergeIn):
    """Merge another contact into this one. Fields: name, email, phone, company_name, company_id, title,
    lifecycle_stage, source, notes, marketing_consent. Tags are united; custom values of the other fill
    the keys this contact lacks."""


class CompanyMergeIn(_MergeIn):
    """Merge another company into this one. Fields: name, domain, industry, size, phone, address, city, country,
    notes. Tags are united; custom values of the other fill the keys this company lacks."""


class MergeOut(BaseModel):
    """What a merge did: the kept record as it is now, the fields that changed and the records moved, per table."""

    merge_id: int
    object_type: str
    kept_id: int
    merged_id: int
    changed: list[str]
    moved: dict[str, int]
    kept: dict[str, Any]
