"""The backups API: GET /backups (the workspace's backups, latest runs and schedule) and POST /backups
(start one now).

Both need the workspace permission manage_settings, checked below the web layer
(kith.platform.backups.workspace). A POST records a queued run and enqueues its job; progress is
read back with GET (the run's phase, tables and rows done).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field
from redis.exceptions import RedisError
from starlette.requests import Request

from kith.jobs.backups import enqueue_run
from kith.platform.backups.runs import BackupBusy, BackupRun
from kith.platform.backups.workspace import BackupsOverview, backups_overview, request_backup
from kith.platform.config import get_settings
from kith.platform.observability import get_logger
from kith.web.api.registry import endpoint
from kith.web.edge import actor_of
from kith.web.errors import ApiError

TAG = "backups"
PERMISSION = ("workspace", "manage_settings")
log = get_logger("kith.web.api")


class BackupOut(BaseModel):
    backup_id: str
    created_at: datetime
    size_bytes: int = Field(description="Size of the compressed, encrypted archive.")
    rows: int = Field(description="Rows of every table of the workspace, together.")
    tables: int
    schema_version: int = Field(description="The workspace's schema version when the backup was taken.")
    made_by: Literal["scheduled", "manual", "ops"] | None = Field(
        description="scheduled (by plan), manual (a workspace admin), ops (Kith support); null: made by an "
                    "operator from the command line.")


class BackupRunOut(BaseModel):
    id: int
    kind: Literal["scheduled", "manual", "ops", "restore"]
    status: Literal["queued", "running", "done", "failed"]
    phase: str = Field(description="queued, starting, copying, stored, retention, loading, verified, migrating, "
                                   "switched, done or failed.")
    message: str = Field(description="The job's latest progress line.")
    tables_done: int
    tables_total: int | None
    rows_done: int
    backup_id: str | None = Field(description="The backup made (or, for a restore, restored from).")
    size_bytes: int | None
    error: str | None
    requested_by: str
    reason: str = Field(description="Why Kith support started it (ops and restore runs).")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ScheduleOut(BaseModel):
    plan: str
    frequency: Literal["daily", "weekly"]
    next_scheduled: date = Field(description="The UTC day the next scheduled backup is due.")
    keep_scheduled: int = Field(description="Scheduled backups kept; older ones are deleted.")
    keep_on_demand: int = Field(description="On-demand backups kept, counted apart from scheduled ones.")


class BackupsOut(BaseModel):
    schedule: ScheduleOut
    backups: list[BackupOut] = Field(description="Newest first.")
    runs: list[BackupRunOut] = Field(description="The latest runs, newest first.")
    storage_error: str | None = Field(description="Set when backup storage could not be read; runs are still listed.")


def run_out(run: BackupRun) -> BackupRunOut:
    return BackupRunOut(
        id=run.id, kind=run.kind, status=run.status, phase=run.phase, message=run.message,
        tables_done=run.tables_done, tables_total=run.tables_total, rows_done=run.rows_done,
        backup_id=run.backup_id, size_bytes=run.size_bytes, error=run.error, requested_by=run.requested_by_label,
        reason=run.reason, created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at)


MadeBy = Literal["scheduled", "manual", "ops"]
_MADE_BY: dict[str, MadeBy] = {"scheduled": "scheduled", "manual": "manual", "ops": "ops"}


def _made_by(kind: str | None) -> MadeBy | None:
    return _MADE_BY.get(kind or "")


def overview_out(found: BackupsOverview) -> BackupsOut:
    return BackupsOut(
        schedule=ScheduleOut(plan=found.plan_name, frequency=found.schedule.name, next_scheduled=found.next_scheduled,
                             keep_scheduled=found.schedule.keep, keep_on_demand=get_settings().backup_keep_manual),
        backups=[BackupOut(backup_id=b.backup_id, created_at=b.created_at, size_bytes=b.size_bytes, rows=b.rows,
                           tables=b.tables, schema_version=b.schema_version,
                           made_by=_made_by(b.kind))
                 for b in found.backups],
        runs=[run_out(r) for r in found.runs],
        storage_error=found.storage_error or None)


async def enqueue_started(run: BackupRun) -> None:
    """Queue the run's job; if the queue is unreachable the run stays queued and the hourly sweep
    (jobs.backups.enqueue_scheduled_backups) queues it later."""
    try:
        await enqueue_run(run)
    except (OSError, RedisError) as exc:
        log.warning("backup job not queued; the hourly sweep will", run_id=run.id, error=str(exc))


@endpoint("GET", "/backups", summary="List the workspace's backups, latest backup runs and schedule", tag=TAG,
          permission=PERMISSION, response=BackupsOut, errors=(401, 403))
async def list_backups(request: Request, body: None) -> BaseModel:
    return overview_out(await backups_overview(actor_of(request)))


@endpoint("POST", "/backups", summary="Back up the workspace now (queued; follow it with GET /backups)", tag=TAG,
          permission=PERMISSION, response=BackupRunOut, status=202, errors=(401, 403, 409))
async def start_backup(request: Request, body: None) -> BaseModel:
    try:
        run = await request_backup(actor_of(request))
    except BackupBusy as exc:
        raise ApiError(409, "backup_in_progress", str(exc)) from None
    await enqueue_started(run)
    return run_out(run)
