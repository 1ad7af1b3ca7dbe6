"""Role-matrix fixtures for the backups endpoints (GET and POST /backups).

POST /backups is refused (409) while the workspace has a backup queued or running, and no worker
runs during the matrix; so before each role's walk the run the previous walk queued is settled,
and every role that may back up finds the workspace free to.
"""

from __future__ import annotations

from kith.platform.db import platform_tx

from .conftest import Workspace
from .factories import Member


async def path_values(ws: Workspace, member: Member, owner_headers: dict[str, str]) -> dict[str, str]:
    async with platform_tx() as tx:
        await tx.execute_query(
            "UPDATE public.backup_runs SET status = 'failed', phase = 'failed', finished_at = now(),"
            " error = 'settled by the role matrix' WHERE tenant_id = $1 AND status IN ('queued', 'running')",
            [ws.tenant_id])
    return {}
