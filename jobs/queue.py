"""Putting jobs on the arq queue (web requests, CLI, other jobs)."""

from __future__ import annotations

import asyncio
from typing import Any

from arq import ArqRedis, create_pool
from arq.connections import RedisSettings
from arq.jobs import Job

from kith.platform.config import get_settings

_pool: ArqRedis | None = None
_pool_loop: asyncio.AbstractEventLoop | None = None


def redis_settings() -> RedisSettings:
    """arq's connection settings for REDIS_URL, read when called (not at import)."""
    return RedisSettings.from_dsn(get_settings().redis_url)


async def get_queue() -> ArqRedis:
    """The process's arq pool, created on first use in the running event loop."""
    global _pool, _pool_loop
    loop = asyncio.get_running_loop()
    if _pool is not None and _pool_loop is loop:
        return _pool
    # A pool belongs to the loop it was made in; a new loop (another asyncio.run)
    # cannot use or even close the old one, so it is dropped.
    pool = await create_pool(redis_settings(), default_queue_name=get_settings().queue_name)
    if _pool is not None and _pool_loop is loop:
        # Another task created one while we awaited: keep the first.
        await pool.aclose()
        return _pool
    _pool, _pool_loop = pool, loop
    return pool


def queued_job_id(job_id: str) -> str:
    """The arq job id used for `job_id`: prefixed with the queue name.

    arq keys jobs and results as `arq:job:<id>` / `arq:result:<id>` whatever the queue,
    so without the prefix two deployments (or test runs) sharing a Redis, whose tenant
    ids both start at 1, would drop each other's `welcome:1:1`.
    """
    return f"{get_settings().queue_name}:{job_id}"


async def enqueue_tenant_job(
    function: str, tenant_id: int, *args: Any, job_id: str | None = None, **kwargs: Any
) -> Job | None:
    """Queue `function(ctx, tenant_id, *args, **kwargs)`; None when job_id is already queued or done.

    arq drops a job whose id is queued, running, or has a kept result (an hour), so a
    stable job_id turns a repeated request into one job. Keyword arguments starting
    with `_` are arq's own (`_defer_by`, `_expires`, ...).
    """
    queue = await get_queue()
    arq_id = queued_job_id(job_id) if job_id is not None else None
    return await queue.enqueue_job(function, int(tenant_id), *args, _job_id=arq_id, **kwargs)


async def enqueue_welcome_email(tenant_id: int, identity_id: int) -> None:
    """Queue the welcome email to a workspace's new owner (at most one per tenant and identity)."""
    await enqueue_tenant_job(
        "welcome_email", tenant_id, int(identity_id), job_id=f"welcome:{int(tenant_id)}:{int(identity_id)}"
    )


async def close_queue() -> None:
    """Close the pool (app shutdown, end of a CLI command)."""
    global _pool, _pool_loop
    pool, loop, _pool, _pool_loop = _pool, _pool_loop, None, None
    if pool is not None and loop is asyncio.get_running_loop():
        await pool.aclose()
