"""Where archives live: a Storage protocol and the local-folder implementation (the default).

Layout: <root>/t_<tenant id>/<backup id>.kbk (the archive) and <backup id>.json (its manifest,
written after the archive is complete, so a listed backup is always a whole one). An archive is
written to a .part file and renamed into place only when it was closed without error.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from kith.platform.backups.archive import BackupError

BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")


class BackupNotFound(BackupError):
    """No backup with that id for that tenant."""


def check_backup_id(backup_id: str) -> str:
    if not BACKUP_ID.match(backup_id):
        raise BackupNotFound(f"'{backup_id}' is not a backup id (they look like 20260101T020000Z-1a2b3c); "
                             "see `kith backups list`")
    return backup_id


class Storage(Protocol):
    """What backups need from a place to keep archives."""

    def writer(self, tenant_id: int, backup_id: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """A file to write the archive to; it appears under `backup_id` only if the block succeeds."""
        ...

    def reader(self, tenant_id: int, backup_id: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """The archive, for reading (BackupNotFound when there is none)."""
        ...

    def save_manifest(self, tenant_id: int, backup_id: str, manifest: dict[str, Any]) -> None: ...

    def manifests(self, tenant_id: int) -> list[dict[str, Any]]:
        """The manifests of the tenant's backups, newest first."""
        ...


class LocalStorage:
    """Archives in a folder on this machine (default: <KITH_DATA_DIR>/backups)."""

    def __init__(self, root: Path | str | None = None) -> None:
        if root is None:
            from kith.platform.config import get_settings

            root = get_settings().data_dir / "backups"
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def _folder(self, tenant_id: int) -> Path:
        return self.root / f"t_{int(tenant_id)}"

    def path(self, tenant_id: int, backup_id: str) -> Path:
        return self._folder(tenant_id) / f"{check_backup_id(backup_id)}.kbk"

    @contextlib.contextmanager
    def writer(self, tenant_id: int, backup_id: str) -> Iterator[BinaryIO]:
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
    def reader(self, tenant_id: int, backup_id: str) -> Iterator[BinaryIO]:
        path = self.path(tenant_id, backup_id)
        try:
            src = path.open("rb")
        except FileNotFoundError:
            raise BackupNotFound(f"no backup {backup_id} for this workspace; see `kith backups list`") from None
        with src:
            yield src

    def save_manifest(self, tenant_id: int, backup_id: str, manifest: dict[str, Any]) -> None:
        path = self.path(tenant_id, backup_id).with_suffix(".json")
        part = path.with_suffix(".json.part")
        part.write_text(json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True), encoding="utf-8")
        part.rename(path)

    def manifests(self, tenant_id: int) -> list[dict[str, Any]]:
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
