"""Backups: per-tenant consistent snapshots (and the platform's public schema), compressed and
encrypted, kept locally or in S3, restored and verified against their manifest."""

from kith.platform.backups.archive import BackupCorrupted, BackupError
from kith.platform.backups.restore import BackupMismatch, RestoreResult, restore_tenant, verify_latest
from kith.platform.backups.snapshot import BackupResult, TenantNotFound, backup_tenant
from kith.platform.backups.storage import (
    PLATFORM,
    BackupNotFound,
    BackupStorageError,
    LocalStorage,
    Storage,
    backup_storage,
)

__all__ = [
    "PLATFORM", "BackupCorrupted", "BackupError", "BackupMismatch", "BackupNotFound", "BackupResult",
    "BackupStorageError", "LocalStorage", "RestoreResult", "Storage", "TenantNotFound", "backup_storage",
    "backup_tenant", "restore_tenant", "verify_latest",
]
