"""What a company (account) looks like on the way in and out (API and forms share these rules).

Phone numbers follow the contacts' rules, read in the workspace's default phone region (pass
`phone_context(region)` as the validation context); tags follow `clean_tags`; custom field
values are checked by the action against the workspace's definitions.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from kith.tenants.contacts.schemas import (
    ContactOut,
    Custom,
    OwnerRef,
    Tags,
    _clean_phone,
    _region_of,
    clean_tags,
)

SIZES: tuple[str, ...] = ("1-10", "11-50", "51-200", "201-1000", "1001-5000", "5000+")
Size = Literal["", "1-10", "11-50", "51-200", "201-1000", "1001-5000", "5000+"]
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*://")

CompanyName = Annotated[str, Field(min_length=1, max_length=200, description="Any script (e.g. 北京星辰科技有限公司).")]
Domain = Annotated[str, Field(max_length=253, description=(
    "The company's web domain; a URL is reduced to its host name (https://www.Example.com/about -> www.example.com)."))]
Text100 = Annotated[str, Field(max_length=100)]
Phone = Annotated[str, Field(max_length=50)]
Address = Annotated[str, Field(max_length=500)]
Country = Annotated[str, Field(max_length=2, description="ISO 3166 alpha-2 country code (CN, DE, US).")]
Notes = Annotated[str, Field(max_length=5000)]


def clean_domain(value: str) -> str:
    """A host name from what people paste: scheme, user, port, path, query and a trailing dot
    removed, lower case; refused unless it is a plausible public host name (labels of letters,
    digits and hyphens, at least two labels, a top-level label that is not a number). Internationalised
    names (例子.中国) are kept as typed and checked through their IDNA form."""
    value = value.strip().lower()
    if not value:
        return ""
    value = _SCHEME.sub("", value)
    value = value.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    value = value.rsplit("@", 1)[-1]
    value = value.split(":", 1)[0].rstrip(".")
    try:
        ascii_form = value.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_form = ""
    labels = ascii_form.split(".") if ascii_form else []
    if (len(labels) < 2 or len(ascii_form) > 253 or not all(_LABEL.match(label) for label in labels)
            or labels[-1].isdigit()):
        raise PydanticCustomError("domain", "not a valid domain name (for example example.com)")
    return value


def clean_country(value: str) -> str:
    """An ISO 3166 alpha-2 code in upper case, or ''."""
    value = value.strip().upper()
    if not value:
        return ""
    if value not in phonenumbers.SUPPORTED_REGIONS:
        raise PydanticCustomError("country", "not an ISO 3166 two-letter country code (for example CN, DE, US)")
    return value


class _CompanyRules(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("domain", check_fields=False)
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        return None if value is None else clean_domain(value)

    @field_validator("country", check_fields=False)
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        return None if value is None else clean_country(value)

    @field_validator("phone", check_fields=False)
    @classmethod
    def _phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _clean_phone(value, _region_of(info))

    @field_validator("tags", check_fields=False)
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else clean_tags(value)


class CompanyIn(_CompanyRules):
    """A new company. Without owner_id it belongs to you."""

    name: CompanyName
    domain: Domain = ""
    industry: Text100 = ""
    size: Size = ""
    phone: Phone = ""
    address: Address = ""
    city: Text100 = ""
    country: Country = ""
    notes: Notes = ""
    owner_id: OwnerRef = None
    tags: Tags = []
    custom: Custom = {}


class CompanyPatch(_CompanyRules):
    """A partial update: only the fields given change (owner_id: null gives the company to nobody)."""

    name: CompanyName | None = None
    domain: Domain | None = None
    industry: Text100 | None = None
    size: Size | None = None
    phone: Phone | None = None
    address: Address | None = None
    city: Text100 | None = None
    country: Country | None = None
    notes: Notes | None = None
    owner_id: OwnerRef = None
    tags: Tags | None = None
    custom: Custom | None = Field(default=None, description="Custom field values to change; others are kept.")


class CompanyOut(BaseModel):
    """A company as the API returns it. A field the caller's role may not see is absent."""

    id: int
    name: str | None = None
    domain: str | None = None
    industry: str | None = None
    size: str | None = None
    phone: str | None = None
    address: str | None = None
    city: str | None = None
    country: str | None = None
    notes: str | None = None
    owner_id: int | None = None
    tags: list[str] | None = None
    custom: dict[str, Any] | None = None
    last_activity_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class CompanyPage(BaseModel):
    """One page of companies; pass next_cursor as `cursor` for the next page."""

    items: list[CompanyOut]
    next_cursor: str | None = None


# --- the customer 360 view -------------------------------------------------------------------
# Each section is present only when the caller's role may view that kind of record, lists at most
# a few of them (newest first) and says how many there are in the caller's scope.


class ContactBrief(BaseModel):
    """A contact in a company's overview."""

    id: int
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    title: str | None = None
    lifecycle_stage: str | None = None
    owner_id: int | None = None


class CompanyBrief(BaseModel):
    """A contact's company in its overview."""

    id: int
    name: str | None = None
    domain: str | None = None
    industry: str | None = None
    city: str | None = None
    country: str | None = None
    owner_id: int | None = None


class DealBrief(BaseModel):
    """A deal with its stage (amount as a decimal string)."""

    id: int
    name: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    expected_close: date | None = None
    stage_id: int | None = None
    stage: str | None = Field(default=None, description="The stage's name.")
    stage_kind: Literal["open", "won", "lost"] | None = None
    owner_id: int | None = None
    company_id: int | None = None
    contact_id: int | None = None


class OrderBrief(BaseModel):
    """One order of the purchase history (total as a decimal string)."""

    id: int
    number: str | None = None
    order_date: date
    status: str | None = None
    total: Decimal | None = None
    currency: str
    contact_id: int | None = None
    owner_id: int | None = None


class TaskBrief(BaseModel):
    """An open task about the record."""

    id: int
    title: str | None = None
    due_at: datetime | None = None
    status: str
    assignee_id: int | None = None


class TicketBrief(BaseModel):
    """A service ticket of the customer, newest first."""

    id: int
    subject: str | None = None
    status: str | None = None
    priority: str | None = None
    resolution_due_at: datetime
    owner_id: int | None = None


class TicketSection(BaseModel):
    items: list[TicketBrief]
    total: int


class ContactSection(BaseModel):
    items: list[ContactBrief]
    total: int


class DealSection(BaseModel):
    items: list[DealBrief]
    total: int


class OrderSection(BaseModel):
    items: list[OrderBrief]
    total: int


class TaskSection(BaseModel):
    items: list[TaskBrief]
    total: int


class CompanyOverview(BaseModel):
    """A company with its contacts, deals, orders, open tasks, service tickets and timeline (the 360 view).
    A section the caller's role may not view is absent."""

    company: CompanyOut
    contacts: ContactSection | None = None
    deals: DealSection | None = None
    orders: OrderSection | None = None
    tasks: TaskSection | None = None
    tickets: TicketSection | None = None
    timeline: list[dict[str, Any]] | None = Field(default=None, description="Activities and events, newest first.")


class ContactOverview(BaseModel):
    """A contact with its company, deals, orders, open tasks, service tickets and timeline."""

    contact: ContactOut
    company: CompanyBrief | None = None
    deals: DealSection | None = None
    orders: OrderSection | None = None
    tasks: TaskSection | None = None
    tickets: TicketSection | None = None
    timeline: list[dict[str, Any]] | None = Field(default=None, description="Activities and events, newest first.")
