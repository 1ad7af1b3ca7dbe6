"""The email campaigns API: segments (saved filters over contacts, with a live count) and
campaigns (drafts, scheduling, start, pause, resume, cancel, and the report).

Handlers validate input and call one action of kith.tenants.campaigns with the caller as Actor;
permission checks happen there. Email leaving Kith (start, schedule, unschedule, pause, resume,
cancel) needs 'campaigns: edit' and the workspace permission manage_campaigns: the built-in roles
hold both or neither, so those routes declare 'campaigns: edit' (what a sales member is refused
first); a custom role with 'campaigns: edit' alone is refused naming 'workspace: manage_campaigns'.
Refusals keep the service's `fields`, so a refused start names every problem at once.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.requests import Request

from kith.platform.access.session import acting_as
from kith.tenants.campaigns import campaigns, segments
from kith.tenants.campaigns.campaigns import CampaignIn, CampaignPatch
from kith.tenants.campaigns.report import campaign_report
from kith.tenants.campaigns.segments import SegmentDefinition, SegmentIn, SegmentPatch
from kith.tenants.records.refusals import RecordsRefusal
from kith.web.api.registry import QueryParam, endpoint
from kith.web.edge import actor_of
from kith.web.errors import ApiError

T = TypeVar("T")
TAG = "campaigns"
SEGMENTS_TAG = "segments"
SEND = ("campaigns", "edit")  # plus the workspace permission manage_campaigns, checked by the action
Status = Literal["draft", "scheduled", "sending", "paused", "sent", "cancelled"]


# --- models ----------------------------------------------------------------------------------


class SegmentCounts(BaseModel):
    contacts: int = Field(description="Contacts matching the segment (within your record scope).")
    reachable: int = Field(description="Addresses a campaign would send to: with an email, consent to marketing, "
                                       "not suppressed or erased; one per address.")
    without_email: int
    without_consent: int = Field(description="With an address but without marketing consent 'granted'.")


class SegmentOut(BaseModel):
    id: int
    name: str
    definition: SegmentDefinition
    created_by_id: int | None = None
    created_at: datetime
    updated_at: datetime
    counts: SegmentCounts | None = Field(default=None, description="On GET /segments/{segment_id}: the live count.")


class SegmentList(BaseModel):
    items: list[SegmentOut] = Field(description="By name.")


class SegmentCountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    definition: SegmentDefinition = Field(default_factory=SegmentDefinition)


class CampaignProgress(BaseModel):
    pending: int = Field(description="Recipients not sent yet.")
    sent: int
    failed: int
    suppressed: int = Field(description="Left out when their turn came (unsubscribed, bounced, no consent).")


class CampaignOut(BaseModel):
    id: int
    name: str
    status: Status = Field(description="draft -> scheduled -> sending -> sent; paused (from sending); cancelled.")
    segment_id: int | None = None
    template_id: int | None = None
    subject: str = ""
    html_body: str = ""
    text_body: str = ""
    from_name: str = ""
    from_email: str = ""
    reply_to: str = ""
    scheduled_at: datetime | None = Field(default=None, description="When a scheduled campaign starts (UTC).")
    started_at: datetime | None = Field(default=None, description="When its recipients were frozen.")
    finished_at: datetime | None = None
    paused_reason: str = Field(default="", description="Why it paused: a member, or a provider that refused.")
    recipients_total: int = Field(default=0, description="Recipients frozen at the start.")
    created_by_id: int | None = None
    started_by_id: int | None = None
    created_at: datetime
    updated_at: datetime
    sent: int | None = Field(default=None, description="Emails sent so far (in lists).")
    progress: CampaignProgress | None = Field(default=None, description="On GET /campaigns/{campaign_id}.")


class CampaignList(BaseModel):
    items: list[CampaignOut] = Field(description="Newest first.")


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: AwareDatetime = Field(description="When to start, ISO 8601 with its offset (2026-11-11T09:00:00+08:00); "
                                          "in the future.")


class ReportCampaign(BaseModel):
    id: int
    name: str
    status: Status
    started_at: datetime | None
    finished_at: datetime | None


class ReportCounts(BaseModel):
    recipients: int
    pending: int
    sent: int
    delivered: int
    opened: int = Field(description="Recipients who opened (once each, however often they did).")
    clicked: int
    bounced: int
    unsubscribed: int
    complained: int
    failed: int
    suppressed: int


class ReportRates(BaseModel):
    delivered: float | None = Field(description="Share of the emails sent, 0..1; null while nothing was sent.")
    opened: float | None
    clicked: float | None
    bounced: float | None
    unsubscribed: float | None
    complained: float | None


class ReportPoint(BaseModel):
    at: datetime = Field(description="The bucket's start (UTC).")
    sent: int
    opened: int = Field(description="First opens in the bucket.")
    clicked: int = Field(description="First clicks in the bucket.")


class ReportSeries(BaseModel):
    bucket: Literal["hour", "day", "week"] = Field(description="Buckets in the workspace's time zone.")
    time_zone: str
    points: list[ReportPoint]


class ReportOut(BaseModel):
    campaign: ReportCampaign
    counts: ReportCounts
    rates: ReportRates
    series: ReportSeries


# --- helpers ---------------------------------------------------------------------------------


async def _run(call: Awaitable[T]) -> T:
    """Await a campaigns action, turning its refusals into API errors (PermissionDenied is the
    app's 403 answer, naming the permission)."""
    try:
        return await call
    except RecordsRefusal as exc:
        raise ApiError(exc.status, exc.code, exc.message, fields=exc.fields) from None


def _id(request: Request, name: str, what: str) -> int:
    raw = str(request.path_params[name])
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(404, "not_found", f"There is no such {what}.")
    return int(raw)


def _campaign_id(request: Request) -> int:
    return _id(request, "campaign_id", "campaign")


def _segment_id(request: Request) -> int:
    return _id(request, "segment_id", "segment")


def segment_out(row: dict[str, Any]) -> SegmentOut:
    return SegmentOut.model_validate({k: v for k, v in row.items() if k in SegmentOut.model_fields})


def campaign_out(row: dict[str, Any]) -> CampaignOut:
    return CampaignOut.model_validate({k: v for k, v in row.items() if k in CampaignOut.model_fields})


async def report_of(request: Request, campaign_id: int) -> dict[str, Any]:
    """The campaign's report as the caller may see it (404 when it is not in this workspace)."""
    async with acting_as(actor_of(request)) as session:
        return await _run(campaign_report(session, campaign_id))


# --- segments --------------------------------------------------------------------------------


@endpoint("GET", "/segments", summary="List segments (saved filters over contacts) by name",
          permission=("segments", "view"), response=SegmentList, errors=(401, 403), tag=SEGMENTS_TAG)
async def list_segments(request: Request, body: None) -> BaseModel:
    return SegmentList(items=[segment_out(r) for r in await _run(segments.list_segments(actor_of(request)))])


@endpoint("POST", "/segments", summary="Save a segment; its filters are checked as lists check them (422 names "
                                       "the bad one)",
          permission=("segments", "create"), body=SegmentIn, response=SegmentOut, status=201,
          errors=(400, 401, 403, 409, 422), tag=SEGMENTS_TAG)
async def create_segment(request: Request, body: SegmentIn) -> BaseModel:
    return segment_out(await _run(segments.create_segment(actor_of(request), body)))


@endpoint("POST", "/segments/count",
          summary="Count a segment definition before saving it: its contacts and how many a campaign would reach",
          permission=("segments", "view"), body=SegmentCountIn, response=SegmentCounts, errors=(400, 401, 403, 422),
          tag=SEGMENTS_TAG)
async def count_segment(request: Request, body: SegmentCountIn) -> BaseModel:
    return SegmentCounts(**await _run(segments.count_segment(actor_of(request), body.definition)))


@endpoint("GET", "/segments/{segment_id}", summary="Get one segment with its live count",
          permission=("segments", "view"), response=SegmentOut, errors=(401, 403, 404, 422), tag=SEGMENTS_TAG)
async def get_segment(request: Request, body: None) -> BaseModel:
    return segment_out(await _run(segments.get_segment(actor_of(request), _segment_id(request))))


@endpoint("PATCH", "/segments/{segment_id}", summary="Rename a segment or change its definition",
          permission=("segments", "edit"), body=SegmentPatch, response=SegmentOut,
          errors=(400, 401, 403, 404, 409, 422), tag=SEGMENTS_TAG)
async def update_segment(request: Request, body: SegmentPatch) -> BaseModel:
    return segment_out(await _run(segments.update_segment(actor_of(request), _segment_id(request), body)))


@endpoint("DELETE", "/segments/{segment_id}", summary="Delete a segment no campaign uses (409 otherwise)",
          permission=("segments", "delete"), status=204, errors=(401, 403, 404, 409), tag=SEGMENTS_TAG)
async def delete_segment(request: Request, body: None) -> None:
    await _run(segments.delete_segment(actor_of(request), _segment_id(request)))


# --- campaigns -------------------------------------------------------------------------------


@endpoint("GET", "/campaigns", summary="List campaigns, newest first, with the emails sent so far",
          permission=("campaigns", "view"), response=CampaignList, errors=(401, 403, 422), tag=TAG,
          query=(QueryParam("limit", "At most this many, 1-500 (default 100).", "integer"),))
async def list_campaigns(request: Request, body: None) -> BaseModel:
    raw = request.query_params.get("limit", "")
    if raw and (not raw.isdigit() or not 1 <= int(raw) <= 500):
        raise ApiError(422, "invalid_input", "limit must be a whole number from 1 to 500.",
                       fields={"limit": "Must be a whole number from 1 to 500."})
    rows = await _run(campaigns.list_campaigns(actor_of(request), limit=int(raw) if raw else 100))
    return CampaignList(items=[campaign_out(r) for r in rows])


@endpoint("POST", "/campaigns", summary="Create a draft campaign (template_id copies a template's subject and "
                                        "bodies)",
          permission=("campaigns", "create"), body=CampaignIn, response=CampaignOut, status=201,
          errors=(400, 401, 403, 422), tag=TAG)
async def create_campaign(request: Request, body: CampaignIn) -> BaseModel:
    return campaign_out(await _run(campaigns.create_campaign(actor_of(request), body)))


@endpoint("GET", "/campaigns/{campaign_id}", summary="Get one campaign with its sending progress",
          permission=("campaigns", "view"), response=CampaignOut, errors=(401, 403, 404), tag=TAG)
async def get_campaign(request: Request, body: None) -> BaseModel:
    return campaign_out(await _run(campaigns.get_campaign(actor_of(request), _campaign_id(request))))


@endpoint("PATCH", "/campaigns/{campaign_id}", summary="Change a draft or scheduled campaign (409 once it started)",
          permission=("campaigns", "edit"), body=CampaignPatch, response=CampaignOut,
          errors=(400, 401, 403, 404, 409, 422), tag=TAG)
async def update_campaign(request: Request, body: CampaignPatch) -> BaseModel:
    return campaign_out(await _run(campaigns.update_campaign(actor_of(request), _campaign_id(request), body)))


@endpoint("POST", "/campaigns/{campaign_id}/start",
          summary="Send now: everything that would stop it is refused at once (422 with each problem in fields: "
                  "segment_id, subject, html_body, template, from_email, reply_to, quota); needs manage_campaigns",
          permission=SEND, response=CampaignOut, errors=(401, 403, 404, 409, 422), tag=TAG)
async def start_campaign(request: Request, body: None) -> BaseModel:
    return campaign_out(await _run(campaigns.start_campaign(actor_of(request), _campaign_id(request))))


@endpoint("POST", "/campaigns/{campaign_id}/schedule",
          summary="Schedule a draft for a time in the future (checked as a start is); needs manage_campaigns",
          permission=SEND, body=ScheduleIn, response=CampaignOut, errors=(400, 401, 403, 404, 409, 422), tag=TAG)
async def schedule_campaign(request: Request, body: ScheduleIn) -> BaseModel:
    return campaign_out(await _run(campaigns.schedule_campaign(actor_of(request), _campaign_id(request), body.at)))


@endpoint("POST", "/campaigns/{campaign_id}/unschedule", summary="A scheduled campaign back to draft",
          permission=SEND, response=CampaignOut, errors=(401, 403, 404, 409), tag=TAG)
async def unschedule_campaign(request: Request, body: None) -> BaseModel:
    return campaign_out(await _run(campaigns.unschedule_campaign(actor_of(request), _campaign_id(request))))


@endpoint("POST", "/campaigns/{campaign_id}/pause",
          summary="Pause a sending campaign; the emails not yet sent wait (409 unless it is sending)",
          permission=SEND, response=CampaignOut, errors=(401, 403, 404, 409), tag=TAG)
async def pause_campaign(request: Request, body: None) -> BaseModel:
    return campaign_out(await _run(campaigns.pause_campaign(actor_of(request), _campaign_id(request))))


@endpoint("POST", "/campaigns/{campaign_id}/resume", summary="Resume a paused campaign",
          permission=SEND, response=CampaignOut, errors=(401, 403, 404, 409), tag=TAG)
async def resume_campaign(request: Request, body: None) -> BaseModel:
    return campaign_out(await _run(campaigns.resume_campaign(actor_of(request), _campaign_id(request))))


@endpoint("POST", "/campaigns/{campaign_id}/cancel",
          summary="Cancel a campaign for good: the emails not yet sent are never sent",
          permission=SEND, response=CampaignOut, errors=(401, 403, 404, 409), tag=TAG)
async def cancel_campaign(request: Request, body: None) -> BaseModel:
    return campaign_out(await _run(campaigns.cancel_campaign(actor_of(request), _campaign_id(request))))


@endpoint("DELETE", "/campaigns/{campaign_id}",
          summary="Delete a draft, or a cancelled campaign that never sent an email (409 otherwise)",
          permission=("campaigns", "delete"), status=204, errors=(401, 403, 404, 409), tag=TAG)
async def delete_campaign(request: Request, body: None) -> None:
    await _run(campaigns.delete_campaign(actor_of(request), _campaign_id(request)))


@endpoint("GET", "/campaigns/{campaign_id}/report",
          summary="A campaign's report: counts, rates over the emails sent, and sent/opened/clicked over time",
          permission=("campaigns", "view"), response=ReportOut, errors=(401, 403, 404), tag=TAG)
async def get_campaign_report(request: Request, body: None) -> BaseModel:
    return ReportOut.model_validate(await report_of(request, _campaign_id(request)))
