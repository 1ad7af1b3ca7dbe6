"""The ops console's figures: MRR by the plans' prices, the subscription history every billing
change writes, trial conversion and churn read from it, failing jobs as the worker records them
and recent jobs from arq's kept results (a real worker, in process), and the workspace list's
money order and filters.

Figures are platform-wide and the test database holds other tests' workspaces, so the tests
compare the figures before and after what they do."""

from __future__ import annotations

import asyncio
import re
import time
import warnings
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from arq.worker import Worker

from kith.jobs.queue import enqueue_tenant_job, enqueue_welcome_email, get_queue, queued_job_id
from kith.jobs.worker import WorkerSettings, worker_kwargs
from kith.platform.billing.actions import change_plan_locally, sync_seats
from kith.platform.billing.changes import Revenue, money, monthly_revenue, seat_price
from kith.platform.billing.plans import PLANS
from kith.platform.billing.subscriptions import Subscription, current_subscription
from kith.platform.config import get_settings
from kith.platform.db import platform_tx, tenant_scope
from kith.platform.ops import console
from kith.platform.ops.figures import MoneyFigures, PeriodFigures, error_line, money_figures

from .conftest import Workspace, make_workspace
from .factories import add_member
from .stripe_fake import FakeStripe
from .test_billing import owner
from .test_ops import make_operator, ops_login
from .test_stripe_webhooks import checkout, deliver, fake, stripe_env  # noqa: F401 - fixtures
from .web_helpers import client, form_post

NOW = datetime(2030, 6, 15, 12, 0, tzinfo=UTC)


def subscription(**fields: Any) -> Subscription:
    """A subscription row as billing stores it: active Starter, monthly, one seat, unless told."""
    row: dict[str, Any] = {
        "tenant_id": 1, "plan": "starter", "billing_interval": "monthly", "status": "active", "provider": "local",
        "trial_ends_at": None, "past_due_since": None, "cancelled_at": None, "current_period_end": None,
        "cancel_at_period_end": False, "seats": 1, "stripe_customer_id": None, "stripe_subscription_id": None,
        "stripe_item_id": None, "deleted_at": None, "comped_until": None, **fields}
    return Subscription.from_row(row)


def test_mrr_rule_per_status_interval_and_seats_with_the_real_plans() -> None:
    grace = timedelta(days=get_settings().billing_grace_days)
    starter, pro = Decimal(PLANS["starter"].monthly_usd), Decimal(PLANS["pro"].monthly_usd)
    cases: list[tuple[dict[str, Any], Revenue]] = [
        ({}, Revenue(starter, "")),
        ({"seats": 3}, Revenue(starter * 3, "")),
        # a yearly price is twelve monthly ones (the plans define no other), so per month the same
        ({"plan": "pro", "billing_interval": "yearly", "seats": 2}, Revenue(pro * 2, "")),
        # past due within the grace period still counts, flagged; after it, read-only counts nothing
        ({"status": "past_due", "past_due_since": NOW - timedelta(days=1)}, Revenue(starter, "past due")),
        ({"status": "past_due", "past_due_since": NOW - grace}, Revenue(Decimal(0), "read-only")),
        ({"status": "trialing", "plan": "pro", "trial_ends_at": NOW + timedelta(days=3)}, Revenue(Decimal(0), "trial")),
        # a Stripe-run trial counts nothing either
        ({"status": "trialing", "stripe_subscription_id": "sub_1", "trial_ends_at": NOW - timedelta(days=3)},
         Revenue(Decimal(0), "trial")),
        ({"status": "trialing", "trial_ends_at": NOW - timedelta(days=1)}, Revenue(Decimal(0), "free")),
        ({"plan": "pro", "comped_until": NOW + timedelta(days=30)}, Revenue(Decimal(0), "comped")),
        ({"plan": "pro", "comped_until": NOW - timedelta(days=1)}, Revenue(Decimal(0), "free")),
        ({"status": "cancelled", "cancelled_at": NOW}, Revenue(Decimal(0), "cancelled")),
        ({"status": "suspended"}, Revenue(Decimal(0), "suspended")),
        ({"plan": "free", "seats": 2}, Revenue(Decimal(0), "free")),
        ({"plan": "enterprise", "seats": 40}, Revenue(Decimal(0), "contract")),
        ({"plan": "gold"}, Revenue(Decimal(0), "unknown plan")),
    ]
    for fields, expected in cases:
        got = monthly_revenue(subscription(**fields), NOW)
        assert (got.amount, got.flag) == (expected.amount, expected.flag), fields
        assert isinstance(got.amount, Decimal) and got.amount.as_tuple().exponent == -2, fields
    assert seat_price(PLANS["pro"], "yearly") == pro * 12
    assert money(Decimal("1234.5")) == "$1,234.50" and money(Decimal(0)) == "$0.00"


def test_a_failures_first_line_keeps_addresses_out() -> None:
    line = error_line(ValueError("no member named ann@example.com in 'b.o@x.org'\nTraceback details"))
    assert line == "ValueError: no member named <address> in '<address>'"
    assert error_line(RuntimeError()) == "RuntimeError"
    assert len(error_line(RuntimeError("x" * 500))) == 200


async def history(tenant_id: int) -> list[tuple[str, ...]]:
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT from_status, to_status, from_plan, to_plan, mrr_before::text AS b, mrr_after::text AS a"
            " FROM public.subscription_changes WHERE tenant_id = $1 ORDER BY at, id", [tenant_id])
    return [tuple(r.values()) for r in rows]


async def shift_history(tenant_id: int, days: int) -> None:
    """Time passes: the workspace's recorded changes (and its past-due start) happened `days` earlier."""
    async with platform_tx() as tx:
        await tx.execute_query(
            "UPDATE public.subscription_changes SET at = at - make_interval(days => $2),"
            " past_due_since = past_due_since - make_interval(days => $2) WHERE tenant_id = $1", [tenant_id, days])
        await tx.execute_query(
            "UPDATE public.billing_subscriptions SET past_due_since = past_due_since - make_interval(days => $2)"
            " WHERE tenant_id = $1", [tenant_id, days])


def delta(after: PeriodFigures, before: PeriodFigures) -> tuple[int, int, int, Decimal]:
    return (after.trials_ended - before.trials_ended, after.trials_converted - before.trials_converted,
            after.churned - before.churned, after.mrr_lost - before.mrr_lost)


def money_delta(after: MoneyFigures, before: MoneyFigures) -> tuple[Decimal, int, int, Decimal]:
    return (after.total_mrr - before.total_mrr, after.paying - before.paying, after.past_due - before.past_due,
            after.past_due_mrr - before.past_due_mrr)


async def run_queued_jobs() -> None:
    """Every queued job, run by arq's own Worker with the production functions, hook (failures
    are recorded) and settings, in this process (burst: it returns once the queue is empty)."""
    worker = Worker(functions=WorkerSettings.functions, after_job_end=WorkerSettings.after_job_end, burst=True,
                    handle_signals=False, poll_delay=0.05, keep_result=WorkerSettings.keep_result,
                    max_tries=WorkerSettings.max_tries, job_timeout=WorkerSettings.job_timeout, **worker_kwargs())
    try:
        await worker.main()
    finally:
        with warnings.catch_warnings():
            # arq 0.28 closes its pool with redis' deprecated close(): closed all the same
            warnings.simplefilter("ignore", DeprecationWarning)
            await worker.close()


async def test_local_plan_changes_ops_support_and_lapsed_trials_are_recorded_and_counted(db: object) -> None:
    op = await make_operator()
    before = await money_figures()
    payer = await make_workspace("figpay", "Figures Payer")
    comped = await make_workspace("figcomp", "Figures Comped")
    extended = await make_workspace("figext", "Figures Extended")
    lapsed = await make_workspace("figlapse", "Figures Lapsed")
    quitter = await make_workspace("figquit", "Figures Quitter")

    await change_plan_locally(owner(payer), "starter", "yearly")  # the trial converts
    await add_member(payer, "sales")
    await sync_seats(payer.tenant_id)  # two seats now
    await change_plan_locally(owner(quitter), "pro", "monthly")
    await change_plan_locally(owner(quitter), "free", "monthly")  # stops paying: churn
    until = str((datetime.now(UTC) + timedelta(days=30)).date())
    async with client() as c:
        await ops_login(c, op)
        page = f"/ops/tenants/{comped.tenant_id}"
        resp = await form_post(c, page, {"plan": "starter", "until": until, "reason": "partner"}, f"{page}/comp")
        assert resp.status_code == 303
        page = f"/ops/tenants/{extended.tenant_id}"
        resp = await form_post(c, page, {"days": "7", "reason": "ticket 9"}, f"{page}/extend-trial")
        assert resp.status_code == 303
    # the trial runs out (its end moved back, as the billing tests do); the daily job settles it
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.billing_subscriptions SET trial_ends_at = now() - interval '1 hour'"
                               " WHERE tenant_id = $1", [lapsed.tenant_id])
    assert await enqueue_tenant_job("billing_notices", lapsed.tenant_id) is not None
    await run_queued_jobs()

    assert await history(payer.tenant_id) == [("trialing", "active", "pro", "starter", "0.00", "15.00"),
                                              ("active", "active", "starter", "starter", "15.00", "30.00")]
    assert await history(quitter.tenant_id) == [("trialing", "active", "pro", "pro", "0.00", "49.00"),
                                                ("active", "active", "pro", "free", "49.00", "0.00")]
    assert await history(comped.tenant_id) == [("trialing", "active", "pro", "starter", "0.00", "0.00")]
    assert await history(extended.tenant_id) == [("trialing", "trialing", "pro", "pro", "0.00", "0.00")]
    assert await history(lapsed.tenant_id) == [("trialing", "active", "pro", "free", "0.00", "0.00")]

    after = await money_figures()
    # four trials ended (payer and quitter paying; the comp and the lapsed one unpaid); the
    # extension is no end. One churn: the quitter's $49.
    assert delta(after.current, before.current) == (4, 2, 1, Decimal("49.00"))
    assert delta(after.previous, before.previous) == (0, 0, 0, Decimal(0))
    assert money_delta(after, before) == (Decimal("30.00"), 1, 0, Decimal(0))
    assert after.current.paying_at_start == before.current.paying_at_start

    # forty days later, the quitter's trial end and churn belong to the previous period
    await shift_history(quitter.tenant_id, 40)
    moved = await money_figures()
    assert delta(moved.current, before.current) == (3, 1, 0, Decimal(0))
    assert delta(moved.previous, before.previous) == (1, 1, 1, Decimal("49.00"))


async def test_stripe_conversion_dunning_into_read_only_and_cancellation(stripe_env: FakeStripe) -> None:  # noqa: F811
    grace = get_settings().billing_grace_days
    before = await money_figures()
    dunned = await make_workspace("figdun", "Figures Dunned")
    sub_id, events = await checkout(stripe_env, dunned)
    for event in events:
        assert await deliver(event) == 200
    for event in stripe_env.fail_payment(sub_id):  # the renewal fails
        assert await deliver(event) == 200
    assert monthly_revenue(await current_subscription(dunned.tenant_id)) == Revenue(Decimal("15.00"), "past due")
    mid = await money_figures()
    assert money_delta(mid, before) == (Decimal("15.00"), 1, 1, Decimal("15.00"))  # past due still counts

    # the grace period ends a day ago: read-only, churned for non-payment
    await shift_history(dunned.tenant_id, grace + 1)
    assert monthly_revenue(await current_subscription(dunned.tenant_id)) == Revenue(Decimal(0), "read-only")

    cancelled = await make_workspace("figcxl", "Figures Cancelled")
    sub_id, events = await checkout(stripe_env, cancelled)
    for event in events:
        assert await deliver(event) == 200
    for event in stripe_env.cancel(sub_id):  # Stripe answers with the subscription as it is now
        assert await deliver(event) == 200
    assert await history(cancelled.tenant_id) == [
        ("trialing", "active", "pro", "starter", "0.00", "15.00"),
        ("active", "cancelled", "starter", "starter", "15.00", "0.00")]
    assert [h[:2] for h in await history(dunned.tenant_id)] == [("trialing", "active"), ("active", "past_due")]

    after = await money_figures()
    assert delta(after.current, before.current) == (2, 2, 2, Decimal("30.00"))
    assert money_delta(after, before) == (Decimal(0), 0, 0, Decimal(0))
    # paying again after read-only is no churn, and leaves the churn already counted alone
    for event in stripe_env.pay_open_invoices(
            str((await current_subscription(dunned.tenant_id)).stripe_subscription_id)):
        assert await deliver(event) == 200
    paid = await money_figures()
    assert delta(paid.current, before.current) == (2, 2, 2, Decimal("30.00"))
    assert money_delta(paid, before)[:2] == (Decimal("15.00"), 1)


def job_rows(html: str, marker: str) -> list[str]:
    section = html.split(marker, 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr data-job=.*?</tr>", section, flags=re.S)


async def test_a_failed_job_shows_on_the_dashboard_and_on_its_workspace_only(workspace: Workspace,
                                                                          other_workspace: Workspace) -> None:
    op = await make_operator()
    # a real job queued without its second argument: the worker's call raises TypeError
    broken = await enqueue_tenant_job("welcome_email", workspace.tenant_id, job_id=f"figs-broken:{workspace.slug}")
    assert broken is not None
    await enqueue_welcome_email(workspace.tenant_id, workspace.identity_id)  # one that works
    await enqueue_tenant_job("welcome_email", other_workspace.tenant_id, job_id=f"figs-broken:{other_workspace.slug}")
    # one result nobody can read (written by hand: corrupt data, or a class gone since): it is
    # skipped, and the rest still shows
    queue = await get_queue()
    await queue.set(f"arq:result:{queued_job_id('figs-unreadable')}", b"not a pickle", ex=60)
    await run_queued_jobs()
    info = await broken.result_info()
    assert info is not None and not info.success

    async with client() as c:
        await ops_login(c, op)
        dashboard = await c.get("/ops")
        assert dashboard.status_code == 200
        # one row per job function (the failures recorded over 7 days), with the latest failure:
        # here one of the two workspaces' broken jobs, whichever the worker ran last
        failing = [row for row in job_rows(dashboard.text, 'data-list="failing-jobs"')
                   if 'data-job="welcome_email"' in row]
        assert len(failing) == 1, failing
        assert "TypeError: welcome_email() missing 1 required positional argument: &#39;identity_id&#39;" in failing[0]
        assert 'data-field="tries">1<' in failing[0]
        assert int(re.findall(r'data-field="failures">(\d+)<', failing[0])[0]) >= 2
        last = workspace if f'data-tenant="{workspace.slug}"' in failing[0] else other_workspace
        assert f'href="/ops/tenants/{last.tenant_id}#jobs"' in failing[0]

        detail = await c.get(f"/ops/tenants/{workspace.tenant_id}")
        jobs = job_rows(detail.text, 'data-list="jobs"')
        # the failure as recorded (not twice: its kept result is the same failure), the success as kept
        assert sorted(re.findall(r'data-outcome="([a-z ]+)"', "".join(jobs))) == ["failed", "ok"]
        assert 'data-label="Tries">1<' in "".join(jobs)
        # the other workspace's failure is not this workspace's, and no argument but the tenant shows
        assert other_workspace.slug not in detail.text
        # nor the job's id or other arguments (here, whom the welcome email went to)
        assert f"welcome:{workspace.tenant_id}:{workspace.identity_id}" not in detail.text
        assert workspace.email not in "".join(jobs)


async def listing(c: Any, **params: str) -> tuple[int, list[tuple[str, str]]]:
    resp = await c.get("/ops/tenants", params=params)
    rows = re.findall(r'<tr data-tenant="([^"]+)">.*?data-mrr="([^"]+)"', resp.text, flags=re.S)
    return resp.status_code, rows


async def test_the_list_orders_and_filters_by_mrr_and_shows_storage(db: object) -> None:
    op = await make_operator()
    token = f"mrrlist{datetime.now(UTC):%H%M%S%f}"
    trial = await make_workspace("mrrt", f"{token} Trial")
    starter = await make_workspace("mrrs", f"{token} Starter")
    pro = await make_workspace("mrrp", f"{token} Pro")
    await change_plan_locally(owner(starter), "starter", "monthly")
    await change_plan_locally(owner(pro), "pro", "monthly")
    async with client() as c:
        await ops_login(c, op)
        status, rows = await listing(c, q=token)
        assert status == 200 and [s for s, _ in rows] == [pro.slug, starter.slug, trial.slug]  # newest first
        _, rows = await listing(c, q=token, sort="mrr")
        assert rows == [(pro.slug, "49.00"), (starter.slug, "15.00"), (trial.slug, "0.00")]
        _, rows = await listing(c, q=token, paying="1", sort="mrr")
        assert [s for s, _ in rows] == [pro.slug, starter.slug]
        _, rows = await listing(c, q=token, min_mrr="20")
        assert [s for s, _ in rows] == [pro.slug]
        _, rows = await listing(c, q=token, plan="starter", paying="1")
        assert [s for s, _ in rows] == [starter.slug]
        page = (await c.get("/ops/tenants", params={"q": token})).text
        assert re.search(r'data-label="Storage">\d+\.\d MB<', page)
        assert '<span class="badge">trial</span>' in page
        detail = await c.get(f"/ops/tenants/{pro.tenant_id}")
        assert re.search(r'data-field="mrr">MRR <strong>\$49\.00</strong>', detail.text)
        dashboard = await c.get("/ops")
        assert 'data-list="periods"' in dashboard.text and 'data-list="largest-storage"' in dashboard.text
        assert re.search(r'data-field="total-mrr">\$[\d,]+\.\d\d<', dashboard.text)


async def test_the_plan_filter_pages_over_every_match(db: object, monkeypatch: pytest.MonkeyPatch) -> None:
    # two Starter workspaces, then three newer ones on their trial: with pages of two, the first
    # page of Starter must hold both (the filter once ran on the page already cut: it was empty)
    token = f"planpage{datetime.now(UTC):%H%M%S%f}"
    starters = []
    for n in range(2):
        ws = await make_workspace("plns", f"{token} Starter {n}")
        await change_plan_locally(owner(ws), "starter", "monthly")
        starters.append(ws)
    trials = [await make_workspace("plnt", f"{token} Trial {n}") for n in range(3)]
    monkeypatch.setattr(console, "PAGE_SIZE", 2)
    first = await console.list_tenants(console.TenantQuery(q=token, plan="starter"))
    assert [(r.slug, r.plan) for r in first] == [(starters[1].slug, "Starter"), (starters[0].slug, "Starter")]
    assert await console.list_tenants(console.TenantQuery(q=token, plan="Starter", page=2)) == []
    assert [r.slug for r in await console.list_tenants(console.TenantQuery(q=token, page=2))] == [
        trials[0].slug, starters[1].slug]  # unfiltered: newest first, pages of two


async def test_the_largest_workspaces_are_ranked_without_counting_every_one(
        db: object, monkeypatch: pytest.MonkeyPatch) -> None:
    # ranked by PostgreSQL's live-row counts in one catalog query, shown with exact counts
    for n in range(11):  # more live workspaces than the ten shown
        await make_workspace("lrgx", f"Largest Extra {n}")
    big = await make_workspace("lrgb", "Largest Big")
    small = await make_workspace("lrgs", "Largest Small")
    for ws, n in ((big, 6000), (small, 5000)):
        async with tenant_scope(ws.tenant_id) as tx:
            await tx.execute_query("INSERT INTO contacts (name) SELECT '客户 ' || g FROM generate_series(1, $1) g", [n])
    deadline = time.monotonic() + 20  # the statistics reach the view within a second or two
    while True:
        shown = [(row.slug, row.contacts) for row in (await console.dashboard()).largest]
        mine = [pair for pair in shown if pair[0] in (big.slug, small.slug)]
        if mine == [(big.slug, 6000), (small.slug, 5000)] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert mine == [(big.slug, 6000), (small.slug, 5000)], shown
    assert [n for _, n in shown] == sorted((n for _, n in shown), reverse=True)
    # each load enters the ten shown workspaces only, not every live one (a spy on the real count)
    counted: list[int] = []
    real_count = console.contacts_count

    async def spy(tenant_id: int) -> int | None:
        counted.append(tenant_id)
        return await real_count(tenant_id)

    monkeypatch.setattr(console, "contacts_count", spy)
    await console.dashboard()
    assert 0 < len(counted) <= 10


async def test_junk_filters_get_a_clear_message_not_a_500(db: object) -> None:
    op = await make_operator()
    async with client() as c:
        await ops_login(c, op)
        for params, message in (
            ({"min_mrr": "abc"}, "Minimum MRR &#34;abc&#34; is not an amount"),  # not a number
            ({"min_mrr": "-5"}, "is not an amount"),  # a negative minimum
            ({"min_mrr": "NaN"}, "is not an amount"),  # Decimal parses it, but it is no amount
            ({"min_mrr": "1e999999"}, "is not an amount"),  # finite, absurdly large
            ({"plan": "gold"}, "There is no plan &#34;gold&#34;: plans are Free, Starter, Pro, Enterprise."),
            ({"status": "sleeping"}, "There is no status &#34;sleeping&#34;"),  # an unknown status
            ({"sort": "'; DROP TABLE tenants;--"}, "The list cannot be ordered by"),  # junk order
            ({"paying": "maybe"}, "&#34;Paying only&#34; is either ticked or not."),  # a checkbox's junk value
        ):
            resp = await c.get("/ops/tenants", params=params)
            assert resp.status_code == 422, (params, resp.status_code)
            assert message in resp.text, (params, resp.text[:2000])
            assert "Fix the filters above" in resp.text
        # a page number that is no number falls back to the first page, as before
        assert (await c.get("/ops/tenants", params={"page": "x", "min_mrr": "$1,000"})).status_code == 200
