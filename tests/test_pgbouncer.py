"""Tenant isolation through PgBouncer in transaction pooling mode.

Each transaction may land on any of a few shared server connections, so the tenant
scope must be set per transaction (SET LOCAL semantics) and never leak between clients.
The workload runs in its own process (tests/pgbouncer_workload.py) with its own Tortoise
pointed at pgbouncer, so this session's Tortoise and settings are never touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from kith.platform.db import connect_kwargs, tenant_scope
from kith.platform.tenancy.provisioning import provision_tenant
from kith.tenants.contacts.models import Contact

from .conftest import Services, unique_slug
from .pgbouncer_helper import PgBouncer, run_pgbouncer

TENANTS = 24
ROUNDS = 25  # 600 transactions, all started at once
SERVER_CONNECTIONS = 4
CLIENT_CONNECTIONS = 40
REPO = Path(__file__).resolve().parent.parent


def _servers(pools: list[dict[str, str | None]], database: str) -> int:
    """Server connections pgbouncer holds for `database`, in any state."""
    states = ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")
    return sum(int(p[s] or 0) for p in pools if p["database"] == database for s in states)


def _clients(pools: list[dict[str, str | None]], database: str) -> int:
    return sum(
        int(p["cl_active"] or 0) + int(p["cl_waiting"] or 0) for p in pools if p["database"] == database
    )


async def _watch_pools(bouncer: PgBouncer, database: str, stop: asyncio.Event, peaks: dict[str, int]) -> None:
    while not stop.is_set():
        pools = await bouncer.show("POOLS")
        peaks["servers"] = max(peaks["servers"], _servers(pools, database))
        peaks["clients"] = max(peaks["clients"], _clients(pools, database))
        await asyncio.sleep(0.05)


async def test_tenants_stay_isolated_through_pgbouncer_transaction_pooling(db: Services) -> None:
    tenants = [
        (await provision_tenant(slug=unique_slug("bouncer"), name=f"Bouncer {n}")).id for n in range(TENANTS)
    ]
    database = str(connect_kwargs(db.database_url)["database"])

    with run_pgbouncer(db.database_url, pool_size=SERVER_CONNECTIONS) as bouncer:
        env = dict(os.environ)
        env.update({
            "DATABASE_URL": bouncer.url(database),
            "DATABASE_DIRECT_URL": db.database_url,
            # pgbouncer 1.18 keeps no prepared statements across transactions
            "KITH_DB_STATEMENT_CACHE": "0",
            "KITH_DB_POOL_MAX": str(CLIENT_CONNECTIONS),
        })
        spec = json.dumps({"tenants": tenants, "rounds": ROUNDS})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.pgbouncer_workload", spec,
            cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        stop = asyncio.Event()
        peaks = {"servers": 0, "clients": 0}
        watcher = asyncio.create_task(_watch_pools(bouncer, database, stop, peaks))
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 120)
        finally:
            stop.set()
            await watcher
        assert proc.returncode == 0, err.decode(errors="replace") + bouncer.log()[-3000:]
        result = json.loads(out.decode().strip().splitlines()[-1])

        pools = await bouncer.show("POOLS")
        stats = {s["database"]: s for s in await bouncer.show("STATS")}
        servers = [s for s in await bouncer.show("SERVERS") if s["database"] == database]

    assert result["errors"] == []
    assert result["transactions"] == TENANTS * ROUNDS
    assert result["leaked"] == []
    assert result["wrong_paths"] == 0
    # many clients and hundreds of tenant transactions shared a few server connections
    assert 0 < len(result["pids"]) <= SERVER_CONNECTIONS < TENANTS
    assert peaks["clients"] > SERVER_CONNECTIONS, peaks
    assert 0 < peaks["servers"] <= SERVER_CONNECTIONS, peaks
    assert _servers(pools, database) <= SERVER_CONNECTIONS
    assert len(servers) <= SERVER_CONNECTIONS
    assert int(stats[database]["total_xact_count"] or 0) >= TENANTS * ROUNDS

    # read back directly (no pgbouncer): every tenant holds exactly its own rows
    for tid in tenants:
        async with tenant_scope(tid):
            names = [str(n) for n in await Contact.all().values_list("name", flat=True)]
        assert sorted(names) == sorted(f"tenant-{tid}:{n}" for n in range(ROUNDS))
