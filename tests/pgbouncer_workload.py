"""A tenant workload run through PgBouncer in its own process (`python -m tests.pgbouncer_workload`).

It initialises its own Tortoise from the environment (DATABASE_URL pointing at pgbouncer,
KITH_DB_STATEMENT_CACHE=0), so the test session's Tortoise and settings stay untouched.
Every transaction writes a contact tagged with its tenant and reads the tenant's contacts
back; anything tagged with another tenant is a leak. Prints one JSON object.

argv: a JSON object {"tenants": [ids...], "rounds": n}
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from kith.platform.db import close_db, init_db, tenant_schema, tenant_scope
from kith.tenants.contacts.models import Contact
from kith.tenants.registry import TENANT_MODEL_MODULES


async def one_transaction(tenant_id: int, n: int) -> dict[str, Any]:
    mine = f"tenant-{tenant_id}:"
    async with tenant_scope(tenant_id) as tx:
        info = await tx.execute_query_dict(
            "SELECT pg_backend_pid() AS pid, current_schemas(false)::text[] AS path"
        )
        await Contact.create(name=f"{mine}{n}", email=f"c{n}@t{tenant_id}.example")
        await asyncio.sleep(0)  # let other transactions interleave on the shared servers
        names = await Contact.all().values_list("name", flat=True)
    return {
        "pid": int(info[0]["pid"]),
        "wrong_path": list(info[0]["path"]) != [tenant_schema(tenant_id)],
        "leaked": [name for name in names if not str(name).startswith(mine)],
    }


async def run(tenants: list[int], rounds: int) -> dict[str, Any]:
    await init_db(TENANT_MODEL_MODULES)
    try:
        results = await asyncio.gather(
            *(one_transaction(tid, n) for n in range(rounds) for tid in tenants), return_exceptions=True
        )
    finally:
        await close_db()
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    done = [r for r in results if not isinstance(r, BaseException)]
    return {
        "transactions": len(done),
        "errors": errors,
        "pids": sorted({r["pid"] for r in done}),
        "wrong_paths": sum(1 for r in done if r["wrong_path"]),
        "leaked": [name for r in done for name in r["leaked"]],
    }


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    print(json.dumps(asyncio.run(run([int(t) for t in spec["tenants"]], int(spec["rounds"])))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
