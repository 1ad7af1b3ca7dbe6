"""Campaigns: drafts, scheduling, start, pause, resume and cancel.

States: draft -> scheduled -> sending -> sent, with paused (from sending) and cancelled (from
anything not finished). Editing is for drafts and scheduled campaigns. Before a campaign is
scheduled or started, everything that would stop it is checked and said at once: no segment,
a segment that reaches nobody, a template that does not render, an invalid from-address, the
plan's monthly email quota. Starting freezes the recipients: one row per address, chosen from
the segment within the record scope of the member who started it (or scheduled it), with the
merge values as they are now; suppressed addresses, contacts without marketing consent and
erased contacts are left out.

Email leaving Kith needs the workspace permission manage_campaigns besides 'campaigns: edit'.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.platform.billing.limits import check_email_quota
from kith.platform.billing.plans import LimitExceeded
from kith.platform.db import platform_tx
from kith.tenants.campaigns.segments import REACHABLE, _definition, compile_segment, load_segment, segment_counts
from kith.tenants.records.refusals import RecordsRefusal

OBJECT = "campaigns"
EDITABLE = ("draft", "scheduled")
FINISHED = ("sent", "cancelled")
# sending jobs queued per campaign: with two or more workers, each takes one and they share the
# recipients (SKIP LOCKED); one worker runs them side by side
SENDING_JOBS = 2
_FIELDS = ("name", "segment_id", "template_id", "subject", "html_body", "text_body", "from_name", "from_email",
           "reply_to")


class CampaignIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=120)
    segment_id: int | None = None
    template_id: int | None = Field(default=None, description=(
        "Copy subject and bodies from this template (those given here win)."))
    subject: str = Field(default="", max_length=300)
    html_body: str = Field(default="", max_length=500_000)
    text_body: str = Field(default="", max_length=200_000)
    from_name: str = Field(default="", max_length=120)
    from_email: str = Field(default="", max_length=254)
    reply_to: str = Field(default="", max_length=254)


class CampaignPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, min_length=1, max_length=120)
    segment_id: int | None = None
    template_id: int | None = None
    subject: str | None = Field(default=None, max_length=300)
    html_body: str | None = Field(default=None, max_length=500_000)
    text_body: str | None = Field(default=None, max_length=200_000)
    from_name: str | None = Field(default=None, max_length=120)
    from_email: str | None = Field(default=None, max_length=254)
    reply_to: str | None = Field(default=None, max_length=254)


async def load_campaign(session: TenantSession, campaign_id: int, *, lock: bool = False) -> dict[str, Any]:
    rows = await session.tx.execute_query_dict(
        "SELECT * FROM campaigns WHERE id = $1" + (" FOR UPDATE" if lock else ""), [int(campaign_id)])
    if not rows:
        raise RecordsRefusal(404, "not_found", "There is no such campaign.")
    return rows[0]


async def _template(session: TenantSession, template_id: int) -> dict[str, Any]:
    rows = await session.tx.execute_query_dict("SELECT * FROM email_templates WHERE id = $1", [int(template_id)])
    if not rows:
        raise RecordsRefusal(422, "invalid_campaign", "There is no such email template.",
                             fields={"template_id": "no such template"})
    return rows[0]


async def _check_segment(session: TenantSession, segment_id: int | None) -> None:
    if segment_id is not None:
        try:
            await load_segment(session, segment_id)
        except RecordsRefusal:
            raise RecordsRefusal(422, "invalid_campaign", "There is no such segment.",
                                 fields={"segment_id": "no such segment"}) from None


async def create_campaign(actor: Actor, data: CampaignIn) -> dict[str, Any]:
    async with acting_as(actor) as session:
        session.require(OBJECT, "create")
        values = data.model_dump()
        if data.template_id is not None:
            template = await _template(session, data.template_id)
            for field in ("subject", "html_body", "text_body"):
                values[field] = values[field] or template[field]
        await _check_segment(session, data.segment_id)
        rows = await session.tx.execute_query_dict(
            f"INSERT INTO campaigns ({', '.join(_FIELDS)}, created_by_id)"  # noqa: S608 - fixed names
            f" VALUES ({', '.join(f'${i}' for i in range(1, len(_FIELDS) + 2))}) RETURNING *",
            [*(values[f] for f in _FIELDS), actor.identity_id])
        await session.audit("campaign.create", OBJECT, rows[0]["id"],
                            {k: [None, v] for k, v in values.items() if v not in (None, "") and k != "html_body"})
        return rows[0]


async def update_campaign(actor: Actor, campaign_id: int, patch: CampaignPatch) -> dict[str, Any]:
    async with acting_as(actor) as session:
        session.require(OBJECT, "edit")
        before = await load_campaign(session, campaign_id, lock=True)
        if before["status"] not in EDITABLE:
            raise RecordsRefusal(409, "wrong_state", f"This campaign is {before['status']}; only drafts and "
                                 "scheduled campaigns can be edited.")
        given = patch.model_dump(exclude_unset=True)
        if given.get("template_id") is not None and given["template_id"] != before["template_id"]:
            template = await _template(session, given["template_id"])
            for field in ("subject", "html_body", "text_body"):
                given.setdefault(field, template[field])
        if "segment_id" in given:
            await _check_segment(session, given["segment_id"])
        diff = {k: [before[k], v] for k, v in given.items() if before[k] != v}
        if not diff:
            return before
        sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(diff, start=2))
        rows = await session.tx.execute_query_dict(
            f"UPDATE campaigns SET {sets}, updated_at = now() WHERE id = $1 RETURNING *",  # noqa: S608
            [campaign_id, *(v[1] for v in diff.values())])
        await session.audit("campaign.update", OBJECT, campaign_id,
                            {k: v for k, v in diff.items() if k != "html_body"} | (
                                {"html_body": ["…", "…"]} if "html_body" in diff else {}))
        return rows[0]


async def preflight(session: TenantSession, row: dict[str, Any]) -> dict[str, int]:
    """Everything that would stop the campaign, refused now with what to do; the segment's counts."""
    from kith.tenants.campaigns.templates import check_template  # written beside this module

    problems: dict[str, str] = {}
    if not row["subject"]:
        problems["subject"] = "The campaign has no subject."
    if not row["html_body"] and not row["text_body"]:
        problems["html_body"] = "The campaign has no content: write it or choose a template."
    else:
        found = check_template(row["subject"], row["html_body"], row["text_body"])
        if found:
            problems["template"] = "; ".join(found)
    try:
        validate_email(row["from_email"], check_deliverability=False)
    except EmailNotValidError as exc:
        problems["from_email"] = (f"The from-address '{row['from_email']}' is not valid: {exc}"
                                  if row["from_email"] else "The campaign has no from-address.")
    for field in ("reply_to",):
        if row[field]:
            try:
                validate_email(row[field], check_deliverability=False)
            except EmailNotValidError as exc:
                problems[field] = f"The reply-to address '{row[field]}' is not valid: {exc}"
    counts: dict[str, int] = {}
    if row["segment_id"] is None:
        problems["segment_id"] = "Choose a segment: it says who receives the campaign."
    else:
        segment = await load_segment(session, row["segment_id"])
        counts = await segment_counts(session, _definition(segment))
        if counts["reachable"] == 0:
            problems["segment_id"] = (
                f"The segment '{segment['name']}' reaches nobody: of its {counts['contacts']:,} contacts, "
                f"{counts['without_email']:,} have no email address and {counts['without_consent']:,} have not "
                "consented to marketing email (the rest are unsubscribed, bounced or erased).")
    if problems:
        raise RecordsRefusal(422, "not_ready", " ".join(problems.values()), fields=problems)
    try:
        await check_email_quota(session.actor.tenant_id, counts["reachable"], session.tx)
    except LimitExceeded as exc:
        raise RecordsRefusal(422, "quota", str(exc), fields={"quota": str(exc)}) from None
    return counts


async def _queue(tenant_id: int, campaign_id: int, at: datetime | None) -> None:
    async with platform_tx() as tx:
        await tx.execute_query(
            "INSERT INTO public.campaign_queue (tenant_id, campaign_id, next_run_at)"
            " VALUES ($1, $2, coalesce($3, now()))"
            " ON CONFLICT (tenant_id, campaign_id) DO UPDATE SET next_run_at = EXCLUDED.next_run_at,"
            " heartbeat_at = NULL", [int(tenant_id), int(campaign_id), at])


async def dequeue(tenant_id: int, campaign_id: int) -> None:
    async with platform_tx() as tx:
        await tx.execute_query("DELETE FROM public.campaign_queue WHERE tenant_id = $1 AND campaign_id = $2",
                               [int(tenant_id), int(campaign_id)])


async def schedule_campaign(actor: Actor, campaign_id: int, at: datetime) -> dict[str, Any]:
    """Schedule for `at` (an aware time; pages turn the workspace's local time into it)."""
    if at.tzinfo is None:
        raise RecordsRefusal(422, "invalid_campaign", "A schedule needs a time zone.", fields={"at": "no time zone"})
    if at <= datetime.now(UTC):
        raise RecordsRefusal(422, "invalid_campaign", "Choose a time in the future, or send it now.",
                             fields={"at": "in the past"})
    async with acting_as(actor) as session:
        session.require(OBJECT, "edit")
        session.policy.require_manage("manage_campaigns")
        row = await load_campaign(session, campaign_id, lock=True)
        if row["status"] not in EDITABLE:
            raise RecordsRefusal(409, "wrong_state", f"This campaign is {row['status']}; it cannot be scheduled.")
        await preflight(session, row)
        rows = await session.tx.execute_query_dict(
            "UPDATE campaigns SET status = 'scheduled', scheduled_at = $2, started_by_id = $3, updated_at = now()"
            " WHERE id = $1 RETURNING *", [campaign_id, at, actor.identity_id])
        await session.audit("campaign.schedule", OBJECT, campaign_id,
                            {"status": [row["status"], "scheduled"], "scheduled_at": [row["scheduled_at"], at]})
    await _queue(actor.tenant_id, campaign_id, at)
    return rows[0]


async def unschedule_campaign(actor: Actor, campaign_id: int) -> dict[str, Any]:
    """A scheduled campaign back to draft."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "edit")
        session.policy.require_manage("manage_campaigns")
        row = await load_campaign(session, campaign_id, lock=True)
        if row["status"] != "scheduled":
            raise RecordsRefusal(409, "wrong_state", f"This campaign is {row['status']}, not scheduled.")
        rows = await session.tx.execute_query_dict(
            "UPDATE campaigns SET status = 'draft', scheduled_at = NULL, updated_at = now() WHERE id = $1"
            " RETURNING *", [campaign_id])
        await session.audit("campaign.unschedule", OBJECT, campaign_id, {"status": ["scheduled", "draft"]})
    await dequeue(actor.tenant_id, campaign_id)
    return rows[0]


_MERGE = ("jsonb_build_object('name', contacts.name, 'email', contacts.email, 'company_name', contacts.company_name,"
          " 'title', contacts.title) || coalesce((SELECT jsonb_object_agg('custom_' || e.key, e.value)"
          " FROM jsonb_each(contacts.custom) e), '{}'::jsonb)")
_MERGE_NO_CUSTOM = ("jsonb_build_object('name', contacts.name, 'email', contacts.email, 'company_name',"
                    " contacts.company_name, 'title', contacts.title)")


async def freeze_recipients(session: TenantSession, row: dict[str, Any]) -> int:
    """The recipients, one row per address, with their merge values as they are now."""
    segment = await load_segment(session, row["segment_id"])
    conditions, values = await compile_segment(session, _definition(segment), params=[row["id"]])
    merge = _MERGE_NO_CUSTOM if "custom" in session.policy.hidden_fields("contacts") else _MERGE
    where = " AND ".join([*conditions, *REACHABLE])
    made = await session.tx.execute_query_dict(
        "WITH made AS (INSERT INTO campaign_recipients (campaign_id, contact_id, email, merge)"  # noqa: S608
        f" SELECT DISTINCT ON (lower(contacts.email)) $1, contacts.id, contacts.email, {merge}"
        f" FROM contacts WHERE {where} ORDER BY lower(contacts.email), contacts.id RETURNING 1)"
        " SELECT count(*) AS n FROM made", values)
    return int(made[0]["n"])


async def begin_sending(session: TenantSession, row: dict[str, Any]) -> dict[str, Any]:
    """Freeze the recipients and mark the campaign sending (the caller queues the work)."""
    counts = await preflight(session, row)
    total = await freeze_recipients(session, row)
    if total == 0:
        raise RecordsRefusal(422, "not_ready", "The segment reaches nobody now.", fields={"segment_id": "empty"})
    rows = await session.tx.execute_query_dict(
        "UPDATE campaigns SET status = 'sending', started_at = now(), recipients_total = $2,"
        " started_by_id = coalesce(started_by_id, $3), paused_reason = '', updated_at = now() WHERE id = $1"
        " RETURNING *", [row["id"], total, session.actor.identity_id])
    await session.audit("campaign.start", OBJECT, row["id"],
                        {"status": [row["status"], "sending"], "recipients": [None, total],
                         "segment_contacts": [None, counts.get("contacts", 0)]})
    return rows[0]


async def start_campaign(actor: Actor, campaign_id: int) -> dict[str, Any]:
    """Send now: check, freeze the recipients, queue the sending jobs."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "edit")
        session.policy.require_manage("manage_campaigns")
        row = await load_campaign(session, campaign_id, lock=True)
        if row["status"] not in EDITABLE:
            raise RecordsRefusal(409, "wrong_state", f"This campaign is {row['status']}; it cannot be started.")
        started = await begin_sending(session, row)
    await _queue(actor.tenant_id, campaign_id, None)
    await enqueue_senders(actor.tenant_id, campaign_id)
    return started


async def enqueue_senders(tenant_id: int, campaign_id: int, *, tag: str = "") -> None:
    """Queue the sending jobs of a campaign, one per slot (several, so several workers share it:
    see kith.jobs.campaigns)."""
    import secrets

    from kith.jobs.queue import enqueue_tenant_job  # jobs sits above tenants; imported when used

    run = tag or secrets.token_hex(4)
    for k in range(SENDING_JOBS):
        await enqueue_tenant_job("send_campaign", tenant_id, int(campaign_id), k,
                                 job_id=f"campaign:{int(tenant_id)}:{int(campaign_id)}:{run}:{k}")


async def _transition(actor: Actor, campaign_id: int, allowed: tuple[str, ...], status: str, action: str,
                      reason: str = "") -> dict[str, Any]:
    async with acting_as(actor) as session:
        session.require(OBJECT, "edit")
        session.policy.require_manage("manage_campaigns")
        row = await load_campaign(session, campaign_id, lock=True)
        if row["status"] not in allowed:
            raise RecordsRefusal(409, "wrong_state", f"This campaign is {row['status']}; it cannot be {action}.")
        rows = await session.tx.execute_query_dict(
            "UPDATE campaigns SET status = $2, paused_reason = $3, retry_at = NULL, failures = 0,"
            " finished_at = CASE WHEN $2 = 'cancelled' THEN now() ELSE finished_at END, updated_at = now()"
            " WHERE id = $1 RETURNING *", [campaign_id, status, reason])
        await session.audit(f"campaign.{action}", OBJECT, campaign_id, {"status": [row["status"], status]})
        return rows[0]


async def pause_campaign(actor: Actor, campaign_id: int) -> dict[str, Any]:
    """Stop sending; the emails not yet sent wait. Senders stop after the email they are on."""
    row = await _transition(actor, campaign_id, ("sending",), "paused", "paused",
                            reason=f"Paused by {actor.label or 'a member'}.")
    await dequeue(actor.tenant_id, campaign_id)
    return row


async def resume_campaign(actor: Actor, campaign_id: int) -> dict[str, Any]:
    row = await _transition(actor, campaign_id, ("paused",), "sending", "resumed")
    await _queue(actor.tenant_id, campaign_id, None)
    await enqueue_senders(actor.tenant_id, campaign_id)
    return row


async def cancel_campaign(actor: Actor, campaign_id: int) -> dict[str, Any]:
    """Stop for good: the emails not yet sent are never sent."""
    row = await _transition(actor, campaign_id, ("draft", "scheduled", "sending", "paused"), "cancelled",
                            "cancelled")
    await dequeue(actor.tenant_id, campaign_id)
    return row


async def delete_campaign(actor: Actor, campaign_id: int) -> None:
    """Delete a draft, or a cancelled campaign that never sent an email. A campaign that sent
    email is kept: its report, the recipients' timelines and the quota count on it."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "delete")
        row = await load_campaign(session, campaign_id, lock=True)
        if row["status"] in ("scheduled", "sending", "paused"):
            raise RecordsRefusal(409, "wrong_state", f"This campaign is {row['status']}; cancel it before deleting it.")
        if row["status"] != "draft":
            used = await session.tx.execute_query_dict(
                "SELECT count(*) AS n FROM campaign_recipients WHERE campaign_id = $1 AND status IN ('sent', 'failed')",
                [campaign_id])
            if used[0]["n"]:
                raise RecordsRefusal(409, "has_sent", f"This campaign sent {used[0]['n']} email(s); it is kept for "
                                     "its report and the recipients' timelines.")
        await session.tx.execute_query("DELETE FROM campaigns WHERE id = $1", [campaign_id])
        await session.audit("campaign.delete", OBJECT, campaign_id,
                            {"name": [row["name"], None], "status": [row["status"], None]})
    await dequeue(actor.tenant_id, campaign_id)


async def get_campaign(actor: Actor, campaign_id: int) -> dict[str, Any]:
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        row = await load_campaign(session, campaign_id)
        counts = await session.tx.execute_query_dict(
            "SELECT count(*) FILTER (WHERE status = 'pending') AS pending,"
            " count(*) FILTER (WHERE status = 'sent') AS sent, count(*) FILTER (WHERE status = 'failed') AS failed,"
            " count(*) FILTER (WHERE status = 'suppressed') AS suppressed FROM campaign_recipients"
            " WHERE campaign_id = $1", [campaign_id])
        return {**row, "progress": {k: int(v) for k, v in counts[0].items()}}


async def list_campaigns(actor: Actor, *, limit: int = 100) -> list[dict[str, Any]]:
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        return await session.tx.execute_query_dict(
            "SELECT c.*, (SELECT count(*) FROM campaign_recipients r WHERE r.campaign_id = c.id"
            " AND r.status = 'sent') AS sent FROM campaigns c ORDER BY c.id DESC LIMIT $1",
            [max(1, min(int(limit), 500))])


def json_ready(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(row, default=str))
