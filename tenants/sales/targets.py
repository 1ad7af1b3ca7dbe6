"""Sales targets: a quota per member or team for a month or a quarter, and its attainment.

Attainment is worked out on read, in the workspace's time zone:
- won_deals: the amounts of deals in a stage of kind 'won' closed within the period;
- orders: the totals of confirmed and fulfilled orders dated within the period;
counting a member's own records, or every current member's records for a team. Only records in
the target's currency count; the others are listed as not counted (there are no exchange rates
in Kith, and a silently converted figure would be wrong).

Setting targets needs the workspace permission manage_targets. Anyone sees their own targets
and their teams'; manage_targets holders see all.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.sales.errors import Conflict, InvalidInput, NotFound
from kith.tenants.sales.pricing import percent_of
from kith.tenants.sales.queries import workspace_today
from kith.tenants.sales.schemas import TargetIn, TargetPatch

OBJECT = "sales_targets"
PERMISSION = "manage_targets"
MONTHS = {"month": 1, "quarter": 3}
NOT_COUNTED_SHOWN = 20
_SELECT = (
    "SELECT t.*, coalesce(nullif(i.display_name, ''), i.email, tm.name) AS holder_name FROM sales_targets t"
    " LEFT JOIN public.identities i ON i.id = t.identity_id LEFT JOIN teams tm ON tm.id = t.team_id"
)


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def period_containing(kind: str, day: date) -> date:
    """The first day of the month or quarter that contains `day`."""
    month = day.month if kind == "month" else (day.month - 1) // 3 * 3 + 1
    return date(day.year, month, 1)


def period_end(kind: str, start: date) -> date:
    """The first day after the period that starts on `start`."""
    return add_months(start, MONTHS[kind])


def valid_period(kind: str, start: date) -> bool:
    return kind in MONTHS and period_containing(kind, start) == start


async def current_period(actor: Actor, kind: str) -> date:
    """The start of the month or quarter that is current in the workspace's time zone."""
    async with acting_as(actor) as session:
        return period_containing(kind, await workspace_today(session))


async def _owners(session: TenantSession, target: dict[str, Any]) -> list[int]:
    if target["identity_id"] is not None:
        return [int(target["identity_id"])]
    rows = await session.tx.execute_query_dict(
        "SELECT identity_id FROM team_members WHERE team_id = $1", [target["team_id"]])
    return [int(r["identity_id"]) for r in rows]


def _records_sql(measure: str) -> str:
    """The records a target of `measure` counts: $1 owners, $2 period start, $3 period end, $4 time zone."""
    if measure == "won_deals":
        return ("SELECT 'deal' AS kind, d.id, d.name, d.amount, d.currency FROM deals d"
                " JOIN stages s ON s.id = d.stage_id WHERE s.kind = 'won' AND d.owner_id = ANY($1::bigint[])"
                " AND d.closed_at >= ($2::date)::timestamp AT TIME ZONE $4"
                " AND d.closed_at < ($3::date)::timestamp AT TIME ZONE $4")
    return ("SELECT 'order' AS kind, o.id, o.number AS name, o.total AS amount, o.currency FROM orders o"
            " WHERE o.status IN ('confirmed', 'fulfilled') AND o.owner_id = ANY($1::bigint[])"
            " AND o.order_date >= $2::date AND o.order_date < $3::date AND $4::text IS NOT NULL")


async def attainment(session: TenantSession, target: dict[str, Any], time_zone: str) -> dict[str, Any]:
    """A target row with achieved, percent, counted and not_counted added."""
    start = target["period_start"]
    end = period_end(target["period_kind"], start)
    params = [await _owners(session, target), start, end, time_zone, target["currency"]]
    records = _records_sql(target["measure"])
    sums = await session.tx.execute_query_dict(
        f"SELECT count(*) AS n, coalesce(sum(amount), 0) AS achieved FROM ({records}) r WHERE currency = $5", params)
    others = await session.tx.execute_query_dict(
        f"SELECT * FROM ({records}) r WHERE currency <> $5 ORDER BY id LIMIT {NOT_COUNTED_SHOWN}", params)
    achieved = Decimal(sums[0]["achieved"]).quantize(Decimal("0.01"))
    return {**target, "period_end": date.fromordinal(end.toordinal() - 1),
            "achieved": achieved, "percent": percent_of(achieved, Decimal(target["amount"])),
            "counted": int(sums[0]["n"]), "not_counted": others}


async def _time_zone(session: TenantSession) -> str:
    rows = await session.tx.execute_query_dict(
        "SELECT time_zone FROM public.tenants WHERE id = $1", [session.actor.tenant_id])
    return str(rows[0]["time_zone"])


def _visibility(session: TenantSession, params: list[Any]) -> str | None:
    """Who sees which targets: manage_targets holders all; others their own and their teams'."""
    if session.policy.can_manage(PERMISSION):
        return None
    params.append(session.actor.identity_id)
    n = len(params)
    return (f"(t.identity_id = ${n} OR t.team_id IN"
            f" (SELECT team_id FROM team_members WHERE identity_id = ${n}))")


async def list_targets(actor: Actor, *, period_kind: str, period_start: date) -> list[dict[str, Any]]:
    """The targets of one period the actor may see, each with its attainment."""
    if not valid_period(period_kind, period_start):
        raise InvalidInput({"period_start": f"{period_start} is not the first day of a {period_kind}."})
    async with acting_as(actor) as session:
        params: list[Any] = [period_kind, period_start]
        visible = _visibility(session, params)
        rows = await session.tx.execute_query_dict(
            _SELECT + " WHERE t.period_kind = $1 AND t.period_start = $2" + (f" AND {visible}" if visible else "")
            + " ORDER BY t.team_id IS NOT NULL, holder_name, t.measure, t.id", params)
        time_zone = await _time_zone(session)
        return [await attainment(session, row, time_zone) for row in rows]


async def _load(session: TenantSession, target_id: int, *, lock: bool = False) -> dict[str, Any]:
    params: list[Any] = [target_id]
    visible = _visibility(session, params)
    rows = await session.tx.execute_query_dict(
        _SELECT + " WHERE t.id = $1" + (f" AND {visible}" if visible else "") + (" FOR UPDATE OF t" if lock else ""),
        params)
    if not rows:
        raise NotFound("sales target")
    return rows[0]


async def get_target(actor: Actor, target_id: int) -> dict[str, Any]:
    """One target the actor may see, with its attainment."""
    async with acting_as(actor) as session:
        return await attainment(session, await _load(session, target_id), await _time_zone(session))


async def _check_holder(session: TenantSession, data: TargetIn) -> None:
    if (data.identity_id is None) == (data.team_id is None):
        message = "Give either identity_id (a member) or team_id (a team)."
        raise InvalidInput({"identity_id": message, "team_id": message})
    if data.identity_id is not None:
        rows = await session.tx.execute_query_dict(
            "SELECT 1 FROM public.memberships WHERE tenant_id = $1 AND identity_id = $2 AND is_active",
            [session.actor.tenant_id, data.identity_id])
        if not rows:
            raise InvalidInput({"identity_id": f"There is no active member {data.identity_id} in this workspace."})
    else:
        rows = await session.tx.execute_query_dict("SELECT 1 FROM teams WHERE id = $1", [data.team_id])
        if not rows:
            raise InvalidInput({"team_id": f"There is no team {data.team_id} in this workspace."})


async def create_target(actor: Actor, data: TargetIn, *, default_currency: str) -> dict[str, Any]:
    """Set a target (manage_targets); one per holder, period and measure (Conflict otherwise)."""
    async with acting_as(actor) as session:
        session.policy.require_manage(PERMISSION)
        await _check_holder(session, data)
        taken = await session.tx.execute_query_dict(
            "SELECT id FROM sales_targets WHERE coalesce(identity_id, 0) = coalesce($1::bigint, 0)"
            " AND coalesce(team_id, 0) = coalesce($2::bigint, 0) AND period_kind = $3 AND period_start = $4"
            " AND measure = $5", [data.identity_id, data.team_id, data.period_kind, data.period_start, data.measure])
        if taken:
            raise Conflict(f"There is already a {data.measure} target for this {data.period_kind} "
                           f"(target {taken[0]['id']}); change it instead.")
        values = {**data.model_dump(), "currency": data.currency or default_currency}
        rows = await session.tx.execute_query_dict(
            "INSERT INTO sales_targets (identity_id, team_id, period_kind, period_start, measure, amount, currency)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            [values[c] for c in ("identity_id", "team_id", "period_kind", "period_start", "measure", "amount",
                                 "currency")])
        target_id = int(rows[0]["id"])
        await session.audit("target.create", OBJECT, target_id,
                            {k: [None, v] for k, v in values.items() if v is not None})
        return await attainment(session, await _load(session, target_id), await _time_zone(session))


async def update_target(actor: Actor, target_id: int, changes: TargetPatch) -> dict[str, Any]:
    """Change a target's amount, currency or measure (manage_targets)."""
    given = {k: v for k, v in changes.model_dump(exclude_unset=True).items() if v is not None}
    async with acting_as(actor) as session:
        session.policy.require_manage(PERMISSION)
        before = await _load(session, target_id, lock=True)
        diff = {k: [before[k], v] for k, v in given.items() if before[k] != v}
        if "measure" in diff:
            taken = await session.tx.execute_query_dict(
                "SELECT id FROM sales_targets WHERE coalesce(identity_id, 0) = coalesce($1::bigint, 0)"
                " AND coalesce(team_id, 0) = coalesce($2::bigint, 0) AND period_kind = $3 AND period_start = $4"
                " AND measure = $5", [before["identity_id"], before["team_id"], before["period_kind"],
                                      before["period_start"], diff["measure"][1]])
            if taken:
                raise Conflict(f"There is already a {diff['measure'][1]} target for this holder and period.")
        if diff:
            assignments = ", ".join(f"{col} = ${i}" for i, col in enumerate(diff, start=2))
            await session.tx.execute_query(f"UPDATE sales_targets SET {assignments} WHERE id = $1",
                                           [target_id, *(new for _, new in diff.values())])
            await session.audit("target.update", OBJECT, target_id, diff)
        return await attainment(session, await _load(session, target_id), await _time_zone(session))


async def delete_target(actor: Actor, target_id: int) -> None:
    """Remove a target (manage_targets)."""
    async with acting_as(actor) as session:
        session.policy.require_manage(PERMISSION)
        before = await _load(session, target_id, lock=True)
        await session.tx.execute_query("DELETE FROM sales_targets WHERE id = $1", [target_id])
        await session.audit("target.delete", OBJECT, target_id,
                            {k: [before[k], None] for k in ("identity_id", "team_id", "period_kind", "period_start",
                                                             "measure", "amount", "currency") if before[k] is not None})


async def target_holders(actor: Actor) -> dict[str, list[dict[str, Any]]]:
    """The members and teams a target can be set for (manage_targets), for the form."""
    async with acting_as(actor) as session:
        session.policy.require_manage(PERMISSION)
        members = await session.tx.execute_query_dict(
            "SELECT i.id, coalesce(nullif(i.display_name, ''), i.email) AS name FROM public.memberships m"
            " JOIN public.identities i ON i.id = m.identity_id WHERE m.tenant_id = $1 AND m.is_active"
            " ORDER BY lower(coalesce(nullif(i.display_name, ''), i.email))", [actor.tenant_id])
        teams = await session.tx.execute_query_dict("SELECT id, name FROM teams ORDER BY lower(name)")
        return {"members": members, "teams": teams}
