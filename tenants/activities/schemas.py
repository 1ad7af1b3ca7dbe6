"""What activities, timeline entries and tasks look like on the way in and out (API and forms
share these rules). Times are aware datetimes (UTC when stored); a naive time is refused,
since nobody could tell which zone it meant."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

ActivityKind = Literal["call", "meeting", "email", "note"]
TaskStatus = Literal["open", "done", "cancelled"]
# kinds that last a while: only these take duration_minutes
TIMED_KINDS = ("call", "meeting")

RecordId = Annotated[int, Field(gt=0, le=2**63 - 1)]
Subject = Annotated[str, Field(max_length=200)]
Body = Annotated[str, Field(max_length=20000)]
Duration = Annotated[int, Field(ge=0, le=1440, description="Minutes, 0-1440 (calls and meetings only).")]
Title = Annotated[str, Field(min_length=1, max_length=200)]
TaskNotes = Annotated[str, Field(max_length=5000)]


class _Links(BaseModel):
    """The records an entry belongs to: at least one of them. A contact brings its company, a
    deal its company and contact, unless given."""

    company_id: RecordId | None = None
    contact_id: RecordId | None = None
    lead_id: RecordId | None = None
    deal_id: RecordId | None = None


class ActivityIn(_Links):
    """A call, meeting, email or note, logged against at least one record."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: ActivityKind
    subject: Subject = ""
    body: Body = ""
    occurred_at: AwareDatetime | None = Field(default=None, description="When it happened (default: now).")
    duration_minutes: Duration | None = None


class ActivityPatch(BaseModel):
    """A partial update of an activity: only the fields given change. Its records stay."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: ActivityKind | None = None
    subject: Subject | None = None
    body: Body | None = None
    occurred_at: AwareDatetime | None = None
    duration_minutes: Duration | None = None


class ActivityOut(BaseModel):
    """An activity or a timeline entry. A field the caller's role may not see is absent.

    Entries of kind 'event' are written by Kith itself (a stage change, a conversion, a claim,
    a return to the pool, a merge): `event` holds {"name": ..., facts}; they cannot be changed."""

    id: int
    kind: Literal["call", "meeting", "email", "note", "event"]
    subject: str | None = None
    body: str | None = None
    occurred_at: datetime
    duration_minutes: int | None = None
    event: dict[str, Any] | None = None
    company_id: int | None = None
    contact_id: int | None = None
    lead_id: int | None = None
    deal_id: int | None = None
    created_by_id: int | None = None
    author_email: str | None = None
    created_at: datetime


class ActivityPage(BaseModel):
    """One page of activities or of a record's timeline, newest first; pass next_cursor as
    `cursor` for the next page."""

    items: list[ActivityOut]
    next_cursor: str | None = None


class TaskIn(_Links):
    """A new task: assigned to the creator unless `assignee_id` names another active member."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: Title
    notes: TaskNotes = ""
    due_at: AwareDatetime | None = Field(default=None, description="When it is due (ISO 8601 with an offset).")
    status: TaskStatus = "open"
    assignee_id: RecordId | None = None


class TaskPatch(_Links):
    """A partial update of a task: only the fields given change (null clears due_at or a link)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: Title | None = None
    notes: TaskNotes | None = None
    due_at: AwareDatetime | None = None
    status: TaskStatus | None = None
    assignee_id: RecordId | None = None


class TaskOut(BaseModel):
    """A task. `overdue`: open and past its due time."""

    id: int
    title: str | None = None
    notes: str | None = None
    due_at: datetime | None = None
    status: TaskStatus
    overdue: bool = False
    assignee_id: int | None = None
    assignee_email: str | None = None
    company_id: int | None = None
    contact_id: int | None = None
    lead_id: int | None = None
    deal_id: int | None = None
    reminded_at: datetime | None = None
    completed_at: datetime | None = None
    created_by_id: int | None = None
    created_at: datetime
    updated_at: datetime


class TaskPage(BaseModel):
    """One page of tasks, by due time (tasks without one last); pass next_cursor as `cursor`."""

    items: list[TaskOut]
    next_cursor: str | None = None
