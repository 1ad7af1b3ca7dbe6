"""Backup and restore runs (`public.backup_runs`): the record of what was asked, done and kept.

arq delivers a job at least once and its cron may fire twice, so the database decides:

- a run is recorded (queued) before its job is enqueued, under two unique indexes: at most one
  queued or running run per workspace, and one scheduled run per workspace and UTC day;
- the job claims its run (queued -> running, `attempts` + 1) and does nothing when the run is
  not queued any more; progress and the finish name the attempt, so a worker that was given up
  for dead cannot overwrite the run another worker took over;
- a running run whose heartbeat stopped for KITH_BACKUP_STALE_MINUTES is abandoned (failed),
  so a worker that died never blocks "Back up now" for good.

Schedule and retention follow the plan: daily backups where the plan's `features.daily_backups`
is true, weekly otherwise. After each backup, retention keeps the newest KITH_BACKUP_KEEP_DAILY
(or _WEEKLY) scheduled backups and, counted apart, the newest KITH_BACKUP_KEEP_MANUAL on-demand
ones (members' and operators'), so a burst of "Back up now" never pushes the scheduled history
out. Backups without a run (made with `kith backups create`) are an operator's and are never
deleted here; nor is a backup a queued or running restore names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from tortoise.backends.base.client import BaseDBAsyncClient

from kith.platform.backups.archive import BackupError
from kith.platform.backups.storage import Storage
from kith.platform.billing.plans import Plan, plans_of
from kith.platform.config import get_settings
from kith.platform.db import platform_tx
from kith.platform.observability import get_logger

log = get_logger("kith.backups")

RunKind = Literal["scheduled", "manual", "ops", "restore"]
RunStatus = Literal["queued", "running", "done", "failed"]
RUN_KINDS: tuple[RunKind, ...] = ("scheduled", "manual", "ops", "restore")
ON_DEMAND: frozenset[str] = frozenset({"manual", "ops"})
ACTIVE: tuple[RunStatus, ...] = ("queued", "running")
MESSAGE_CHARS = 500
ERROR_CHARS = 1000

_COLUMNS = (
    "id, tenant_id, kind, status, scheduled_for, phase, message, tables_done, tables_total, rows_done, backup_id,"
    " size_bytes, error, requested_by_identity_id, requested_by_operator_id, requested_by_label, reason,"
    " old_schema, attempts, pruned_at, created_at, started_at, heartbeat_at, finished_at"
)


@dataclass(frozen=True)
class BackupRun:
    """One row of public.backup_runs."""

    id: int
    tenant_id: int
    kind: RunKind
    status: RunStatus
    scheduled_for: date | None
    phase: str
    message: str
    tables_done: int
    tables_total: int | None
    rows_done: int
    backup_id: str | None
    size_bytes: int | None
    error: str | None
    requested_by_identity_id: int | None
    requested_by_operator_id: int | None
    requested_by_label: str
    reason: str
    old_schema: str | None
    attempts: int
    pruned_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> BackupRun:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})

    @property
    def active(self) -> bool:
        """Queued or running: the workspace's one run under way."""
        return self.status in ACTIVE

    @property
    def is_restore(self) -> bool:
        return self.kind == "restore"


class BackupBusy(BackupError):
    """The workspace already has a backup or restore queued or running."""

    def __init__(self, run: BackupRun) -> None:
        what = "restore" if run.is_restore else "backup"
        since = (run.started_at or run.created_at).strftime("%Y-%m-%d %H:%M UTC")
        state = "running" if run.status == "running" else "queued"
        super().__init__(f"A {what} of this workspace is already {state} (since {since}); wait for it to finish, "
                         "then start another.")
        self.run = run


@dataclass(frozen=True)
class Schedule:
    """How often a plan's workspaces are backed up, and how many scheduled backups are kept."""

    every_days: int
    name: Literal["daily", "weekly"]
    keep: int


def schedule_for(plan: Plan) -> Schedule:
    """Daily for plans with `features.daily_backups`, weekly otherwise."""
    settings = get_settings()
    if plan.features.daily_backups:
        return Schedule(1, "daily", settings.backup_keep_daily)
    return Schedule(7, "weekly", settings.backup_keep_weekly)


# --- recording and reading runs -----------------------------------------------------------------


async def settle_abandoned_in(tx: BaseDBAsyncClient, tenant_id: int | None = None) -> int:
    """Fail running runs whose heartbeat stopped (their worker died); returns how many.

    For one workspace (before a new run is recorded) or, with no tenant, for all (the cron's sweep).
    """
    minutes = get_settings().backup_stale_minutes
    where = " AND tenant_id = $3" if tenant_id is not None else ""
    args: list[Any] = [minutes, f"abandoned: no sign of its worker for {minutes} minutes (it stopped or was "
                                "restarted); nothing was switched over"]
    if tenant_id is not None:
        args.append(int(tenant_id))
    rows = await tx.execute_query_dict(
        "UPDATE public.backup_runs SET status = 'failed', phase = 'failed', error = $2, finished_at = now()"
        " WHERE status = 'running' AND heartbeat_at < now() - make_interval(mins => $1)" + where + " RETURNING id",
        args)
    for row in rows:
        log.warning("backup run abandoned", run_id=int(row["id"]))
    return len(rows)


async def record_run_in(
    tx: BaseDBAsyncClient, tenant_id: int, kind: RunKind, *, label: str, reason: str = "",
    identity_id: int | None = None, operator_id: int | None = None, backup_id: str | None = None,
) -> BackupRun:
    """Record a queued run in `tx` (the caller's transaction, with its audit entry); enqueue its job
    after the commit. BackupBusy when the workspace already has a run queued or running."""
    if kind == "scheduled":
        raise ValueError("scheduled runs are recorded by queue_scheduled_runs, one per workspace and day")
    await settle_abandoned_in(tx, tenant_id)
    rows = await tx.execute_query_dict(
        "INSERT INTO public.backup_runs (tenant_id, kind, requested_by_label, reason, requested_by_identity_id,"
        " requested_by_operator_id, backup_id) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        f" ON CONFLICT DO NOTHING RETURNING {_COLUMNS}",
        [int(tenant_id), kind, label[:320], reason, identity_id, operator_id, backup_id])
    if rows:
        return BackupRun.from_row(rows[0])
    active = await active_run_in(tx, tenant_id)
    if active is None:  # the other run finished between the two statements: a rare race, try once more
        return await record_run_in(tx, tenant_id, kind, label=label, reason=reason, identity_id=identity_id,
                                   operator_id=operator_id, backup_id=backup_id)
    raise BackupBusy(active)


async def active_run_in(tx: BaseDBAsyncClient, tenant_id: int) -> BackupRun | None:
    rows = await tx.execute_query_dict(
        f"SELECT {_COLUMNS} FROM public.backup_runs WHERE tenant_id = $1 AND status IN ('queued', 'running')",
        [int(tenant_id)])
    return BackupRun.from_row(rows[0]) if rows else None


async def runs_in(tx: BaseDBAsyncClient, tenant_id: int, limit: int = 20) -> list[BackupRun]:
    """The workspace's latest runs, newest first (never another workspace's)."""
    rows = await tx.execute_query_dict(
        f"SELECT {_COLUMNS} FROM public.backup_runs WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2",
        [int(tenant_id), int(limit)])
    return [BackupRun.from_row(r) for r in rows]


async def runs_of(tenant_id: int, limit: int = 20) -> list[BackupRun]:
    """The workspace's latest runs, newest first, in a transaction of their own."""
    async with platform_tx() as tx:
        return await runs_in(tx, tenant_id, limit)


async def get_run(tenant_id: int, run_id: int) -> BackupRun | None:
    """One run of the workspace; None when there is none, or it is another workspace's."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            f"SELECT {_COLUMNS} FROM public.backup_runs WHERE id = $1 AND tenant_id = $2",
            [int(run_id), int(tenant_id)])
    return BackupRun.from_row(rows[0]) if rows else None


async def failed_runs(limit: int = 10) -> list[tuple[str, BackupRun]]:
    """The latest failed runs of every workspace with its slug, newest first (the console's dashboard)."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            f"SELECT t.slug AS tenant_slug, {', '.join('r.' + c.strip() for c in _COLUMNS.split(','))}"
            " FROM public.backup_runs r JOIN public.tenants t ON t.id = r.tenant_id"
            " WHERE r.status = 'failed' ORDER BY r.finished_at DESC LIMIT $1", [int(limit)])
    return [(str(r["tenant_slug"]), BackupRun.from_row(r)) for r in rows]


# --- the job's side: claim, progress, finish ----------------------------------------------------


async def claim_run(tenant_id: int, run_id: int) -> BackupRun | None:
    """Take a run for this job: queued -> running (or a running one whose worker was given up for
    dead). None when the run is not this workspace's, or was taken, finished or failed already."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "UPDATE public.backup_runs SET status = 'running', attempts = attempts + 1, phase = 'starting',"
            " started_at = coalesce(started_at, now()), heartbeat_at = now()"
            " WHERE id = $1 AND tenant_id = $2 AND (status = 'queued'"
            "  OR (status = 'running' AND heartbeat_at < now() - make_interval(mins => $3)))"
            f" RETURNING {_COLUMNS}",
            [int(run_id), int(tenant_id), get_settings().backup_stale_minutes])
    return BackupRun.from_row(rows[0]) if rows else None


async def report_progress(run: BackupRun, *, phase: str, message: str, tables_done: int,
                          tables_total: int | None, rows_done: int, backup_id: str | None) -> bool:
    """Store the run's progress and refresh its heartbeat; False when the run is no longer this
    attempt's (abandoned and taken over)."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "UPDATE public.backup_runs SET phase = $3, message = $4, tables_done = $5,"
            " tables_total = coalesce($6, tables_total), rows_done = $7, backup_id = coalesce(backup_id, $8),"
            " heartbeat_at = now() WHERE id = $1 AND attempts = $2 AND status = 'running' RETURNING id",
            [run.id, run.attempts, phase[:40], message[:MESSAGE_CHARS], tables_done, tables_total, rows_done,
             backup_id])
    return bool(rows)


async def finish_run(run: BackupRun, *, backup_id: str, size_bytes: int | None, rows_done: int,
                     tables_done: int, message: str, old_schema: str | None = None) -> BackupRun | None:
    """Mark the run done (this attempt's only); returns the finished run."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "UPDATE public.backup_runs SET status = 'done', phase = 'done', finished_at = now(), heartbeat_at = now(),"
            " backup_id = $3, size_bytes = $4, rows_done = $5, tables_done = $6,"
            " tables_total = coalesce(tables_total, $6), message = $7, old_schema = $8"
            f" WHERE id = $1 AND attempts = $2 AND status = 'running' RETURNING {_COLUMNS}",
            [run.id, run.attempts, backup_id, size_bytes, rows_done, tables_done, message[:MESSAGE_CHARS],
             old_schema])
    return BackupRun.from_row(rows[0]) if rows else None


async def fail_run(run: BackupRun, error: str) -> BackupRun | None:
    """Mark the run failed with a message a person can act on (this attempt's only)."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "UPDATE public.backup_runs SET status = 'failed', phase = 'failed', finished_at = now(),"
            f" heartbeat_at = now(), error = $3 WHERE id = $1 AND attempts = $2 AND status = 'running'"
            f" RETURNING {_COLUMNS}",
            [run.id, run.attempts, (error or "failed")[:ERROR_CHARS]])
    return BackupRun.from_row(rows[0]) if rows else None


async def fail_unclaimed(tenant_id: int, run_id: int, error: str) -> bool:
    """Fail a run still queued whose job will not run it (its workspace is suspended or gone)."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "UPDATE public.backup_runs SET status = 'failed', phase = 'failed', finished_at = now(), error = $3"
            " WHERE id = $1 AND tenant_id = $2 AND status = 'queued' RETURNING id",
            [int(run_id), int(tenant_id), error[:ERROR_CHARS]])
    return bool(rows)


# --- the schedule -----------------------------------------------------------------------------


async def queue_scheduled_runs(today: date) -> list[BackupRun]:
    """Record today's scheduled run for every active workspace that is due; returns the new runs.

    Due: no scheduled run that is queued, running or done within the plan's interval (a day, or
    seven), so a failed weekly backup is tried again the next day. The unique index on (workspace,
    day) makes a second firing on the same day record nothing; a workspace with an on-demand run
    under way is skipped by the one-active index and picked up by the next hourly firing.
    """
    async with platform_tx() as tx:
        ids = [int(r["id"]) for r in await tx.execute_query_dict(
            "SELECT id FROM public.tenants WHERE status = 'active' ORDER BY id")]
    if not ids:
        return []
    plans = await plans_of(ids)
    days = [schedule_for(plans[tid]).every_days for tid in ids]
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "INSERT INTO public.backup_runs (tenant_id, kind, scheduled_for, requested_by_label)"
            " SELECT t.id, 'scheduled', $3::date, 'schedule' FROM unnest($1::bigint[], $2::int[]) AS t (id, days)"
            " WHERE NOT EXISTS (SELECT 1 FROM public.backup_runs r WHERE r.tenant_id = t.id AND r.kind = 'scheduled'"
            "  AND r.status <> 'failed' AND r.scheduled_for > $3::date - t.days)"
            f" ORDER BY t.id ON CONFLICT DO NOTHING RETURNING {_COLUMNS}",
            [ids, days, today])
    return [BackupRun.from_row(r) for r in rows]


async def waiting_runs() -> list[BackupRun]:
    """Queued runs of active workspaces, oldest first: the cron (re)enqueues their jobs, so a run
    whose enqueue was lost (Redis down at the time) still runs."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            f"SELECT {', '.join('r.' + c.strip() for c in _COLUMNS.split(','))} FROM public.backup_runs r"
            " JOIN public.tenants t ON t.id = r.tenant_id"
            " WHERE r.status = 'queued' AND t.status = 'active' ORDER BY r.id")
    return [BackupRun.from_row(r) for r in rows]


async def last_done_scheduled(tenant_id: int) -> BackupRun | None:
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            f"SELECT {_COLUMNS} FROM public.backup_runs WHERE tenant_id = $1 AND kind = 'scheduled'"
            " AND status = 'done' ORDER BY scheduled_for DESC LIMIT 1", [int(tenant_id)])
    return BackupRun.from_row(rows[0]) if rows else None


def next_scheduled(schedule: Schedule, last: BackupRun | None, today: date) -> date:
    """The UTC day the next scheduled backup is due (today when none was made yet)."""
    if last is None or last.scheduled_for is None:
        return today
    return max(today, last.scheduled_for + timedelta(days=schedule.every_days))


# --- retention --------------------------------------------------------------------------------


def select_for_deletion(made: Sequence[tuple[str, str]], *, present: Iterable[str], keep_scheduled: int,
                        keep_on_demand: int, protected: Iterable[str] = ()) -> list[str]:
    """The backups retention deletes: beyond the newest `keep_scheduled` scheduled ones and, counted
    apart, the newest `keep_on_demand` on-demand ones.

    `made` is (backup id, kind of run) of the runs that made backups, newest first (by when they
    finished: two backups can share a second, so ids alone do not order them); only backups still
    `present` in storage count. Backups without a run (the CLI's) never appear in `made`, so they
    are kept; so is a `protected` one (a queued or running restore names it).
    """
    stored = set(present)
    keep_protected = set(protected)
    counts = {"scheduled": 0, "on_demand": 0}
    limits = {"scheduled": max(1, keep_scheduled), "on_demand": max(1, keep_on_demand)}
    doomed: list[str] = []
    seen: set[str] = set()
    for backup_id, kind in made:
        group = "scheduled" if kind == "scheduled" else "on_demand" if kind in ON_DEMAND else None
        if group is None or backup_id not in stored or backup_id in seen:
            continue
        seen.add(backup_id)
        counts[group] += 1
        if counts[group] > limits[group] and backup_id not in keep_protected:
            doomed.append(backup_id)
    return doomed


async def apply_retention(tenant_id: int, storage: Storage, plan: Plan,
                          just_made: tuple[str, str] | None = None) -> list[str]:
    """Delete the workspace's backups beyond what its plan keeps; returns the ids deleted.
    `just_made` is (backup id, kind) of the backup the calling job made, its run not finished yet.

    Each is deleted from storage first, then its run is marked pruned, so a crash in between
    leaves at worst a pruned backup whose run does not say so yet.
    """
    manifests = await asyncio.to_thread(storage.manifests, tenant_id)
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT backup_id, kind, status FROM public.backup_runs WHERE tenant_id = $1 AND backup_id IS NOT NULL"
            " ORDER BY finished_at DESC NULLS FIRST, id DESC", [int(tenant_id)])
    made = [(str(r["backup_id"]), str(r["kind"])) for r in rows if r["kind"] != "restore" and r["status"] == "done"]
    if just_made is not None:
        made.insert(0, just_made)
    protected = {str(r["backup_id"]) for r in rows if r["kind"] == "restore" and r["status"] in ACTIVE}
    doomed = select_for_deletion(
        made, present=[str(m["backup_id"]) for m in manifests if m.get("backup_id")],
        keep_scheduled=schedule_for(plan).keep, keep_on_demand=get_settings().backup_keep_manual,
        protected=protected)
    for backup_id in doomed:
        await asyncio.to_thread(storage.delete, tenant_id, backup_id)
        async with platform_tx() as tx:
            await tx.execute_query(
                "UPDATE public.backup_runs SET pruned_at = now() WHERE tenant_id = $1 AND backup_id = $2"
                " AND kind <> 'restore' AND pruned_at IS NULL", [int(tenant_id), backup_id])
    if doomed:
        log.info("backups pruned", tenant_id=int(tenant_id), backups=doomed)
    return doomed
