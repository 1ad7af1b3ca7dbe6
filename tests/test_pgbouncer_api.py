"""The whole app behind PgBouncer in transaction pooling mode: a real web server and
worker whose DATABASE_URL points at PgBouncer, fewer server connections than tenants,
hundreds of concurrent API requests and jobs, and every tenant sees only its own rows."""

from __future__ import annotations

import asyncio

import httpx

from kith.jobs.queue import enqueue_welcome_email
from kith.platform.db import platform_tx, tenant_scope
from kith.platform.email.models import OutboxEmail
from kith.platform.identity.tokens import create_api_token
from kith.tenants.contacts.models import Contact

from .conftest import Services, Workspace, make_workspace
from .live_server import web_server, worker
from .pgbouncer_helper import run_pgbouncer

TENANTS = 20
POOL = 4


async def test_api_and_jobs_through_pgbouncer_stay_isolated(db: Services) -> None:
    spaces: list[Workspace] = list(await asyncio.gather(*(make_workspace("pgb") for _ in range(TENANTS))))
    tokens = [
        (await create_api_token(tenant_id=ws.tenant_id, identity_id=ws.identity_id, name="pgb"))[1] for ws in spaces
    ]
    database = db.database_url.split("?")[0].rsplit("/", 1)[1]
    with run_pgbouncer(db.database_url, pool_size=POOL) as bouncer:
        env = {"DATABASE_URL": bouncer.url(database), "KITH_DB_STATEMENT_CACHE": "0", "KITH_DB_POOL_MAX": "20"}
        with web_server(env) as base, worker(env):
            async with httpx.AsyncClient(base_url=base, timeout=30) as c:

                async def work(ws: Workspace, token: str, n: int) -> list[str]:
                    headers = {"Authorization": f"Bearer {token}"}
                    made = await c.post("/api/v1/contacts", json={"name": f"{ws.slug}|{n}"}, headers=headers)
                    assert made.status_code == 201, made.text
                    page = await c.get("/api/v1/contacts", params={"limit": "100"}, headers=headers)
                    assert page.status_code == 200, page.text
                    return [item["name"].split("|")[0] for item in page.json()["items"]]

                results = await asyncio.gather(
                    *(work(ws, tok, n) for n in range(10) for ws, tok in zip(spaces, tokens, strict=True))
                )
            # jobs: the worker reads each tenant's contacts through PgBouncer too
            for ws in spaces:
                await enqueue_welcome_email(ws.tenant_id, ws.identity_id)
            emails = await _wait_for_emails({ws.tenant_id for ws in spaces})
            pools = [p for p in await bouncer.show("POOLS") if p["database"] == database]
            servers = sum(int(p["sv_active"] or 0) + int(p["sv_idle"] or 0) + int(p["sv_used"] or 0) for p in pools)
    assert len(results) == TENANTS * 10
    for names in results:
        assert len(set(names)) == 1, set(names)
    for ws in spaces:
        async with tenant_scope(ws.tenant_id):
            assert sorted(c.name for c in await Contact.all()) == sorted(f"{ws.slug}|{n}" for n in range(10))
    assert 0 < servers <= POOL < TENANTS
    for ws in spaces:
        body = emails[ws.tenant_id]
        assert ws.name in body and f"/t/{ws.slug}/contacts" in body and "10 contacts" in body, body


async def _wait_for_emails(tenant_ids: set[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for _ in range(150):
        async with platform_tx() as tx:
            rows = await OutboxEmail.filter(tenant_id__in=list(tenant_ids), kind="welcome").using_db(tx)
        found = {row.tenant_id: row.body_text for row in rows if row.status == "outbox"}
        if len(found) == len(tenant_ids):
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"welcome emails for {len(tenant_ids) - len(found)} tenants never arrived")
