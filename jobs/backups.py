"""Backup and restore jobs, and the hourly cron that queues scheduled backups.

Every job works on a run of public.backup_runs (kith.platform.backups.runs), which is the record
of what was done: the job claims its run first and does nothing when the run is not queued (arq
delivered it twice, or another worker took it over). Progress goes to the run as the job works
(kith.platform.backups.progress), so the backups page and the console show it.

- `backup_workspace(ctx, tenant_id, run_id)`: one consistent snapshot into backup storage (S3 or
  the local folder), then retention by plan; audited as "backup.created" / "backup.failed".
- `restore_workspace(ctx, tenant_id, run_id)`: restore the run's backup into a new schema, check
  it against the manifest and switch the workspace over; the previous schema is kept as
  t_<id>_old_<time>. Audited in the restored schema's log as "backup.restored" (the request itself
  is in the previous schema's log and the platform's).
- `enqueue_scheduled_backups(ctx)`: hourly. Records today's scheduled run for each workspace due
  by its plan (daily or weekly; one per workspace and day, whatever arq's cron does), then
  (re)enqueues every queued run under the stable job id `backup-run:<run id>`, so a run whose
  enqueue was lost still runs and one already waiting in the queue is not queued twice.

An interrupted backup (worker stopped: arq runs the job again) goes back to queued, at most
MAX_ATTEMPTS times; an interrupted restore fails (its transaction rolled back, nothing switched)
and the operator decides.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from arq.jobs import Job
from arq.worker import func

from kith.jobs.queue import enqueue_tenant_job
from kith.jobs.tenant_job import JobContext, tenant_job
from kith.platform.access.actor import Actor
from kith.platform.audit.log import append_entry
from kith.platform.backups import runs
from kith.platform.backups.archive import BackupError
from kith.platform.backups.progress import RunProgress
from kith.platform.backups.restore import restore_tenant
from kith.platform.backups.snapshot import backup_tenant
from kith.platform.backups.storage import Storage, backup_storage
from kith.platform.billing.plans import current_plan
from kith.platform.db import platform_tx, tenant_scope
from kith.platform.observability import get_logger
from kith.platform.tenancy.models import Tenant

log = get_logger("kith.jobs.backups")

# A backup of a large workspace (1M contacts) takes a minute or two; the ceiling is generous and
# still ends a job stuck on a dead connection.
JOB_TIMEOUT_S = 3 * 3600
MAX_ATTEMPTS = 3
INTERNAL = "stopped on an internal error (recorded in the worker's log); try again, or ask support if it repeats"

ArqJob = Callable[..., Coroutine[Any, Any, str]]


def job_id_of(run: runs.BackupRun) -> str:
    """The stable arq job id of a run: enqueueing it again while it waits changes nothing."""
    return f"backup-run:{run.id}"


async def enqueue_run(run: runs.BackupRun) -> Job | None:
    """Queue the job of a recorded run (after its transaction committed); None if it is queued already."""
    function = "restore_workspace" if run.is_restore else "backup_workspace"
    return await enqueue_tenant_job(function, run.tenant_id, run.id, job_id=job_id_of(run))


def _settles_run(job: Callable[[JobContext, int, int], Coroutine[Any, Any, str]]) -> ArqJob:
    """A run whose job is skipped (the workspace was suspended or deleted after the request) is
    failed with the reason, instead of staying queued."""

    @functools.wraps(job)
    async def run(ctx: JobContext, tenant_id: int, run_id: int) -> str:
        outcome = await job(ctx, tenant_id, run_id)
        if outcome.startswith("skipped: "):
            await runs.fail_unclaimed(tenant_id, run_id, outcome.removeprefix("skipped: "))
        return outcome

    return run


async def _audit(tenant_id: int, job_name: str, action: str, run: runs.BackupRun, diff: dict[str, Any]) -> None:
    """The job's entry in the workspace's audit log (appended directly: a backup changes no
    workspace data, so a read-only workspace records it too)."""
    actor = Actor(kind="job", tenant_id=tenant_id, role="owner", label=f"job:{job_name}")
    async with tenant_scope(tenant_id) as tx:
        await append_entry(tx, actor, action=action, object_type="backup_run", object_id=run.id, diff=diff)


async def _retention(tenant_id: int, storage: Storage, progress: RunProgress,
                     just_made: tuple[str, str]) -> tuple[list[str], str]:
    """Apply the plan's retention; a failure here does not undo the backup just made."""
    plan = await current_plan(tenant_id)
    schedule = runs.schedule_for(plan)
    progress.set_phase("retention", f"keeping the newest {schedule.keep} {schedule.name} backups")
    try:
        return await runs.apply_retention(tenant_id, storage, plan, just_made), ""
    except BackupError as exc:
        log.warning("backup retention failed", tenant_id=tenant_id, error=str(exc))
        return [], f"; old backups were not pruned: {exc}"


async def _requeue_or_fail(run: runs.BackupRun) -> None:
    """An interrupted backup: queued again for arq's next delivery, or failed after MAX_ATTEMPTS."""
    if run.attempts >= MAX_ATTEMPTS:
        await runs.fail_run(run, f"interrupted {run.attempts} times (the worker stopped or the job ran out of time)")
        return
    async with platform_tx() as tx:
        await tx.execute_query(
            "UPDATE public.backup_runs SET status = 'queued', phase = 'queued',"
            " message = 'interrupted; it will be tried again' WHERE id = $1 AND attempts = $2 AND status = 'running'",
            [run.id, run.attempts])


@_settles_run
@tenant_job
async def backup_workspace(ctx: JobContext, tenant: Tenant, run_id: int) -> str:
    """Back up the workspace for run `run_id`, then apply its plan's retention."""
    run = await runs.claim_run(tenant.id, run_id)
    if run is None:
        return f"run {run_id}: not queued (finished, or taken by another worker)"
    if run.is_restore:
        await runs.fail_run(run, "a restore run was sent to the backup job")
        return "failed: not a backup run"
    storage = backup_storage()
    progress = RunProgress(run)
    try:
        async with progress:
            made = await backup_tenant(tenant.id, progress=progress, storage=storage)
            pruned, note = await _retention(tenant.id, storage, progress, (made.backup_id, run.kind))
    except BackupError as exc:
        await runs.fail_run(run, str(exc))
        await _audit(tenant.id, "backup_workspace", "backup.failed", run, {"kind": run.kind, "error": str(exc)})
        return f"failed: {exc}"
    except asyncio.CancelledError:
        await asyncio.shield(_requeue_or_fail(run))
        raise
    except Exception:
        await runs.fail_run(run, INTERNAL)
        raise
    message = f"backup {made.backup_id}: {made.rows:,} rows, {made.size_bytes:,} bytes" + (
        f"; {len(pruned)} older deleted by retention" if pruned else "") + note
    await runs.finish_run(run, backup_id=made.backup_id, size_bytes=made.size_bytes, rows_done=made.rows,
                          tables_done=len(made.manifest["tables"]), message=message)
    await _audit(tenant.id, "backup_workspace", "backup.created", run, {
        "kind": run.kind, "backup_id": made.backup_id, "rows": made.rows, "size_bytes": made.size_bytes,
        "schema_version": made.manifest["schema_version"], "pruned": pruned})
    return message


@_settles_run
@tenant_job
async def restore_workspace(ctx: JobContext, tenant: Tenant, run_id: int) -> str:
    """Restore the run's backup into a new schema, verify it and switch the workspace over."""
    run = await runs.claim_run(tenant.id, run_id)
    if run is None:
        return f"run {run_id}: not queued (finished, or taken by another worker)"
    if not run.is_restore or run.backup_id is None:
        await runs.fail_run(run, "a backup run was sent to the restore job")
        return "failed: not a restore run"
    storage = backup_storage()
    try:
        manifests = await asyncio.to_thread(storage.manifests, tenant.id)
        tables = next((len(m.get("tables", {})) for m in manifests if m.get("backup_id") == run.backup_id), None)
        async with RunProgress(run, tables_total=tables) as progress:
            result = await restore_tenant(tenant.id, run.backup_id, switch=True, progress=progress, storage=storage)
    except BackupError as exc:
        await runs.fail_run(run, str(exc))
        await _audit(tenant.id, "restore_workspace", "backup.restore_failed", run,
                     {"backup_id": run.backup_id, "error": str(exc), "requested_by": run.requested_by_label})
        return f"failed: {exc}"
    except asyncio.CancelledError:
        await asyncio.shield(runs.fail_run(run, "interrupted (the worker stopped or the job ran out of time); the "
                                                "restore was rolled back and the workspace was not switched over"))
        raise
    except Exception:
        await runs.fail_run(run, INTERNAL)
        raise
    rows = sum(result.rows.values())
    message = (f"restored backup {run.backup_id} ({rows:,} rows) and switched over; the previous data is kept in "
               f"{result.old_schema}")
    await runs.finish_run(run, backup_id=run.backup_id, size_bytes=None, rows_done=rows,
                          tables_done=len(result.rows), message=message, old_schema=result.old_schema)
    # in the restored schema's log: the workspace's history now continues from the backup
    await _audit(tenant.id, "restore_workspace", "backup.restored", run, {
        "backup_id": run.backup_id, "old_schema": result.old_schema, "schema_version": result.version,
        "requested_by": run.requested_by_label, "reason": run.reason})
    return message


async def enqueue_scheduled_backups(ctx: JobContext) -> int:
    """The hourly cron: record today's due scheduled runs, then enqueue every queued run's job.
    Returns how many jobs were newly queued."""
    async with platform_tx() as tx:
        await runs.settle_abandoned_in(tx)
    await runs.queue_scheduled_runs(datetime.now(UTC).date())
    queued = 0
    for run in await runs.waiting_runs():
        queued += await enqueue_run(run) is not None
    return queued


# For the worker: both jobs may take longer than the worker's default timeout.
BACKUP_FUNCTIONS = [
    func(backup_workspace, name="backup_workspace", timeout=JOB_TIMEOUT_S, max_tries=MAX_ATTEMPTS + 1),
    func(restore_workspace, name="restore_workspace", timeout=JOB_TIMEOUT_S, max_tries=MAX_ATTEMPTS + 1),
]
