"""The pool's reclaim job, called as arq calls it: only records nobody followed up within the rule go
back to the pool, each with a timeline event and an audit entry by the job; a repeat does nothing; a
workspace without a rule, and any other workspace, are untouched."""

from __future__ import annotations

import json
from typing import Any

from kith.jobs.pool_reclaim import enqueue_pool_reclaim, pool_reclaim
from kith.platform.db import tenant_scope

from .conftest import Workspace
from .factories import add_member


async def _seed(ws: Workspace, owner: int) -> dict[str, int]:
    """Back-dated companies and leads owned by `owner`, one per case."""
    ids: dict[str, int] = {}
    async with tenant_scope(ws.tenant_id) as tx:
        for key, table, columns in (
            ("stale_company", "companies", "created_at = now() - interval '40 days'"),
            ("followed_company", "companies",
             "created_at = now() - interval '400 days', last_activity_at = now() - interval '5 days'"),
            ("stale_lead", "leads", "created_at = now() - interval '31 days'"),
            ("claimed_lead", "leads",
             "created_at = now() - interval '100 days', claimed_at = now() - interval '10 days'"),
            ("fresh_lead", "leads", "created_at = now() - interval '29 days'"),
            ("converted_lead", "leads", "created_at = now() - interval '90 days', status = 'converted',"
                                        " converted_at = now() - interval '60 days'"),
        ):
            rows = await tx.execute_query_dict(
                f"INSERT INTO {table} (name, owner_id) VALUES ($1, $2) RETURNING id", [f"上海某某贸易 {key}", owner])
            ids[key] = int(rows[0]["id"])
            await tx.execute_query(f"UPDATE {table} SET {columns} WHERE id = $1", [ids[key]])
        rows = await tx.execute_query_dict(
            "INSERT INTO leads (name, created_at, pooled_at) VALUES ('already pooled', now() - interval '90 days',"
            " now() - interval '80 days') RETURNING id")
        ids["pooled_lead"] = int(rows[0]["id"])
    return ids


async def _state(ws: Workspace) -> dict[str, Any]:
    async with tenant_scope(ws.tenant_id) as tx:
        owners = {f"{t}:{r['id']}": r["owner_id"] for t in ("companies", "leads") for r in
                  await tx.execute_query_dict(f"SELECT id, owner_id FROM {t}")}
        events = await tx.execute_query_dict(
            "SELECT company_id, lead_id, event, created_by_id FROM activities WHERE kind = 'event' ORDER BY id")
        audit = await tx.execute_query_dict(
            "SELECT action, object_type, object_id, actor_kind, actor_label FROM audit_log"
            " WHERE action LIKE '%.reclaim' ORDER BY seq")
    return {"owners": owners, "events": events, "audit": audit}


async def test_reclaim_returns_only_stale_records(workspace: Workspace, other_workspace: Workspace) -> None:
    sales = await add_member(workspace, "sales")
    other_sales = await add_member(other_workspace, "sales")
    ids = await _seed(workspace, sales.identity_id)
    other_ids = await _seed(other_workspace, other_sales.identity_id)
    # no rule yet: nothing moves
    assert await pool_reclaim({"job_try": 1}, workspace.tenant_id) == "no reclaim rule"
    async with tenant_scope(workspace.tenant_id) as tx:
        await tx.execute_query("UPDATE crm_settings SET pool_reclaim_days = 30")
    other_before = await _state(other_workspace)

    result = await pool_reclaim({"job_try": 1}, workspace.tenant_id)
    assert result == "returned to the pool after 30 days: 1 companies, 1 leads", result
    after = await _state(workspace)
    owners = after["owners"]
    assert owners[f"companies:{ids['stale_company']}"] is None and owners[f"leads:{ids['stale_lead']}"] is None
    for kept in ("followed_company",):
        assert owners[f"companies:{ids[kept]}"] == sales.identity_id
    for kept in ("claimed_lead", "fresh_lead", "converted_lead"):
        assert owners[f"leads:{ids[kept]}"] == sales.identity_id, kept
    events = [(e["company_id"], e["lead_id"], json.loads(e["event"]) if isinstance(e["event"], str) else e["event"])
              for e in after["events"]]
    assert [(c, ld) for c, ld, _ in events] == [(ids["stale_company"], None), (None, ids["stale_lead"])]
    for _, _, facts in events:
        assert facts == {"name": "pool.returned", "reason": "no follow-up in 30 days",
                         "previous_owner": sales.identity_id}
    assert all(e["created_by_id"] is None for e in after["events"])
    assert [(a["action"], a["object_id"], a["actor_kind"], a["actor_label"]) for a in after["audit"]] == [
        ("company.reclaim", str(ids["stale_company"]), "job", "job:pool_reclaim"),
        ("lead.reclaim", str(ids["stale_lead"]), "job", "job:pool_reclaim")]
    async with tenant_scope(workspace.tenant_id) as tx:
        pooled = (await tx.execute_query_dict(
            "SELECT pooled_at, claimed_at FROM leads WHERE id = $1", [ids["stale_lead"]]))[0]
    assert pooled["pooled_at"] is not None and pooled["claimed_at"] is None

    # idempotent: a second run (arq may repeat a job) finds nothing more
    assert await pool_reclaim({"job_try": 2}, workspace.tenant_id) == \
        "returned to the pool after 30 days: 0 companies, 0 leads"
    assert await _state(workspace) == after
    # the other workspace (no rule) was never touched, and its own run moves nothing either
    assert await _state(other_workspace) == other_before
    assert await pool_reclaim({"job_try": 1}, other_workspace.tenant_id) == "no reclaim rule"
    assert (await _state(other_workspace))["owners"][f"companies:{other_ids['stale_company']}"] == \
        other_sales.identity_id
    assert (await pool_reclaim({}, 999_999_999)).startswith("skipped")


async def test_reclaim_works_in_batches(workspace: Workspace) -> None:
    from kith.tenants.pool.reclaim import reclaim_stale

    sales = await add_member(workspace, "sales")
    async with tenant_scope(workspace.tenant_id) as tx:
        await tx.execute_query("UPDATE crm_settings SET pool_reclaim_days = 7")
        await tx.execute_query(
            "INSERT INTO leads (name, owner_id, created_at) SELECT '线索 ' || g, $1, now() - interval '8 days'"
            " FROM generate_series(1, 7) g", [sales.identity_id])
    result = await reclaim_stale(workspace.tenant_id, batch=3)
    assert result.returned == {"companies": 0, "leads": 7}
    async with tenant_scope(workspace.tenant_id) as tx:
        left = await tx.execute_query_dict("SELECT count(*) AS n FROM leads WHERE owner_id IS NOT NULL")
    assert left[0]["n"] == 0


async def test_daily_enqueue(workspace: Workspace) -> None:
    from kith.jobs.queue import close_queue

    try:
        assert await enqueue_pool_reclaim({}) >= 1
        assert await enqueue_pool_reclaim({}) == 0  # the cron firing twice queues nothing more
    finally:
        await close_queue()
