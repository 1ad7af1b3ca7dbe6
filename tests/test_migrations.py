"""The migration runner and tenant provisioning, against a real PostgreSQL.

Runner tests each get a fresh database on the test server, so they start from nothing
and never see (or move) the session's tenants. Tenants there are registered by hand at
schema version 0 with an empty schema: for the runner that is a tenant behind by every
migration, so the runner itself builds their schemas. Provisioning tests go through
`provision_tenant`, which uses the session's Tortoise connection (the `db` fixture).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncpg
import pytest
from tortoise.exceptions import OperationalError

from kith.platform.db import MIGRATION_LOCK_KEY, connect_kwargs, tenant_schema
from kith.platform.migrations import runner
from kith.platform.migrations.runner import MigrationLocked, RolloutReport
from kith.platform.tenancy.provisioning import provision_tenant
from kith.platform.tenancy.slugs import SlugError

from .conftest import Services, unique_slug

PUBLIC_TABLES = (
    "tenants", "identities", "memberships", "web_sessions", "api_tokens", "outbox_emails",
    "schema_migrations",
)
BASE = runner.latest_version(runner.tenant_migrations())



@pytest.fixture
async def conn(fresh_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(**connect_kwargs(fresh_url))
    try:
        yield connection
    finally:
        await connection.close()


async def register_tenants(conn: asyncpg.Connection, count: int, prefix: str = "acme") -> list[int]:
    """Tenants at version 0 with empty schemas; the runner brings them to the latest version."""
    ids: list[int] = []
    for n in range(count):
        tid = await conn.fetchval(
            "INSERT INTO public.tenants (slug, name, schema_name, status)"
            " VALUES ($1, $2, '', 'active') RETURNING id",
            f"{prefix}-{n}", f"{prefix.title()} {n}",
        )
        await conn.execute(f"CREATE SCHEMA {tenant_schema(tid)}")
        await conn.execute(
            "UPDATE public.tenants SET schema_name = $2 WHERE id = $1", tid, tenant_schema(tid)
        )
        ids.append(int(tid))
    return ids


def write_migration(folder: Path, version: int, name: str, sql: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{version:04d}_{name}.sql"
    path.write_text(sql)
    return path


async def versions(conn: asyncpg.Connection, ids: Sequence[int]) -> dict[int, int]:
    rows = await conn.fetch(
        "SELECT id, schema_version FROM public.tenants WHERE id = ANY($1::bigint[])", list(ids)
    )
    return {int(r["id"]): int(r["schema_version"]) for r in rows}


async def has_relation(conn: asyncpg.Connection, tenant_id: int, name: str) -> bool:
    found = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{tenant_schema(tenant_id)}.{name}")
    return bool(found)


async def test_fresh_apply_creates_the_public_schema(fresh_url: str, conn: asyncpg.Connection) -> None:
    report = await runner.migrate(url=fresh_url)

    expected = runner.public_migrations()
    assert report.public_applied == [f"{m.version:04d}_{m.name}" for m in expected]
    assert report.ok and report.tenants_migrated == []
    for table in PUBLIC_TABLES:
        assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"public.{table}"), table
    assert await conn.fetchval("SELECT to_regprocedure('public.kith_enter_tenant(bigint)') IS NOT NULL")
    rows = await conn.fetch("SELECT version, name, checksum FROM public.schema_migrations ORDER BY version")
    assert [(r["version"], r["name"], r["checksum"]) for r in rows] == [
        (m.version, m.name, m.checksum) for m in expected
    ]


async def test_rerun_is_a_no_op(fresh_url: str, conn: asyncpg.Connection) -> None:
    await runner.migrate(url=fresh_url)
    ids = await register_tenants(conn, 3)
    first = await runner.migrate(url=fresh_url)
    assert sorted(r.tenant_id for r in first.tenants_migrated) == ids
    snapshot_sql = (
        "SELECT (SELECT array_agg((version, applied_at)::text ORDER BY version)"
        "        FROM public.schema_migrations),"
        " (SELECT array_agg((id, schema_version, updated_at)::text ORDER BY id) FROM public.tenants)"
    )
    before = await conn.fetchrow(snapshot_sql)

    messages: list[str] = []
    again = await runner.migrate(url=fresh_url, progress=messages.append)

    assert again.public_applied == []
    assert again.tenants_migrated == [] and again.tenants_failed == []
    assert await conn.fetchrow(snapshot_sql) == before
    assert messages == [f"tenants: all at version {BASE}"]


async def test_new_tenant_migration_reaches_every_tenant(
    fresh_url: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await runner.migrate(url=fresh_url)
    ids = await register_tenants(conn, 6)
    gone = (await register_tenants(conn, 1, prefix="gone"))[0]
    await conn.execute("UPDATE public.tenants SET status = 'deleted' WHERE id = $1", gone)
    await runner.migrate(url=fresh_url)
    assert await runner.pending_tenants(conn, BASE) == []

    write_migration(tmp_path, BASE + 1, "deal_stages", """
        CREATE TABLE deal_stages (id bigserial PRIMARY KEY, name text NOT NULL, position integer NOT NULL);
        CREATE UNIQUE INDEX deal_stages_position_key ON deal_stages (position);
    """)
    latest = runner.latest_version(runner.tenant_migrations([tmp_path]))
    assert latest == BASE + 1
    assert [r["id"] for r in await runner.pending_tenants(conn, latest)] == ids

    report = await runner.migrate(url=fresh_url, extra_tenant_dirs=[tmp_path])

    assert report.ok
    assert sorted((r.tenant_id, r.from_version, r.to_version) for r in report.tenants_migrated) == [
        (tid, BASE, latest) for tid in ids
    ]
    assert await runner.pending_tenants(conn, latest) == []
    assert await versions(conn, ids) == {tid: latest for tid in ids}
    for tid in ids:
        assert await has_relation(conn, tid, "deal_stages")
        assert await has_relation(conn, tid, "deal_stages_position_key")
    # a deleted tenant is never migrated (nor counted as behind)
    assert await versions(conn, [gone]) == {gone: 0}
    assert not await has_relation(conn, gone, "contacts")


async def test_canaries_go_first_and_a_failing_canary_stops_the_rollout(
    fresh_url: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await runner.migrate(url=fresh_url)
    ids = await register_tenants(conn, 8)
    await runner.migrate(url=fresh_url)
    flagged, named = ids[5], ids[6]
    await conn.execute("UPDATE public.tenants SET canary = true WHERE id = $1", flagged)

    # 1. canaries (flagged in the registry, or named by slug) are migrated first, in id order
    write_migration(tmp_path, BASE + 1, "playbooks", "CREATE TABLE playbooks (id bigserial PRIMARY KEY);")
    report = await runner.migrate(url=fresh_url, extra_tenant_dirs=[tmp_path], canary_slugs=["acme-6"])
    assert report.ok
    assert [r.tenant_id for r in report.tenants_migrated[:2]] == [flagged, named]
    assert sorted(r.tenant_id for r in report.tenants_migrated) == ids

    # 2. the next migration fails in the canary only (an object of that name already exists
    # there): the roll-out stops and every other tenant is left exactly as it was
    await conn.execute(f"CREATE TABLE {tenant_schema(flagged)}.quotes (legacy text)")
    write_migration(tmp_path, BASE + 2, "quotes", "CREATE TABLE quotes (id bigserial PRIMARY KEY, title text);")
    messages: list[str] = []
    failed = await runner.migrate(url=fresh_url, extra_tenant_dirs=[tmp_path], progress=messages.append)

    assert failed.canaries_failed and not failed.ok
    assert [r.tenant_id for r in failed.tenants_failed] == [flagged]
    assert 'relation "quotes" already exists' in failed.tenants_failed[0].error
    assert failed.tenants_migrated == []
    assert any("roll-out stopped" in m for m in messages)
    assert await versions(conn, ids) == {tid: BASE + 1 for tid in ids}
    for tid in ids:
        assert await has_relation(conn, tid, "quotes") == (tid == flagged)
    legacy = await conn.fetchval(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'quotes'",
        tenant_schema(flagged),
    )
    assert legacy == 1  # the canary's own object is untouched: its failed transaction rolled back

    # 3. once the conflict is resolved, the same command converges
    await conn.execute(f"DROP TABLE {tenant_schema(flagged)}.quotes")
    fixed = await runner.migrate(url=fresh_url, extra_tenant_dirs=[tmp_path])
    assert fixed.ok and fixed.tenants_migrated[0].tenant_id == flagged
    assert await versions(conn, ids) == {tid: BASE + 2 for tid in ids}


async def test_a_second_runner_while_the_lock_is_held(fresh_url: str, conn: asyncpg.Connection) -> None:
    await runner.migrate(url=fresh_url)
    holder = await asyncpg.connect(**connect_kwargs(fresh_url))
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        started = time.perf_counter()
        with pytest.raises(MigrationLocked, match="another `kith migrate` is running"):
            await runner.migrate(url=fresh_url)
        assert time.perf_counter() - started < 5  # refused at once, not after waiting

        waiting = asyncio.create_task(runner.migrate(url=fresh_url, wait_for_lock=True))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
        report = await asyncio.wait_for(waiting, 10)
        assert report.ok and report.public_applied == []
    finally:
        await holder.close()
    # the runner released its lock: someone else can take it now
    assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY)
    await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


# Runs `kith migrate`'s code path in its own process so the test can kill -9 it.
CRASH_RUNNER = """
import asyncio, sys
from pathlib import Path
from kith.platform.migrations import runner
asyncio.run(runner.migrate(url=sys.argv[1], extra_tenant_dirs=[Path(sys.argv[2])], concurrency=2))
"""


async def _wait_for_no_other_backends(conn: asyncpg.Connection, timeout: float = 15) -> None:
    """A killed client's backends finish their current statement, notice the closed socket
    and roll back; wait for that so the state read afterwards is final."""
    deadline = time.monotonic() + timeout
    sql = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    while await conn.fetchval(sql):
        assert time.monotonic() < deadline, "the killed runner's backends did not go away"
        await asyncio.sleep(0.05)


async def test_a_runner_killed_half_way_resumes_and_converges(
    fresh_url: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await runner.migrate(url=fresh_url)
    ids = await register_tenants(conn, 20)
    await runner.migrate(url=fresh_url, concurrency=4)
    new = BASE + 1
    # two objects around a sleep: a tenant caught half-way would show the table alone
    write_migration(tmp_path, new, "crash_probe", """
        CREATE TABLE crash_probe (id bigserial PRIMARY KEY, note text);
        SELECT pg_sleep(0.25);
        CREATE INDEX crash_probe_note_idx ON crash_probe (note);
    """)

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASH_RUNNER, fresh_url, str(tmp_path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    done = 0
    while done < 3:
        assert proc.returncode is None, "the runner finished before it could be killed"
        assert time.monotonic() < deadline, "the runner made no progress"
        done = await conn.fetchval(
            "SELECT count(*) FROM public.tenants WHERE id = ANY($1::bigint[]) AND schema_version = $2",
            ids, new,
        )
        await asyncio.sleep(0.02)
    proc.kill()  # SIGKILL: no cleanup, no rollback from the client's side
    await proc.wait()
    assert proc.stderr is not None
    await proc.stderr.read()
    await _wait_for_no_other_backends(conn)

    state = await versions(conn, ids)
    moved = [tid for tid in ids if state[tid] == new]
    assert 0 < len(moved) < len(ids), state
    for tid in ids:
        table = await has_relation(conn, tid, "crash_probe")
        index = await has_relation(conn, tid, "crash_probe_note_idx")
        # each tenant is wholly at the old version or wholly at the new one
        assert state[tid] in (BASE, new)
        assert table == index == (state[tid] == new), (tid, state[tid], table, index)

    resumed: RolloutReport = await runner.migrate(
        url=fresh_url, extra_tenant_dirs=[tmp_path], wait_for_lock=True
    )

    assert resumed.ok, [r.error for r in resumed.tenants_failed]
    assert sorted(r.tenant_id for r in resumed.tenants_migrated) == sorted(set(ids) - set(moved))
    assert await versions(conn, ids) == {tid: new for tid in ids}
    for tid in ids:
        assert await has_relation(conn, tid, "crash_probe_note_idx")


# Provisioning: through Tortoise, in the session's database.


async def _last_tenant_id(conn: asyncpg.Connection) -> int:
    """The last id the tenants sequence handed out (0 before the first)."""
    return int(await conn.fetchval(
        "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.tenants_id_seq"
    ))


@pytest.fixture
async def session_conn(db: Services) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(**connect_kwargs(db.database_url))
    try:
        yield connection
    finally:
        await connection.close()


async def test_failed_provisioning_leaves_nothing_behind(session_conn: asyncpg.Connection) -> None:
    # the stored tenant DDL (what the owner's function runs) ends in a statement that fails after
    # one that succeeds: the schema, its tables and the tenant row must all go
    ddl = await session_conn.fetchval("SELECT tenant_ddl FROM public.kith_schema_setup")
    await session_conn.execute(
        "UPDATE public.kith_schema_setup SET tenant_ddl = tenant_ddl || $1",
        "\n;\nCREATE TABLE provisioning_probe (id bigserial PRIMARY KEY);\n"
        "SELECT missing_column FROM provisioning_probe;")
    slug = unique_slug("broken")
    before = await _last_tenant_id(session_conn)
    try:
        with pytest.raises(OperationalError, match="missing_column"):
            await provision_tenant(slug=slug, name="Broken Co")
    finally:
        await session_conn.execute("UPDATE public.kith_schema_setup SET tenant_ddl = $1", ddl)

    attempted = await _last_tenant_id(session_conn)
    assert attempted > before  # a row was inserted and then rolled back
    assert not await session_conn.fetchval("SELECT count(*) FROM public.tenants WHERE slug = $1 OR id = $2",
                                           slug, attempted)
    assert not await session_conn.fetchval(
        "SELECT count(*) FROM pg_namespace WHERE nspname = $1", tenant_schema(attempted)
    )
    assert not await session_conn.fetchval(
        "SELECT count(*) FROM pg_tables WHERE tablename = 'provisioning_probe'"
    )


@pytest.mark.parametrize(
    ("slug", "message"),
    [
        ("admin", "'admin' is reserved"),
        ("Bad_Slug", "only lowercase letters, digits and hyphens"),
        ("ab", "must be 3 to 40 characters long"),
        ("a" * 41, "must be 3 to 40 characters long"),
        ("-acme", "must start and end with a letter or digit"),
        ("ac--me", "two hyphens in a row"),
        ("", "is required"),
    ],
)
async def test_bad_slugs_are_refused_and_nothing_is_written(
    session_conn: asyncpg.Connection, slug: str, message: str
) -> None:
    before = await session_conn.fetchrow(
        "SELECT (SELECT count(*) FROM public.tenants) AS tenants,"
        " (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 't\\_%') AS schemas"
    )
    with pytest.raises(SlugError, match=message):
        await provision_tenant(slug=slug, name="Acme")
    after = await session_conn.fetchrow(
        "SELECT (SELECT count(*) FROM public.tenants) AS tenants,"
        " (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 't\\_%') AS schemas"
    )
    assert after == before


async def test_a_duplicate_slug_is_refused_and_nothing_is_written(session_conn: asyncpg.Connection) -> None:
    existing = await provision_tenant(slug=unique_slug("dup"), name="First Co")
    before = await _last_tenant_id(session_conn)

    with pytest.raises(SlugError, match=f"'{existing.slug}' is already taken"):
        await provision_tenant(slug=existing.slug, name="Second Co")

    assert await _last_tenant_id(session_conn) == before  # refused before any insert
    names = await session_conn.fetch("SELECT name FROM public.tenants WHERE slug = $1", existing.slug)
    assert [r["name"] for r in names] == ["First Co"]


async def test_racing_signups_for_one_slug_create_one_tenant(session_conn: asyncpg.Connection) -> None:
    slug = unique_slug("race")
    before = await _last_tenant_id(session_conn)

    results = await asyncio.gather(
        *(provision_tenant(slug=slug, name=f"Racer {n}") for n in range(3)), return_exceptions=True
    )

    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert all(isinstance(e, SlugError) and "already taken" in str(e) for e in losers), losers
    attempted = range(before + 1, await _last_tenant_id(session_conn) + 1)
    schemas = await session_conn.fetch(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY($1::text[])",
        [tenant_schema(i) for i in attempted],
    )
    assert [r["nspname"] for r in schemas] == [tenant_schema(winners[0].id)]
    assert await session_conn.fetchval("SELECT count(*) FROM public.tenants WHERE slug = $1", slug) == 1
