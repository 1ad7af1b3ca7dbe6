"""Backup runs: the hourly cron schedules by plan (daily or weekly) and a second firing queues nothing,
the jobs called as arq calls them, retention deleting the oldest, one run at a time per workspace,
abandoned runs, the console's backup and restore with reasons and both audit entries, the page and
API, and isolation between workspaces.

The module queues its jobs on a queue of its own (and drops it afterwards): the cron queues a run
for every workspace of the test database, and those jobs are not for the workers of other tests.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from arq.jobs import Job, JobStatus

from kith.jobs.backups import backup_workspace, enqueue_scheduled_backups, restore_workspace
from kith.jobs.queue import close_queue, get_queue, queued_job_id
from kith.platform.access.actor import Actor
from kith.platform.backups import runs
from kith.platform.backups.progress import ProgressState
from kith.platform.backups.snapshot import backup_tenant
from kith.platform.backups.storage import LocalStorage, backup_storage
from kith.platform.backups.workspace import request_backup
from kith.platform.billing.subscriptions import current_subscription
from kith.platform.config import get_settings, reset_settings, restored_environment
from kith.platform.db import connect_raw, platform_tx, tenant_schema, tenant_scope

from .conftest import Services, Workspace
from .factories import add_member, owner_token
from .test_ops import make_operator, ops_login, platform_entries, tenant_entries
from .web_helpers import assert_error, client, form_post, login

CTX: dict[str, Any] = {"job_try": 1}


@pytest.fixture(scope="module", autouse=True)
async def private_queue(db: Services) -> AsyncIterator[str]:
    name = f"arq:kith-test-backup-runs-{os.getpid()}"
    with restored_environment("KITH_QUEUE_NAME"):
        os.environ["KITH_QUEUE_NAME"] = name
        reset_settings()
        await close_queue()
        try:
            yield name
        finally:
            queue = await get_queue()
            keys = [k async for k in queue.scan_iter(match=f"arq:*:{name}:*")]
            await queue.delete(name, *keys)
            await close_queue()
            # runs the cron queued for other tests' workspaces: nobody will run them
            async with platform_tx() as tx:
                await tx.execute_query(
                    "UPDATE public.backup_runs SET status = 'failed', phase = 'failed', finished_at = now(),"
                    " error = 'left queued by tests/test_backup_runs.py' WHERE status = 'queued'")
    await close_queue()


def owner_actor(ws: Workspace) -> Actor:
    return Actor(kind="user", tenant_id=ws.tenant_id, role="owner", identity_id=ws.identity_id, label=ws.email)


async def set_plan(ws: Workspace, plan: str) -> None:
    await current_subscription(ws.tenant_id)  # the row exists from here on
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.billing_subscriptions SET plan = $2, status = 'active',"
                               " trial_ends_at = NULL WHERE tenant_id = $1", [ws.tenant_id, plan])


async def runs_of(ws: Workspace) -> list[dict[str, Any]]:
    async with platform_tx() as tx:
        return await tx.execute_query_dict(
            "SELECT id, kind, status, scheduled_for, backup_id, error, pruned_at, reason, old_schema, rows_done,"
            " tables_done, tables_total, phase FROM public.backup_runs WHERE tenant_id = $1 ORDER BY id",
            [ws.tenant_id])


def stored_ids(ws: Workspace) -> set[str]:
    return {str(m["backup_id"]) for m in LocalStorage().manifests(ws.tenant_id)}


async def audit_actions(ws: Workspace, prefix: str) -> list[dict[str, Any]]:
    async with tenant_scope(ws.tenant_id) as tx:
        return await tx.execute_query_dict(
            "SELECT action, actor_kind, actor_label, object_id, diff::text AS diff FROM audit_log"
            " WHERE action LIKE $1 ORDER BY seq", [prefix + "%"])


async def test_the_cron_schedules_by_plan_and_a_second_firing_queues_nothing(
        workspace: Workspace, other_workspace: Workspace) -> None:
    daily, weekly = workspace, other_workspace  # a new workspace tries Pro (daily backups)
    await set_plan(weekly, "free")
    today = datetime.now(UTC).date()

    first = await enqueue_scheduled_backups(CTX)
    assert first >= 2
    queue = await get_queue()
    scheduled: dict[int, int] = {}
    for ws in (daily, weekly):
        [run] = await runs_of(ws)
        assert (run["kind"], run["status"], run["scheduled_for"]) == ("scheduled", "queued", today)
        job = Job(queued_job_id(f"backup-run:{run['id']}"), queue, _queue_name=get_settings().queue_name)
        assert await job.status() == JobStatus.queued
        scheduled[ws.tenant_id] = int(run["id"])

    # arq's cron may fire twice: the day's runs exist and their jobs wait, so nothing is queued again
    assert await enqueue_scheduled_backups(CTX) == 0
    for ws in (daily, weekly):
        assert len(await runs_of(ws)) == 1

    for ws in (daily, weekly):
        result = await backup_workspace(CTX, ws.tenant_id, scheduled[ws.tenant_id])
        assert result.startswith("backup "), result
        [run] = await runs_of(ws)
        assert run["status"] == "done" and run["phase"] == "done" and run["backup_id"] in stored_ids(ws)
        assert run["rows_done"] > 0 and run["tables_done"] == run["tables_total"] > 10
        # delivered again (arq: at least once): the run is done, so nothing happens
        again = await backup_workspace(CTX, ws.tenant_id, scheduled[ws.tenant_id])
        assert again.startswith(f"run {scheduled[ws.tenant_id]}: not queued"), again
        assert len(stored_ids(ws)) == 1
    assert await enqueue_scheduled_backups(CTX) == 0  # done today: not due
    assert [len(await runs_of(ws)) for ws in (daily, weekly)] == [1, 1]

    # tomorrow the daily plan is due and the weekly one is not; a week on, the weekly one is
    tomorrow = {r.tenant_id for r in await runs.queue_scheduled_runs(today + timedelta(days=1))}
    assert daily.tenant_id in tomorrow and weekly.tenant_id not in tomorrow
    in_six = {r.tenant_id for r in await runs.queue_scheduled_runs(today + timedelta(days=6))}
    assert weekly.tenant_id not in in_six
    in_seven = {r.tenant_id for r in await runs.queue_scheduled_runs(today + timedelta(days=7))}
    assert weekly.tenant_id in in_seven


async def test_retention_deletes_the_oldest_of_each_kind(workspace: Workspace) -> None:
    ws = workspace
    await set_plan(ws, "starter")  # weekly backups
    names = ("KITH_BACKUP_KEEP_WEEKLY", "KITH_BACKUP_KEEP_MANUAL")
    with restored_environment(*names):
        os.environ.update({"KITH_BACKUP_KEEP_WEEKLY": "2", "KITH_BACKUP_KEEP_MANUAL": "1"})
        reset_settings()
        by_cli = await backup_tenant(ws.tenant_id, storage=backup_storage())  # no run: an operator's, kept
        today = datetime.now(UTC).date()
        made: list[str] = []
        for weeks_ago in (3, 2, 1):
            async with platform_tx() as tx:
                rows = await tx.execute_query_dict(
                    "INSERT INTO public.backup_runs (tenant_id, kind, scheduled_for, requested_by_label)"
                    " VALUES ($1, 'scheduled', $2, 'schedule') RETURNING id",
                    [ws.tenant_id, today - timedelta(weeks=weeks_ago)])
            result = await backup_workspace(CTX, ws.tenant_id, int(rows[0]["id"]))
            assert result.startswith("backup "), result
            made.append([r for r in await runs_of(ws) if r["id"] == rows[0]["id"]][0]["backup_id"])
        assert result.endswith("1 older deleted by retention"), result
        assert stored_ids(ws) == {by_cli.backup_id, made[1], made[2]}

        manual: list[str] = []
        for _ in range(2):
            run = await request_backup(owner_actor(ws))
            assert (await backup_workspace(CTX, ws.tenant_id, run.id)).startswith("backup ")
            manual.append(str([r for r in await runs_of(ws) if r["id"] == run.id][0]["backup_id"]))
    # on-demand backups are counted apart: the second pushed out the first, no scheduled one
    assert stored_ids(ws) == {by_cli.backup_id, made[1], made[2], manual[1]}
    pruned = {r["backup_id"] for r in await runs_of(ws) if r["pruned_at"] is not None}
    assert pruned == {made[0], manual[0]}
    folder = LocalStorage().root / f"t_{ws.tenant_id}"
    assert not (folder / f"{made[0]}.kbk").exists() and not (folder / f"{made[0]}.json").exists()
    entries = await audit_actions(ws, "backup.created")
    assert len(entries) == 5 and all(e["actor_kind"] == "job" for e in entries)
    assert made[0] in entries[2]["diff"] and manual[0] in entries[4]["diff"]


async def test_one_run_at_a_time_and_abandoned_runs(workspace: Workspace) -> None:
    ws = workspace
    headers = await owner_token(ws)
    async with client(headers=headers) as c:
        started = await c.post(f"/t/{ws.slug}/api/v1/backups")
        assert started.status_code == 202, started.text
        run = started.json()
        assert (run["kind"], run["status"], run["phase"]) == ("manual", "queued", "queued")
        refused = await c.post(f"/t/{ws.slug}/api/v1/backups")
        error = assert_error(refused, 409, "backup_in_progress")
        assert "already queued" in error["message"]
        listed = (await c.get(f"/t/{ws.slug}/api/v1/backups")).json()
        assert [r["id"] for r in listed["runs"]] == [run["id"]] and listed["backups"] == []
        assert listed["schedule"]["frequency"] == "daily" and listed["schedule"]["plan"] == "Pro"
    async with client() as page:
        await login(page, ws.email, ws.password)
        shown = await page.get(f"/t/{ws.slug}/settings/backups")
        assert shown.status_code == 200 and f'data-active-run="{run["id"]}"' in shown.text
        assert shown.headers["refresh"] == f"3; url=/t/{ws.slug}/settings/backups"  # reloads itself, no JS
        again = await form_post(page, f"/t/{ws.slug}/settings/backups", {})
        assert again.status_code == 409 and "already under way" in again.text
        assert len(await runs_of(ws)) == 1  # nothing recorded by the refusal

        assert (await backup_workspace(CTX, ws.tenant_id, run["id"])).startswith("backup ")
        done = await page.get(f"/t/{ws.slug}/settings/backups")
        assert "refresh" not in done.headers and 'data-status="done"' in done.text
    async with client(headers=headers) as c:
        listed = (await c.get(f"/t/{ws.slug}/api/v1/backups")).json()
        [backup] = listed["backups"]
        assert backup["made_by"] == "manual" and backup["rows"] > 0 and backup["size_bytes"] > 0
        assert listed["runs"][0]["status"] == "done" and listed["runs"][0]["backup_id"] == backup["backup_id"]
        requested = await audit_actions(ws, "backup.requested")
        assert [(e["actor_kind"], e["actor_label"]) for e in requested] == [("token", ws.email)]

        # a worker claims the next run and dies: after KITH_BACKUP_STALE_MINUTES the run is abandoned
        second = (await c.post(f"/t/{ws.slug}/api/v1/backups")).json()
        claimed = await runs.claim_run(ws.tenant_id, second["id"])
        assert claimed is not None and claimed.status == "running"
        assert_error(await c.post(f"/t/{ws.slug}/api/v1/backups"), 409, "backup_in_progress")
        async with platform_tx() as tx:
            await tx.execute_query("UPDATE public.backup_runs SET heartbeat_at = now() - interval '1 hour'"
                                   " WHERE id = $1", [second["id"]])
        third = await c.post(f"/t/{ws.slug}/api/v1/backups")
        assert third.status_code == 202, third.text
    settled = [r for r in await runs_of(ws) if r["id"] == second["id"]][0]
    assert settled["status"] == "failed" and settled["error"].startswith("abandoned:")
    # the dead worker cannot finish it, and a new delivery of its job does nothing
    assert await runs.finish_run(claimed, backup_id=backup["backup_id"], size_bytes=1, rows_done=1, tables_done=1,
                                 message="late") is None
    late = await backup_workspace(CTX, ws.tenant_id, second["id"])
    assert late.startswith(f"run {second['id']}: not queued")
    assert (await backup_workspace(CTX, ws.tenant_id, third.json()["id"])).startswith("backup ")
    # the page in Chinese
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.tenants SET locale = 'zh-CN' WHERE id = $1", [ws.tenant_id])
    async with client() as page:
        await login(page, ws.email, ws.password)
        shown = (await page.get(f"/t/{ws.slug}/settings/backups")).text
        assert "立即备份" in shown and "Pro 套餐每天备份此工作区。" in shown and "失败" in shown and "完成" in shown


async def test_workspaces_never_see_each_others_runs_and_members_need_the_permission(
        workspace: Workspace, other_workspace: Workspace) -> None:
    mine, theirs = workspace, other_workspace
    run = await request_backup(owner_actor(mine))
    assert (await backup_workspace(CTX, mine.tenant_id, run.id)).startswith("backup ")
    [made] = stored_ids(mine)
    async with client(headers=await owner_token(theirs)) as c:
        listed = (await c.get(f"/t/{theirs.slug}/api/v1/backups")).json()
        assert listed["runs"] == [] and listed["backups"] == []
        # another workspace's token naming this workspace's slug finds nothing
        assert_error(await c.get(f"/t/{mine.slug}/api/v1/backups"), 404)
    async with client() as page:
        await login(page, theirs.email, theirs.password)
        shown = await page.get(f"/t/{theirs.slug}/settings/backups")
        assert shown.status_code == 200 and made not in shown.text and "No backups yet." in shown.text
    # a job of the other workspace given this workspace's run id does nothing to it
    theirs_run = await request_backup(owner_actor(theirs))
    assert (await backup_workspace(CTX, theirs.tenant_id, run.id)).startswith(f"run {run.id}: not queued")
    assert await runs.get_run(theirs.tenant_id, run.id) is None
    assert (await backup_workspace(CTX, theirs.tenant_id, theirs_run.id)).startswith("backup ")
    assert stored_ids(mine) == {made} and made not in stored_ids(theirs)

    for role in ("manager", "sales", "read_only"):
        member = await add_member(mine, role)
        async with client(headers=member.headers) as c:
            for method in ("GET", "POST"):
                error = assert_error(await c.request(method, f"/t/{mine.slug}/api/v1/backups"), 403,
                                     "permission_denied")
                assert error["permission"] == "workspace: manage_settings", error
        async with client() as page:
            await login(page, member.email, member.password)
            refused = await page.get(f"/t/{mine.slug}/settings/backups")
            assert refused.status_code == 403 and "workspace: manage_settings" in refused.text
    assert [r["id"] for r in await runs_of(mine)] == [run.id]  # no refused request left a run


async def test_the_console_backs_up_and_restores_with_reasons_audited_twice(workspace: Workspace) -> None:
    ws = workspace
    op = await make_operator()
    page = f"/ops/tenants/{ws.tenant_id}"
    async with client() as c:
        await ops_login(c, op)
        blank = await form_post(c, page, {"reason": "  "}, f"{page}/backup")
        assert blank.status_code == 422 and "Give a reason" in blank.text
        assert await runs_of(ws) == []
        queued = await form_post(c, page, {"reason": "customer asked before a big import (#4711)"}, f"{page}/backup")
        assert queued.status_code == 303 and queued.headers["location"].endswith("?done=backup#backups")
        [run] = await runs_of(ws)
        assert (run["kind"], run["status"], run["reason"]) == ("ops", "queued", "customer asked before a big import "
                                                                                "(#4711)")
        assert (await backup_workspace(CTX, ws.tenant_id, run["id"])).startswith("backup ")
        [run] = await runs_of(ws)
        backup_id = str(run["backup_id"])
        shown = await c.get(page)
        assert f'data-backup="{backup_id}"' in shown.text and f'data-run="{run["id"]}" data-status="done"' in shown.text

        async with tenant_scope(ws.tenant_id) as tx:
            await tx.execute_query("INSERT INTO contacts (name) VALUES ('after the backup')")
        for data, status, words in (
                ({"backup_id": backup_id, "reason": ""}, 422, "Give a reason"),
                ({"backup_id": "../../etc/passwd", "reason": "restore"}, 409, "is not a backup id"),
                ({"backup_id": "20200101T000000Z-abcdef", "reason": "restore"}, 409, "has no backup")):
            refused = await form_post(c, page, data, f"{page}/restore")
            assert refused.status_code == status and words in refused.text, (data, refused.status_code)
        assert len(await runs_of(ws)) == 1
        restore = await form_post(c, page, {"backup_id": backup_id, "reason": "customer deleted contacts by mistake"},
                                  f"{page}/restore")
        assert restore.status_code == 303
        busy = await form_post(c, page, {"reason": "one more"}, f"{page}/backup")
        assert busy.status_code == 409 and "A restore of this workspace is already queued" in busy.text
    restore_run = (await runs_of(ws))[-1]
    assert (restore_run["kind"], restore_run["status"], restore_run["backup_id"]) == ("restore", "queued", backup_id)
    for action, object_id, reason in (("ops.backup", run["id"], "#4711"),
                                      ("ops.restore", restore_run["id"], "by mistake")):
        [platform] = await platform_entries(action, str(object_id))
        assert platform["actor_id"] == str(op.operator.id) and reason in platform["diff"]
        assert ws.slug in platform["diff"]
        [tenant] = await tenant_entries(ws.tenant_id, action)
        assert tenant["actor_kind"] == "operator" and reason in tenant["diff"]

    result = await restore_workspace(CTX, ws.tenant_id, restore_run["id"])
    assert result.startswith(f"restored backup {backup_id}"), result
    finished = (await runs_of(ws))[-1]
    assert finished["status"] == "done" and finished["old_schema"].startswith(f"{tenant_schema(ws.tenant_id)}_old_")
    try:
        async with tenant_scope(ws.tenant_id) as tx:
            names = {r["name"] for r in await tx.execute_query_dict("SELECT name FROM contacts")}
            restored = await tx.execute_query_dict(
                "SELECT actor_kind, diff::text AS diff FROM audit_log WHERE action = 'backup.restored'")
        assert "after the backup" not in names
        assert restored and restored[0]["actor_kind"] == "job"
        facts = json.loads(restored[0]["diff"])
        assert facts["reason"] == "customer deleted contacts by mistake"
        assert facts["old_schema"] == finished["old_schema"]
        conn = await connect_raw()
        try:  # the previous data is kept until an operator drops it
            kept = await conn.fetchval(f"SELECT count(*) FROM {finished['old_schema']}.contacts"
                                       " WHERE name = 'after the backup'")
        finally:
            await conn.close()
        assert kept == 1
    finally:
        conn = await connect_raw()
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {finished['old_schema']} CASCADE")
        finally:
            await conn.close()


async def test_progress_lines_fill_in_the_run(workspace: Workspace, tmp_path: Any) -> None:
    state = ProgressState()
    made = await backup_tenant(workspace.tenant_id, progress=state.feed, storage=LocalStorage(tmp_path))
    assert state.phase == "stored" and state.backup_id == made.backup_id
    assert state.tables_done == state.tables_total == len(made.manifest["tables"])
    assert state.rows_done == made.rows > 0
    unknown = ProgressState(phase="copying")
    unknown.feed("some line a later version prints")
    assert unknown.phase == "copying" and unknown.message == "some line a later version prints"


async def test_a_run_for_a_suspended_workspace_fails_with_the_reason(workspace: Workspace) -> None:
    ws = workspace
    run = await request_backup(owner_actor(ws))
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.tenants SET status = 'suspended' WHERE id = $1", [ws.tenant_id])
    try:
        result = await backup_workspace(CTX, ws.tenant_id, run.id)
        assert result == f"skipped: tenant {ws.tenant_id} is suspended"
        [row] = await runs_of(ws)
        assert row["status"] == "failed" and row["error"] == f"tenant {ws.tenant_id} is suspended"
        op = await make_operator()
        async with client() as c:
            await ops_login(c, op)
            page = f"/ops/tenants/{ws.tenant_id}"
            refused = await form_post(c, page, {"reason": "check"}, f"{page}/backup")
            assert refused.status_code == 409 and "reactivate it first" in refused.text
            dashboard = (await c.get("/ops")).text
            failed = dashboard.split('data-stat="failed-backups"', 1)[1].split("</ul>", 1)[0]
            assert ws.slug in failed and f"tenant {ws.tenant_id} is suspended" in failed
    finally:
        async with platform_tx() as tx:
            await tx.execute_query("UPDATE public.tenants SET status = 'active' WHERE id = $1", [ws.tenant_id])
    # a read-only workspace (payment overdue past the grace period) may still back up
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.billing_subscriptions SET status = 'past_due',"
                               " past_due_since = now() - interval '60 days' WHERE tenant_id = $1", [ws.tenant_id])
    later = await request_backup(owner_actor(ws))
    assert (await backup_workspace(CTX, ws.tenant_id, later.id)).startswith("backup ")
