"""The arq jobs of background exports (kith.tenants.exports.jobs): writing a queued export's file,
and the daily cleanup of expired files.

The database decides: `execute` writes only an export its row says is queued (or was left running
by a worker that died), under a claim on the row, so a job delivered twice, or retried after its
worker stopped, writes the file once. The cleanup deletes what expired; running it twice deletes
nothing more, and its per-tenant job id carries the date, so a day queues one job per workspace.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from typing import Any

from arq import func

from kith.jobs.queue import enqueue_tenant_job
from kith.jobs.tenant_job import JobContext, tenant_job
from kith.platform.config import get_settings
from kith.platform.db import platform_tx
from kith.platform.observability import get_logger
from kith.platform.tenancy.models import Tenant, TenantStatus
from kith.tenants.exports.jobs import execute, remove_expired

log = get_logger("kith.jobs.exports")

# a million-row export takes minutes; the default job timeout (120 s) would cut it off
EXPORT_TIMEOUT_SECONDS = 3 * 3600


@tenant_job
async def run_export(ctx: JobContext, tenant: Tenant, export_id: int) -> str:
    outcome = await execute(tenant.id, int(export_id), time_zone=str(tenant.time_zone or "UTC"),
                            time_limit=EXPORT_TIMEOUT_SECONDS)
    return f"{outcome.status}: {outcome.message}" if outcome.message else f"{outcome.status}: {outcome.rows} rows"


run_export_job: Any = func(run_export, name="run_export", timeout=EXPORT_TIMEOUT_SECONDS, max_tries=3)


@tenant_job
async def export_cleanup(ctx: JobContext, tenant: Tenant) -> str:
    """Delete the workspace's expired export files and their rows."""
    done = await remove_expired(tenant.id)
    return f"deleted {done.exports} expired exports, {done.files} files"


def _export_folders() -> dict[int, str]:
    root = get_settings().data_dir / "exports"
    if not root.is_dir():
        return {}
    return {int(p.name[2:]): str(p) for p in root.iterdir()
            if p.is_dir() and p.name.startswith("t_") and p.name[2:].isdigit()}


async def enqueue_export_cleanup(ctx: JobContext) -> int:
    """The daily cron: one export_cleanup job per active workspace that has an exports folder (made
    by its first export); the folder of a workspace that was deleted goes at once. Returns how
    many jobs were queued."""
    folders = await asyncio.to_thread(_export_folders)
    if not folders:
        return 0
    async with platform_tx() as tx:  # every query in a transaction: PgBouncer-safe
        found = dict(await Tenant.filter(id__in=list(folders)).using_db(tx).values_list("id", "status"))
    day = datetime.now(UTC).strftime("%Y%m%d")
    queued = 0
    for tenant_id, folder in folders.items():
        status = found.get(tenant_id)
        if status is None or status == TenantStatus.DELETED:
            await asyncio.to_thread(shutil.rmtree, folder, True)
            log.info("export_folder_removed", tenant_id=tenant_id, reason="workspace deleted")
        elif status == TenantStatus.ACTIVE:
            job = await enqueue_tenant_job("export_cleanup", tenant_id, job_id=f"export-cleanup:{tenant_id}:{day}")
            queued += job is not None
    return queued


EXPORT_FUNCTIONS: list[Any] = [run_export_job, export_cleanup]
