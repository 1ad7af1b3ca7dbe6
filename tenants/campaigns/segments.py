"""Segments: saved dynamic filters over contacts, evaluated when a campaign starts.

A definition is the contacts list's own filters (any field, custom fields, tags, lifecycle
stage, last activity: `field:op:value` as lists take them) plus conditions lists cannot say:
the contact's company's fields, an open deal in a stage, and engagement with an earlier
campaign. It compiles, through the list engine (same checks: unknown and hidden fields are
refused), into WHERE conditions on contacts within the actor's record scope, so a live count and
the recipients frozen at a campaign's start are one statement each.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.companies.spec import SPEC as COMPANIES_SPEC
from kith.tenants.contacts.spec import SPEC as CONTACTS_SPEC
from kith.tenants.records.listing import ListError, filter_conditions, parse_filter
from kith.tenants.records.refusals import RecordsRefusal

OBJECT = "segments"
ENGAGEMENT_EVENTS = ("opened", "clicked", "not_opened", "sent")


class Engagement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    campaign_id: int
    event: str = Field(description="opened, clicked, not_opened (sent it but never opened) or sent")

    @field_validator("event")
    @classmethod
    def _event(cls, value: str) -> str:
        if value not in ENGAGEMENT_EVENTS:
            raise ValueError(f"must be one of {', '.join(ENGAGEMENT_EVENTS)}")
        return value


class SegmentDefinition(BaseModel):
    """Who is in a segment: every condition must hold."""

    model_config = ConfigDict(extra="forbid")

    filters: list[str] = Field(default_factory=list, description=(
        "Contact filters as lists take them: 'field:op:value' (e.g. 'lifecycle_stage:eq:customer', "
        "'tags:has:vip', 'custom.city:eq:上海', 'last_activity_at:gte:2026-01-01')."))
    company: list[str] = Field(default_factory=list, description=(
        "Filters on the contact's company, same form (e.g. 'industry:eq:Software')."))
    deal_stage: int | None = Field(default=None, description="Contacts with a deal in this stage (stage id).")
    engagement: Engagement | None = None


class SegmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=120)
    definition: SegmentDefinition = Field(default_factory=SegmentDefinition)


class SegmentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, min_length=1, max_length=120)
    definition: SegmentDefinition | None = None


def _parsed(raw: list[str], part: str) -> list[tuple[str, str, str]]:
    found = []
    for item in raw:
        try:
            found.append(parse_filter(item))
        except ListError as exc:
            raise RecordsRefusal(422, "invalid_segment", f"{part}: {exc}", fields={part: str(exc)}) from None
    return found


async def compile_segment(session: TenantSession, definition: SegmentDefinition, *,
                          params: list[Any] | None = None) -> tuple[list[str], list[Any]]:
    """WHERE conditions on `contacts` (and their parameters after `params`) for the segment, within
    the actor's record scope; bad filters are a 422 naming them."""
    try:
        conditions, values = await filter_conditions(session, CONTACTS_SPEC, _parsed(definition.filters, "filters"),
                                                     params=params or [])
        if definition.company:
            company, values = await filter_conditions(session, COMPANIES_SPEC,
                                                      _parsed(definition.company, "company"), params=values,
                                                      scoped=False)
            inner = " AND ".join(company) or "true"
            conditions.append(f"contacts.company_id IN (SELECT companies.id FROM companies WHERE {inner})")
    except ListError as exc:
        raise RecordsRefusal(422, "invalid_segment", str(exc), fields={"definition": str(exc)}) from None
    if definition.deal_stage is not None:
        values.append(int(definition.deal_stage))
        conditions.append(f"EXISTS (SELECT 1 FROM deals d WHERE d.stage_id = ${len(values)}"
                          " AND (d.contact_id = contacts.id OR (d.company_id IS NOT NULL"
                          " AND d.company_id = contacts.company_id)))")
    if definition.engagement is not None:
        values.append(int(definition.engagement.campaign_id))
        ref = f"${len(values)}"
        condition = {"opened": "r.opened_at IS NOT NULL", "clicked": "r.clicked_at IS NOT NULL",
                     "sent": "r.status = 'sent'", "not_opened": "r.status = 'sent' AND r.opened_at IS NULL"}
        conditions.append(f"EXISTS (SELECT 1 FROM campaign_recipients r WHERE r.contact_id = contacts.id"
                          f" AND r.campaign_id = {ref} AND {condition[definition.engagement.event]})")
    return conditions, values


# Who a campaign can reach among a segment's contacts: an address, consent to marketing, not
# erased, not on the suppression list (unsubscribed, bounced, complained).
REACHABLE = ("contacts.email <> ''", "contacts.erased_at IS NULL", "contacts.marketing_consent = 'granted'",
             "NOT EXISTS (SELECT 1 FROM email_suppressions x WHERE x.email = lower(contacts.email))")


async def segment_counts(session: TenantSession, definition: SegmentDefinition) -> dict[str, int]:
    """The segment's contacts, and how many of them a campaign would reach (one email per address)."""
    conditions, values = await compile_segment(session, definition)
    where = " AND ".join(conditions) or "true"
    rows = await session.tx.execute_query_dict(
        "SELECT count(*) AS contacts,"  # noqa: S608 - conditions built by the list engine, values bound
        f" count(DISTINCT lower(contacts.email)) FILTER (WHERE {' AND '.join(REACHABLE)}) AS reachable,"
        " count(*) FILTER (WHERE contacts.email = '') AS without_email,"
        " count(*) FILTER (WHERE contacts.email <> '' AND contacts.marketing_consent <> 'granted')"
        " AS without_consent"
        f" FROM contacts WHERE {where}", values)
    return {k: int(v) for k, v in rows[0].items()}


def _definition(row: dict[str, Any]) -> SegmentDefinition:
    raw = row["definition"]
    return SegmentDefinition.model_validate(json.loads(raw) if isinstance(raw, str) else raw or {})


def _present(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "definition": _definition(row).model_dump()}


async def count_segment(actor: Actor, definition: SegmentDefinition) -> dict[str, int]:
    """A live count while a segment is being edited (needs 'segments: view')."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        return await segment_counts(session, definition)


async def list_segments(actor: Actor) -> list[dict[str, Any]]:
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        rows = await session.tx.execute_query_dict("SELECT * FROM segments ORDER BY lower(name), id")
        return [_present(r) for r in rows]


async def load_segment(session: TenantSession, segment_id: int, *, lock: bool = False) -> dict[str, Any]:
    rows = await session.tx.execute_query_dict(
        "SELECT * FROM segments WHERE id = $1" + (" FOR UPDATE" if lock else ""), [int(segment_id)])
    if not rows:
        raise RecordsRefusal(404, "not_found", "There is no such segment.")
    return rows[0]


async def get_segment(actor: Actor, segment_id: int) -> dict[str, Any]:
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        row = await load_segment(session, segment_id)
        return {**_present(row), "counts": await segment_counts(session, _definition(row))}


async def _name_free(session: TenantSession, name: str, segment_id: int | None = None) -> None:
    rows = await session.tx.execute_query_dict(
        "SELECT id FROM segments WHERE lower(name) = lower($1) AND id IS DISTINCT FROM $2", [name, segment_id])
    if rows:
        raise RecordsRefusal(409, "name_taken", f"A segment called '{name}' already exists.",
                             fields={"name": "already taken"})


async def create_segment(actor: Actor, data: SegmentIn) -> dict[str, Any]:
    async with acting_as(actor) as session:
        session.require(OBJECT, "create")
        await compile_segment(session, data.definition)  # refuse what would not run, now
        await _name_free(session, data.name)
        rows = await session.tx.execute_query_dict(
            "INSERT INTO segments (name, definition, created_by_id) VALUES ($1, $2::jsonb, $3) RETURNING *",
            [data.name, data.definition.model_dump_json(), actor.identity_id])
        await session.audit("segment.create", OBJECT, rows[0]["id"],
                            {"name": [None, data.name], "definition": [None, data.definition.model_dump()]})
        return _present(rows[0])


async def update_segment(actor: Actor, segment_id: int, patch: SegmentPatch) -> dict[str, Any]:
    async with acting_as(actor) as session:
        session.require(OBJECT, "edit")
        before = await load_segment(session, segment_id, lock=True)
        name = patch.name if patch.name is not None else before["name"]
        definition = patch.definition if patch.definition is not None else _definition(before)
        await compile_segment(session, definition)
        if name != before["name"]:
            await _name_free(session, name, segment_id)
        rows = await session.tx.execute_query_dict(
            "UPDATE segments SET name = $2, definition = $3::jsonb, updated_at = now() WHERE id = $1 RETURNING *",
            [segment_id, name, definition.model_dump_json()])
        diff = {k: [v[0], v[1]] for k, v in {"name": (before["name"], name),
                                              "definition": (_definition(before).model_dump(),
                                                             definition.model_dump())}.items() if v[0] != v[1]}
        if diff:
            await session.audit("segment.update", OBJECT, segment_id, diff)
        return _present(rows[0])


async def delete_segment(actor: Actor, segment_id: int) -> None:
    async with acting_as(actor) as session:
        session.require(OBJECT, "delete")
        row = await load_segment(session, segment_id, lock=True)
        used = await session.tx.execute_query_dict(
            "SELECT count(*) AS n FROM campaigns WHERE segment_id = $1", [segment_id])
        if used[0]["n"]:
            raise RecordsRefusal(409, "in_use", f"{used[0]['n']} campaign(s) use this segment; it cannot be deleted.")
        await session.tx.execute_query("DELETE FROM segments WHERE id = $1", [segment_id])
        await session.audit("segment.delete", OBJECT, segment_id, {"name": [row["name"], None]})
