"""Backups kept in S3: the real boto3 against moto in server mode (a real process on loopback).

Backup, list, verify, restore with switch-over and delete through S3Storage; a 40 MB archive goes
up in parts with memory well under its size; a missing bucket, a dead endpoint and refused
credentials give one clear line naming the bucket; a corrupted or truncated object is refused and
nothing is switched; the CLI uses the bucket when KITH_BACKUP_S3_BUCKET is set.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from kith.platform.backups import (
    BackupCorrupted,
    BackupNotFound,
    BackupStorageError,
    LocalStorage,
    backup_storage,
    backup_tenant,
    restore_tenant,
    verify_latest,
)
from kith.platform.backups.s3 import PART_BYTES, S3Storage
from kith.platform.config import reset_settings, restored_environment
from kith.platform.db import tenant_schema

from .conftest import Services, Workspace, make_workspace
from .live_server import free_port, running
from .test_backups import _digests, _drop, _schemas_like, _seed

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "kith-test", "AWS_SECRET_ACCESS_KEY": "kith-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


@contextmanager
def moto_server(extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """`moto_server` on 127.0.0.1 and a free port; yields its endpoint URL."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)]
    with running(cmd, extra_env, f"moto-{port}") as proc:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode}; see test-artifacts/moto-{port}.log")
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("moto_server did not answer in 30 s")
            time.sleep(0.2)
        yield endpoint


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with restored_environment(*CREDENTIALS, "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE"):
        os.environ.update(CREDENTIALS)
        os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
        os.environ.pop("AWS_PROFILE", None)
        with moto_server() as endpoint:
            yield endpoint


def _client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"kith-backups-{secrets.token_hex(4)}"
    _client(s3_endpoint).create_bucket(Bucket=name)
    return name


def _keys(endpoint: str, bucket: str) -> dict[str, int]:
    listed = _client(endpoint).list_objects_v2(Bucket=bucket)
    return {str(o["Key"]): int(o["Size"]) for o in listed.get("Contents", [])}


async def test_backup_verify_restore_and_delete_through_s3(workspace: Workspace, other_workspace: Workspace,
                                                           s3_endpoint: str, bucket: str) -> None:
    await _seed(workspace)
    await _seed(other_workspace)
    store = S3Storage(bucket, prefix="/kith/test/", endpoint_url=s3_endpoint, region="us-east-1")
    assert store.describe() == f"s3://{bucket}/kith/test/"
    live = tenant_schema(workspace.tenant_id)
    before = await _digests(live)
    other_before = await _digests(tenant_schema(other_workspace.tenant_id))

    lines: list[str] = []
    made = await backup_tenant(workspace.tenant_id, progress=lines.append, storage=store)
    assert made.location == f"s3://{bucket}/kith/test/"
    assert any(line.strip().startswith("contacts: 3 rows") for line in lines), lines
    folder = f"kith/test/t_{workspace.tenant_id}/{made.backup_id}"
    keys = _keys(s3_endpoint, bucket)
    assert set(keys) == {f"{folder}.kbk", f"{folder}.json"}
    assert keys[f"{folder}.kbk"] == made.size_bytes
    raw = _client(s3_endpoint).get_object(Bucket=bucket, Key=f"{folder}.kbk")["Body"].read()
    assert "王小明".encode() not in raw and b"Lovelace" not in raw  # encrypted before it left the machine
    listed = store.manifests(workspace.tenant_id)
    assert [m["backup_id"] for m in listed] == [made.backup_id] and listed[0]["size_bytes"] == made.size_bytes
    assert store.manifests(other_workspace.tenant_id) == []

    with pytest.raises(BackupNotFound, match="no backup 20200101T000000Z-abcdef for this workspace"):
        await restore_tenant(workspace.tenant_id, "20200101T000000Z-abcdef", storage=store)
    checked = await verify_latest(workspace.tenant_id, storage=store)
    assert checked.backup_id == made.backup_id and checked.rows["contacts"] == 3
    assert await _schemas_like(f"{live}_") == []

    result = await restore_tenant(workspace.tenant_id, made.backup_id, switch=True, storage=store)
    try:
        assert result.switched and await _digests(live) == before
        assert await _digests(tenant_schema(other_workspace.tenant_id)) == other_before
    finally:
        await _drop(result.old_schema or "")

    second = await backup_tenant(workspace.tenant_id, storage=store)
    assert [m["backup_id"] for m in store.manifests(workspace.tenant_id)] == [second.backup_id, made.backup_id]
    store.delete(workspace.tenant_id, made.backup_id)
    store.delete(workspace.tenant_id, made.backup_id)  # already gone: not an error
    assert [m["backup_id"] for m in store.manifests(workspace.tenant_id)] == [second.backup_id]
    assert not any(key.startswith(folder) for key in _keys(s3_endpoint, bucket))


def test_big_archive_goes_up_in_parts_with_flat_memory(s3_endpoint: str, bucket: str) -> None:
    store = S3Storage(bucket, endpoint_url=s3_endpoint, region="us-east-1")
    backup_id = "20260101T020000Z-a1b2c3"
    size = 5 * PART_BYTES  # 40 MB
    written = hashlib.sha256()
    tracemalloc.start()
    try:
        with store.writer(7, backup_id) as out:
            for _ in range(size // (1 << 20)):
                chunk = os.urandom(1 << 20)
                written.update(chunk)
                out.write(chunk)
        _, peak_up = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        read = hashlib.sha256()
        with store.reader(7, backup_id) as src:
            while chunk := src.read(1 << 20):
                read.update(chunk)
        _, peak_down = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert read.hexdigest() == written.hexdigest()
    head = _client(s3_endpoint).head_object(Bucket=bucket, Key=f"t_7/{backup_id}.kbk")
    assert head["ContentLength"] == size and head["ETag"].strip('"').endswith("-5")  # a 5-part upload
    # never a whole archive, not even a whole part, in memory: it goes through a temporary file
    assert peak_up < PART_BYTES and peak_down < 2 * PART_BYTES, (peak_up, peak_down)
    assert store.manifests(7) == []  # an archive without its manifest is not a listed backup


async def test_missing_bucket_dead_endpoint_and_refused_credentials(workspace: Workspace, s3_endpoint: str,
                                                                    bucket: str) -> None:
    live = tenant_schema(workspace.tenant_id)
    missing = S3Storage("kith-no-such-bucket", endpoint_url=s3_endpoint, region="us-east-1")
    with pytest.raises(BackupStorageError) as refused:
        await backup_tenant(workspace.tenant_id, storage=missing)
    assert str(refused.value) == ("S3 bucket 'kith-no-such-bucket' does not exist (KITH_BACKUP_S3_BUCKET); "
                                  "create it or fix the name")
    for attempt in (lambda: verify_latest(workspace.tenant_id, storage=missing),
                    lambda: restore_tenant(workspace.tenant_id, "20260101T020000Z-a1b2c3", storage=missing)):
        with pytest.raises(BackupStorageError, match="S3 bucket 'kith-no-such-bucket' does not exist"):
            await attempt()
    assert await _schemas_like(f"{live}_") == []

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    down = S3Storage(bucket, endpoint_url=dead, region="us-east-1")
    with pytest.raises(BackupStorageError) as unreachable:
        await backup_tenant(workspace.tenant_id, storage=down)
    assert str(unreachable.value).startswith(f"cannot reach {dead} for S3 bucket '{bucket}' while uploading backup")
    with pytest.raises(BackupStorageError, match=f"cannot reach {dead} for S3 bucket '{bucket}' while listing"):
        down.manifests(workspace.tenant_id)

    with moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as strict:  # moto checking credentials
        guarded = S3Storage(bucket, endpoint_url=strict, region="us-east-1")
        with pytest.raises(BackupStorageError) as denied:
            await backup_tenant(workspace.tenant_id, storage=guarded)
    assert str(denied.value).startswith(f"access to S3 bucket '{bucket}' was denied while uploading backup")
    assert "(InvalidAccessKeyId): check the AWS credentials" in str(denied.value)
    assert await _schemas_like(f"{live}_") == []
    assert _keys(s3_endpoint, bucket) == {}  # no failed attempt left anything in the real bucket


@pytest.mark.parametrize("damage", ["flip", "truncate"])
async def test_corrupted_object_is_refused_and_nothing_switches(workspace: Workspace, s3_endpoint: str,
                                                                bucket: str, damage: str) -> None:
    await _seed(workspace)
    store = S3Storage(bucket, endpoint_url=s3_endpoint, region="us-east-1")
    made = await backup_tenant(workspace.tenant_id, storage=store)
    live = tenant_schema(workspace.tenant_id)
    before = await _digests(live)
    key = f"t_{workspace.tenant_id}/{made.backup_id}.kbk"
    client = _client(s3_endpoint)
    data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    else:
        data = data[: len(data) - 100]
    client.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    with pytest.raises(BackupCorrupted) as refused:
        await restore_tenant(workspace.tenant_id, made.backup_id, switch=True, storage=store)
    if damage == "flip":
        assert str(refused.value) == (f"backup {made.backup_id} is corrupted or was encrypted with a key not in "
                                      "KITH_ENCRYPTION_KEYS")
    else:
        assert str(refused.value) == f"backup {made.backup_id} is truncated: the archive ends before its last frame"
    assert await _schemas_like(f"{live}_") == []  # nothing restored, nothing switched
    assert await _digests(live) == before
    with pytest.raises(BackupCorrupted):
        await verify_latest(workspace.tenant_id, storage=store)


def test_backup_storage_follows_the_settings(s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    names = ("KITH_BACKUP_S3_BUCKET", "KITH_BACKUP_S3_PREFIX", "KITH_S3_ENDPOINT_URL", "KITH_S3_REGION")
    with restored_environment(*names):
        for name in names:
            os.environ.pop(name, None)
        reset_settings()
        assert isinstance(backup_storage(), LocalStorage)
        os.environ.update({"KITH_BACKUP_S3_BUCKET": f" {bucket} ", "KITH_BACKUP_S3_PREFIX": "kith/prod",
                           "KITH_S3_ENDPOINT_URL": s3_endpoint + "/", "KITH_S3_REGION": "us-east-1"})
        reset_settings()
        store = backup_storage()
        assert isinstance(store, S3Storage) and store.describe() == f"s3://{bucket}/kith/prod/"
        assert store.manifests(1) == []  # it really talks to the bucket


async def _kith(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [str(Path(sys.executable).with_name("kith")), "backups", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )


async def test_cli_keeps_backups_in_the_bucket(db: Services, s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    ws = await make_workspace("bak-s3")
    await _seed(ws)
    env = {"KITH_BACKUP_S3_BUCKET": bucket, "KITH_BACKUP_S3_PREFIX": "cli", "KITH_S3_ENDPOINT_URL": s3_endpoint,
           "KITH_S3_REGION": "us-east-1", "KITH_DATA_DIR": str(tmp_path)}
    created = await _kith(env, "create", "--tenant", ws.slug)
    assert created.returncode == 0, created.stderr
    backup_id = created.stdout.strip().splitlines()[-1].split()[2]
    assert f"in s3://{bucket}/cli/" in created.stdout
    listed = await _kith(env, "list", "--tenant", ws.slug)
    assert listed.returncode == 0 and listed.stdout.startswith(backup_id), listed.stdout
    verified = await _kith(env, "verify", "--tenant", ws.slug)
    assert verified.returncode == 0 and f"backup {backup_id} of '{ws.slug}' is good" in verified.stdout
    platform = await _kith(env, "platform", "create")
    assert platform.returncode == 0, platform.stderr
    platform_id = platform.stdout.strip().splitlines()[-1].split()[3]
    checked = await _kith(env, "platform", "verify")
    assert checked.returncode == 0 and f"platform backup {platform_id} is good" in checked.stdout, checked.stderr
    assert set(_keys(s3_endpoint, bucket)) == {
        f"cli/t_{ws.tenant_id}/{backup_id}.kbk", f"cli/t_{ws.tenant_id}/{backup_id}.json",
        f"cli/platform/{platform_id}.kbk", f"cli/platform/{platform_id}.json"}
    assert not (tmp_path / "backups").exists()  # nothing went to the local folder

    wrong = await _kith({**env, "KITH_BACKUP_S3_BUCKET": "kith-no-such-bucket"}, "create", "--tenant", ws.slug)
    assert wrong.returncode == 2, (wrong.stdout, wrong.stderr)
    assert wrong.stderr.strip() == ("kith: error: S3 bucket 'kith-no-such-bucket' does not exist "
                                    "(KITH_BACKUP_S3_BUCKET); create it or fix the name")
