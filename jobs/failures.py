"""Failed jobs, kept RETENTION in public.job_failures for the ops console.

arq keeps a job's result an hour (and cannot keep it longer: enqueue_tenant_job de-duplicates
job ids by it), a cron job's not at all. So the worker records failures itself, in two parts:

- every function and cron job of WorkerSettings is wrapped (`recorded_functions`,
  `recorded_crons`, applied to the whole lists, so a job added later is covered too): the
  wrapper notes in the job's ctx its name, its tenant (a tenant job's first argument) and what
  it raised or returned;
- the worker's `after_job_end` hook (`record_job_end`), which arq calls once it has stored the
  job's outcome, writes a row for a failed try. Writing there, and not in the wrapper, keeps the
  write out of the job's timeout and sees jobs that ran out of it (arq cancels them, so the
  wrapper sees CancelledError while arq records TimeoutError).

What counts as a failed try, and whether it is final (arq will not run the job again):
- it raised: final (arq retries only Retry and cancellation);
- it raised Retry: not final, unless it was its last try (arq then gives up without running it,
  "max retries exceeded"); the error is the Retry's cause (the SMTP failure);
- it ran past its timeout: final;
- it returned "failed: ..." (backups report failures so): final, without the message, which may
  quote the workspace's data;
- it was cancelled because the worker is stopping: arq runs it again, so no row, unless it was
  its last try.
A job arq fails without running it (its data expired, its function unknown, a worker killed on
its last try) reaches no hook; the console shows those from arq's kept result while it lasts.

Recording never changes a job's outcome: arq stored it before the hook runs, the write is
bounded by WRITE_TIMEOUT_S, and any error is logged and dropped. The wrapper and arq agree on
the number of tries because each wrapped function carries its max_tries explicitly.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from arq.cron import CronJob
from arq.typing import WorkerCoroutine
from arq.worker import Function, Retry, func

from kith.platform.db import platform_tx
from kith.platform.observability import get_logger
from kith.platform.ops.figures import error_line

log = get_logger("kith.jobs.failures")

RETENTION = timedelta(days=30)
# A slow or locked table must not hold the worker's job slot for long.
WRITE_TIMEOUT_S = 5.0
_CTX_KEY = "kith_job_end"


@dataclass
class JobEnd:
    """What the wrapper saw of one try of a job."""

    function: str
    tenant_id: int | None
    max_tries: int
    raised: BaseException | None = None
    cancelled_from_outside: bool = False  # a timeout or the worker stopping, not the job itself
    reported_failure: bool = False  # returned "failed: ..."


def takes_tenant(coroutine: WorkerCoroutine) -> bool:
    """Whether a job's first argument is a tenant id: those @tenant_job wraps, whose own second
    parameter is the tenant (the signature follows functools.wraps to the job itself)."""
    params = list(inspect.signature(coroutine).parameters)
    return len(params) > 1 and params[1] in ("tenant", "tenant_id")


def _recorded(name: str, coroutine: WorkerCoroutine, max_tries: int) -> WorkerCoroutine:
    tenant_job = takes_tenant(coroutine)

    @functools.wraps(coroutine)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        first = args[0] if args else None
        seen = JobEnd(name, int(first) if tenant_job and isinstance(first, int) else None, max_tries)
        ctx[_CTX_KEY] = seen
        try:
            result = await coroutine(ctx, *args, **kwargs)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            seen.raised, seen.cancelled_from_outside = exc, task is not None and task.cancelling() > 0
            raise
        except Exception as exc:
            seen.raised = exc
            raise
        seen.reported_failure = isinstance(result, str) and result.startswith("failed")
        return result

    return run


def recorded_functions(items: Iterable[Function | WorkerCoroutine], *, max_tries: int) -> list[Function]:
    """The worker's functions, each wrapped to note its outcome for `record_job_end`, under the
    same name; `max_tries` (the worker's default) is set on those that name none."""
    out: list[Function] = []
    for item in items:
        fn = func(item)
        tries = fn.max_tries if fn.max_tries is not None else max_tries
        out.append(replace(fn, coroutine=_recorded(fn.name, fn.coroutine, tries), max_tries=tries))
    return out


def recorded_crons(items: Iterable[CronJob], *, max_tries: int) -> list[CronJob]:
    """The worker's cron jobs, each wrapped like `recorded_functions` (arq's cron() gives each
    one try unless told otherwise)."""
    out: list[CronJob] = []
    for job in items:
        tries = job.max_tries if job.max_tries is not None else max_tries
        out.append(replace(job, coroutine=_recorded(job.name, job.coroutine, tries), max_tries=tries))
    return out


def failure_of(seen: JobEnd, job_try: int, *, worker_stopping: bool) -> tuple[str, bool] | None:
    """(error, final) for a failed try, or None when the try did not fail."""
    last_try = job_try >= seen.max_tries
    exc = seen.raised
    if exc is None:
        return ("reported failure", True) if seen.reported_failure else None
    if isinstance(exc, Retry):
        return error_line(exc.__cause__ if exc.__cause__ is not None else exc), last_try
    if isinstance(exc, asyncio.CancelledError):
        if not seen.cancelled_from_outside:  # raised by the job itself: arq runs it again
            return error_line(exc), last_try
        if worker_stopping:
            return ("CancelledError: the worker stopped during the job's last try", True) if last_try else None
        return "TimeoutError: the job ran longer than its timeout", True
    return error_line(exc), True


async def record_job_end(ctx: dict[str, Any]) -> None:
    """arq's after_job_end hook: a row in public.job_failures for a try that failed."""
    seen = ctx.get(_CTX_KEY)
    if not isinstance(seen, JobEnd):
        return  # a function not wrapped by recorded_functions, or one arq did not run
    task = asyncio.current_task()
    # arq's run_job task is itself cancelled only when the worker stops (a timeout cancels the job's task)
    stopping = task is not None and task.cancelling() > 0
    failure = failure_of(seen, int(ctx.get("job_try") or 1), worker_stopping=stopping)
    if failure is None:
        return
    error, final = failure
    job_id = str(ctx.get("job_id", ""))
    try:
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            async with platform_tx() as tx:
                await tx.execute_query(
                    "INSERT INTO public.job_failures (function, job_id, tenant_id, tries, error, final)"
                    " VALUES ($1, $2, $3, $4, $5, $6)",
                    [seen.function, job_id, seen.tenant_id, int(ctx.get("job_try") or 1), error, final])
    except Exception as exc:  # noqa: BLE001 - the job's outcome is stored already; losing the record is all
        log.warning("job_failure_not_recorded", function=seen.function, job_id=job_id, final=final,
                    error=error_line(exc))


async def purge_job_failures(ctx: dict[str, Any]) -> int:
    """Daily: delete failure records older than RETENTION; returns how many went."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "WITH gone AS (DELETE FROM public.job_failures WHERE at < now() - $1::interval RETURNING 1)"
            " SELECT count(*) AS n FROM gone", [RETENTION])
    removed = int(rows[0]["n"])
    log.info("job_failures_purged", removed=removed)
    return removed
