"""What a ticket, its messages and the service levels look like on the way in and out (API and forms
share these rules)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from kith.tenants.contacts.schemas import clean_tags

STATUSES: tuple[str, ...] = ("new", "open", "pending", "resolved", "closed")
# still to be worked on: counted in the queue, due times apply
WORKING: tuple[str, ...] = ("new", "open", "pending")
PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")
CHANNELS: tuple[str, ...] = ("email", "phone", "web", "chat", "other")
MESSAGE_KINDS: tuple[str, ...] = ("reply", "note")

Subject = Annotated[str, Field(min_length=1, max_length=200, description="What the customer needs, any script.")]
Description = Annotated[str, Field(max_length=20000, description="The request as the customer put it.")]
Status = Literal["new", "open", "pending", "resolved", "closed"]
Priority = Literal["low", "normal", "high", "urgent"]
Channel = Literal["email", "phone", "web", "chat", "other"]
OwnerId = Annotated[int | None, Field(description="The agent working on the ticket; null leaves it unassigned.")]


class _TicketRules(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("tags", check_fields=False)
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else clean_tags(value)


class TicketIn(_TicketRules):
    """A new ticket. Without owner_id it is assigned to whoever opens it; owner_id null leaves it unassigned
    (seen by roles whose scope is every record). Its due times follow the workspace's service levels."""

    subject: Subject
    description: Description = ""
    priority: Priority = "normal"
    channel: Channel = "web"
    contact_id: int | None = Field(default=None, description="The contact who asked; brings its company along.")
    company_id: int | None = None
    owner_id: OwnerId = None
    tags: list[str] = Field(default_factory=list)
    custom: dict[str, Any] = Field(default_factory=dict, description="Values of the tickets' custom fields by key.")


class TicketPatch(_TicketRules):
    """A partial update: only the fields given change. Status resolved or closed stamps the time; moving a
    resolved or closed ticket back to open or pending reopens it. A new priority recomputes the due times."""

    subject: Subject | None = None
    description: Description | None = None
    status: Status | None = None
    priority: Priority | None = None
    channel: Channel | None = None
    contact_id: int | None = None
    company_id: int | None = None
    owner_id: OwnerId = None
    tags: list[str] | None = None
    custom: dict[str, Any] | None = None


class TicketOut(BaseModel):
    """A ticket as the API returns it. A field the caller's role may not see is absent."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    subject: str | None = None
    description: str | None = None
    status: Status | None = None
    priority: Priority | None = None
    channel: Channel | None = None
    contact_id: int | None = None
    company_id: int | None = None
    owner_id: int | None = None
    tags: list[str] | None = None
    custom: dict[str, Any] | None = None
    first_response_due_at: datetime
    resolution_due_at: datetime
    first_responded_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    first_response_breached: bool = Field(
        default=False, description="The first reply came late, or has not come and is overdue.")
    resolution_breached: bool = Field(
        default=False, description="Resolved late, or still open past its resolution time.")
    last_activity_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class TicketPage(BaseModel):
    """One page of tickets; pass next_cursor as `cursor` for the next page."""

    items: list[TicketOut]
    next_cursor: str | None = None


class MessageIn(BaseModel):
    """A reply to the customer or an internal note. The first reply stamps first_responded_at and opens a
    new ticket; `status` changes the ticket's status with the message (e.g. pending: waiting for the customer)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: Literal["reply", "note"] = "reply"
    body: Annotated[str, Field(min_length=1, max_length=20000)]
    status: Status | None = None
    email: bool | None = Field(
        default=None, description="Email the reply to the ticket's contact: by default when the contact has an "
        "email address you may see; true demands one (422 without); false only records it.")


class MessageOut(BaseModel):
    id: int
    ticket_id: int
    kind: Literal["reply", "note"]
    body: str
    author_id: int | None = None
    created_at: datetime
    email_to: str = Field(default="", description="The address a reply was emailed to ('' when not emailed).")
    email_status: Literal["", "pending", "sending", "sent", "failed"] = ""
    email_error: str = ""
    emailed_at: datetime | None = None


class TicketThread(BaseModel):
    """A ticket with its conversation, oldest message first."""

    ticket: TicketOut
    messages: list[MessageOut]


Hours = Annotated[int, Field(ge=1, le=8760)]


class SlaTimes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_response_hours: Hours
    resolution_hours: Hours

    @model_validator(mode="after")
    def _ordered(self) -> SlaTimes:
        if self.resolution_hours < self.first_response_hours:
            raise PydanticCustomError(
                "sla_order", "the resolution time cannot be shorter than the first-response time")
        return self


class SlaIn(BaseModel):
    """The workspace's service levels: for each priority, hours to the first reply and to resolution
    (1-8760). Changing them applies to tickets opened (or re-prioritised) afterwards."""

    model_config = ConfigDict(extra="forbid")

    urgent: SlaTimes
    high: SlaTimes
    normal: SlaTimes
    low: SlaTimes


class SlaOut(SlaIn):
    pass


class QueueCounts(BaseModel):
    """The service queue at a glance, within the caller's scope."""

    new: int
    open: int
    pending: int
    unassigned: int
    overdue: int
    mine: int
