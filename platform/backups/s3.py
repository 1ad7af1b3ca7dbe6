"""Backups kept in an S3 bucket (or any S3-compatible store), through boto3.

Same layout as the local folder, under KITH_BACKUP_S3_PREFIX: <prefix>t_<id>/<backup id>.kbk and
<backup id>.json (and <prefix>platform/... for the public schema). The manifest is put only after
the archive was uploaded whole, so a listed backup is always complete; a backup whose upload
failed leaves nothing (boto3 aborts a failed multipart upload).

Memory stays flat whatever the archive's size: the archive is written to a temporary file on
local disk (TMPDIR: it needs room for one archive), then uploaded from there in 8 MB parts, two at
a time (upload_file with a TransferConfig); reading downloads it to a temporary file the same way,
then reads that. Credentials come from boto3's
usual chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role...); Kith
never stores them.

The methods block (boto3 is synchronous), like LocalStorage's: async callers go through
`storage.threaded()` / `asyncio.to_thread`. Every boto3 failure becomes BackupStorageError with
one line that names the bucket and what went wrong.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from typing import Any, BinaryIO, NoReturn

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from kith.platform.backups.storage import (
    BACKUP_ID,
    BackupNotFound,
    BackupStorageError,
    Owner,
    area,
    check_backup_id,
    not_found_message,
)

PART_BYTES = 8 * 1024 * 1024  # S3 parts are 5 MB at least; 10,000 parts at most (80 GB)
# A download's parts arrive in 256 KB pieces queued for the thread writing the file: s3transfer
# queues up to 100 of them (25 MB) when the disk or the CPU lags; 16 keeps a download's memory
# under 4 MB of queue plus what the two threads are reading, whatever the archive's size.
TRANSFER = TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=2,
                          max_io_queue=16, use_threads=True)
_MISSING_OBJECT = {"404", "NoSuchKey", "NotFound"}
_MISSING_BUCKET = {"NoSuchBucket"}
_DENIED = {"403", "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch",
           "ExpiredToken", "InvalidToken"}


class S3Storage:
    """Archives in `bucket` under `prefix` (a folder such as 'kith/prod/', or '')."""

    def __init__(self, bucket: str, *, prefix: str = "", endpoint_url: str | None = None,
                 region: str | None = None) -> None:
        if not bucket.strip():
            raise BackupStorageError("no S3 bucket given for backups (KITH_BACKUP_S3_BUCKET)")
        self.bucket = bucket.strip()
        prefix = prefix.strip().strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.endpoint_url = endpoint_url
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region,
            # a dead endpoint fails in seconds, not after minutes of retries
            config=Config(connect_timeout=10, read_timeout=120, retries={"max_attempts": 3, "mode": "standard"}),
        )

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, tenant_id: Owner, backup_id: str, suffix: str) -> str:
        return f"{self.prefix}{area(tenant_id)}/{check_backup_id(backup_id)}{suffix}"

    def _fail(self, exc: Exception, doing: str) -> NoReturn:
        """Turn a boto3 error into one line for a person: which bucket, what went wrong."""
        where = f"S3 bucket '{self.bucket}'"
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in _MISSING_BUCKET:
                raise BackupStorageError(f"{where} does not exist (KITH_BACKUP_S3_BUCKET); create it or fix the "
                                         "name") from None
            if code in _DENIED:
                raise BackupStorageError(f"access to {where} was denied while {doing} ({code}): check the AWS "
                                         "credentials and the bucket's policy") from None
            message = str(error.get("Message", "")) or code
            raise BackupStorageError(f"{where} refused {doing}: {message}") from None
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            raise BackupStorageError(f"no AWS credentials for {where}: set AWS_ACCESS_KEY_ID and "
                                     "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)") from None
        if isinstance(exc, EndpointConnectionError):
            endpoint = self.endpoint_url or "the AWS S3 endpoint"
            raise BackupStorageError(f"cannot reach {endpoint} for {where} while {doing}: is it up "
                                     "(KITH_S3_ENDPOINT_URL)?") from None
        raise BackupStorageError(f"{where}: {doing} failed: {exc}") from None

    @contextlib.contextmanager
    def writer(self, tenant_id: Owner, backup_id: str) -> Iterator[BinaryIO]:
        key = self.key(tenant_id, backup_id, ".kbk")
        with tempfile.NamedTemporaryFile(prefix="kith-backup-", suffix=".kbk") as spool:
            yield spool  # type: ignore[misc]  # a binary temporary file
            spool.flush()
            try:
                # from its path, boto3 reads each part as it sends it; from a file object it would
                # read parts into memory ahead of sending them
                self.client.upload_file(spool.name, self.bucket, key, Config=TRANSFER,
                                        ExtraArgs={"ContentType": "application/octet-stream"})
            except S3UploadFailedError as exc:  # upload_file re-raises the client's error as this
                cause = exc.__cause__ or exc.__context__
                self._fail(cause if isinstance(cause, (ClientError, BotoCoreError)) else exc,
                           f"uploading backup {backup_id}")
            except (ClientError, BotoCoreError) as exc:
                self._fail(exc, f"uploading backup {backup_id}")

    @contextlib.contextmanager
    def reader(self, tenant_id: Owner, backup_id: str) -> Iterator[BinaryIO]:
        key = self.key(tenant_id, backup_id, ".kbk")
        with tempfile.TemporaryFile(prefix="kith-backup-", suffix=".kbk") as spool:
            try:
                self.client.download_fileobj(self.bucket, key, spool, Config=TRANSFER)
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code", "")) in _MISSING_OBJECT:
                    self._check_bucket(f"downloading backup {backup_id}")
                    raise BackupNotFound(not_found_message(tenant_id, backup_id)) from None
                self._fail(exc, f"downloading backup {backup_id}")
            except BotoCoreError as exc:
                self._fail(exc, f"downloading backup {backup_id}")
            spool.seek(0)
            yield spool  # type: ignore[misc]

    def _check_bucket(self, doing: str) -> None:
        """A HEAD of a missing object answers 404 whether the bucket exists or not: ask the bucket."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in _MISSING_OBJECT:
                raise BackupStorageError(f"S3 bucket '{self.bucket}' does not exist (KITH_BACKUP_S3_BUCKET); "
                                         "create it or fix the name") from None
            self._fail(exc, doing)
        except BotoCoreError as exc:
            self._fail(exc, doing)

    def save_manifest(self, tenant_id: Owner, backup_id: str, manifest: dict[str, Any]) -> None:
        body = json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True).encode()
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key(tenant_id, backup_id, ".json"), Body=body,
                                   ContentType="application/json")
        except (ClientError, BotoCoreError) as exc:
            self._fail(exc, f"saving the manifest of backup {backup_id}")

    def manifests(self, tenant_id: Owner) -> list[dict[str, Any]]:
        folder = f"{self.prefix}{area(tenant_id)}/"
        archives: dict[str, int] = {}
        manifests: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder):
                for item in page.get("Contents", []):
                    name = str(item["Key"])[len(folder):]
                    stem, _, suffix = name.rpartition(".")
                    if not BACKUP_ID.match(stem):
                        continue
                    if suffix == "kbk":
                        archives[stem] = int(item["Size"])
                    elif suffix == "json":
                        manifests.append(stem)
        except (ClientError, BotoCoreError) as exc:
            self._fail(exc, "listing backups")
        found: list[dict[str, Any]] = []
        for stem in manifests:
            if stem not in archives:
                continue
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=f"{folder}{stem}.json")["Body"].read()
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code", "")) in _MISSING_OBJECT:
                    continue  # deleted since the listing
                self._fail(exc, f"reading the manifest of backup {stem}")
            except BotoCoreError as exc:
                self._fail(exc, f"reading the manifest of backup {stem}")
            try:
                manifest = json.loads(body)
            except ValueError:
                continue  # like LocalStorage: an unreadable manifest is not a listed backup
            if not isinstance(manifest, dict):
                continue
            manifest["size_bytes"] = archives[stem]
            found.append(manifest)
        found.sort(key=lambda m: str(m.get("backup_id", "")), reverse=True)
        return found

    def delete(self, tenant_id: Owner, backup_id: str) -> None:
        # the manifest first: once it is gone the backup is no longer listed, even if the archive's
        # delete then fails (deleting a key that is not there succeeds in S3)
        for suffix in (".json", ".kbk"):
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self.key(tenant_id, backup_id, suffix))
            except (ClientError, BotoCoreError) as exc:
                self._fail(exc, f"deleting backup {backup_id}")
