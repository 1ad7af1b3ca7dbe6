"""The decorator every tenant job wears: load the tenant, refuse the unavailable, log once.

arq calls `f(ctx, tenant_id, *args)`; the decorated function receives the loaded, active
`Tenant` instead of the id and enters `tenant_scope(tenant.id)` for tenant data. A job for
a missing, suspended, deleted or still-provisioning tenant does nothing and returns
"skipped: <why>", which arq stores as the job's result.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

from arq.worker import Retry

from kith.platform.db import TenantUnavailable, platform_tx
from kith.platform.observability import bind_context, clear_context, get_logger
from kith.platform.tenancy.models import Tenant, TenantStatus

log = get_logger("kith.jobs")

P = ParamSpec("P")
R = TypeVar("R")
JobContext = dict[str, Any]


def _elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


def tenant_job(
    func: Callable[Concatenate[JobContext, Tenant, P], Awaitable[R]],
) -> Callable[Concatenate[JobContext, int, P], Coroutine[Any, Any, R | str]]:
    """Wrap an arq job `f(ctx, tenant, *args)` so it is queued as `f(ctx, tenant_id, *args)`."""
    name = func.__name__

    @functools.wraps(func)
    async def run(ctx: JobContext, tenant_id: int, /, *args: P.args, **kwargs: P.kwargs) -> R | str:
        start = time.perf_counter()
        async with platform_tx() as tx:  # every query in a transaction: PgBouncer-safe
            tenant = await Tenant.get_or_none(id=int(tenant_id)).using_db(tx)
        bind_context(tenant=tenant.slug if tenant else None, job=name, job_id=str(ctx.get("job_id", "")))
        fields: dict[str, Any] = {"tenant_id": int(tenant_id), "job_try": ctx.get("job_try")}
        try:
            if tenant is None:
                reason = f"tenant {tenant_id} does not exist"
            elif tenant.status != TenantStatus.ACTIVE:
                reason = f"tenant {tenant_id} is {TenantStatus(tenant.status).value}"
            else:
                reason = ""
            if reason:
                log.info("job", outcome="skipped", reason=reason, duration_ms=_elapsed_ms(start), **fields)
                return f"skipped: {reason}"
            assert tenant is not None
            try:
                result = await func(ctx, tenant, *args, **kwargs)
            except TenantUnavailable:
                # Deleted between the check above and the job's tenant_scope.
                reason = f"tenant {tenant_id} is not available"
                log.info("job", outcome="skipped", reason=reason, duration_ms=_elapsed_ms(start), **fields)
                return f"skipped: {reason}"
            except Retry as exc:
                cause = str(exc.__cause__) if exc.__cause__ else ""
                log.warning("job", outcome="retry", reason=cause, duration_ms=_elapsed_ms(start), **fields)
                raise
            except asyncio.CancelledError:
                log.warning("job", outcome="cancelled", duration_ms=_elapsed_ms(start), **fields)
                raise
            except Exception:
                log.exception("job", outcome="error", duration_ms=_elapsed_ms(start), **fields)
                raise
            extra = {"result": result} if isinstance(result, str | int | float | bool) else {}
            log.info("job", outcome="ok", duration_ms=_elapsed_ms(start), **fields, **extra)
            return result
        finally:
            clear_context()

    return run
