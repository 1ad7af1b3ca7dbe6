"""Tampering with the audit log in SQL, as someone with database access would: verify fails
and names the row each time; the append-only trigger refuses plain UPDATE, DELETE, TRUNCATE."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from kith.platform.access.actor import Actor
from kith.platform.audit.log import append_entry
from kith.platform.audit.verify import VerifyReport, verify_tenant
from kith.platform.db import connect_raw, tenant_schema, tenant_scope
from tests.conftest import Services, Workspace, make_workspace

KITH = Path(sys.executable).parent / "kith"


async def chain_of(count: int) -> Workspace:
    ws = await make_workspace("tamper")
    actor = Actor(kind="user", tenant_id=ws.tenant_id, role="owner", identity_id=ws.identity_id, label=ws.email)
    for n in range(1, count + 1):
        async with tenant_scope(ws.tenant_id) as tx:
            await append_entry(tx, actor, action="contact.update", object_type="contact", object_id=n,
                               diff={"email": [f"old{n}@example.com", f"new{n}@example.com"]})
    return ws


@pytest.fixture
async def sql(db: Services) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection: what an attacker with SQL access has."""
    conn = await connect_raw()
    yield conn
    await conn.close()


async def tamper(conn: asyncpg.Connection, ws: Workspace, statement: str, *args: object) -> None:
    """Run `statement` in the tenant's schema with the append-only trigger disabled, as a superuser can."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL search_path TO {tenant_schema(ws.tenant_id)}")
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        await conn.execute(statement, *args)
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")


async def check(conn: asyncpg.Connection, ws: Workspace) -> VerifyReport:
    return await verify_tenant(conn, ws.tenant_id)


async def test_intact_chain_verifies(sql: asyncpg.Connection) -> None:
    ws = await chain_of(5)
    report = await check(sql, ws)
    assert report.ok and report.checked == 5 and (report.first_seq, report.last_seq) == (1, 5)


async def test_altered_diff_is_named(sql: asyncpg.Connection) -> None:
    ws = await chain_of(6)
    await tamper(sql, ws, """UPDATE audit_log SET diff = '{"email": ["old4@example.com", "x@evil.test"]}'
                             WHERE seq = 4""")
    report = await check(sql, ws)
    assert report.problem is not None and (report.problem.seq, report.problem.kind) == (4, "altered")
    assert "entry seq 4" in report.summary()
    assert "no longer matches the text it was hashed with" in report.summary()


async def test_altered_hashed_diff_text_is_named(sql: asyncpg.Connection) -> None:
    """Format 2 hashes diff_text: changing it (and the readable diff to match) breaks the MAC."""
    ws = await chain_of(6)
    forged = '{"email":["old3@example.com","x@evil.test"]}'
    await tamper(sql, ws, f"UPDATE audit_log SET diff_text = '{forged}', diff = '{forged}'::jsonb WHERE seq = 3")
    report = await check(sql, ws)
    assert report.problem is not None and (report.problem.seq, report.problem.kind) == (3, "altered")
    assert "does not match its hash" in report.summary()


async def test_entries_are_hash_format_2(sql: asyncpg.Connection) -> None:
    ws = await chain_of(3)
    formats = await sql.fetch(f"SELECT hash_format, diff_text IS NOT NULL AS has_text FROM "
                              f"{tenant_schema(ws.tenant_id)}.audit_log ORDER BY seq")
    assert [(r["hash_format"], r["has_text"]) for r in formats] == [(2, True)] * 3


async def test_deleted_row_is_named(sql: asyncpg.Connection) -> None:
    ws = await chain_of(6)
    await tamper(sql, ws, "DELETE FROM audit_log WHERE seq = 3")
    report = await check(sql, ws)
    assert report.problem is not None and (report.problem.seq, report.problem.kind) == (3, "removed")
    assert "entry seq 3 was removed" in report.summary()


async def test_deleted_and_renumbered_rows_are_named(sql: asyncpg.Connection) -> None:
    ws = await chain_of(6)
    await tamper(sql, ws, "DELETE FROM audit_log WHERE seq = 3")
    await tamper(sql, ws, "UPDATE audit_log SET seq = seq - 1 WHERE seq > 3")
    report = await check(sql, ws)
    assert report.problem is not None and report.problem.seq == 3


async def test_swapped_rows_are_named(sql: asyncpg.Connection) -> None:
    ws = await chain_of(6)
    await tamper(sql, ws, "UPDATE audit_log SET seq = seq + 1000 WHERE seq IN (2, 5)")
    await tamper(sql, ws, "UPDATE audit_log SET seq = CASE seq WHEN 1002 THEN 5 ELSE 2 END WHERE seq > 1000")
    report = await check(sql, ws)
    assert report.problem is not None and (report.problem.seq, report.problem.kind) == (2, "altered")


async def test_forged_row_without_the_key_is_named(sql: asyncpg.Connection) -> None:
    ws = await chain_of(4)
    last = await sql.fetchrow(f"SELECT * FROM {tenant_schema(ws.tenant_id)}.audit_log WHERE seq = 4")
    forged = hashlib.sha256(b"forged entry 5" + last["hash"].encode()).hexdigest()
    async with sql.transaction():
        await sql.execute(f"SET LOCAL search_path TO {tenant_schema(ws.tenant_id)}")
        # plain INSERT is allowed (append-only, not read-only): only the key makes it verify
        await sql.execute(
            "INSERT INTO audit_log (seq, at, actor_kind, actor_id, actor_label, object_type, object_id, action,"
            " diff, prev_hash, hash, key_id) VALUES (5, now(), 'user', $1, $2, 'contact', '1', 'contact.delete',"
            " NULL, $3, $4, $5)",
            str(ws.identity_id), ws.email, last["hash"], forged, last["key_id"],
        )
    report = await check(sql, ws)
    assert report.problem is not None and (report.problem.seq, report.problem.kind) == (5, "altered")


async def test_entry_copied_from_another_tenant_is_named(sql: asyncpg.Connection) -> None:
    source = await chain_of(3)
    target = await chain_of(2)
    async with sql.transaction():
        await sql.execute(
            f"INSERT INTO {tenant_schema(target.tenant_id)}.audit_log"
            f" SELECT * FROM {tenant_schema(source.tenant_id)}.audit_log WHERE seq = 3"
        )
    report = await check(sql, target)
    assert report.problem is not None and report.problem.seq == 3


async def test_forged_checkpoint_is_named(sql: asyncpg.Connection) -> None:
    ws = await chain_of(4)
    # hide entries 1-2 behind a checkpoint made without the key
    head = await sql.fetchval(f"SELECT hash FROM {tenant_schema(ws.tenant_id)}.audit_log WHERE seq = 2")
    await tamper(sql, ws, "DELETE FROM audit_log WHERE seq <= 2")
    await sql.execute(
        f"INSERT INTO {tenant_schema(ws.tenant_id)}.audit_checkpoint"
        " (archived_through_seq, last_hash, archived_rows, key_id, mac) VALUES (2, $1, 2, 'k1-x', 'f00')", head
    )
    report = await check(sql, ws)
    assert report.problem is not None and report.problem.kind == "checkpoint" and report.problem.seq == 2


async def test_trigger_refuses_update_delete_truncate(sql: asyncpg.Connection) -> None:
    ws = await chain_of(2)
    schema = tenant_schema(ws.tenant_id)
    for statement in (
        f"UPDATE {schema}.audit_log SET action = 'nothing' WHERE seq = 1",
        f"DELETE FROM {schema}.audit_log WHERE seq = 2",
        f"TRUNCATE {schema}.audit_log",
        f"UPDATE {schema}.audit_archive SET action = 'nothing'",
        f"TRUNCATE {schema}.audit_checkpoint",
        "UPDATE public.platform_audit SET action = 'nothing'",
        "DELETE FROM public.platform_audit",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await sql.execute(statement)
    # the archiving flag works only with DELETE's own privilege, never for UPDATE
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with sql.transaction():
            await sql.execute("SET LOCAL kith.audit_archiving = 'on'")
            await sql.execute(f"UPDATE {schema}.audit_log SET action = 'nothing' WHERE seq = 1")
    report = await check(sql, ws)
    assert report.ok and report.checked == 2


async def test_cli_verify_exit_codes(sql: asyncpg.Connection) -> None:
    ws = await chain_of(3)

    async def kith(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(subprocess.run, [str(KITH), *args], env=dict(os.environ),
                                       capture_output=True, text=True, timeout=120)

    good = await kith("audit", "verify", "--tenant", ws.slug)
    assert good.returncode == 0, good.stderr
    assert "intact: 3 entries" in good.stdout
    await tamper(sql, ws, "UPDATE audit_log SET actor_label = 'someone-else@example.com' WHERE seq = 2")
    bad = await kith("audit", "verify", "--tenant", ws.slug)
    assert bad.returncode == 1
    assert "entry seq 2" in bad.stderr and "BROKEN" in bad.stderr
    platform = await kith("audit", "verify", "--platform")
    assert platform.returncode == 0, platform.stderr
    unknown = await kith("audit", "verify", "--tenant", "no-such-workspace")
    assert unknown.returncode == 2 and "no workspace" in unknown.stderr
