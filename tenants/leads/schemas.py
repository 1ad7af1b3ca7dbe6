"""What a lead looks like on the way in and out (API and forms share these rules).

A lead is a person not yet qualified: its email and phone follow the contacts' rules (email-validator,
phone numbers read in the workspace's default region through the validation context, see
`kith.tenants.contacts.schemas.phone_context`). Its status moves freely among new, contacted,
qualified and unqualified; 'converted' is set only by the conversion (tenants/leads/convert.py).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from kith.tenants.contacts.schemas import _clean_email, _clean_phone, _region_of, clean_tags
from kith.tenants.deals.schemas import parse_amount

STATUSES: tuple[str, ...] = ("new", "contacted", "qualified", "unqualified", "converted")
# the statuses a person may set; 'converted' belongs to the conversion
OPEN_STATUSES: tuple[str, ...] = ("new", "contacted", "qualified", "unqualified")

Name = Annotated[str, Field(min_length=1, max_length=200, description="Full name, any script (e.g. 王芳).")]
Text200 = Annotated[str, Field(max_length=200)]
Source = Annotated[str, Field(max_length=100, description="Where the lead came from (web form, fair, referral...).")]
Notes = Annotated[str, Field(max_length=5000)]
Phone = Annotated[str, Field(max_length=50)]
Status = Annotated[str, Field(description="new, contacted, qualified or unqualified ('converted' only by converting).")]
OwnerId = Annotated[int | None, Field(description="The member who owns the lead; null puts it in the public pool.")]


def clean_status(value: str) -> str:
    value = value.strip()
    if value == "converted":
        raise PydanticCustomError(
            "status_converted", "a lead becomes converted only by converting it (contact, company and deal)")
    if value not in OPEN_STATUSES:
        raise PydanticCustomError("status_choice", "must be one of new, contacted, qualified, unqualified")
    return value


class _LeadRules(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("email", check_fields=False)
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return None if value is None else _clean_email(value)

    @field_validator("phone", check_fields=False)
    @classmethod
    def _phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _clean_phone(value, _region_of(info))

    @field_validator("status", check_fields=False)
    @classmethod
    def _status(cls, value: str | None) -> str | None:
        return None if value is None else clean_status(value)

    @field_validator("tags", check_fields=False)
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else clean_tags(value)


class LeadIn(_LeadRules):
    """A new lead. Without owner_id it belongs to whoever creates it; owner_id null puts it in the pool."""

    name: Name
    company_name: Text200 = ""
    title: Text200 = ""
    email: Text200 = ""
    phone: Phone = ""
    status: Status = "new"
    source: Source = ""
    notes: Notes = ""
    owner_id: OwnerId = None
    tags: list[str] = Field(default_factory=list)
    custom: dict[str, Any] = Field(default_factory=dict, description="Values of the leads' custom fields by key.")


class LeadPatch(_LeadRules):
    """A partial update: only the fields given change (custom: only the keys given)."""

    name: Name | None = None
    company_name: Text200 | None = None
    title: Text200 | None = None
    email: Text200 | None = None
    phone: Phone | None = None
    status: Status | None = None
    source: Source | None = None
    notes: Notes | None = None
    owner_id: OwnerId = None
    tags: list[str] | None = None
    custom: dict[str, Any] | None = None


class LeadOut(BaseModel):
    """A lead as the API returns it. A field the caller's role may not see is absent."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str | None = None
    company_name: str | None = None
    title: str | None = None
    email: str | None = None
    phone: str | None = None
    status: Literal["new", "contacted", "qualified", "unqualified", "converted"] | None = None
    source: str | None = None
    notes: str | None = None
    owner_id: int | None = None
    tags: list[str] | None = None
    custom: dict[str, Any] | None = None
    pooled_at: datetime | None = Field(default=None, description="Since when the lead is in the public pool.")
    claimed_at: datetime | None = Field(default=None, description="When its owner claimed it from the pool.")
    last_activity_at: datetime | None = None
    converted_at: datetime | None = None
    converted_contact_id: int | None = None
    converted_company_id: int | None = None
    converted_deal_id: int | None = None
    created_at: datetime
    updated_at: datetime


class LeadPage(BaseModel):
    """One page of leads; pass next_cursor as `cursor` for the next page."""

    items: list[LeadOut]
    next_cursor: str | None = None


class ConvertIn(BaseModel):
    """How to convert a lead. The contact is always made (from the lead's person fields); the company is
    the one named by company_id, or else a new company named after the lead's company_name (none when
    that is empty and create_company is false); the deal is optional."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    company_id: int | None = Field(default=None, description="Link this existing company instead of making one.")
    create_company: bool = Field(default=True, description="Make a company named after the lead's company_name.")
    create_deal: bool = False
    deal_name: Annotated[str, Field(max_length=200)] = ""
    deal_amount: Decimal = Field(default=Decimal("0"), description="The deal's amount, e.g. \"12500.00\" (>= 0).")
    deal_expected_close: date | None = None

    @field_validator("deal_amount", mode="before")
    @classmethod
    def _amount(cls, value: Any) -> Decimal:
        if isinstance(value, str) and not value.strip():
            return Decimal("0")
        return parse_amount(value)


class ConversionOut(BaseModel):
    """What a conversion made: the contact, the company (new or linked), the deal (if asked for)."""

    lead: LeadOut
    contact_id: int
    company_id: int | None = None
    company_created: bool = False
    deal_id: int | None = None
    activities_moved: int = 0
    tasks_moved: int = 0
