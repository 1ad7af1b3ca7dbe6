"""Exactly once with real processes: `kith worker` processes send a campaign over SMTP to an
aiosmtpd sink (in a thread here, recording every message's Message-ID, X-Kith-Recipient and
envelope recipient). Mid-way one worker is killed with SIGKILL and another stopped with SIGTERM
(arq cancels its job after a few seconds' grace) while they hold sending jobs, new ones are
started, and the sink must have received exactly one message per recipient. Then a mail server
that refuses connections (the campaign backs off and resumes when it is up) and one that answers
550 for an address (a bounce: that recipient fails, the address is suppressed, everyone else gets
theirs).

A killed worker's arq jobs are not run again before their in-progress keys expire (arq #402);
its sending slot is taken up by the cron of the other workers once the slot's key has expired
(see jobs/campaigns.py), which the test waits for."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiosmtpd.controller import Controller

from kith.jobs.queue import close_queue, get_queue
from kith.platform.access.actor import Actor
from kith.platform.config import get_settings, reset_settings, restored_environment
from kith.platform.db import platform_tx, tenant_scope
from kith.tenants.bench.campaigns import (
    Received,
    SinkHandler,
    Worker,
    free_port,
    smtp_connections,
    start_worker,
    wait_started,
    worker_env,
)
from kith.tenants.campaigns import campaigns as service
from kith.tenants.campaigns.segments import SegmentDefinition, SegmentIn, create_segment

from .conftest import Services, Workspace

T = TypeVar("T")
RECIPIENTS = 3_000
SENDERS = 6  # per sending job; a campaign has two, which spread over the workers
RATE_PER_MINUTE = 9_000  # 150 emails a second: slow enough for a kill and a stop to land mid-way
WAIT_FOR_TAKE_OVER_S = 120  # a slot key expiring (10 s) and the next 5-second cron, with room for a busy machine


class Sink:
    """aiosmtpd on 127.0.0.1:`port` in a thread, recording into `messages`."""

    def __init__(self, port: int, refuse: tuple[str, ...] = ()) -> None:
        self.port = port
        self.messages: list[Received] = []
        self.handler = SinkHandler(self.messages.append, refuse)
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def of(self, ws: Workspace, campaign_id: int) -> list[Received]:
        """The messages of one campaign (a worker's cron may also send other tests' campaigns here)."""
        suffix = f".t{ws.tenant_id}@kith>"
        return [m for m in self.messages if m.message_id.startswith(f"<c{campaign_id}.r")
                and m.message_id.endswith(suffix)]


class Workers:
    """`kith worker` processes sending to one SMTP port; all stopped at the end of the test."""

    def __init__(self, db: Services, port: int, log_dir: Path) -> None:
        self.env = worker_env(database_url=db.database_url, redis_url=db.redis_url,
                              queue_name=get_settings().queue_name, smtp_port=port, senders=SENDERS,
                              rate_per_minute=RATE_PER_MINUTE)
        self.log_dir = log_dir
        self.all: list[Worker] = []

    def start(self, count: int = 1) -> list[Worker]:
        made = [start_worker(self.env, self.log_dir / f"worker-{len(self.all) + n + 1}.log",
                             f"worker {len(self.all) + n + 1}") for n in range(count)]
        self.all += made
        wait_started(made)
        return made

    def alive(self) -> list[Worker]:
        return [w for w in self.all if w.proc.poll() is None]

    def describe(self) -> str:
        return "\n\n".join(w.describe() for w in self.all)

    def stop(self) -> None:
        for w in self.all:
            w.stop()


@pytest.fixture
async def workers_for(db: Services, tmp_path: Path) -> AsyncIterator[Callable[[int], Workers]]:
    """Worker processes on a queue of this test's own: a killed worker's job stays "in progress"
    in its queue for hours (arq #402), which would hold up every later test that runs the queue
    to its end. The queue's keys are deleted afterwards."""
    made: list[Workers] = []
    queue = f"{get_settings().queue_name}-once-{secrets.token_hex(4)}"

    def make(port: int) -> Workers:
        workers = Workers(db, port, tmp_path)
        made.append(workers)
        return workers

    with restored_environment("KITH_QUEUE_NAME"):
        os.environ["KITH_QUEUE_NAME"] = queue
        reset_settings()
        await close_queue()  # the pool is bound to the queue it was made for
        try:
            yield make
        finally:
            for workers in made:
                await asyncio.to_thread(workers.stop)
            redis = await get_queue()
            left = [key async for key in redis.scan_iter(match=f"*{queue}*")]
            if left:
                await redis.delete(*left)
            await close_queue()
    reset_settings()


def owner(ws: Workspace) -> Actor:
    return Actor(kind="user", tenant_id=ws.tenant_id, role="owner", identity_id=ws.identity_id, label=ws.email)


async def _customers(ws: Workspace, count: int, extra: tuple[str, ...] = ()) -> None:
    """`count` consenting customers with one address each, plus the addresses in `extra`."""
    async with tenant_scope(ws.tenant_id) as tx:
        await tx.execute_query(
            "INSERT INTO contacts (name, email, marketing_consent, lifecycle_stage, owner_id)"
            " SELECT CASE WHEN n % 3 = 0 THEN '张伟' || n ELSE 'Ada Lovelace ' || n END,"
            " 'customer' || n || '@example.com', 'granted', 'customer', $2 FROM generate_series(1, $1) n",
            [count, ws.identity_id])
        for n, email in enumerate(extra):
            await tx.execute_query(
                "INSERT INTO contacts (name, email, marketing_consent, lifecycle_stage, owner_id)"
                " VALUES ($1, $2, 'granted', 'customer', $3)", [f"Extra {n}", email, ws.identity_id])


async def _campaign(ws: Workspace) -> int:
    actor = owner(ws)
    segment = await create_segment(actor, SegmentIn(
        name="Customers", definition=SegmentDefinition(filters=["lifecycle_stage:eq:customer"])))
    campaign = await service.create_campaign(actor, service.CampaignIn(
        name="双十一 promotion", segment_id=segment["id"], subject="{{ first_name | default('朋友') }}，双十一快乐",
        html_body="<p>你好 {{ name }}，<a href=\"https://example.com/sale\">看看</a></p>",
        text_body="你好 {{ name }}", from_name="星辰科技", from_email="news@example.com"))
    return int(campaign["id"])


async def _state(ws: Workspace, campaign_id: int) -> dict[str, Any]:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "SELECT c.status, c.paused_reason, c.failures, c.retry_at,"
            " (SELECT count(*) FROM campaign_recipients r WHERE r.campaign_id = c.id AND r.status = 'sent') AS sent,"
            " (SELECT count(*) FROM campaign_recipients r WHERE r.campaign_id = c.id AND r.status = 'pending')"
            " AS pending FROM campaigns c WHERE c.id = $1", [campaign_id])
    return rows[0]


async def _recipients(ws: Workspace, campaign_id: int) -> list[dict[str, Any]]:
    async with tenant_scope(ws.tenant_id) as tx:
        return await tx.execute_query_dict(
            "SELECT id, email, status, message_id, error, bounced_at FROM campaign_recipients"
            " WHERE campaign_id = $1 ORDER BY id", [campaign_id])


async def _until(probe: Callable[[], Awaitable[T | None]], timeout: float, workers: Workers, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{workers.describe()}")
        await asyncio.sleep(0.1)


def _exactly_once(sink: Sink, ws: Workspace, campaign_id: int, rows: list[dict[str, Any]],
                  killed_at: float | None = None) -> None:
    """One message per sent recipient at the sink: none twice, none missing, none extra, and each
    carries the recipient's own headers and envelope address."""
    received = sink.of(ws, campaign_id)
    counts = Counter(m.message_id for m in received)
    twice = [(m.message_id, round(m.at - (killed_at or m.at), 3)) for m in received if counts[m.message_id] > 1]
    assert not twice, (f"{len(twice) // 2} recipients received two messages; (Message-ID, seconds after the kill "
                       f"when the sink accepted it): {twice[:10]}")
    sent = {r["message_id"]: r for r in rows if r["status"] == "sent"}
    got = {m.message_id: m for m in received}
    missing = sorted(set(sent) - set(got))
    assert not missing, f"{len(missing)} recipients marked sent never reached the sink, e.g. {missing[:5]}"
    extra = sorted(set(got) - set(sent))
    assert not extra, f"{len(extra)} messages reached the sink for rows not marked sent, e.g. {extra[:5]}"
    for mid, row in sent.items():
        assert mid == f"<c{campaign_id}.r{row['id']}.t{ws.tenant_id}@kith>"
        assert got[mid].recipient == f"{ws.tenant_id}.{row['id']}"
        assert got[mid].to == row["email"]


async def test_workers_killed_and_stopped_mid_campaign_leave_every_recipient_exactly_one_email(
        workspace: Workspace, workers_for: Callable[[int], Workers]) -> None:
    await _customers(workspace, RECIPIENTS)
    campaign_id = await _campaign(workspace)
    sink = Sink(free_port())
    sink.start()
    workers = workers_for(sink.port)

    async def sent_at_least(share: float) -> dict[str, Any] | None:
        state = await _state(workspace, campaign_id)
        return state if state["sent"] >= RECIPIENTS * share else None

    def sending_worker() -> Worker:
        """The worker with the most SMTP connections open: it holds a sending job."""
        holding = {w.name: smtp_connections(w.pid, sink.port) for w in workers.alive()}
        worker = max(workers.alive(), key=lambda w: holding[w.name])
        assert holding[worker.name] > 0, f"no worker holds an SMTP connection: {holding}\n{workers.describe()}"
        return worker

    try:
        await asyncio.to_thread(workers.start, 2)
        started = await service.start_campaign(owner(workspace), campaign_id)
        assert started["recipients_total"] == RECIPIENTS

        await _until(lambda: sent_at_least(1 / 4), 120, workers, "a quarter of the campaign to be sent")
        victim = sending_worker()
        victim.kill()
        killed_at = victim.killed_at
        assert killed_at is not None
        at_kill = await _state(workspace, campaign_id)
        assert at_kill["status"] == "sending" and at_kill["pending"] > 0, at_kill  # really mid-way
        await asyncio.to_thread(workers.start, 1)  # the restarted worker

        await _until(lambda: sent_at_least(1 / 2), WAIT_FOR_TAKE_OVER_S, workers, "half of the campaign to be sent")
        stopped = sending_worker()
        stopped.proc.terminate()  # SIGTERM: arq cancels its jobs mid-send after its grace time
        at_stop = await _state(workspace, campaign_id)
        assert at_stop["pending"] > 0, at_stop
        assert await asyncio.to_thread(stopped.proc.wait, 60) == 0, stopped.describe()
        await asyncio.to_thread(workers.start, 1)

        async def finished() -> dict[str, Any] | None:
            state = await _state(workspace, campaign_id)
            assert state["status"] in ("sending", "sent"), state
            return state if state["status"] == "sent" else None

        await _until(finished, WAIT_FOR_TAKE_OVER_S, workers, "the campaign to be sent after the kill and the stop")
    finally:
        sink.stop()
    rows = await _recipients(workspace, campaign_id)
    assert len(rows) == RECIPIENTS and {r["status"] for r in rows} == {"sent"}
    _exactly_once(sink, workspace, campaign_id, rows, killed_at)
    # everyone still pending at the kill got theirs afterwards, from the other workers
    after = sum(1 for m in sink.of(workspace, campaign_id) if m.at > killed_at)
    assert after >= RECIPIENTS - at_kill["sent"], (after, at_kill)
    async with tenant_scope(workspace.tenant_id) as tx:
        events = await tx.execute_query_dict(
            "SELECT count(*) AS n FROM campaign_events WHERE campaign_id = $1 AND kind = 'sent'", [campaign_id])
        timeline = await tx.execute_query_dict(
            "SELECT count(*) AS n FROM activities WHERE event->>'name' = 'campaign.sent'"
            " AND (event->>'campaign_id')::bigint = $1", [campaign_id])
    assert events[0]["n"] == RECIPIENTS and timeline[0]["n"] == RECIPIENTS  # one event and timeline entry each
    async with platform_tx() as tx:
        queued = await tx.execute_query_dict(
            "SELECT 1 FROM public.campaign_queue WHERE tenant_id = $1 AND campaign_id = $2",
            [workspace.tenant_id, campaign_id])
    assert not queued  # a sent campaign needs no worker any more


async def test_a_refusing_server_backs_the_campaign_off_and_a_550_is_a_bounce(
        workspace: Workspace, workers_for: Callable[[int], Workers]) -> None:
    refused = "no.such.mailbox@example.com"
    await _customers(workspace, 200, extra=(refused,))
    campaign_id = await _campaign(workspace)
    sink = Sink(free_port(), refuse=(refused,))  # not listening yet: connections are refused
    workers = workers_for(sink.port)
    try:
        await asyncio.to_thread(workers.start, 1)
        await service.start_campaign(owner(workspace), campaign_id)

        async def backed_off() -> tuple[dict[str, Any], dict[str, Any]] | None:
            state = await _state(workspace, campaign_id)
            async with platform_tx() as tx:
                queued = await tx.execute_query_dict(
                    "SELECT next_run_at, heartbeat_at FROM public.campaign_queue WHERE tenant_id = $1"
                    " AND campaign_id = $2", [workspace.tenant_id, campaign_id])
            if state["status"] != "sending" or (state["failures"] >= 1 and queued
                                                 and queued[0]["next_run_at"] == state["retry_at"]):
                return state, (queued[0] if queued else {})
            return None

        state, queued = await _until(backed_off, 60, workers, "the campaign to back off")
        # still sending, not paused: the server refusing every sender of the job at once is one
        # refusal, not MAX_FAILURES of them; nothing was lost or marked
        assert (state["status"], state["paused_reason"], state["failures"]) == ("sending", "", 1), state
        assert state["retry_at"] is not None and state["sent"] == 0 and state["pending"] == 201
        # the minute cron takes it up again when the back-off ends (no heartbeat: nobody is sending)
        assert queued["next_run_at"] == state["retry_at"] and queued["heartbeat_at"] is None

        sink.start()  # the mail server comes back

        async def finished() -> dict[str, Any] | None:
            state = await _state(workspace, campaign_id)
            assert state["status"] in ("sending", "sent"), state
            return state if state["status"] == "sent" else None

        done = await _until(finished, 150, workers, "the campaign to resume and finish")
    finally:
        sink.stop()
    assert done["failures"] == 0 and done["retry_at"] is None  # a success ends the back-off
    rows = await _recipients(workspace, campaign_id)
    bounced = [r for r in rows if r["email"] == refused]
    assert len(bounced) == 1 and bounced[0]["status"] == "failed" and bounced[0]["bounced_at"] is not None
    assert "550" in bounced[0]["error"] and refused in bounced[0]["error"]
    assert sink.handler.refused == [refused]  # asked once, never again
    others = [r for r in rows if r["email"] != refused]
    assert len(others) == 200 and {r["status"] for r in others} == {"sent"}
    _exactly_once(sink, workspace, campaign_id, rows)
    async with tenant_scope(workspace.tenant_id) as tx:
        suppressed = await tx.execute_query_dict("SELECT reason, source FROM email_suppressions WHERE email = $1",
                                                 [refused])
        events = await tx.execute_query_dict(
            "SELECT kind, count(*) AS n FROM campaign_events WHERE campaign_id = $1 GROUP BY kind ORDER BY kind",
            [campaign_id])
    assert suppressed and suppressed[0]["reason"] == "bounced" and str(campaign_id) in suppressed[0]["source"]
    assert {e["kind"]: e["n"] for e in events} == {"bounced": 1, "sent": 200}
