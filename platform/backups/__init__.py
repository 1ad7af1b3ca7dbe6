"""Per-tenant backups: consistent snapshot, compressed and encrypted archive, verified restore."""

from kith.platform.backups.archive import BackupCorrupted, BackupError
from kith.platform.backups.restore import BackupMismatch, RestoreResult, restore_tenant, verify_latest
from kith.platform.backups.snapshot import BackupResult, TenantNotFound, backup_tenant
from kith.platform.backups.storage import BackupNotFound, LocalStorage, Storage

__all__ = [
    "BackupCorrupted", "BackupError", "BackupMismatch", "BackupNotFound", "BackupResult", "LocalStorage",
    "RestoreResult", "Storage", "TenantNotFound", "backup_tenant", "restore_tenant", "verify_latest",
]
