"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kith.platform.config import get_settings
from kith.platform.db import platform_tx


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok", "checks": {}})


async def _check_db() -> None:
    async with platform_tx() as tx:
        await tx.execute_query("SELECT 1")


async def _check_redis() -> None:
    client = Redis.from_url(get_settings().redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def readyz(request: Request) -> Response:
    checks: dict[str, str] = {}
    for name, check in (("database", _check_db), ("redis", _check_redis)):
        try:
            await asyncio.wait_for(check(), timeout=3)
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported by name
            checks[name] = f"unavailable: {type(exc).__name__}: {exc}"[:200]
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)


routes = [Route("/healthz", healthz), Route("/readyz", readyz)]
