"""What a contact looks like on the way in and out (API and forms share these rules)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

_PHONE_CHARS = re.compile(r"^[0-9+()\-. ]*$")
# validation-context key: the region national numbers (no leading +) are read in; see phone_context
PHONE_REGION = "phone_region"


def _clean_email(value: str) -> str:
    value = value.strip()
    if not value:
        return ""
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        # a custom error keeps its template and values apart, so the pages can translate it
        raise PydanticCustomError("email", "not a valid email address: {reason}", {"reason": str(exc)}) from None


def phone_context(region: str | None) -> dict[str, str | None]:
    """The validation context that reads national phone numbers as numbers of `region`
    (the workspace's default phone region, ISO 3166 alpha-2, or None)."""
    return {PHONE_REGION: region}


def _region_of(info: ValidationInfo) -> str | None:
    context = info.context if isinstance(info.context, dict) else {}
    region = context.get(PHONE_REGION)
    return region if isinstance(region, str) and region else None


def _clean_phone(value: str, region: str | None = None) -> str:
    """A phone number in international format when its country is known: from a leading +, or else
    from `region`. Without either the number is kept as typed (only its characters are checked)."""
    value = value.strip()
    if not value:
        return ""
    if not _PHONE_CHARS.match(value) or sum(ch.isdigit() for ch in value) < 3:
        raise PydanticCustomError(
            "phone_chars", "phone may contain only digits, spaces and + ( ) - . and needs at least 3 digits")
    if value.startswith("+"):
        try:
            parsed = phonenumbers.parse(value, None)
        except phonenumbers.NumberParseException:
            raise PydanticCustomError("phone_international", "not a valid international phone number") from None
        if not phonenumbers.is_possible_number(parsed):
            raise PydanticCustomError("phone_country_code", "not a possible phone number for its country code")
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    if region is None:
        return value
    try:
        parsed = phonenumbers.parse(value, region)
        # "possible" (length and prefix) rather than "valid" (assigned ranges), as for +numbers: ranges
        # change faster than the library's metadata, and a real new number must not be refused
        possible = phonenumbers.is_possible_number(parsed)
    except phonenumbers.NumberParseException:
        possible = False
    if not possible:
        raise PydanticCustomError(
            "phone_region", "not a possible phone number in {region}; write numbers from elsewhere with + and "
            "the country code", {"region": region})
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


MAX_TAGS = 20
MAX_TAG_LENGTH = 50


def clean_tags(values: list[str]) -> list[str]:
    """Tags trimmed, each 1-50 characters, duplicates (ignoring case) dropped keeping the first
    spelling, at most 20. Shared by every CRM record with tags."""
    tags: list[str] = []
    seen: set[str] = set()
    for raw in values:
        tag = raw.strip()
        if not 1 <= len(tag) <= MAX_TAG_LENGTH:
            raise PydanticCustomError(
                "tag_length", "each tag needs 1 to {max} characters", {"max": MAX_TAG_LENGTH})
        if tag.casefold() not in seen:
            seen.add(tag.casefold())
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise PydanticCustomError("tag_count", "at most {max} tags", {"max": MAX_TAGS})
    return tags


Name = Annotated[str, Field(min_length=1, max_length=200, description="Full name, any script (e.g. 张伟).")]
Text200 = Annotated[str, Field(max_length=200)]
Notes = Annotated[str, Field(max_length=5000)]
ConsentState = Literal["unknown", "granted", "withdrawn"]
LifecycleStage = Literal["subscriber", "lead", "qualified", "opportunity", "customer", "evangelist", "other"]
LIFECYCLE_STAGES: tuple[str, ...] = ("subscriber", "lead", "qualified", "opportunity", "customer", "evangelist",
                                     "other")
Text100 = Annotated[str, Field(max_length=100)]
Tags = Annotated[list[str], Field(description="Up to 20 tags of 1-50 characters; trimmed, duplicates dropped.")]
Custom = Annotated[dict[str, Any], Field(description="Values of the workspace's custom fields, by field key.")]
CompanyRef = Annotated[int | None, Field(description=(
    "The company this contact works for (its id); the contact's company_name follows the company's name."))]
OwnerRef = Annotated[int | None, Field(description="The member who owns the record (identity id); default: you.")]
ConsentSource = Annotated[str, Field(max_length=100, description=(
    "Where the consent came from (e.g. web form, import, api, unsubscribe link); recorded with a change of "
    "marketing_consent. Default: the channel of the request (api for tokens, web form for pages)."))]


class ContactIn(BaseModel):
    """A new contact."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Name
    email: Text200 = ""
    phone: Annotated[str, Field(max_length=50)] = ""
    company_name: Text200 = ""
    notes: Notes = ""
    marketing_consent: ConsentState = "unknown"
    consent_source: ConsentSource = ""
    company_id: CompanyRef = None
    title: Text200 = ""
    lifecycle_stage: LifecycleStage = "lead"
    source: Text100 = ""
    tags: Tags = []
    custom: Custom = {}
    owner_id: OwnerRef = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return _clean_email(value)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return clean_tags(value)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str, info: ValidationInfo) -> str:
        return _clean_phone(value, _region_of(info))


class ContactPatch(BaseModel):
    """A partial update: only the fields given change."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Name | None = None
    email: Text200 | None = None
    phone: Annotated[str, Field(max_length=50)] | None = None
    company_name: Text200 | None = None
    notes: Notes | None = None
    marketing_consent: ConsentState | None = None
    consent_source: ConsentSource | None = None
    company_id: CompanyRef = Field(default=None, description="A company's id, or null to unlink the contact.")
    title: Text200 | None = None
    lifecycle_stage: LifecycleStage | None = None
    source: Text100 | None = None
    tags: Tags | None = None
    custom: Custom | None = Field(default=None, description="Custom field values to change; others are kept.")
    owner_id: OwnerRef = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return None if value is None else _clean_email(value)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else clean_tags(value)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _clean_phone(value, _region_of(info))


class ContactOut(BaseModel):
    """A contact as the API returns it. A field the caller's role may not see is absent."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    company_name: str | None = None
    notes: str | None = None
    marketing_consent: ConsentState | None = None
    consent_source: str | None = None
    consent_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    erased_at: datetime | None = Field(default=None, description="When the contact was erased on request.")
    owner_id: int | None = None
    company_id: int | None = None
    title: str | None = None
    lifecycle_stage: LifecycleStage | None = None
    source: str | None = None
    tags: list[str] | None = None
    custom: dict[str, Any] | None = None
    last_activity_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class ContactPage(BaseModel):
    """One page of contacts, newest first; pass next_cursor as `cursor` for the next page."""

    items: list[ContactOut]
    next_cursor: str | None = None
