"""Due-task reminders: the job called with a real arq context (real Redis, PostgreSQL and
outbox), then the cron's fan-out run by a real `kith worker` process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kith.jobs.queue import get_queue
from kith.jobs.task_reminders import enqueue_task_reminders, send_task_reminders
from kith.platform.config import get_settings
from kith.platform.db import platform_tx, tenant_scope

from .conftest import Workspace
from .factories import add_member, owner_token
from .test_jobs import WorkerProcess, eventually, worker  # noqa: F401 - the worker fixture
from .web_helpers import client


async def _ctx() -> dict[str, Any]:
    return {"redis": await get_queue(), "job_id": "test-task-reminders", "job_try": 1,
            "enqueue_time": datetime.now(UTC), "score": 0}


async def _outbox(ws: Workspace) -> list[dict[str, Any]]:
    async with platform_tx() as tx:
        return await tx.execute_query_dict(
            "SELECT * FROM public.outbox_emails WHERE tenant_id = $1 AND kind = 'task_reminder' ORDER BY id",
            [ws.tenant_id])


async def _task(ws: Workspace, title: str, due: datetime | None, assignee: int, status: str = "open") -> int:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "INSERT INTO tasks (title, notes, due_at, status, assignee_id, created_by_id) VALUES ($1, 'Bring the"
            " contract', $2, $3, $4, $4) RETURNING id", [title, due, status, assignee])
    return int(rows[0]["id"])


async def _reminded(ws: Workspace, task_id: int) -> datetime | None:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict("SELECT reminded_at FROM tasks WHERE id = $1", [task_id])
    return rows[0]["reminded_at"]


async def test_due_tasks_are_reminded_once(workspace: Workspace, other_workspace: Workspace) -> None:
    now = datetime.now(UTC)
    rep = await add_member(workspace, "sales")
    soon = await _task(workspace, "Call Zhang Wei back", now + timedelta(minutes=10), rep.identity_id)
    late = await _task(workspace, "Send the quote", now - timedelta(days=1), workspace.identity_id)
    later = await _task(workspace, "Quarterly review", now + timedelta(hours=2), rep.identity_id)
    await _task(workspace, "Done already", now - timedelta(hours=1), rep.identity_id, status="done")
    await _task(workspace, "Cancelled", now - timedelta(hours=1), rep.identity_id, status="cancelled")
    await _task(workspace, "Someday", None, rep.identity_id)
    theirs = await _task(other_workspace, "其他工作区的任务", now - timedelta(minutes=1), other_workspace.identity_id)

    result = await send_task_reminders(await _ctx(), workspace.tenant_id)
    assert result == "2 reminders queued, 2 delivered"
    emails = await _outbox(workspace)
    assert sorted((e["to_address"], e["status"]) for e in emails) == sorted(
        [(rep.email, "outbox"), (workspace.email, "outbox")])
    by_to = {e["to_address"]: e for e in emails}
    assert by_to[rep.email]["subject"] == "Due soon: Call Zhang Wei back"
    assert by_to[workspace.email]["subject"] == "Overdue: Send the quote"
    body = by_to[rep.email]["body_text"]
    assert f"{get_settings().base_url}/t/{workspace.slug}/tasks/{soon}/edit" in body and "Bring the contract" in body
    assert await _reminded(workspace, soon) and await _reminded(workspace, late)
    assert await _reminded(workspace, later) is None

    # a second run sends nothing; the other workspace was never touched
    assert await send_task_reminders(await _ctx(), workspace.tenant_id) == "0 reminders queued, 0 delivered"
    assert len(await _outbox(workspace)) == 2
    assert await _outbox(other_workspace) == [] and await _reminded(other_workspace, theirs) is None

    # moving the due time makes the reminder due again: one more email, to the same person
    async with client(headers=rep.headers) as c:
        moved = await c.patch(f"/api/v1/tasks/{soon}", json={"due_at": (now + timedelta(minutes=5)).isoformat()})
        assert moved.status_code == 200 and moved.json()["reminded_at"] is None
        # other changes keep the stamp: no repeat for a new title
        renamed = await c.patch(f"/api/v1/tasks/{later}", json={"title": "Quarterly review (Q3)"})
        assert renamed.status_code == 200
    assert await send_task_reminders(await _ctx(), workspace.tenant_id) == "1 reminders queued, 1 delivered"
    assert [e["to_address"] for e in await _outbox(workspace)][-1] == rep.email

    # the other workspace, in Chinese, gets its own reminder when its own job runs
    async with client(headers=await owner_token(other_workspace)) as c:
        assert (await c.patch("/api/v1/workspace", json={"locale": "zh-CN", "time_zone": "Asia/Shanghai"})
                ).status_code == 200
    assert await send_task_reminders(await _ctx(), other_workspace.tenant_id) == "1 reminders queued, 1 delivered"
    (theirs_email,) = await _outbox(other_workspace)
    assert theirs_email["subject"] == "任务已逾期：其他工作区的任务" and "CST" in theirs_email["body_text"]
    assert len(await _outbox(workspace)) == 3


async def test_the_worker_runs_the_five_minute_fan_out(worker: WorkerProcess, workspace: Workspace) -> None:  # noqa: F811
    due = await _task(workspace, "Worker-sent reminder", datetime.now(UTC) + timedelta(minutes=1),
                      workspace.identity_id)
    queued = await enqueue_task_reminders(await _ctx())
    assert queued >= 1

    async def delivered() -> dict[str, Any] | None:
        rows = [e for e in await _outbox(workspace) if e["status"] == "outbox"]
        return rows[0] if rows else None

    email = await eventually(worker, delivered, timeout=60)
    assert email["to_address"] == workspace.email and email["subject"] == "Due soon: Worker-sent reminder"
    assert await _reminded(workspace, due) is not None
