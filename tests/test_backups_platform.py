"""The platform's own backup (the public schema): snapshot, verify in a scratch schema, restore
into a kept schema, a consistent snapshot while a migration runs, damaged and misplaced archives,
and the `kith backups platform` commands."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from kith.platform.backups import BackupCorrupted, BackupError, BackupNotFound, LocalStorage, backup_tenant
from kith.platform.backups.platform_schema import (
    backup_platform,
    platform_backups,
    restore_platform,
    verify_platform,
)
from kith.platform.db import connect_raw

from .conftest import Services, Workspace, make_workspace
from .test_backups import _digests, _drop, _schemas_like, _seed


async def _public_counts() -> dict[str, int]:
    conn = await connect_raw()
    try:
        tables = [r["relname"] for r in await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1")]
        return {t: int(await conn.fetchval(f'SELECT count(*) FROM public."{t}"')) for t in tables}
    finally:
        await conn.close()


async def test_platform_backup_verify_and_restore(workspace: Workspace, tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    counts = await _public_counts()
    conn = await connect_raw()
    try:
        version = await conn.fetchval("SELECT max(version) FROM public.schema_migrations")
    finally:
        await conn.close()

    lines: list[str] = []
    made = await backup_platform(progress=lines.append, storage=store)
    manifest = made.manifest
    assert manifest["kind"] == "platform" and manifest["public_version"] == version
    assert {t: e["rows"] for t, e in manifest["tables"].items()} == counts
    assert counts["tenants"] >= 1 and counts["identities"] >= 1 and len(manifest["tables"]["tenants"]["sha256"]) == 64
    assert any(line.strip().startswith(f"tenants: {counts['tenants']:,} rows") for line in lines), lines
    assert made.location == str(tmp_path)
    archive = tmp_path / "platform" / f"{made.backup_id}.kbk"
    raw = archive.read_bytes()
    assert workspace.email.encode() not in raw and workspace.slug.encode() not in raw  # encrypted
    assert json.loads((tmp_path / "platform" / f"{made.backup_id}.json").read_text())["backup_id"] == made.backup_id
    assert [m["backup_id"] for m in await platform_backups(store)] == [made.backup_id]
    assert store.manifests(workspace.tenant_id) == []  # the platform's backups are not a workspace's

    checked = await verify_platform(progress=lines.append, storage=store)
    assert checked.backup_id == made.backup_id and checked.schema == "" and checked.rows == counts
    assert any(line.startswith(f"verified {len(counts)} tables") for line in lines), lines
    assert await _schemas_like("kith_platform_") == []  # the scratch schema was dropped

    restored = await restore_platform(made.backup_id, storage=store)
    try:
        assert restored.schema.startswith("kith_platform_r")
        copy = await _digests(restored.schema)
        live = await _digests("public")
        assert copy == live  # same rows, same values, table by table
    finally:
        await _drop(restored.schema)


async def test_snapshot_waits_for_a_migration_and_sees_it_whole(db: Services, tmp_path: Path) -> None:
    """A migration in flight (a column added to one table, another table dropped) holds its
    locks; the backup waits for it, then backs up the tables as the migration left them."""
    store = LocalStorage(tmp_path)
    setup = await connect_raw()
    migration = await connect_raw()
    try:
        await setup.execute("CREATE TABLE public.kith_probe_kept (id int PRIMARY KEY);"
                            " INSERT INTO public.kith_probe_kept SELECT generate_series(1, 50);"
                            " CREATE TABLE public.kith_probe_dropped (id int)")
        tx = migration.transaction()
        await tx.start()
        await migration.execute("ALTER TABLE public.kith_probe_kept ADD COLUMN note text NOT NULL DEFAULT '迁移';"
                                " DROP TABLE public.kith_probe_dropped")
        backup = asyncio.create_task(backup_platform(storage=store))
        for _ in range(600):  # until the backup waits on the migration's locks (bounded: 60 s)
            waiting = await setup.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE%'")
            if waiting or backup.done():
                break
            await asyncio.sleep(0.1)
        assert waiting == 1 and not backup.done()
        await tx.commit()
        made = await backup
        columns = made.manifest["tables"]
        assert "kith_probe_dropped" not in columns and columns["kith_probe_kept"]["rows"] == 50
        checked = await verify_platform(made.backup_id, storage=store)
        assert checked.rows["kith_probe_kept"] == 50
        restored = await restore_platform(made.backup_id, storage=store)
        try:
            notes = await setup.fetch(f"SELECT DISTINCT note FROM {restored.schema}.kith_probe_kept")
            assert [r["note"] for r in notes] == ["迁移"]
        finally:
            await _drop(restored.schema)
    finally:
        await setup.execute("DROP TABLE IF EXISTS public.kith_probe_kept;"
                            " DROP TABLE IF EXISTS public.kith_probe_dropped")
        await migration.close()
        await setup.close()


@pytest.mark.parametrize("damage", ["flip", "truncate", "flip_header"])
async def test_damaged_platform_archive_is_refused(db: Services, tmp_path: Path, damage: str) -> None:
    store = LocalStorage(tmp_path)
    made = await backup_platform(storage=store)
    path = tmp_path / "platform" / f"{made.backup_id}.kbk"
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    elif damage == "flip_header":
        data[20] ^= 0x01
    else:
        data = data[: len(data) - 9]
    path.write_bytes(bytes(data))
    for attempt in (lambda: verify_platform(storage=store), lambda: restore_platform(made.backup_id, storage=store)):
        with pytest.raises(BackupCorrupted) as refused:
            await attempt()
        if damage == "truncate":
            assert str(refused.value) == (f"backup {made.backup_id} is truncated: the archive ends before its last "
                                          "frame")
        else:
            assert str(refused.value) == (f"backup {made.backup_id} is corrupted or was encrypted with a key not in "
                                          "KITH_ENCRYPTION_KEYS")
    assert await _schemas_like("kith_platform_") == []  # nothing half-restored


async def test_a_workspace_archive_is_not_a_platform_backup(workspace: Workspace, tmp_path: Path) -> None:
    """Archives are bound to their owner: a workspace's backup put in the platform's folder is
    refused, and so is one whose header was edited to claim to be the platform's."""
    await _seed(workspace)
    store = LocalStorage(tmp_path)
    made = await backup_tenant(workspace.tenant_id, storage=store)
    (tmp_path / "platform").mkdir()
    source = store.path(workspace.tenant_id, made.backup_id)
    shutil.copy(source, tmp_path / "platform" / source.name)
    shutil.copy(source.with_suffix(".json"), tmp_path / "platform" / f"{made.backup_id}.json")
    with pytest.raises(BackupError, match=f"backup {made.backup_id} is a workspace's backup, not the platform's"):
        await verify_platform(storage=store)

    data = source.read_bytes()
    length = struct.unpack(">I", data[8:12])[0]
    header = json.loads(data[12:12 + length])
    header["tenant_id"] = "platform"
    forged = json.dumps(header, sort_keys=True).encode()
    (tmp_path / "platform" / source.name).write_bytes(data[:8] + struct.pack(">I", len(forged)) + forged
                                                      + data[12 + length:])
    with pytest.raises(BackupCorrupted, match="is corrupted or was encrypted with a key not in"):
        await verify_platform(made.backup_id, storage=store)
    assert await _schemas_like("kith_platform_") == []

    with pytest.raises(BackupNotFound, match="no platform backup 20200101T000000Z-abcdef"):
        await verify_platform("20200101T000000Z-abcdef", storage=store)
    with pytest.raises(BackupNotFound, match="the platform has no backups yet"):
        await verify_platform(storage=LocalStorage(tmp_path / "empty"))


async def _kith(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [str(Path(sys.executable).with_name("kith")), "backups", "platform", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )


def _bad_input(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.strip() == f"kith: error: {message}", result.stderr


async def test_cli_platform_create_list_verify_restore(db: Services, tmp_path: Path) -> None:
    await make_workspace("bak-platform")
    env = {"KITH_DATA_DIR": str(tmp_path)}  # its own backup folder
    _bad_input(await _kith(env, "verify"), "the platform has no backups yet; make one with "
                                           "`kith backups platform create`")
    listed = await _kith(env, "list")
    assert listed.returncode == 0 and listed.stdout.strip() == "no platform backups yet", listed.stdout
    created = await _kith(env, "create")
    assert created.returncode == 0, created.stderr
    assert "backing up the platform (schema public, migration version" in created.stdout
    assert "  tenants: " in created.stdout and "  identities: " in created.stdout
    backup_id = created.stdout.strip().splitlines()[-1].split()[3]
    assert (tmp_path / "backups" / "platform" / f"{backup_id}.kbk").exists()
    listed = await _kith(env, "list")
    assert listed.returncode == 0 and listed.stdout.startswith(f"{backup_id}  "), listed.stdout
    verified = await _kith(env, "verify")
    assert verified.returncode == 0, verified.stderr
    assert f"platform backup {backup_id} verified; scratch schema kith_platform_v" in verified.stdout
    assert f"platform backup {backup_id} is good" in verified.stdout
    restored = await _kith(env, "restore", "--backup", backup_id)
    assert restored.returncode == 0, restored.stderr
    schema = restored.stdout.strip().splitlines()[-1].split()[6]
    assert schema.startswith("kith_platform_r")
    await _drop(schema)

    _bad_input(await _kith(env, "verify", "--backup", "../../etc/passwd"),
               "'../../etc/passwd' is not a backup id (they look like 20260101T020000Z-1a2b3c); see "
               "`kith backups list`")
    _bad_input(await _kith(env, "restore", "--backup", "20200101T000000Z-abcdef"),
               "no platform backup 20200101T000000Z-abcdef; see `kith backups platform list`")
    path = tmp_path / "backups" / "platform" / f"{backup_id}.kbk"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    _bad_input(await _kith(env, "verify"),
               f"backup {backup_id} is corrupted or was encrypted with a key not in KITH_ENCRYPTION_KEYS")
    assert await _schemas_like("kith_platform_") == []
    for args in ([], ["create"], ["list"], ["verify"], ["restore"]):
        helped = await _kith(env, *args, "--help")
        assert helped.returncode == 0 and "usage:" in helped.stdout
