"""Backups as a workspace's admins and Kith's operators ask for them: the overview, "Back up now",
and the console's backup and restore.

Each request records a queued run (kith.platform.backups.runs) and its audit entries in one
transaction; the caller enqueues the run's job after the commit (platform code never imports
jobs). Members need the workspace permission manage_settings. Backing up changes no workspace
data, so a read-only workspace (billing past its grace period) may still take one: its entries
are appended directly rather than through TenantSession.audit, which refuses changes there.
Operators give a reason, and their requests are recorded in the workspace's audit log and the
platform's (kith.platform.ops.audit), as every console action is.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from kith.platform.access.actor import Actor
from kith.platform.access.session import acting_as
from kith.platform.audit.log import append_entry
from kith.platform.backups.archive import BackupError
from kith.platform.backups.runs import (
    BackupBusy,
    BackupRun,
    Schedule,
    last_done_scheduled,
    next_scheduled,
    record_run_in,
    runs_in,
    schedule_for,
)
from kith.platform.backups.storage import BACKUP_ID, backup_storage
from kith.platform.billing.plans import plan_for
from kith.platform.billing.subscriptions import load_subscription_in
from kith.platform.db import TenantUnavailable, platform_tx, tenant_scope
from kith.platform.identity.events import ClientInfo
from kith.platform.ops.audit import clean_reason, record_ops_action
from kith.platform.ops.console import TenantActionError
from kith.platform.ops.operators import Operator

MANAGE = "manage_settings"
RUNS_SHOWN = 20


@dataclass(frozen=True)
class BackupInfo:
    """One backup in storage, from its manifest (the listing never opens an archive)."""

    backup_id: str
    created_at: datetime
    size_bytes: int
    rows: int
    tables: int
    schema_version: int
    kind: str | None  # scheduled, manual or ops; None for one made outside the runs (the CLI)


@dataclass(frozen=True)
class BackupsOverview:
    plan_name: str
    schedule: Schedule
    next_scheduled: date
    backups: list[BackupInfo]
    runs: list[BackupRun]
    storage_error: str  # backups could not be listed (storage unreachable); the runs still are

    @property
    def active(self) -> BackupRun | None:
        """The run under way (queued or running), if any."""
        return next((r for r in self.runs if r.active), None)


def _created_at(manifest: dict[str, Any]) -> datetime:
    try:
        value = datetime.fromisoformat(str(manifest.get("created_at", "")))
    except ValueError:
        # the id starts with the same UTC time
        value = datetime.strptime(str(manifest["backup_id"])[:16] + "+0000", "%Y%m%dT%H%M%SZ%z")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def backup_infos(manifests: list[dict[str, Any]], kinds: dict[str, str]) -> list[BackupInfo]:
    """Manifests (newest first) as rows to show, each with the kind of run that made it."""
    out: list[BackupInfo] = []
    for m in manifests:
        backup_id = str(m.get("backup_id", ""))
        if not BACKUP_ID.match(backup_id):
            continue
        tables = m.get("tables", {}) or {}
        out.append(BackupInfo(backup_id, _created_at(m), int(m.get("size_bytes", 0) or 0),
                              sum(int(t.get("rows", 0)) for t in tables.values()), len(tables),
                              int(m.get("schema_version", 0) or 0), kinds.get(backup_id)))
    return out


async def _kinds(tenant_id: int, backup_ids: list[str]) -> dict[str, str]:
    """Which kind of run made each of these backups of the workspace."""
    if not backup_ids:
        return {}
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT backup_id, kind FROM public.backup_runs WHERE tenant_id = $1 AND backup_id = ANY($2::text[])"
            " AND kind <> 'restore' AND status = 'done'", [int(tenant_id), backup_ids])
    return {str(r["backup_id"]): str(r["kind"]) for r in rows}


async def _overview(tenant_id: int, runs: list[BackupRun], plan_key: str) -> BackupsOverview:
    plan = plan_for(plan_key)
    schedule = schedule_for(plan)
    today = datetime.now(UTC).date()
    error = ""
    infos: list[BackupInfo] = []
    try:
        manifests = await asyncio.to_thread(backup_storage().manifests, tenant_id)
    except BackupError as exc:
        error = str(exc)
    else:
        ids = [str(m.get("backup_id", "")) for m in manifests]
        infos = backup_infos(manifests, await _kinds(tenant_id, ids))
    return BackupsOverview(plan.name, schedule, next_scheduled(schedule, await last_done_scheduled(tenant_id), today),
                           infos, runs, error)


async def backups_overview(actor: Actor) -> BackupsOverview:
    """The workspace's backups, latest runs and schedule (manage_settings)."""
    async with acting_as(actor) as session:
        session.policy.require_manage(MANAGE)
        runs = await runs_in(session.tx, actor.tenant_id, limit=RUNS_SHOWN)
        sub = await load_subscription_in(session.tx, actor.tenant_id)
    return await _overview(actor.tenant_id, runs, sub.effective_plan)


async def console_overview(tenant_id: int) -> BackupsOverview:
    """The same overview for the ops console (metadata only: no workspace data is read)."""
    async with platform_tx() as tx:
        runs = await runs_in(tx, tenant_id, limit=RUNS_SHOWN)
        sub = await load_subscription_in(tx, tenant_id)
    return await _overview(tenant_id, runs, sub.effective_plan)


async def request_backup(actor: Actor) -> BackupRun:
    """Queue a backup of the actor's workspace now ("Back up now"; manage_settings). BackupBusy
    while another backup or restore of the workspace is queued or running."""
    async with acting_as(actor) as session:
        session.policy.require_manage(MANAGE)
        run = await record_run_in(session.tx, actor.tenant_id, "manual", label=actor.label,
                                  identity_id=actor.identity_id)
        await append_entry(session.tx, actor, action="backup.requested", object_type="backup_run",
                           object_id=run.id, diff={"kind": "manual"})
    return run


async def _tenant_for_ops(tx: BaseDBAsyncClient, tenant_id: int) -> str:
    rows = await tx.execute_query_dict("SELECT slug, status FROM public.tenants WHERE id = $1", [tenant_id])
    if not rows:
        raise TenantActionError("There is no such workspace.")
    if rows[0]["status"] != "active":
        raise TenantActionError(f"The workspace is {rows[0]['status']}: reactivate it first (jobs do not run for "
                                "a workspace that is not active).")
    return str(rows[0]["slug"])


async def ops_request_backup(operator: Operator, tenant_id: int, reason: str, client: ClientInfo) -> BackupRun:
    """Queue a backup of a workspace from the console, with a reason, audited in the workspace's
    log and the platform's ("ops.backup"). TenantActionError when one is under way already."""
    why = clean_reason(reason)
    try:
        async with tenant_scope(tenant_id) as tx:
            slug = await _tenant_for_ops(tx, tenant_id)
            run = await record_run_in(tx, tenant_id, "ops", label=operator.label, reason=why,
                                      operator_id=operator.id)
            await record_ops_action(tx, operator, client, tenant_id=tenant_id, tenant_slug=slug, action="ops.backup",
                                    object_type="backup_run", object_id=run.id, detail={"reason": why})
    except TenantUnavailable:
        raise TenantActionError("There is no such workspace.") from None
    except BackupBusy as exc:
        raise TenantActionError(str(exc)) from None
    return run


async def ops_request_restore(operator: Operator, tenant_id: int, backup_id: str, reason: str,
                              client: ClientInfo) -> BackupRun:
    """Queue a restore of one of the workspace's backups from the console, with a reason, audited
    in both logs ("ops.restore"). The job restores into a new schema, checks it against the
    manifest and switches the workspace over; the previous schema is kept as t_<id>_old_<time>."""
    why = clean_reason(reason)
    backup_id = backup_id.strip()
    if not BACKUP_ID.match(backup_id):
        raise TenantActionError(f"'{backup_id[:60]}' is not a backup id (they look like 20260101T020000Z-1a2b3c).")
    try:
        manifests = await asyncio.to_thread(backup_storage().manifests, tenant_id)
    except BackupError as exc:
        raise TenantActionError(f"Backups cannot be listed right now: {exc}") from None
    if not any(m.get("backup_id") == backup_id for m in manifests):
        raise TenantActionError(f"This workspace has no backup {backup_id}.")
    try:
        async with tenant_scope(tenant_id) as tx:
            slug = await _tenant_for_ops(tx, tenant_id)
            run = await record_run_in(tx, tenant_id, "restore", label=operator.label, reason=why,
                                      operator_id=operator.id, backup_id=backup_id)
            await record_ops_action(tx, operator, client, tenant_id=tenant_id, tenant_slug=slug,
                                    action="ops.restore", object_type="backup_run", object_id=run.id,
                                    detail={"reason": why, "backup_id": backup_id})
    except TenantUnavailable:
        raise TenantActionError("There is no such workspace.") from None
    except BackupBusy as exc:
        raise TenantActionError(str(exc)) from None
    return run
