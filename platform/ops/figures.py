"""The ops console's money, churn, storage and job figures.

- MRR per workspace and in total, by the one rule of `kith.platform.billing.changes.monthly_revenue`.
- Trial conversion, logo churn and MRR lost over the last 30 days and the 30 before, read from
  `public.subscription_changes` (written with every change of a subscription). Read-only is
  never written (it is past_due older than the grace period), so its moment is derived from the
  past_due_since each history row keeps.
- Storage per workspace schema, and the largest workspaces by it.
- Jobs: failed tries from `public.job_failures` (written by the worker, kept 30 days; see
  kith.jobs.failures), and the results arq keeps in Redis (`keep_result`, an hour today), read
  through arq's API, for recent successes and for failures no worker hook saw.
- Emails interrupted mid-SMTP (sending for over an hour), from the outbox.

Operators see counts, money and job metadata only: a job shows its function, tenant, times,
tries and, when it failed, the exception's first line with email addresses blanked; never its
other arguments (a password reset job carries an address) nor what a successful job returned.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from arq.connections import ArqRedis
from arq.constants import result_key_prefix
from arq.jobs import DeserializationError, Job, JobResult

from kith.platform.billing.changes import CURRENCY, Revenue, monthly_revenue
from kith.platform.billing.plans import PLANS
from kith.platform.billing.subscriptions import Subscription, now_utc, subscriptions_of
from kith.platform.config import get_settings
from kith.platform.db import platform_tx, tenant_schema
from kith.platform.email.delivery import interrupted_count
from kith.platform.ops import console
from kith.platform.ops.console import PAGE_SIZE, TenantQuery, TenantRow

PERIOD = timedelta(days=30)
ZERO = Decimal("0.00")
SORTS: dict[str, str] = {"signup": "newest first", "mrr": "highest MRR first"}


def percent(part: int, whole: int) -> Decimal | None:
    """`part` of `whole` in percent, to one decimal; None when there is no whole to divide."""
    if whole <= 0:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


# --- the workspace list with money and storage ------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    """The list's search and filters (console.TenantQuery) plus its order and money filters."""

    base: TenantQuery = TenantQuery()
    sort: str = "signup"  # a key of SORTS
    min_mrr: Decimal | None = None
    paying_only: bool = False

    @property
    def by_money(self) -> bool:
        return self.sort == "mrr" or self.min_mrr is not None or self.paying_only


@dataclass(frozen=True)
class ListedTenant:
    """A workspace's list row with its MRR and storage (None: its schema is gone)."""

    row: TenantRow
    mrr: Revenue
    storage_mb: float | None


async def _matching_ids(query: TenantQuery) -> list[int]:
    """Ids of every workspace the search and status filter match, newest first (the same
    matching as console.list_tenants, without its paging)."""
    clauses, args = console.tenant_conditions(query)
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            f"SELECT t.id FROM public.tenants t WHERE {' AND '.join(clauses)} ORDER BY t.created_at DESC, t.id DESC",
            args)
    return [int(r["id"]) for r in rows]


async def _money_page(query: ListQuery, now: datetime) -> list[TenantRow]:
    """One page of the list when its order or filters need every match's MRR first: MRR is
    computed in Python (prices live in the plans), so all matches are read, then paged."""
    ids = await _matching_ids(query.base)
    subs = await subscriptions_of(ids) if ids else {}
    plan = query.base.plan.lower()
    kept: list[tuple[int, Decimal]] = []
    for tid in ids:
        sub = subs[tid]
        mrr = monthly_revenue(sub, now)
        effective = PLANS.get(sub.effective_plan)
        if plan and (effective is None or effective.name.lower() != plan):
            continue
        if (query.paying_only and not mrr.paying) or (query.min_mrr is not None and mrr.amount < query.min_mrr):
            continue
        kept.append((tid, mrr.amount))
    if query.sort == "mrr":
        kept.sort(key=lambda item: item[1], reverse=True)  # stable: equal MRR stays newest first
    start = (max(1, query.base.page) - 1) * PAGE_SIZE
    return [row for tid, _ in kept[start:start + PAGE_SIZE] if (row := await console.tenant_row(tid)) is not None]


async def list_tenants(query: ListQuery, now: datetime | None = None) -> list[ListedTenant]:
    """One page of workspaces with their MRR and storage, in the query's order."""
    now = now or now_utc()
    rows = await _money_page(query, now) if query.by_money else await console.list_tenants(query.base)
    ids = [row.id for row in rows]
    subs = await subscriptions_of(ids) if ids else {}
    storage = await storage_mb_of(ids)
    return [ListedTenant(row, monthly_revenue(subs[row.id], now), storage.get(row.id)) for row in rows]


async def tenant_money(tenant_id: int, now: datetime | None = None) -> tuple[Revenue, float | None]:
    """The workspace's MRR and storage (MB; None when its schema is gone), for its detail page."""
    subs = await subscriptions_of([tenant_id])
    storage = await storage_mb_of([tenant_id])
    return monthly_revenue(subs[int(tenant_id)], now or now_utc()), storage.get(int(tenant_id))


async def storage_mb_of(tenant_ids: Collection[int]) -> dict[int, float]:
    """Disk used by each workspace's schema (tables, indexes, TOAST) in MB, from the catalog in one
    query; a workspace whose schema is gone (deleted) is left out."""
    schemas = {tenant_schema(tid): int(tid) for tid in tenant_ids}
    if not schemas:
        return {}
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT n.nspname AS schema, coalesce(sum(pg_total_relation_size(c.oid)), 0) AS bytes"
            " FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'm')"
            " WHERE n.nspname = ANY($1::text[]) GROUP BY n.nspname", [list(schemas)])
    return {schemas[r["schema"]]: round(int(r["bytes"]) / 1_048_576, 1) for r in rows}


async def largest_by_storage(limit: int = 10) -> list[tuple[TenantRow, float]]:
    """The live workspaces using the most disk, largest first, with their MB.

    One catalog query over every tenant schema (about 30 relations each): cheap at hundreds of
    workspaces, worth a stored figure before many thousands.
    """
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT t.id, coalesce(sum(pg_total_relation_size(c.oid)), 0) AS bytes FROM public.tenants t"
            " JOIN pg_namespace n ON n.nspname = 't_' || t.id::text"
            " LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'm')"
            " WHERE t.status IN ('active', 'suspended') GROUP BY t.id ORDER BY bytes DESC, t.id LIMIT $1",
            [int(limit)])
    out: list[tuple[TenantRow, float]] = []
    for r in rows:
        row = await console.tenant_row(int(r["id"]))
        if row is not None:
            out.append((row, round(int(r["bytes"]) / 1_048_576, 1)))
    return out


# --- MRR, trial conversion and churn --------------------------------------------------------------


@dataclass(frozen=True)
class PeriodFigures:
    """Trial conversion and logo churn over [start, end).

    - A trial ends when a change moves the workspace out of `trialing`: it converted when the
      change left it paying (MRR > 0), else it ended unpaid (the free plan, a comp, a cancelled or
      paused Stripe trial). A trial of our own that lapses counts when the daily billing job moves
      it to the free plan, so up to a day after its end.
    - A paying workspace churns when it stops paying by cancelling, being suspended (paused in
      Stripe), moving to the free plan, or going read-only (past_due beyond the grace period,
      i.e. suspended for non-payment). Churn rate = workspaces churned / paying at `start`.
    - MRR lost: the MRR each churned workspace had just before it churned.
    """

    start: datetime
    end: datetime
    trials_ended: int
    trials_converted: int
    paying_at_start: int
    mrr_at_start: Decimal
    churned: int
    mrr_lost: Decimal

    @property
    def trials_unpaid(self) -> int:
        return self.trials_ended - self.trials_converted

    @property
    def conversion_rate(self) -> Decimal | None:
        return percent(self.trials_converted, self.trials_ended)

    @property
    def churn_rate(self) -> Decimal | None:
        return percent(self.churned, self.paying_at_start)


@dataclass(frozen=True)
class PlanMoney:
    name: str
    paying: int
    mrr: Decimal


@dataclass(frozen=True)
class MoneyFigures:
    """The platform's MRR now (in CURRENCY), and the last two 30-day periods."""

    currency: str
    total_mrr: Decimal
    paying: int
    past_due: int  # paying workspaces whose last payment failed (within the grace period)
    past_due_mrr: Decimal
    by_plan: list[PlanMoney]
    current: PeriodFigures
    previous: PeriodFigures


@dataclass(frozen=True)
class _Change:
    at: datetime
    from_status: str
    to_status: str
    to_plan: str
    mrr_before: Decimal
    mrr_after: Decimal
    past_due_since: datetime | None  # after the change
    past_due_before: datetime | None


@dataclass(frozen=True)
class _Standing:
    status: str
    mrr: Decimal  # as recorded, before the read-only cut-off is applied
    past_due_since: datetime | None


def _standing(history: list[_Change], t: datetime) -> _Standing:
    """Where a workspace with recorded history stood at `t`: after its last change by then, or as
    its first change found it."""
    last = None
    for change in history:
        if change.at > t:
            break
        last = change
    if last is not None:
        return _Standing(last.to_status, last.mrr_after, last.past_due_since)
    first = history[0]
    return _Standing(first.from_status, first.mrr_before, first.past_due_before)


def _mrr_at(history: list[_Change], sub: Subscription, t: datetime, grace: timedelta) -> Decimal:
    if not history:  # no change recorded: the row as it is now has held since before `t`
        return monthly_revenue(sub, t).amount
    s = _standing(history, t)
    if s.status == "past_due" and s.past_due_since is not None and s.past_due_since + grace <= t:
        return ZERO  # read-only by then
    return s.mrr


def _churn_events(history: list[_Change], sub: Subscription, start: datetime, end: datetime,
                  grace: timedelta) -> list[Decimal]:
    """The MRR lost by each churn of one workspace in [start, end)."""
    lost: list[Decimal] = []
    for c in history:
        plan = PLANS.get(c.to_plan)
        stopped = c.to_status in ("cancelled", "suspended") or (plan is not None and not plan.paid)
        if start <= c.at < end and c.mrr_before > 0 and c.mrr_after == 0 and stopped:
            lost.append(c.mrr_before)
    # read-only: the grace period of a past_due run ended in the period while it was still running
    runs = {c.past_due_since for c in history if c.to_status == "past_due" and c.past_due_since is not None}
    if history and history[0].from_status == "past_due" and history[0].past_due_before is not None:
        runs.add(history[0].past_due_before)
    if not history and sub.status == "past_due" and sub.past_due_since is not None:
        runs.add(sub.past_due_since)
    for since in runs:
        moment = since + grace
        if not start <= moment < end:
            continue
        just_before = moment - timedelta(microseconds=1)
        if history:
            s = _standing(history, just_before)
            if s.status == "past_due" and s.past_due_since == since and s.mrr > 0:
                lost.append(s.mrr)
        elif (revenue := monthly_revenue(sub, just_before)).paying:
            lost.append(revenue.amount)
    return lost


def _period(histories: Mapping[int, list[_Change]], subs: Mapping[int, Subscription], start: datetime,
            end: datetime, grace: timedelta) -> PeriodFigures:
    ended = converted = paying = churned = 0
    mrr_at_start = lost = ZERO
    for tid, sub in subs.items():
        history = histories.get(tid, [])
        trial_end = next((c for c in history if start <= c.at < end and c.from_status == "trialing"
                          and c.to_status != "trialing"), None)
        if trial_end is not None:
            ended += 1
            converted += trial_end.mrr_after > 0
        at_start = _mrr_at(history, sub, start, grace)
        if at_start > 0:
            paying += 1
            mrr_at_start += at_start
        events = _churn_events(history, sub, start, end, grace)
        if events:
            churned += 1
            lost += sum(events, ZERO)
    return PeriodFigures(start=start, end=end, trials_ended=ended, trials_converted=converted,
                         paying_at_start=paying, mrr_at_start=mrr_at_start, churned=churned, mrr_lost=lost)


_CHANGE_COLUMNS = (
    "tenant_id, id, at, from_status, to_status, to_plan, mrr_before, mrr_after, past_due_since,"
    " CASE WHEN changes -> 'past_due_since' IS NOT NULL THEN (changes -> 'past_due_since' ->> 0)::timestamptz"
    " ELSE past_due_since END AS past_due_before"
)


async def _histories(since: datetime) -> dict[int, list[_Change]]:
    """Every workspace's changes from `since` on, plus its last change before (where it stood)."""
    async with platform_tx() as tx:
        recent = await tx.execute_query_dict(
            f"SELECT {_CHANGE_COLUMNS} FROM public.subscription_changes WHERE at >= $1", [since])
        before = await tx.execute_query_dict(
            f"SELECT DISTINCT ON (tenant_id) {_CHANGE_COLUMNS} FROM public.subscription_changes WHERE at < $1"
            " ORDER BY tenant_id, at DESC, id DESC", [since])
    out: dict[int, list[tuple[datetime, int, _Change]]] = {}
    for r in [*before, *recent]:
        change = _Change(at=r["at"], from_status=r["from_status"], to_status=r["to_status"], to_plan=r["to_plan"],
                         mrr_before=Decimal(r["mrr_before"]), mrr_after=Decimal(r["mrr_after"]),
                         past_due_since=r["past_due_since"], past_due_before=r["past_due_before"])
        out.setdefault(int(r["tenant_id"]), []).append((r["at"], int(r["id"]), change))
    return {tid: [c for _, _, c in sorted(items, key=lambda i: (i[0], i[1]))] for tid, items in out.items()}


async def money_figures(now: datetime | None = None) -> MoneyFigures:
    """MRR now (total, by plan, at risk), and trial conversion and churn for the last 30 days and
    the 30 before them (see PeriodFigures for what counts)."""
    now = now or now_utc()
    grace = timedelta(days=get_settings().billing_grace_days)
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict("SELECT tenant_id FROM public.billing_subscriptions", [])
    subs = await subscriptions_of([int(r["tenant_id"]) for r in rows]) if rows else {}
    histories = await _histories(now - 2 * PERIOD - grace - timedelta(days=1))
    total = at_risk = ZERO
    paying = past_due = 0
    by_plan: dict[str, PlanMoney] = {}
    for sub in subs.values():
        revenue = monthly_revenue(sub, now)
        if not revenue.paying:
            continue
        paying += 1
        total += revenue.amount
        if revenue.flag == "past due":
            past_due += 1
            at_risk += revenue.amount
        name = PLANS[sub.plan].name
        held = by_plan.get(name, PlanMoney(name, 0, ZERO))
        by_plan[name] = replace(held, paying=held.paying + 1, mrr=held.mrr + revenue.amount)
    order = {plan.name: plan.rank for plan in PLANS.values()}
    return MoneyFigures(
        currency=CURRENCY, total_mrr=total, paying=paying, past_due=past_due, past_due_mrr=at_risk,
        by_plan=sorted(by_plan.values(), key=lambda p: order.get(p.name, 99)),
        current=_period(histories, subs, now - PERIOD, now, grace),
        previous=_period(histories, subs, now - 2 * PERIOD, now - PERIOD, grace),
    )


# --- jobs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRun:
    """A finished try of a job: a result arq keeps, or a failure the worker recorded. Metadata only."""

    function: str
    job_id: str
    tenant_id: int | None  # the first argument of a tenant job
    tenant_slug: str
    enqueued_at: datetime | None  # None for a recorded failure (the table does not keep it)
    finished_at: datetime
    tries: int
    # ok | skipped | failed (raised; arq gave up) | retried (a failed try arq runs again) |
    # reported failure (returned "failed: ...")
    outcome: str
    error: str  # a failed try's exception: its class and first line, addresses blanked

    @property
    def failed(self) -> bool:
        return self.outcome in ("failed", "retried", "reported failure")


@dataclass(frozen=True)
class FailingJob:
    """One job function's failed tries over a period, and its latest failure."""

    function: str
    failures: int
    final: int  # of them, tries after which arq gave the job up
    last_at: datetime
    last_error: str
    last_tries: int
    last_tenant_id: int | None
    last_tenant_slug: str


_ADDRESS = re.compile(r"[^\s@'\"<>(),;:]+@[^\s@'\"<>(),;:]+")
ERROR_CHARS = 200
FAILING_JOBS_PERIOD = timedelta(days=7)
# clocks of the worker (arq's times) and the database (a failure's `at`) may differ this much
_CLOCK_SKEW = timedelta(minutes=1)


def error_line(exc: object) -> str:
    """The exception's class and the first line of its message, with email addresses blanked and
    cut to ERROR_CHARS: enough to tell failures apart without showing a workspace's data."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    line = _ADDRESS.sub("<address>", line)
    return line if len(line) <= ERROR_CHARS else line[:ERROR_CHARS - 1] + "…"


async def _kept_results(queue: ArqRedis) -> list[JobResult]:
    """Every job result arq keeps, through `all_job_results()`; should that fail on one result (it
    expired between listing and reading, or cannot be unpickled), the results are read one by one
    with arq's Job API, skipping those."""
    try:
        return await queue.all_job_results()
    except (KeyError, DeserializationError):
        pass
    found: list[JobResult] = []
    for key in await queue.keys(result_key_prefix + "*"):
        job_id = key.decode()[len(result_key_prefix):]
        try:
            info = await Job(job_id, queue, _deserializer=queue.job_deserializer).result_info()
        except DeserializationError:
            continue
        if info is not None:
            info.job_id = job_id
            found.append(info)
    return found


def _outcome(result: JobResult) -> tuple[str, str]:
    if not result.success:
        return "failed", error_line(result.result)
    value = result.result
    if isinstance(value, str) and value.startswith("skipped"):
        return "skipped", ""
    if isinstance(value, str) and value.startswith("failed"):
        return "reported failure", ""  # the job's own message may quote the workspace's data
    return "ok", ""


async def kept_job_runs(queue: ArqRedis, *, queue_name: str, tenant_functions: Collection[str]) -> list[JobRun]:
    """The finished jobs of `queue_name` whose results arq still keeps, newest first.

    `tenant_functions` names the jobs whose first argument is a tenant id (the jobs layer knows
    them; see kith.jobs.tenant_job). Other jobs show no tenant.
    """
    results = [r for r in await _kept_results(queue) if r.queue_name == queue_name]
    tenant_ids = {int(r.args[0]) for r in results
                  if r.function in tenant_functions and r.args and isinstance(r.args[0], int)}
    slugs: dict[int, str] = {}
    if tenant_ids:
        async with platform_tx() as tx:
            rows = await tx.execute_query_dict(
                "SELECT id, slug FROM public.tenants WHERE id = ANY($1::bigint[])", [sorted(tenant_ids)])
        slugs = {int(r["id"]): str(r["slug"]) for r in rows}
    runs: list[JobRun] = []
    for r in results:
        tid = int(r.args[0]) if r.function in tenant_functions and r.args and isinstance(r.args[0], int) else None
        outcome, error = _outcome(r)
        runs.append(JobRun(function=r.function, job_id=str(r.job_id or ""), tenant_id=tid,
                           tenant_slug=slugs.get(tid, "") if tid is not None else "",
                           enqueued_at=r.enqueue_time.astimezone(UTC), finished_at=r.finish_time.astimezone(UTC),
                           tries=int(r.job_try or 1), outcome=outcome, error=error))
    runs.sort(key=lambda run: run.finished_at, reverse=True)
    return runs


async def _unrecorded(runs: list[JobRun]) -> list[JobRun]:
    """The failed kept results with no failure recorded since the job was queued: failures no
    worker hook saw (arq gave the job up without running it: expired, unknown function, a worker
    killed on the last try), or whose record could not be written."""
    failed = [run for run in runs if run.failed]
    if not failed:
        return []
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT job_id, max(at) AS at FROM public.job_failures WHERE job_id = ANY($1::text[]) GROUP BY job_id",
            [sorted({run.job_id for run in failed})])
    recorded = {str(r["job_id"]): r["at"] for r in rows}
    return [run for run in failed
            if run.job_id not in recorded or run.enqueued_at is None
            or recorded[run.job_id] < run.enqueued_at - _CLOCK_SKEW]


async def failing_jobs(kept: list[JobRun], now: datetime | None = None,
                       period: timedelta = FAILING_JOBS_PERIOD) -> list[FailingJob]:
    """Each job function that failed over the last `period`: its failed tries (recorded ones, and
    kept results of failures no hook saw), how many were final, and its latest failure; the most
    recently failing first."""
    now = now or now_utc()
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT DISTINCT ON (f.function) f.function, f.at, f.error, f.tries, f.tenant_id,"
            " coalesce(t.slug, '') AS slug, count(*) OVER w AS failures,"
            " count(*) FILTER (WHERE f.final) OVER w AS final"
            " FROM public.job_failures f LEFT JOIN public.tenants t ON t.id = f.tenant_id WHERE f.at >= $1"
            " WINDOW w AS (PARTITION BY f.function) ORDER BY f.function, f.at DESC, f.id DESC", [now - period])
    groups = {str(r["function"]): FailingJob(
        function=str(r["function"]), failures=int(r["failures"]), final=int(r["final"]), last_at=r["at"],
        last_error=str(r["error"]), last_tries=int(r["tries"]),
        last_tenant_id=None if r["tenant_id"] is None else int(r["tenant_id"]), last_tenant_slug=str(r["slug"]))
        for r in rows}
    for run in sorted(await _unrecorded(kept), key=lambda run: run.finished_at):
        held = groups.get(run.function)
        latest = FailingJob(run.function, 1, 1, run.finished_at, run.error or run.outcome, run.tries,
                            run.tenant_id, run.tenant_slug)
        if held is None:
            groups[run.function] = latest
        elif run.finished_at >= held.last_at:
            groups[run.function] = replace(latest, failures=held.failures + 1, final=held.final + 1)
        else:
            groups[run.function] = replace(held, failures=held.failures + 1, final=held.final + 1)
    return sorted(groups.values(), key=lambda job: job.last_at, reverse=True)


async def jobs_of_tenant(kept: list[JobRun], tenant_id: int, limit: int = 20) -> list[JobRun]:
    """The workspace's recent jobs, newest first: its last `limit` failed tries as recorded (30
    days), and the finished jobs arq still keeps (an hour), successes and failures no hook saw."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT f.function, f.job_id, f.at, f.tries, f.error, f.final, coalesce(t.slug, '') AS slug"
            " FROM public.job_failures f LEFT JOIN public.tenants t ON t.id = f.tenant_id WHERE f.tenant_id = $1"
            " ORDER BY f.at DESC, f.id DESC LIMIT $2", [int(tenant_id), int(limit)])
    recorded = [JobRun(function=str(r["function"]), job_id=str(r["job_id"]), tenant_id=int(tenant_id),
                       tenant_slug=str(r["slug"]), enqueued_at=None, finished_at=r["at"], tries=int(r["tries"]),
                       outcome="failed" if r["final"] else "retried", error=str(r["error"])) for r in rows]
    mine = [run for run in kept if run.tenant_id == int(tenant_id)]
    succeeded = [run for run in mine if not run.failed][:limit]
    unseen = (await _unrecorded(mine))[:limit]
    return sorted([*recorded, *succeeded, *unseen], key=lambda run: run.finished_at, reverse=True)


async def interrupted_emails() -> int:
    """Emails 'sending' for over an hour: their worker died mid-SMTP; never sent again by Kith."""
    return await interrupted_count()
