"""Due-task reminders: one email to the assignee of each open task due within the next
REMIND_AHEAD (or overdue) that was not reminded yet.

The email is a row in public.outbox_emails written in the same transaction that stamps the
task's reminded_at, so a job that runs twice queues nothing the second time; the rows are
delivered after the commit. A change of due time or assignee clears reminded_at (see tasks.py),
and the dedupe key names the task's version, so such a task is reminded again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kith.platform.access.actor import Actor
from kith.platform.access.session import acting_as
from kith.platform.email.delivery import queue_email

REMIND_AHEAD = timedelta(minutes=15)
BATCH = 200
EMAIL_KIND = "task_reminder"


@dataclass(frozen=True)
class Workspace:
    """What a reminder needs to know of its workspace."""

    tenant_id: int
    slug: str
    name: str
    time_zone: str
    locale: str
    base_url: str


def _local(when: datetime, time_zone: str) -> str:
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def reminder_text(ws: Workspace, *, title: str, notes: str, due_at: datetime, task_id: int,
                  now: datetime) -> tuple[str, str]:
    """(subject, body) of a reminder, in the workspace's language."""
    due = _local(due_at, ws.time_zone)
    url = f"{ws.base_url}/t/{ws.slug}/tasks/{task_id}/edit"
    overdue = due_at < now
    if ws.locale == "zh-CN":
        subject = f"{'任务已逾期' if overdue else '任务即将到期'}：{title}"
        body = f"{ws.name} 中的任务「{title}」{'已于' if overdue else '将于'} {due} 到期。\n\n"
        if notes:
            body += f"{notes}\n\n"
        return subject, body + f"查看或完成任务：{url}\n\nKith\n"
    subject = f"{'Overdue' if overdue else 'Due soon'}: {title}"
    body = f"Your task \"{title}\" in {ws.name} {'was' if overdue else 'is'} due {due}.\n\n"
    if notes:
        body += f"{notes}\n\n"
    return subject, body + f"Open or complete it: {url}\n\nKith\n"


async def queue_due_reminders(ws: Workspace) -> tuple[list[int], bool]:
    """Queue one batch of due reminders (at most BATCH tasks) and stamp their tasks, in one
    transaction; returns the outbox ids written, and whether the batch was full (more may be due).
    Tasks whose assignee is gone or inactive are stamped without an email (nobody to remind)."""
    actor = Actor(kind="job", tenant_id=ws.tenant_id, role="owner", label="job:send_task_reminders")
    async with acting_as(actor) as session:
        session.require("tasks", "view")
        # SKIP LOCKED: a task being edited, or taken by a concurrent run, waits for the next run
        rows = await session.tx.execute_query_dict(
            "SELECT t.id, t.title, t.notes, t.due_at, t.updated_at, i.email FROM tasks t"
            " LEFT JOIN public.memberships m ON m.identity_id = t.assignee_id AND m.tenant_id = $1 AND m.is_active"
            " LEFT JOIN public.identities i ON i.id = m.identity_id"
            " WHERE t.status = 'open' AND t.reminded_at IS NULL AND t.due_at <= now() + $2::interval"
            " ORDER BY t.due_at LIMIT $3 FOR UPDATE OF t SKIP LOCKED",
            [ws.tenant_id, REMIND_AHEAD, BATCH])
        if not rows:
            return [], False
        now = datetime.now(UTC)
        ids: list[int] = []
        for row in rows:
            if not row["email"]:
                continue
            version = int(row["updated_at"].timestamp() * 1_000_000)
            subject, body = reminder_text(ws, title=row["title"], notes=row["notes"], due_at=row["due_at"],
                                          task_id=int(row["id"]), now=now)
            email_id = await queue_email(
                session.tx, tenant_id=ws.tenant_id, kind=EMAIL_KIND,
                dedupe_key=f"task-reminder:{ws.tenant_id}:{row['id']}:{version}",
                to=str(row["email"]), subject=subject[:300], body_text=body)
            if email_id is not None:
                ids.append(email_id)
        await session.tx.execute_query(
            "UPDATE tasks SET reminded_at = now() WHERE id = ANY($1::bigint[])", [[int(r["id"]) for r in rows]])
        return ids, len(rows) == BATCH


async def undelivered_reminders(ws: Workspace) -> list[int]:
    """Reminder emails of this workspace queued in the last day but not delivered (a run that
    stopped after its commit, an SMTP failure): the next run delivers them."""
    actor = Actor(kind="job", tenant_id=ws.tenant_id, role="owner", label="job:send_task_reminders")
    async with acting_as(actor) as session:
        rows = await session.tx.execute_query_dict(
            "SELECT id FROM public.outbox_emails WHERE tenant_id = $1 AND kind = $2"
            " AND status IN ('pending', 'failed') AND created_at > now() - interval '1 day' ORDER BY id",
            [ws.tenant_id, EMAIL_KIND])
    return [int(r["id"]) for r in rows]
