"""Where archives live: a Storage protocol, the local-folder implementation, and `backup_storage()`.

Layout: <root>/t_<tenant id>/<backup id>.kbk (the archive) and <backup id>.json (its manifest,
written after the archive is complete, so a listed backup is always a whole one); the platform's
own backups (public schema) live beside them under <root>/platform/. An archive is written to a
.part file and renamed into place only when it was closed without error.

`backup_storage()` is what every caller uses by default: S3 (kith.platform.backups.s3) when
KITH_BACKUP_S3_BUCKET is set, else the local folder. The interface is synchronous (S3 calls
block): async code enters `writer`/`reader` through `threaded()` and calls the other methods
with `asyncio.to_thread`, so an upload never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal, Protocol, TypeVar

from kith.platform.backups.archive import PLATFORM_OWNER, BackupError

BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")

PLATFORM: Final = PLATFORM_OWNER
"""Where the platform's own backups (the public schema) live, in place of a tenant id."""

Owner = int | Literal["platform"]
"""Whose backups: a tenant id, or PLATFORM."""

T = TypeVar("T")


class BackupNotFound(BackupError):
    """No backup with that id for that tenant."""


class BackupStorageError(BackupError):
    """The place backups are kept cannot be used (bucket missing, access denied, endpoint down...)."""


def area(owner: Owner) -> str:
    """The folder (or key prefix) of one owner's backups: t_<id>, or platform."""
    return PLATFORM if owner == PLATFORM else f"t_{int(owner)}"


def not_found_message(owner: Owner, backup_id: str) -> str:
    if owner == PLATFORM:
        return f"no platform backup {backup_id}; see `kith backups platform list`"
    return f"no backup {backup_id} for this workspace; see `kith backups list`"


def check_backup_id(backup_id: str) -> str:
    if not BACKUP_ID.match(backup_id):
        raise BackupNotFound(f"'{backup_id}' is not a backup id (they look like 20260101T020000Z-1a2b3c); "
                             "see `kith backups list`")
    return backup_id


class Storage(Protocol):
    """What backups need from a place to keep archives."""

    def describe(self) -> str:
        """Where the archives are, for people (a folder, or s3://bucket/prefix)."""
        ...

    def writer(self, tenant_id: Owner, backup_id: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """A file to write the archive to; it appears under `backup_id` only if the block succeeds."""
        ...

    def reader(self, tenant_id: Owner, backup_id: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """The archive, for reading (BackupNotFound when there is none)."""
        ...

    def save_manifest(self, tenant_id: Owner, backup_id: str, manifest: dict[str, Any]) -> None: ...

    def manifests(self, tenant_id: Owner) -> list[dict[str, Any]]:
        """The manifests of the tenant's backups, newest first, each with `size_bytes` of its archive."""
        ...

    def delete(self, tenant_id: Owner, backup_id: str) -> None:
        """Remove a backup (manifest first, so it stops being listed, then the archive); a backup
        that is not there is not an error."""
        ...


def backup_storage() -> Storage:
    """The configured place for backups: S3 when KITH_BACKUP_S3_BUCKET is set, else the local folder."""
    from kith.platform.config import get_settings

    settings = get_settings()
    if settings.backup_s3_bucket:
        from kith.platform.backups.s3 import S3Storage  # boto3 is imported only when S3 is used

        return S3Storage(settings.backup_s3_bucket, prefix=settings.backup_s3_prefix,
                         endpoint_url=settings.s3_endpoint_url or None, region=settings.s3_region or None)
    return LocalStorage()


@contextlib.asynccontextmanager
async def threaded(manager: contextlib.AbstractContextManager[T]) -> AsyncIterator[T]:
    """Enter and leave a storage's (blocking) writer or reader in a worker thread: an S3 upload or
    download happens there, and the event loop keeps serving."""
    value = await asyncio.to_thread(manager.__enter__)
    try:
        yield value
    except BaseException as exc:
        if not await asyncio.to_thread(manager.__exit__, type(exc), exc, exc.__traceback__):
            raise
    else:
        await asyncio.to_thread(manager.__exit__, None, None, None)


class LocalStorage:
    """Archives in a folder on this machine (default: <KITH_DATA_DIR>/backups)."""

    def __init__(self, root: Path | str | None = None) -> None:
        if root is None:
            from kith.platform.config import get_settings

            root = get_settings().data_dir / "backups"
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def _folder(self, tenant_id: Owner) -> Path:
        return self.root / area(tenant_id)

    def path(self, tenant_id: Owner, backup_id: str) -> Path:
        return self._folder(tenant_id) / f"{check_backup_id(backup_id)}.kbk"

    @contextlib.contextmanager
    def writer(self, tenant_id: Owner, backup_id: str) -> Iterator[BinaryIO]:
        final = self.path(tenant_id, backup_id)
        final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        part = final.with_suffix(".part")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                yield out
                out.flush()
                os.fsync(out.fileno())
            part.rename(final)
        except BaseException:
            part.unlink(missing_ok=True)
            raise

    @contextlib.contextmanager
    def reader(self, tenant_id: Owner, backup_id: str) -> Iterator[BinaryIO]:
        path = self.path(tenant_id, backup_id)
        try:
            src = path.open("rb")
        except FileNotFoundError:
            raise BackupNotFound(not_found_message(tenant_id, backup_id)) from None
        with src:
            yield src

    def save_manifest(self, tenant_id: Owner, backup_id: str, manifest: dict[str, Any]) -> None:
        path = self.path(tenant_id, backup_id).with_suffix(".json")
        part = path.with_suffix(".json.part")
        part.write_text(json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True), encoding="utf-8")
        part.rename(path)

    def manifests(self, tenant_id: Owner) -> list[dict[str, Any]]:
        folder = self._folder(tenant_id)
        if not folder.is_dir():
            return []
        found: list[dict[str, Any]] = []
        for path in folder.glob("*.json"):
            if not BACKUP_ID.match(path.stem) or not path.with_suffix(".kbk").exists():
                continue
            try:
                manifest = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            manifest["size_bytes"] = path.with_suffix(".kbk").stat().st_size
            found.append(manifest)
        found.sort(key=lambda m: str(m.get("backup_id", "")), reverse=True)
        return found

    def delete(self, tenant_id: Owner, backup_id: str) -> None:
        path = self.path(tenant_id, backup_id)
        path.with_suffix(".json").unlink(missing_ok=True)
        path.unlink(missing_ok=True)
