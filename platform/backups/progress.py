"""A running backup's or restore's progress, written to its run so pages can show it.

`backup_tenant` and `restore_tenant` report progress as lines of text through a plain callback
(the CLI prints them). `RunProgress` is such a callback for jobs: it reads the lines it knows
(the number of tables, each table's rows, the phases) into a `ProgressState`, keeps the latest
line as the message, and a background task writes the state to the run about once a second
when it changed, and at least every HEARTBEAT_SECONDS anyway: that heartbeat is how a running
run shows its worker is alive (see runs.settle_abandoned_in). A line it does not know only
becomes the message, so new wording in the callers never breaks a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass
from types import TracebackType

from kith.platform.backups.runs import BackupRun, report_progress
from kith.platform.observability import get_logger

log = get_logger("kith.backups")

FLUSH_SECONDS = 1.0
HEARTBEAT_SECONDS = 15.0

_TABLE = re.compile(r"^\s+(?P<table>[A-Za-z0-9_]+): (?P<rows>[\d,]+) rows$")
_BACKUP_START = re.compile(r"^backing up .*: (?P<tables>\d+) tables, backup (?P<backup_id>\S+)$")
_BACKUP_END = re.compile(r"^backup (?P<backup_id>\S+): (?P<rows>[\d,]+) rows, ")
_RESTORE_START = re.compile(r"^restoring backup (?P<backup_id>\S+) into ")


def _int(text: str) -> int:
    return int(text.replace(",", ""))


@dataclass
class ProgressState:
    """What a run's page shows: the phase, the latest line, tables and rows done so far."""

    phase: str = "starting"
    message: str = ""
    tables_done: int = 0
    tables_total: int | None = None
    rows_done: int = 0
    backup_id: str | None = None

    def feed(self, line: str) -> None:
        """Take one progress line of backup_tenant or restore_tenant."""
        self.message = line.strip()
        if match := _TABLE.match(line):
            self.tables_done += 1
            self.rows_done += _int(match["rows"])
        elif match := _BACKUP_START.match(line):
            self.phase, self.tables_total, self.backup_id = "copying", int(match["tables"]), match["backup_id"]
            self.tables_done = self.rows_done = 0
        elif match := _BACKUP_END.match(line):
            self.phase, self.backup_id = "stored", match["backup_id"]
        elif _RESTORE_START.match(line):
            self.phase = "loading"
            self.tables_done = self.rows_done = 0
        elif line.startswith("verified "):
            self.phase = "verified"
        elif line.startswith("migrated "):
            self.phase = "migrating"
        elif line.startswith("switched:"):
            self.phase = "switched"


class RunProgress:
    """A progress callback that keeps a run's row up to date while a job works.

    Use as `async with RunProgress(run) as progress: await backup_tenant(..., progress=progress)`.
    """

    def __init__(self, run: BackupRun, *, tables_total: int | None = None) -> None:
        self.run = run
        self.state = ProgressState(tables_total=tables_total, backup_id=run.backup_id)
        self._dirty = True
        self._written_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self.lost = False  # the run was taken over by another attempt

    def __call__(self, line: str) -> None:
        self.state.feed(line)
        self._dirty = True

    def set_phase(self, phase: str, message: str | None = None) -> None:
        """Name a phase the callers' lines do not (e.g. retention)."""
        self.state.phase = phase
        if message is not None:
            self.state.message = message
        self._dirty = True

    async def flush(self) -> None:
        """Write the state now (progress and heartbeat)."""
        self._dirty = False
        self._written_at = time.monotonic()
        s = self.state
        kept = await report_progress(self.run, phase=s.phase, message=s.message, tables_done=s.tables_done,
                                     tables_total=s.tables_total, rows_done=s.rows_done, backup_id=s.backup_id)
        if not kept and not self.lost:
            self.lost = True
            log.warning("backup run taken over by another attempt", run_id=self.run.id, attempt=self.run.attempts)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            if self._dirty or time.monotonic() - self._written_at >= HEARTBEAT_SECONDS:
                try:
                    await self.flush()
                except Exception as exc:  # a database hiccup must not stop the backup; the next tick retries
                    self._dirty = True
                    log.warning("backup progress not written", run_id=self.run.id, error=str(exc))

    async def __aenter__(self) -> RunProgress:
        await self.flush()
        self._task = asyncio.create_task(self._loop(), name=f"backup-run-{self.run.id}-progress")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
