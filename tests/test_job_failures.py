"""Failed jobs recorded in public.job_failures by the worker's after_job_end hook: real jobs in
arq's own Worker (in process, real Redis and PostgreSQL), final and retried tries, timeouts and
shutdowns, a record that cannot be written, the ops console after arq's kept result is gone, and
retention.

No user input reaches this code: jobs are queued by Kith itself. The "bad input" here is a job
queued with wrong arguments, which is how the failing jobs below are made."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from arq.constants import result_key_prefix
from arq.jobs import Job, JobStatus
from arq.worker import Worker

from kith.jobs.failures import WRITE_TIMEOUT_S, purge_job_failures
from kith.jobs.invites import enqueue_invitation_email
from kith.jobs.queue import enqueue_tenant_job, enqueue_welcome_email, get_queue, queued_job_id
from kith.jobs.worker import WorkerSettings, worker_kwargs
from kith.platform.config import get_settings, reset_settings, restored_environment
from kith.platform.db import connect_raw, platform_tx
from kith.platform.tenancy.invites import InvitationIn, create_invitation

from .conftest import Workspace
from .test_billing import owner
from .test_email_delivery import free_port, start_sink
from .test_ops import make_operator, ops_login
from .test_ops_figures import job_rows, run_queued_jobs
from .web_helpers import client


def make_worker(**overrides: Any) -> Worker:
    """arq's Worker with the production functions, hook and settings (burst unless told)."""
    settings: dict[str, Any] = {
        "functions": WorkerSettings.functions, "after_job_end": WorkerSettings.after_job_end, "burst": True,
        "handle_signals": False, "poll_delay": 0.05, "keep_result": WorkerSettings.keep_result,
        "max_tries": WorkerSettings.max_tries, "job_timeout": WorkerSettings.job_timeout, **worker_kwargs()}
    return Worker(**{**settings, **overrides})


async def close_worker(worker: Worker) -> None:
    with warnings.catch_warnings():
        # arq 0.28 closes its pool with redis' deprecated close(): closed all the same
        warnings.simplefilter("ignore", DeprecationWarning)
        await worker.close()


async def failures(job_id: str) -> list[dict[str, Any]]:
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT function, tenant_id, tries, error, final FROM public.job_failures WHERE job_id = $1"
            " ORDER BY id", [job_id])
    return [dict(r) for r in rows]


async def eventually(probe: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_failing_job_leaves_a_final_record_with_its_workspace_and_no_address(workspace: Workspace) -> None:
    tag = workspace.slug
    # a tenant job queued with an address where the invitation's id belongs: its query raises,
    # quoting the address
    in_tenant = await enqueue_tenant_job("invitation_email", workspace.tenant_id, "bob.jones@example.com", 1,
                                         job_id=f"jf-tenant:{tag}")
    # a job without a tenant (not wrapped by @tenant_job), queued with an address for the link's id
    queue = await get_queue()
    plain = await queue.enqueue_job("verification_email", "ann@example.org", 1,
                                    _job_id=queued_job_id(f"jf-plain:{tag}"))
    assert in_tenant is not None and plain is not None
    await run_queued_jobs()

    tenant_rows = await failures(in_tenant.job_id)
    assert len(tenant_rows) == 1, tenant_rows
    row = tenant_rows[0]
    assert (row["function"], row["tenant_id"], row["tries"], row["final"]) == (
        "invitation_email", workspace.tenant_id, 1, True)
    assert "<address>" in row["error"] and "bob.jones" not in row["error"] and "example.com" not in row["error"]
    kept = await in_tenant.result_info()
    assert kept is not None and not kept.success  # arq's outcome is the same failure
    assert row["error"].split(":")[0] == type(kept.result).__name__

    assert await failures(plain.job_id) == [{
        "function": "verification_email", "tenant_id": None, "tries": 1, "final": True,
        "error": "ValueError: invalid literal for int() with base 10: '<address>'"}]


async def test_a_retried_try_is_recorded_not_final_and_the_job_then_succeeds(workspace: Workspace) -> None:
    await run_queued_jobs()  # nothing else queued: this test's worker runs its one job
    port = free_port()
    with restored_environment("SMTP_HOST", "SMTP_PORT", "SMTP_STARTTLS", "SMTP_USERNAME", "SMTP_PASSWORD"):
        os.environ.update({"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_STARTTLS": "false",
                           "SMTP_USERNAME": "", "SMTP_PASSWORD": ""})
        reset_settings()
        created = await create_invitation(owner(workspace), InvitationIn(email=f"retry-{workspace.slug}@example.com"))
        await enqueue_invitation_email(workspace.tenant_id, created.invitation.id, created.email_id)
        job_id = queued_job_id(f"invitation:{workspace.tenant_id}:{created.invitation.id}")
        worker = make_worker()
        running = asyncio.create_task(worker.main())
        controller = None
        try:
            # the mail server is down: the first try fails and arq will try again (in 10 s)
            first = await eventually(lambda: failures(job_id))
            # the server is back, and the 10 s have passed
            controller, sink = start_sink(port)
            queue = await get_queue()
            await queue.zadd(get_settings().queue_name, {job_id: int(time.time() * 1000)})
            await asyncio.wait_for(running, 30)
        finally:
            running.cancel()
            await close_worker(worker)
            if controller is not None:
                controller.stop()
    assert len(first) == 1
    assert (first[0]["function"], first[0]["tenant_id"], first[0]["tries"], first[0]["final"]) == (
        "invitation_email", workspace.tenant_id, 1, False)
    assert first[0]["error"].startswith(f"EmailDeliveryError: SMTP 127.0.0.1:{port}: ")
    assert await failures(job_id) == first  # the second try succeeded: nothing more
    kept = await Job(job_id, await get_queue()).result_info()
    assert kept is not None and kept.success and kept.job_try == 2
    assert len(sink.messages) == 1
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict("SELECT status FROM public.outbox_emails WHERE id = $1", [created.email_id])
    assert rows[0]["status"] == "sent"


async def test_the_last_retried_try_is_final(workspace: Workspace) -> None:
    # the same job on its fifth and last try (arq's retry count, as after four failed tries)
    await run_queued_jobs()
    port = free_port()  # nothing listens: the mail server stays down
    with restored_environment("SMTP_HOST", "SMTP_PORT", "SMTP_STARTTLS"):
        os.environ.update({"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_STARTTLS": "false"})
        reset_settings()
        created = await create_invitation(owner(workspace), InvitationIn(email=f"last-{workspace.slug}@example.com"))
        await enqueue_invitation_email(workspace.tenant_id, created.invitation.id, created.email_id)
        job_id = queued_job_id(f"invitation:{workspace.tenant_id}:{created.invitation.id}")
        queue = await get_queue()
        await queue.set(f"arq:retry:{job_id}", WorkerSettings.max_tries - 1, ex=600)
        worker = make_worker()
        running = asyncio.create_task(worker.main())
        try:
            rows = await eventually(lambda: failures(job_id))
            # arq put the job back (Retry); when its time comes it gives up without running it
            await queue.zadd(get_settings().queue_name, {job_id: int(time.time() * 1000)})
            await asyncio.wait_for(running, 30)
        finally:
            running.cancel()
            await close_worker(worker)
    assert [(r["tries"], r["final"]) for r in rows] == [(WorkerSettings.max_tries, True)]
    kept = await Job(job_id, await get_queue()).result_info()
    assert kept is not None and not kept.success and "retries exceeded" in str(kept.result)
    assert await failures(job_id) == rows  # that last step reaches no hook: the final record was the last try


@asynccontextmanager
async def welcome_email_held(workspace: Workspace) -> AsyncIterator[None]:
    """Another transaction has written (not yet committed) the workspace's welcome email: the
    welcome job's insert of the same row waits for it."""
    conn = await connect_raw()
    tr = conn.transaction()
    await tr.start()
    try:
        await conn.execute(
            "INSERT INTO public.outbox_emails (tenant_id, kind, dedupe_key, to_address, subject, body_text)"
            " VALUES ($1, 'welcome', $2, '', '', '')",
            workspace.tenant_id, f"welcome:{workspace.tenant_id}:{workspace.identity_id}")
        yield
    finally:
        await tr.rollback()
        await conn.close()


async def test_a_job_past_its_timeout_is_a_final_timeout(workspace: Workspace) -> None:
    await run_queued_jobs()
    async with welcome_email_held(workspace):
        job = await enqueue_tenant_job("welcome_email", workspace.tenant_id, workspace.identity_id,
                                       job_id=f"jf-timeout:{workspace.slug}")
        assert job is not None
        worker = make_worker(job_timeout=1)
        try:
            await asyncio.wait_for(worker.main(), 30)
        finally:
            await close_worker(worker)
    kept = await job.result_info()
    assert kept is not None and not kept.success and isinstance(kept.result, TimeoutError)
    assert await failures(job.job_id) == [{
        "function": "welcome_email", "tenant_id": workspace.tenant_id, "tries": 1, "final": True,
        "error": "TimeoutError: the job ran longer than its timeout"}]


async def test_a_job_cancelled_by_the_worker_stopping_is_no_failure(workspace: Workspace) -> None:
    await run_queued_jobs()
    async with welcome_email_held(workspace):
        job = await enqueue_tenant_job("welcome_email", workspace.tenant_id, workspace.identity_id,
                                       job_id=f"jf-stop:{workspace.slug}")
        assert job is not None
        worker = make_worker(burst=False)
        running = asyncio.create_task(worker.main())
        try:
            await eventually(lambda: in_progress(job))
        finally:
            await close_worker(worker)  # as on SIGTERM: running jobs are cancelled, arq runs them again
            running.cancel()
    assert await job.status() == JobStatus.queued
    assert await failures(job.job_id) == []
    await run_queued_jobs()  # the row is no longer held: the job runs again, and delivers
    kept = await job.result_info()
    assert kept is not None and kept.success and kept.job_try == 2
    assert await failures(job.job_id) == []


async def in_progress(job: Job) -> bool:
    return await job.status() == JobStatus.in_progress


async def test_a_record_that_cannot_be_written_changes_nothing_for_the_job(workspace: Workspace) -> None:
    # As when a worker of this version starts before migration 0014 ran (deploy order): the
    # table is missing. The failing job fails as it would anyway, the next job runs as usual.
    await run_queued_jobs()
    broken = await enqueue_tenant_job("welcome_email", workspace.tenant_id, job_id=f"jf-unwritten:{workspace.slug}")
    fine = await enqueue_tenant_job("welcome_email", workspace.tenant_id, workspace.identity_id,
                                    job_id=f"jf-fine:{workspace.slug}")
    assert broken is not None and fine is not None
    owner = await connect_raw()  # renaming a table takes its owner, not the application's role
    await owner.execute("ALTER TABLE public.job_failures RENAME TO job_failures_moved")
    worker = make_worker()
    try:
        await asyncio.wait_for(worker.main(), 30)
        assert (worker.jobs_failed, worker.jobs_complete, worker.jobs_retried) == (1, 1, 0)
    finally:
        await owner.execute("ALTER TABLE public.job_failures_moved RENAME TO job_failures")
        await owner.close()
        await close_worker(worker)
    kept = await broken.result_info()
    assert kept is not None and not kept.success and isinstance(kept.result, TypeError)
    assert "missing 1 required positional argument: 'identity_id'" in str(kept.result)
    done = await fine.result_info()
    assert done is not None and done.success
    assert await failures(broken.job_id) == []


async def test_a_record_write_stuck_on_a_lock_gives_up_in_time(workspace: Workspace) -> None:
    # The table is locked (a long migration, a stuck session): the hook waits WRITE_TIMEOUT_S at
    # most, the job's outcome stands, and the connection pool is fine afterwards.
    await run_queued_jobs()
    broken = await enqueue_tenant_job("welcome_email", workspace.tenant_id, job_id=f"jf-locked:{workspace.slug}")
    assert broken is not None
    conn = await connect_raw()
    tr = conn.transaction()
    await tr.start()
    await conn.execute("LOCK TABLE public.job_failures IN ACCESS EXCLUSIVE MODE")
    worker = make_worker()
    try:
        started = time.monotonic()
        await asyncio.wait_for(worker.main(), 30)
        elapsed = time.monotonic() - started
    finally:
        await tr.rollback()
        await conn.close()
        await close_worker(worker)
    assert WRITE_TIMEOUT_S <= elapsed < WRITE_TIMEOUT_S + 10, elapsed
    kept = await broken.result_info()
    assert kept is not None and not kept.success and isinstance(kept.result, TypeError)
    assert await failures(broken.job_id) == []
    again = await enqueue_tenant_job("welcome_email", workspace.tenant_id, job_id=f"jf-locked-2:{workspace.slug}")
    assert again is not None
    await run_queued_jobs()
    assert [r["final"] for r in await failures(again.job_id)] == [True]


def failing_row(html: str, function: str) -> str | None:
    rows = [row for row in job_rows(html, 'data-list="failing-jobs"') if f'data-job="{function}"' in row]
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def count_in(row: str | None, field: str) -> int:
    return int(re.findall(rf'data-field="{field}">(\d+)<', row)[0]) if row else 0


async def test_the_console_shows_failures_after_arq_forgot_them(workspace: Workspace,
                                                               other_workspace: Workspace) -> None:
    op = await make_operator()
    await run_queued_jobs()
    token = secrets.token_hex(4)
    async with client() as c:
        await ops_login(c, op)
        before = failing_row((await c.get("/ops")).text, "welcome_email")
        # a real job queued without its second argument fails; another one succeeds
        broken = await enqueue_tenant_job("welcome_email", workspace.tenant_id, job_id=f"jf-aged:{token}")
        assert broken is not None
        await enqueue_welcome_email(workspace.tenant_id, workspace.identity_id)
        await run_queued_jobs()
        # two hours on: arq's kept result of the failure is gone (it keeps them an hour), the record stays
        queue = await get_queue()
        assert await queue.delete(result_key_prefix + broken.job_id) == 1
        async with platform_tx() as tx:
            await tx.execute_query(
                "UPDATE public.job_failures SET at = at - interval '2 hours' WHERE job_id = $1", [broken.job_id])
            # older failures of a job, recorded as the hook writes them: 6 days ago (within the
            # dashboard's 7), and 8 days ago (past them; still in the workspace's last 20)
            for function, days, final in ((f"jf_recent_{token}", 6, False), (f"jf_recent_{token}", 6, True),
                                          (f"jf_old_{token}", 8, True)):
                await tx.execute_query(
                    "INSERT INTO public.job_failures (at, function, job_id, tenant_id, tries, error, final)"
                    " VALUES (now() - make_interval(days => $1), $2, $3, $4, 2, 'OSError: disk full', $5)",
                    [days, function, f"jf-hand:{token}", workspace.tenant_id, final])

        page = (await c.get("/ops")).text
        after = failing_row(page, "welcome_email")
        assert after is not None
        assert count_in(after, "failures") == count_in(before, "failures") + 1
        assert count_in(after, "final") == count_in(before, "final") + 1
        recent = failing_row(page, f"jf_recent_{token}")
        assert recent is not None
        assert (count_in(recent, "failures"), count_in(recent, "final")) == (2, 1)
        assert f'data-tenant="{workspace.slug}"' in recent
        assert f'href="/ops/tenants/{workspace.tenant_id}#jobs"' in recent
        assert "OSError: disk full" in recent and 'data-field="tries">2<' in recent
        assert failing_row(page, f"jf_old_{token}") is None

        detail = (await c.get(f"/ops/tenants/{workspace.tenant_id}")).text
        jobs = job_rows(detail, 'data-list="jobs"')
        shown = sorted(re.findall(r'<tr data-job="([^"]+)" data-outcome="([a-z ]+)"', "".join(jobs)))
        assert shown == sorted([("welcome_email", "failed"), ("welcome_email", "ok"), (f"jf_recent_{token}", "failed"),
                                (f"jf_recent_{token}", "retried"), (f"jf_old_{token}", "failed")])
        assert "missing 1 required positional argument" in "".join(jobs)
        # another workspace's page shows none of it
        other = (await c.get(f"/ops/tenants/{other_workspace.tenant_id}")).text
        assert token not in other and "jf-aged" not in other


async def test_records_older_than_30_days_are_deleted_by_the_daily_cron(workspace: Workspace) -> None:
    token = secrets.token_hex(4)
    async with platform_tx() as tx:
        for days in (31, 29):
            await tx.execute_query(
                "INSERT INTO public.job_failures (at, function, job_id, tenant_id, tries, error, final)"
                " VALUES (now() - make_interval(days => $1), $2, $3, NULL, 1, 'RuntimeError', true)",
                [days, f"jf_retention_{token}_{days}", f"jf-retention:{token}"])
    purge = next(job for job in WorkerSettings.cron_jobs if job.name == "cron:purge_job_failures")
    assert await purge.coroutine({"job_id": "test", "job_try": 1}) >= 1
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT function FROM public.job_failures WHERE job_id = $1", [f"jf-retention:{token}"])
    assert [r["function"] for r in rows] == [f"jf_retention_{token}_29"]
    await purge_job_failures({})  # again: the 29-day-old record stays
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT function FROM public.job_failures WHERE job_id = $1", [f"jf-retention:{token}"])
    assert len(rows) == 1
