"""The arq worker process (`kith worker`).

Redis URL and queue name come from the settings when the worker starts, not at import,
so the same module serves every environment and test run.
"""

from __future__ import annotations

from typing import Any, ClassVar

import arq
import sentry_sdk
import uvloop
from arq.cron import cron

from kith.jobs.audit_retention import audit_retention, enqueue_audit_retention
from kith.jobs.backups import BACKUP_FUNCTIONS, enqueue_scheduled_backups
from kith.jobs.billing import billing_notices, enqueue_billing_notices
from kith.jobs.campaigns import CAMPAIGN_FUNCTIONS, TICK_SECONDS, enqueue_due_campaigns
from kith.jobs.exports import EXPORT_FUNCTIONS, enqueue_export_cleanup
from kith.jobs.failures import purge_job_failures, record_job_end, recorded_crons, recorded_functions
from kith.jobs.housekeeping import purge_sessions
from kith.jobs.imports import run_import_job
from kith.jobs.invites import invitation_email, password_reset_email, verification_email
from kith.jobs.outbox_sweeper import sweep_outbox
from kith.jobs.pool_reclaim import enqueue_pool_reclaim, pool_reclaim
from kith.jobs.queue import close_queue, redis_settings
from kith.jobs.task_reminders import enqueue_task_reminders, send_task_reminders
from kith.jobs.ticket_replies import sweep_ticket_replies, ticket_reply_email
from kith.jobs.welcome import welcome_email
from kith.platform.config import get_settings
from kith.platform.db import close_db, init_db
from kith.platform.observability import configure_logging, get_logger, init_sentry
from kith.tenants.registry import TENANT_MODEL_MODULES

log = get_logger("kith.worker")

MAX_TRIES = 5


async def startup(ctx: dict[str, Any]) -> None:
    settings = get_settings()
    # Also done in run_worker(); repeated here for `arq kith.jobs.worker.WorkerSettings`.
    configure_logging(settings, "worker")
    if not sentry_sdk.get_client().is_active():
        init_sentry(settings, "worker")
    await init_db(TENANT_MODEL_MODULES)
    log.info("worker_started", queue=settings.queue_name)


async def shutdown(ctx: dict[str, Any]) -> None:
    await close_queue()
    await close_db()
    sentry_sdk.flush(timeout=2)
    log.info("worker_stopped")


class WorkerSettings:
    """arq settings; `worker_kwargs()` adds the parts read from the environment."""

    # Every function and cron job is wrapped so that after_job_end can record its failures
    # (kith.jobs.failures); each carries its max_tries, this class's one unless it names its own.
    functions: ClassVar[list[Any]] = recorded_functions([
        welcome_email, audit_retention, invitation_email, password_reset_email, billing_notices, verification_email,
        send_task_reminders, pool_reclaim, *BACKUP_FUNCTIONS, run_import_job, *EXPORT_FUNCTIONS, *CAMPAIGN_FUNCTIONS,
        ticket_reply_email,
    ], max_tries=MAX_TRIES)
    cron_jobs: ClassVar[list[Any]] = recorded_crons([
        # 03:17 UTC: off the hour, when most workspaces are quiet; one job per tenant (see the job).
        cron(enqueue_audit_retention, hour={3}, minute={17}, run_at_startup=False),
        # 09:05 UTC: billing emails arrive in working hours for most of Europe and the Americas' morning
        cron(enqueue_billing_notices, hour={9}, minute={5}, run_at_startup=False),
        # every five minutes: tasks due within the next 15 minutes get their reminder in time
        cron(enqueue_task_reminders, minute=set(range(0, 60, 5)), run_at_startup=False),
        # 02:43 UTC, daily: records nobody followed up within the workspace's rule go back to the pool
        cron(enqueue_pool_reclaim, hour={2}, minute={43}, run_at_startup=False),
        # hourly at :23: scheduled backups by plan (one per workspace and day), and any queued run's job again
        cron(enqueue_scheduled_backups, minute={23}, run_at_startup=False),
        # every 5 seconds: scheduled campaigns whose time came, campaigns or slots no worker is sending
        cron(enqueue_due_campaigns, second=set(range(0, 60, TICK_SECONDS)), run_at_startup=False),
        # 04:11 UTC, daily: background exports past KITH_EXPORT_KEEP_DAYS are deleted, files and rows
        cron(enqueue_export_cleanup, hour={4}, minute={11}, run_at_startup=False),
        # 03:37 UTC, daily: expired web sessions and login challenges are deleted
        cron(purge_sessions, hour={3}, minute={37}, run_at_startup=False),
        # 03:53 UTC, daily: job failure records past kith.jobs.failures.RETENTION (30 days) are deleted
        cron(purge_job_failures, hour={3}, minute={53}, run_at_startup=False),
        # every ten minutes (:07, :17, ...): emails whose delivery job was never queued or was lost go
        # to their job again, or are given up when their occasion passed (kith.jobs.outbox_sweeper)
        cron(sweep_outbox, minute=set(range(7, 60, 10)), run_at_startup=False),
        # every ten minutes: ticket replies whose delivery job was never queued (kith.jobs.ticket_replies)
        cron(sweep_ticket_replies, minute=set(range(3, 60, 10)), run_at_startup=False),
    ], max_tries=MAX_TRIES)
    on_startup = startup
    on_shutdown = shutdown
    # after arq stored a job's outcome: a failed try becomes a row of public.job_failures
    after_job_end = record_job_end
    max_tries = MAX_TRIES
    # Above the SMTP timeout (30 s) with room for database work; jobs that need longer
    # set their own timeout with arq.func(..., timeout=...).
    job_timeout = 120
    # On SIGTERM, let running jobs finish for a few seconds before cancelling them
    # (below Docker's 10 s grace period before SIGKILL).
    job_completion_wait = 8
    keep_result = 3600


def worker_kwargs() -> dict[str, Any]:
    """The settings-dependent Worker arguments, read now."""
    return {"redis_settings": redis_settings(), "queue_name": get_settings().queue_name}


def run_worker() -> None:
    """Run the worker in the foreground until SIGINT/SIGTERM."""
    settings = get_settings()
    configure_logging(settings, "worker")
    # Before the worker exists, so Sentry's arq integration wraps each job in its own scope.
    init_sentry(settings, "worker")
    # uvloop's event loop (a dependency of uvicorn[standard]): a third less CPU per campaign email,
    # whose sending is mostly small socket writes and reads
    uvloop.install()
    arq.run_worker(WorkerSettings, **worker_kwargs())  # type: ignore[arg-type]
