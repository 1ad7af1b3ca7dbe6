"""The arq job that runs a queued import, its check (dry run) or its undo.

The database decides: `runner.execute` runs only what the import's row says is queued (or was
left running by a worker that died), under a transaction-level lock on the import, so a job
delivered twice, or retried after its worker was killed, runs the work once and whole.
"""

from __future__ import annotations

from typing import Any

from arq import func

from kith.jobs.tenant_job import JobContext, tenant_job
from kith.platform.tenancy.models import Tenant
from kith.tenants.imports.runner import execute

# a million-row import takes minutes; the default job timeout (120 s) would cut it off
IMPORT_TIMEOUT_SECONDS = 3 * 3600


@tenant_job
async def run_import(ctx: JobContext, tenant: Tenant, import_id: int, kind: str) -> str:
    outcome = await execute(tenant.id, tenant.default_phone_region, int(import_id), str(kind))
    return f"{outcome.status}: {outcome.message}" if outcome.message else outcome.status


run_import_job: Any = func(run_import, name="run_import", timeout=IMPORT_TIMEOUT_SECONDS, max_tries=3)
