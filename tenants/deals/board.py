"""The pipeline board (kanban) and the forecast: aggregates in SQL over the deals of the actor's
scope, in one transaction, fast on a workspace with hundreds of thousands of deals.

The board reads (a) each stage's count, total and weighted total per currency from deal_totals, the
running totals per stage, owner and currency that triggers on deals keep (tenant migration 0008),
and (b) the newest cards of every column with a LATERAL join per stage,
LIMIT per column, walking deals_board_idx (pipeline_id, stage_id, id) backwards. Amounts are never
added across currencies. The weighted figure of a deal is amount x probability / 100, where the
probability is the deal's own override or else its stage's; the weighted pipeline counts open deals.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.deals.pipelines import pipeline_in
from kith.tenants.deals.queries import OBJECT, scope_clause
from kith.tenants.deals.schemas import money_text

CARDS_PER_COLUMN = 50
WEIGHTED = "round(sum(deals.amount * coalesce(deals.probability, stages.probability)) / 100, 2)"


def _totals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-currency figures, currencies in alphabetical order, amounts as API strings."""
    by_currency: dict[str, dict[str, Any]] = {}
    for r in rows:
        t = by_currency.setdefault(r["currency"], {"currency": r["currency"], "count": 0, "total": Decimal(0),
                                                   "weighted": Decimal(0)})
        t["count"] += int(r["n"])
        t["total"] += r["total"] or 0
        t["weighted"] += r["weighted"] or 0
    return [{**t, "total": money_text(t["total"]), "weighted": money_text(t["weighted"])}
            for _, t in sorted(by_currency.items())]


async def _board_in(session: TenantSession, pipeline_id: int | None, limit: int) -> dict[str, Any]:
    pipeline = await pipeline_in(session, pipeline_id)
    params: list[Any] = [pipeline["id"]]
    scope = scope_clause(session, params)
    # the running totals (tenant migration 0008) per stage, owner and currency: a few rows, not every deal
    totals_scope = scope.replace("deals.owner_id", "t.owner_id") if scope else None  # the same $2
    sums = await session.tx.execute_query_dict(
        "SELECT t.stage_id, t.currency, sum(t.deals) AS n, sum(t.amount) AS total,"
        " round((sum(t.amount_x_probability) + sum(t.stage_weighted_amount) * stages.probability) / 100, 2)"
        " AS weighted FROM deal_totals t JOIN stages ON stages.id = t.stage_id WHERE stages.pipeline_id = $1"
        + (f" AND {totals_scope}" if totals_scope else "")
        + " GROUP BY t.stage_id, t.currency, stages.probability HAVING sum(t.deals) > 0", params)
    where = "deals.pipeline_id = $1" + (f" AND {scope}" if scope else "")
    params.append(limit)
    cards = await session.tx.execute_query_dict(
        "SELECT s.id AS column_id, d.* FROM stages s CROSS JOIN LATERAL ("  # noqa: S608 - fixed names
        " SELECT deals.id, deals.name, deals.amount, deals.currency, deals.company_id, companies.name AS company_name,"
        " deals.owner_id, coalesce(nullif(i.display_name, ''), i.email) AS owner_name, deals.expected_close,"
        " deals.probability FROM deals LEFT JOIN companies ON companies.id = deals.company_id"
        " LEFT JOIN public.identities i ON i.id = deals.owner_id"
        f" WHERE {where} AND deals.stage_id = s.id ORDER BY deals.id DESC LIMIT ${len(params)}) d"
        " WHERE s.pipeline_id = $1 ORDER BY s.position, s.id, d.id DESC", params)
    hidden = session.policy.hidden_fields(OBJECT)
    columns = []
    weighted_rows = []
    for stage in pipeline["stages"]:
        stage_sums = [r for r in sums if r["stage_id"] == stage["id"]]
        if stage["kind"] == "open":
            weighted_rows.extend(stage_sums)
        count = sum(int(r["n"]) for r in stage_sums)
        stage_cards = [{k: v for k, v in c.items() if k != "column_id" and k not in hidden}
                       for c in cards if c["column_id"] == stage["id"]]
        if "company_id" in hidden:
            for card in stage_cards:
                card.pop("company_name", None)
        for card in stage_cards:
            if "amount" in card:
                card["amount"] = money_text(card["amount"])
        columns.append({"stage": stage, "count": count, "totals": _totals(stage_sums), "cards": stage_cards,
                        "more": max(0, count - len(stage_cards))})
    return {"pipeline": pipeline, "columns": columns, "weighted": _totals(weighted_rows)}


async def board(actor: Actor, pipeline_id: int | None = None, *, limit: int = CARDS_PER_COLUMN) -> dict[str, Any]:
    """The board of a pipeline (None: the default one): per stage its deals in the actor's scope (the
    newest `limit` as cards), count and per-currency totals; and the weighted pipeline per currency."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        session.require_fields(OBJECT, ["stage", "amount", "currency"])
        return await _board_in(session, pipeline_id, max(1, min(limit, 200)))


def _month(day: date, add: int) -> date:
    index = day.year * 12 + day.month - 1 + add
    return date(index // 12, index % 12 + 1, 1)


def forecast_months(today: date) -> list[str]:
    """This month and the next 11, as YYYY-MM."""
    return [_month(today, n).strftime("%Y-%m") for n in range(12)]


async def forecast(actor: Actor, *, today: date, time_zone: str = "UTC", pipeline_id: int | None = None
                   ) -> dict[str, Any]:
    """Open deals by expected close month: 'overdue' (before `today`), this month and the next 11,
    'later' and 'none' (no date), each with count, total and weighted total per currency; and won
    deals by the month they closed over the last 12 months (months in `time_zone`). `today` is the
    workspace's date (the caller knows its time zone)."""
    months = forecast_months(today)
    end = _month(today, 12)
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        session.require_fields(OBJECT, ["stage", "amount", "currency"])
        params: list[Any] = [today, end]
        conditions = []
        scope = scope_clause(session, params)
        if scope:
            conditions.append(scope)
        if pipeline_id is not None:
            params.append(pipeline_id)
            conditions.append(f"deals.pipeline_id = ${len(params)}")
        extra = "".join(f" AND {c}" for c in conditions)
        open_rows = await session.tx.execute_query_dict(
            "SELECT CASE WHEN deals.expected_close IS NULL THEN 'none' WHEN deals.expected_close < $1 THEN 'overdue'"
            " WHEN deals.expected_close >= $2 THEN 'later' ELSE to_char(deals.expected_close, 'YYYY-MM') END AS bucket,"
            f" deals.currency, count(*) AS n, sum(deals.amount) AS total, {WEIGHTED} AS weighted"  # noqa: S608
            f" FROM deals JOIN stages ON stages.id = deals.stage_id WHERE stages.kind = 'open'{extra}"
            " GROUP BY 1, deals.currency", params)
        won_params: list[Any] = [_month(today, -11), _month(today, 1), time_zone, *params[2:]]
        won_extra = extra
        for n in range(len(params), 2, -1):  # the shared conditions' placeholders shift by one
            won_extra = won_extra.replace(f"${n}", f"${n + 1}")
        won_rows = await session.tx.execute_query_dict(
            "SELECT to_char(deals.closed_at AT TIME ZONE $3, 'YYYY-MM') AS bucket, deals.currency, count(*) AS n,"
            f" sum(deals.amount) AS total, {WEIGHTED} AS weighted"  # noqa: S608
            " FROM deals JOIN stages ON stages.id = deals.stage_id WHERE stages.kind = 'won'"
            " AND deals.closed_at >= ($1::date)::timestamp AT TIME ZONE $3"
            f" AND deals.closed_at < ($2::date)::timestamp AT TIME ZONE $3{won_extra}"
            " GROUP BY 1, deals.currency", won_params)
    keys = ["overdue", *months, "later", "none"]
    buckets = [{"key": k, "totals": _totals([r for r in open_rows if r["bucket"] == k])} for k in keys]
    won_months = [_month(today, n).strftime("%Y-%m") for n in range(-11, 1)]
    won = [{"month": m, "totals": _totals([r for r in won_rows if r["bucket"] == m])} for m in won_months]
    return {"today": today, "open": buckets, "won": won}
