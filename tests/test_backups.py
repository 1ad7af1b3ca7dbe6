"""Per-tenant backups: snapshot, encrypted archive, verified restore, switch-over, bad archives, CLI."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kith.platform import crypto
from kith.platform.audit.verify import verify_tenant
from kith.platform.backups import (
    BackupCorrupted,
    BackupNotFound,
    LocalStorage,
    backup_tenant,
    restore_tenant,
    verify_latest,
)
from kith.platform.backups.archive import KIND_DATA, KIND_END, ArchiveReader, ArchiveWriter
from kith.platform.db import connect_raw, tenant_schema, tenant_scope

from .conftest import Services, Workspace, make_workspace
from .factories import owner_token
from .web_helpers import client


async def _seed(ws: Workspace) -> None:
    """Contacts (Chinese names included), companies, deals, activities: through the API, so audited."""
    headers = await owner_token(ws)
    async with client(headers=headers) as c:
        company = await c.post(f"/t/{ws.slug}/api/v1/companies", json={"name": "上海云图科技有限公司",
                                                                        "domain": "yuntu.example.cn"})
        assert company.status_code == 201, company.text
        company_id = company.json()["id"]
        for name, email in (("王小明", "wang@example.cn"), ("李娜", "li.na@example.cn"), ("Ada Lovelace", None)):
            body: dict[str, Any] = {"name": name, "company_id": company_id}
            if email:
                body["email"] = email
            made = await c.post(f"/t/{ws.slug}/api/v1/contacts", json=body)
            assert made.status_code == 201, made.text
        deal = await c.post(f"/t/{ws.slug}/api/v1/deals", json={"name": "年度采购合同", "amount": "128000.50",
                                                                 "company_id": company_id})
        assert deal.status_code == 201, deal.text
        call = await c.post(f"/t/{ws.slug}/api/v1/activities", json={
            "kind": "call", "subject": "电话沟通报价", "duration_minutes": 15, "company_id": company_id})
        assert call.status_code == 201, call.text


async def _digests(schema: str) -> dict[str, tuple[int, str]]:
    """Every table of a schema: row count and an order-independent digest of its rows as text."""
    conn = await connect_raw()
    try:
        tables = [r["relname"] for r in await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY 1", schema)]
        out: dict[str, tuple[int, str]] = {}
        for table in tables:
            row = await conn.fetchrow(
                f'SELECT count(*) AS n, md5(coalesce(string_agg(t::text, chr(10) ORDER BY t::text), \'\')) AS d'
                f' FROM {schema}."{table}" t')
            out[table] = (int(row["n"]), str(row["d"]))
        return out
    finally:
        await conn.close()


async def _schemas_like(prefix: str) -> list[str]:
    conn = await connect_raw()
    try:
        return [r["nspname"] for r in await conn.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1 ORDER BY 1", prefix + "%")]
    finally:
        await conn.close()


async def _drop(schema: str) -> None:
    conn = await connect_raw()
    try:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()


async def test_backup_restore_round_trip(workspace: Workspace, other_workspace: Workspace, tmp_path: Path) -> None:
    await _seed(workspace)
    await _seed(other_workspace)
    store = LocalStorage(tmp_path)
    live = tenant_schema(workspace.tenant_id)
    before = await _digests(live)
    other_before = await _digests(tenant_schema(other_workspace.tenant_id))
    assert before["contacts"][0] == 3 and before["audit_log"][0] >= 6 and before["deals"][0] == 1

    lines: list[str] = []
    made = await backup_tenant(workspace.tenant_id, progress=lines.append, storage=store)
    assert made.manifest["tables"]["contacts"]["rows"] == 3
    assert made.manifest["schema_version"] > 0 and made.manifest["slug"] == workspace.slug
    assert any(line.strip().startswith("contacts: 3 rows") for line in lines), lines
    raw = (tmp_path / f"t_{workspace.tenant_id}" / f"{made.backup_id}.kbk").read_bytes()
    assert "王小明".encode() not in raw and b"Lovelace" not in raw  # encrypted (and compressed)
    assert [m["backup_id"] for m in store.manifests(workspace.tenant_id)] == [made.backup_id]

    restored = await restore_tenant(workspace.tenant_id, made.backup_id, storage=store)
    try:
        assert not restored.switched and restored.schema.startswith(f"{live}_r")
        assert await _digests(restored.schema) == before
        conn = await connect_raw()
        try:
            top = await conn.fetchval(f"SELECT max(id) FROM {restored.schema}.contacts")
            fresh = await conn.fetchval(
                f"INSERT INTO {restored.schema}.contacts (name) VALUES ('after restore') RETURNING id")
            assert fresh > top
            deal_top = await conn.fetchval(f"SELECT max(id) FROM {restored.schema}.deals")
            seq = await conn.fetchval(f"SELECT last_value FROM {restored.schema}.deals_id_seq")
            assert deal_top and seq >= deal_top
        finally:
            await conn.close()
        checked = await verify_latest(workspace.tenant_id, storage=store)
        assert checked.backup_id == made.backup_id and checked.rows["contacts"] == 3 and checked.schema == ""
        assert await _schemas_like(f"{live}_v") == []  # the scratch schema is gone
        assert await _digests(live) == before
        assert await _digests(tenant_schema(other_workspace.tenant_id)) == other_before
    finally:
        await _drop(restored.schema)


async def test_switch_over_keeps_the_old_schema(workspace: Workspace, other_workspace: Workspace,
                                                tmp_path: Path) -> None:
    await _seed(workspace)
    store = LocalStorage(tmp_path)
    other_before = await _digests(tenant_schema(other_workspace.tenant_id))
    made = await backup_tenant(workspace.tenant_id, storage=store)
    backed_up = await _digests(tenant_schema(workspace.tenant_id))
    headers = await owner_token(workspace)
    async with client(headers=headers) as c:
        later = await c.post(f"/t/{workspace.slug}/api/v1/contacts", json={"name": "备份之后的联系人"})
        assert later.status_code == 201, later.text

    result = await restore_tenant(workspace.tenant_id, made.backup_id, switch=True, storage=store)
    assert result.switched and result.old_schema and result.schema == tenant_schema(workspace.tenant_id)
    try:
        async with tenant_scope(workspace.tenant_id) as tx:
            names = {r["name"] for r in await tx.execute_query_dict("SELECT name FROM contacts")}
        assert names == {"王小明", "李娜", "Ada Lovelace"}
        conn = await connect_raw()
        try:
            kept = await conn.fetchval(f"SELECT count(*) FROM {result.old_schema}.contacts WHERE name = $1",
                                       "备份之后的联系人")
            assert kept == 1
            configs = await conn.fetch(
                "SELECT n.nspname, p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname IN ($1, $2) AND p.proname = 'deal_totals_add'",
                result.schema, result.old_schema)
            assert {r["nspname"]: r["proconfig"] for r in configs} == {
                result.schema: [f"search_path={result.schema}, pg_temp"],
                result.old_schema: [f"search_path={result.old_schema}, pg_temp"]}
        finally:
            await conn.close()
        # the restored workspace works: audited writes, deal totals triggers, fresh ids
        async with client(headers=headers) as c:
            deal = await c.post(f"/t/{workspace.slug}/api/v1/deals", json={"name": "恢复后的商机", "amount": "10"})
            assert deal.status_code == 201, deal.text
            listed = await c.get(f"/t/{workspace.slug}/api/v1/contacts")
            assert listed.status_code == 200 and len(listed.json()["items"]) == 3
        after = await _digests(tenant_schema(workspace.tenant_id))
        assert after["deals"][0] == backed_up["deals"][0] + 1
        assert after["audit_log"][0] > backed_up["audit_log"][0]
        conn = await connect_raw()
        try:
            chain = await verify_tenant(conn, workspace.tenant_id)  # the restored audit chain goes on intact
        finally:
            await conn.close()
        assert chain.ok, chain.summary()
        assert await _digests(tenant_schema(other_workspace.tenant_id)) == other_before
    finally:
        await _drop(result.old_schema or "")


@pytest.mark.parametrize("damage", ["flip", "truncate", "flip_header"])
async def test_damaged_archive_is_refused_and_nothing_switches(workspace: Workspace, tmp_path: Path,
                                                               damage: str) -> None:
    await _seed(workspace)
    store = LocalStorage(tmp_path)
    made = await backup_tenant(workspace.tenant_id, storage=store)
    live = tenant_schema(workspace.tenant_id)
    before = await _digests(live)
    path = store.path(workspace.tenant_id, made.backup_id)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    elif damage == "flip_header":
        data[20] ^= 0x01
    else:
        data = data[: len(data) * 2 // 3]
    path.write_bytes(bytes(data))
    with pytest.raises(BackupCorrupted) as refused:
        await restore_tenant(workspace.tenant_id, made.backup_id, switch=True, storage=store)
    if damage == "truncate":
        assert str(refused.value) == f"backup {made.backup_id} is truncated: the archive ends before its last frame"
    else:
        assert str(refused.value) == (f"backup {made.backup_id} is corrupted or was encrypted with a key not in "
                                      "KITH_ENCRYPTION_KEYS")
    assert await _schemas_like(f"{live}_") == []  # nothing restored, nothing switched
    assert await _digests(live) == before
    with pytest.raises(BackupCorrupted):
        await verify_latest(workspace.tenant_id, storage=store)
    with pytest.raises(BackupNotFound):
        await restore_tenant(workspace.tenant_id, "20200101T000000Z-abcdef", storage=store)


async def kith_backups(*args: str) -> subprocess.CompletedProcess[str]:
    """`kith backups ...` as a real process."""
    return await asyncio.to_thread(
        subprocess.run, [str(Path(sys.executable).with_name("kith")), "backups", *args],
        env=dict(os.environ), capture_output=True, text=True, timeout=120,
    )


def _bad_input(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


async def test_cli_create_list_verify_restore_and_bad_input(db: Services) -> None:
    ws = await make_workspace("bak")
    await _seed(ws)
    created = await kith_backups("create", "--tenant", ws.slug)
    assert created.returncode == 0, created.stderr
    assert "contacts: 3 rows" in created.stdout and "companies: 1 rows" in created.stdout
    backup_id = created.stdout.strip().splitlines()[-1].split()[2]
    listed = await kith_backups("list", "--tenant", ws.slug)
    assert listed.returncode == 0 and listed.stdout.startswith(backup_id), listed.stdout
    verified = await kith_backups("verify", "--tenant", ws.slug)
    assert verified.returncode == 0, verified.stderr
    assert "verified" in verified.stdout and f"backup {backup_id} of '{ws.slug}' is good" in verified.stdout
    restored = await kith_backups("restore", "--tenant", ws.slug, "--backup", backup_id)
    assert restored.returncode == 0, restored.stderr
    schema = restored.stdout.strip().splitlines()[-1].split()[5]
    assert schema.startswith(f"t_{ws.tenant_id}_r")
    await _drop(schema)

    _bad_input(await kith_backups("create", "--tenant", "no-such-workspace"), "no workspace with slug")
    _bad_input(await kith_backups("restore", "--tenant", ws.slug, "--backup", "20200101T000000Z-abcdef"),
               "no backup 20200101T000000Z-abcdef")
    _bad_input(await kith_backups("restore", "--tenant", ws.slug, "--backup", "../../etc/passwd"),
               "is not a backup id")
    path = LocalStorage().path(ws.tenant_id, backup_id)
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) - 7]))
    _bad_input(await kith_backups("restore", "--tenant", ws.slug, "--backup", backup_id, "--switch"), "truncated")
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    _bad_input(await kith_backups("verify", "--tenant", ws.slug),
               f"backup {backup_id} is corrupted or was encrypted with a key not in KITH_ENCRYPTION_KEYS")
    assert await _schemas_like(f"t_{ws.tenant_id}_") == []
    fresh = await make_workspace("bak-none")
    _bad_input(await kith_backups("verify", "--tenant", fresh.slug), "has no backups yet")


def _archive(ring: Any, payloads: list[bytes]) -> bytes:
    out = io.BytesIO()
    writer = ArchiveWriter(out, tenant_id=7, backup_id="20260101T000000Z-abcdef", created_at="now", ring=ring)
    for payload in payloads:
        writer.record(KIND_DATA, payload)
    writer.record(KIND_END, b'{"rows": 0, "sha256": ""}')
    writer.close()
    return out.getvalue()


def _frames(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each frame in an archive."""
    at = 8 + 4 + struct.unpack(">I", data[8:12])[0]
    spans = []
    while at < len(data):
        end = at + 4 + struct.unpack(">I", data[at:at + 4])[0]
        spans.append((at, end))
        at = end
    return spans


def test_archive_frames_truncation_and_keys() -> None:
    ring = crypto.parse_keys(f"k1:{base64.b64encode(os.urandom(32)).decode()}")
    payloads = [os.urandom(60_000) for _ in range(60)] + [b"\0" * 5_000_000]  # several frames, one huge inflate
    data = _archive(ring, payloads)
    spans = _frames(data)
    assert len(spans) >= 4
    reader = ArchiveReader(io.BytesIO(data), backup_id="20260101T000000Z-abcdef", ring=ring)
    assert b"".join(reader.table_data()) == b"".join(payloads)
    assert reader.at_end()

    def read(blob: bytes, keys: Any = ring) -> None:
        got = ArchiveReader(io.BytesIO(blob), backup_id="20260101T000000Z-abcdef", ring=keys)
        list(got.table_data())
        got.at_end()

    with pytest.raises(BackupCorrupted, match="truncated"):  # cut exactly between two frames
        read(data[: spans[-2][1]])
    (a, b), (c, d) = spans[0], spans[1]
    with pytest.raises(BackupCorrupted, match="is corrupted or was encrypted with a key not in"):  # frames swapped
        read(data[:a] + data[c:d] + data[a:b] + data[d:])
    with pytest.raises(BackupCorrupted, match="is corrupted or was encrypted with a key not in"):  # appended junk
        read(data + b"x")
    other = crypto.parse_keys(f"k2:{base64.b64encode(os.urandom(32)).decode()}")
    with pytest.raises(BackupCorrupted, match="KITH_ENCRYPTION_KEYS"):  # the key was removed from the keyring
        read(data, other)
