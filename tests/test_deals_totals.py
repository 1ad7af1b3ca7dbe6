"""The running totals behind the board (deal_totals, kept by triggers on deals: tenant migration
0008) always equal an aggregate over the deals themselves, whatever changes them: single and bulk
inserts, updates of amount, probability, currency, owner and stage, deletions, and a leaver's
deals released to nobody."""

from __future__ import annotations

from typing import Any

from kith.platform.db import tenant_scope

from .conftest import Workspace
from .factories import add_member

DIRECT = (
    "SELECT stage_id, coalesce(owner_id, 0) AS owner_id, currency, count(*) AS deals, sum(amount) AS amount,"
    " round(sum(amount * coalesce(deals.probability, stages.probability)) / 100, 2) AS weighted"
    " FROM deals JOIN stages ON stages.id = deals.stage_id GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
KEPT = (
    "SELECT t.stage_id, t.owner_id, t.currency, t.deals, t.amount,"
    " round((t.amount_x_probability + t.stage_weighted_amount * stages.probability) / 100, 2) AS weighted"
    " FROM deal_totals t JOIN stages ON stages.id = t.stage_id WHERE t.deals <> 0 ORDER BY 1, 2, 3")


async def _compare(tenant_id: int) -> list[dict[str, Any]]:
    async with tenant_scope(tenant_id) as tx:
        direct = await tx.execute_query_dict(DIRECT)
        kept = await tx.execute_query_dict(KEPT)
    assert kept == direct
    return kept


async def test_running_totals_follow_every_change(workspace: Workspace) -> None:
    rep = await add_member(workspace, "sales")
    leaver = await add_member(workspace, "sales")
    async with tenant_scope(workspace.tenant_id) as tx:
        await tx.execute_query(
            "INSERT INTO deals (name, amount, currency, probability, pipeline_id, stage_id, owner_id)"
            " SELECT 'Deal ' || g, (g % 997) * 1.01, CASE WHEN g % 3 = 0 THEN 'CNY' ELSE 'USD' END,"
            " CASE WHEN g % 4 = 0 THEN g % 101 END, 1, 1 + g % 6,"
            " CASE g % 3 WHEN 0 THEN $1::bigint WHEN 1 THEN $2::bigint END"
            " FROM generate_series(1, 5000) g", [rep.identity_id, leaver.identity_id])
    assert sum(r["deals"] for r in await _compare(workspace.tenant_id)) == 5000
    async with tenant_scope(workspace.tenant_id) as tx:
        await tx.execute_query("UPDATE deals SET amount = amount + 0.01 WHERE id % 7 = 0")
        await tx.execute_query("UPDATE deals SET probability = NULL WHERE id % 11 = 0")
        await tx.execute_query("UPDATE deals SET probability = 35 WHERE id % 13 = 0")
        await tx.execute_query("UPDATE deals SET stage_id = 1 + (stage_id % 6) WHERE id % 5 = 0")
        await tx.execute_query("UPDATE deals SET currency = 'EUR', owner_id = $1 WHERE id % 17 = 0",
                               [rep.identity_id])
        await tx.execute_query("UPDATE deals SET notes = 'no change to the totals' WHERE id % 2 = 0")
        await tx.execute_query("DELETE FROM deals WHERE id % 19 = 0")
    await _compare(workspace.tenant_id)
    async with tenant_scope(workspace.tenant_id) as tx:  # a leaver's deals lose their owner
        await tx.execute_query("UPDATE deals SET owner_id = NULL WHERE owner_id = $1", [leaver.identity_id])
    kept = await _compare(workspace.tenant_id)
    assert all(r["owner_id"] != leaver.identity_id for r in kept)
    assert any(r["owner_id"] == 0 for r in kept)
    # a stage's new probability reweights its deals without touching the totals
    async with tenant_scope(workspace.tenant_id) as tx:
        await tx.execute_query("UPDATE stages SET probability = 55 WHERE id = 2")
    await _compare(workspace.tenant_id)
