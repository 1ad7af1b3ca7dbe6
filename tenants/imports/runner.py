"""Running a queued check, import or undo: the arq job and `kith imports run` both call `execute`.

The work runs in one transaction acting as the member who started it (their role as it is now:
a member demoted or deactivated meanwhile cannot import through a queued job). That transaction
writes the records, the journal, the audit entry and the import's final state together; a
failure, a cancel or a killed worker leaves the records as they were, and the import's row then
says so (written afterwards, in a transaction of its own).

Progress (phase, rows read, heartbeat) cannot be written by the working transaction, since nobody
would see it before the commit: a separate task, started before that transaction so that it has
its own connection, writes it every second and reads back whether a cancel was asked for. The
working transaction takes a transaction-level advisory lock on the import, so a job delivered
twice (arq delivers at least once) runs it once; a second delivery finds the lock taken and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.rules import PermissionDenied
from kith.platform.access.session import TenantSession, acting_as
from kith.platform.billing.plans import LimitExceeded
from kith.platform.db import fetchrow_alone, tenant_scope
from kith.platform.observability import get_logger
from kith.tenants.imports.pipeline import Counts, ImportCancelled, RunPlan, run_import
from kith.tenants.imports.reading import FileFacts, ImportFileError
from kith.tenants.imports.service import import_folder, source_file
from kith.tenants.imports.targets import TARGETS, ImportTarget
from kith.tenants.records.custom import load_custom_fields

log = get_logger("kith.imports")
Say = Callable[[str], None]
WRITE_EVERY = 1.0  # seconds between progress writes


def _quiet(_: str) -> None:
    return None


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


class _ProgressWriter:
    """Writes an import's progress from its own task and connection; see the module docstring."""

    def __init__(self, tenant_id: int, import_id: int, say: Say, total: int | None) -> None:
        self.tenant_id, self.import_id, self.say, self.total = tenant_id, import_id, say, total
        self.phase, self.rows = "starting", 0
        self.cancelled = False
        self.started = False
        self._wake = asyncio.Event()
        self._closing = False
        self._last_said = 0.0
        # created now, outside the working transaction: the task's context has no transaction in it
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def report(self, phase: str, rows: int) -> bool:
        if phase != self.phase or time.monotonic() - self._last_said >= 2:
            percent = f" ({100 * rows // self.total}%)" if self.total else ""
            self.say(f"  {phase}: {rows:,} rows read{percent}")
            self._last_said = time.monotonic()
        self.phase, self.rows = phase, rows
        self._wake.set()
        await asyncio.sleep(0)
        return self.cancelled

    async def _write(self) -> None:
        first = not self.started
        self.started = True
        async with tenant_scope(self.tenant_id) as tx:
            rows = await tx.execute_query_dict(
                "UPDATE imports SET phase = $2, rows_done = $3, heartbeat_at = now()"
                + (", status = 'running', started_at = now()" if first else "")
                + " WHERE id = $1 RETURNING cancel_requested", [self.import_id, self.phase, self.rows])
        if rows and rows[0]["cancel_requested"]:
            self.cancelled = True

    async def _loop(self) -> None:
        last = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=WRITE_EVERY)
            self._wake.clear()
            if self._closing:
                return
            if time.monotonic() - last >= WRITE_EVERY or not self.started:
                try:
                    await self._write()
                except Exception:  # progress is best effort; the work itself decides the outcome
                    log.warning("import_progress_write_failed", import_id=self.import_id, exc_info=True)
                last = time.monotonic()

    async def begin(self) -> None:
        """Mark the import running now (committed at once, so pages show it)."""
        await self._write_now()

    async def _write_now(self) -> None:
        self._wake.set()
        for _ in range(50):
            if self.started:
                return
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        with contextlib.suppress(Exception):
            await self._task


@dataclass(frozen=True)
class Outcome:
    status: str
    counts: dict[str, int]
    message: str


async def member_actor(tenant_id: int, identity_id: int | None, label: str) -> Actor:
    """The member as they are now (role, active), acting through a job or the CLI."""
    if identity_id is None:
        raise PermissionError("the import has no member to act for")
    row = await fetchrow_alone(
        "SELECT m.role, m.is_active, i.email FROM public.memberships m JOIN public.identities i"
        " ON i.id = m.identity_id WHERE m.tenant_id = $1 AND m.identity_id = $2", int(tenant_id), int(identity_id))
    if row is None or not row["is_active"]:
        raise PermissionError("the member who started this import is no longer an active member of the workspace")
    return Actor(kind="job", tenant_id=int(tenant_id), role=row["role"], identity_id=int(identity_id),
                 label=f"{row['email']} ({label})")


def _facts(row: dict[str, Any]) -> FileFacts:
    headers = _json(row["headers"])
    return FileFacts(fmt=row["file_format"], encoding=row["encoding"], delimiter=row["delimiter"],
                     headers=headers, sample=[], detected=False)


async def _lock(session: TenantSession, import_id: int) -> bool:
    found = await session.tx.execute_query_dict(
        "SELECT pg_try_advisory_xact_lock(hashtextextended('kith.import:' || current_schema() || ':' || $1, 0))"
        " AS locked", [str(import_id)])
    return bool(found[0]["locked"])


async def execute(tenant_id: int, region: str | None, import_id: int, kind: str, *, say: Say = _quiet) -> Outcome:
    """Run the queued `kind` ("check", "import" or "undo") of the import, if it is still queued
    (or was left running by a worker that died)."""
    async with tenant_scope(tenant_id) as tx:
        rows = await tx.execute_query_dict("SELECT * FROM imports WHERE id = $1", [int(import_id)])
    if not rows:
        return Outcome("missing", {}, f"import {import_id} does not exist")
    row = rows[0]
    if row["status"] not in ("queued", "running") or row["run_kind"] != kind:
        return Outcome(row["status"], _json(row["counts"]), f"import {import_id} is {row['status']}: nothing to run")
    try:
        actor = await member_actor(tenant_id, row["created_by_id"], f"import #{import_id}")
    except PermissionError as exc:
        await _finish_failed(tenant_id, import_id, kind, str(exc), Counts())
        return Outcome("failed", {}, str(exc))
    writer = _ProgressWriter(tenant_id, import_id, say, row.get("rows_estimate"))
    counts = Counts()
    try:
        async with acting_as(actor) as session:
            if not await _lock(session, import_id):
                await writer.close()
                return Outcome("running", {}, f"import {import_id} is already running elsewhere")
            await writer.begin()
            if kind == "undo":
                result = await _undo(session, row, writer)
            else:
                result = await _run(session, row, region, kind == "check", writer, counts)
            return result
    except ImportCancelled:
        await writer.close()
        await _finish_failed(tenant_id, import_id, kind, "", counts, cancelled=True)
        say("cancelled: nothing was written")
        return Outcome("cancelled", counts.as_dict(), "cancelled: nothing was written")
    except (ImportFileError, LimitExceeded, PermissionError, PermissionDenied) as exc:
        await writer.close()
        message = getattr(exc, "message", None) or str(exc)
        await _finish_failed(tenant_id, import_id, kind, message, counts)
        say(f"failed: {message}")
        return Outcome("failed", counts.as_dict(), message)
    except Exception as exc:
        await writer.close()
        log.exception("import_failed", import_id=import_id, kind=kind)
        await _finish_failed(tenant_id, import_id, kind, f"an internal error stopped it ({type(exc).__name__})",
                             counts)
        raise
    finally:
        await writer.close()


async def _finish_failed(tenant_id: int, import_id: int, kind: str, message: str, counts: Counts, *,
                         cancelled: bool = False) -> None:
    # an undo that fails or is cancelled leaves the import imported: its records are all still there
    status = "imported" if kind == "undo" else ("cancelled" if cancelled else "failed")
    async with tenant_scope(tenant_id) as tx:
        await tx.execute_query(
            "UPDATE imports SET status = $2, error = $3, finished_at = now(), phase = '', heartbeat_at = NULL"
            + (", counts = $4::jsonb" if kind != "undo" else "") + " WHERE id = $1",
            [import_id, status, message] + ([json.dumps(counts.as_dict())] if kind != "undo" else []))


async def _run(session: TenantSession, row: dict[str, Any], region: str | None, check_only: bool,
               writer: _ProgressWriter, counts: Counts) -> Outcome:
    target: ImportTarget = TARGETS[row["object_type"]]
    tenant_id = session.actor.tenant_id
    session.require(target.object_type, "import")
    if not check_only:
        session.require(target.object_type, "create")
        if row["on_duplicate"] == "update":
            session.require(target.object_type, "edit")
    mapping = {int(k): v for k, v in _json(row["mapping"]).items()}
    for name in mapping.values():
        spec = target.field(name)
        session.require_fields(target.object_type, ["custom" if spec is None else (spec.sensitive_as or spec.name)])
    plan = RunPlan(
        import_id=row["id"], target=target, path=source_file(tenant_id, row["id"]), facts=_facts(row),
        mapping=mapping, custom=await load_custom_fields(session.tx, target.object_type), region=region,
        match_key=row["match_key"], on_duplicate=row["on_duplicate"], check_only=check_only,
        rejected_path=import_folder(tenant_id, row["id"]) / "rejected.csv", file_name=row["file_name"])
    result = await run_import(session, plan, writer.report)
    counts.__dict__.update(result.counts.__dict__)
    await writer.close()
    status = "checked" if check_only else "imported"
    # the progress writer reads the cancel flag once a second, so a short run can end before it has
    # seen one; this statement has the last word: a cancel committed before it rolls the run back
    finished = await session.tx.execute_query_dict(
        "UPDATE imports SET status = $2, counts = $3::jsonb, rejected_sample = $4::jsonb, finished_at = now(),"
        " phase = '', rows_done = $5, heartbeat_at = NULL, error = ''"
        + (", imported_at = now()" if not check_only else "") + " WHERE id = $1 AND NOT cancel_requested RETURNING id",
        [row["id"], status, json.dumps(counts.as_dict()), json.dumps(result.rejected_sample, ensure_ascii=False),
         counts.rows])
    if not finished:
        raise ImportCancelled
    if not check_only:
        await session.audit(f"{target.object_type}.import", "imports", row["id"],
                            {"file_name": [None, row["file_name"]], **{k: [None, v] for k, v in counts.as_dict().items()
                                                                       if v}})
    writer.say(f"{status}: {counts.rows:,} rows, {counts.created:,} created, {counts.updated:,} updated, "
               f"{counts.skipped + counts.duplicates_in_file:,} duplicates skipped, {counts.rejected:,} rejected "
               f"({result.seconds:.1f} s)")
    return Outcome(status, counts.as_dict(), "")


# types of the columns an undo restores from the journal's JSON values
_CASTS = {"tags": "ARRAY(SELECT jsonb_array_elements_text(c.before->'tags'))", "custom": "c.before->'custom'",
          "company_id": "(c.before->>'company_id')::bigint", "consent_at": "(c.before->>'consent_at')::timestamptz",
          "unsubscribed_at": "(c.before->>'unsubscribed_at')::timestamptz"}
# records other records still depend on (RESTRICT keys) are kept by an undo, and counted
_KEPT_IF = {"companies": ("NOT EXISTS (SELECT 1 FROM contacts x WHERE x.company_id = r.id)"
                          " AND NOT EXISTS (SELECT 1 FROM deals x WHERE x.company_id = r.id)"
                          " AND NOT EXISTS (SELECT 1 FROM orders x WHERE x.company_id = r.id)")}


async def _undo(session: TenantSession, row: dict[str, Any], writer: _ProgressWriter) -> Outcome:
    target: ImportTarget = TARGETS[row["object_type"]]
    session.require(target.object_type, "delete")
    table = target.table
    await writer.report("undoing", 0)
    keep = _KEPT_IF.get(table, "true")
    removed = await session.tx.execute_query_dict(
        f"WITH gone AS (DELETE FROM {table} r USING import_changes c WHERE c.import_id = $1"  # noqa: S608
        f" AND c.action = 'created' AND r.id = c.record_id AND {keep} RETURNING r.id) SELECT count(*) AS n FROM gone",
        [row["id"]])
    created = await session.tx.execute_query_dict(
        "SELECT count(*) AS n FROM import_changes WHERE import_id = $1 AND action = 'created'", [row["id"]])
    columns = [*target.columns, "custom", *(["company_id"] if target.links_company else []),
               *(("consent_source", "consent_at", "unsubscribed_at") if target.has_consent else ())]
    sets = ", ".join(
        f"{col} = CASE WHEN c.after ? '{col}' AND to_jsonb(r.{col}) = c.after->'{col}'"
        f" THEN {_CASTS.get(col, f'c.before->>{chr(39)}{col}{chr(39)}')} ELSE r.{col} END" for col in columns)
    restored = await session.tx.execute_query_dict(
        f"WITH back AS (UPDATE {table} r SET {sets}, updated_at = now() FROM import_changes c"  # noqa: S608
        " WHERE c.import_id = $1 AND c.action = 'updated' AND r.id = c.record_id RETURNING r.id)"
        " SELECT count(*) AS n FROM back", [row["id"]])
    await writer.close()
    counts = {"removed": int(removed[0]["n"]), "kept": int(created[0]["n"]) - int(removed[0]["n"]),
              "restored": int(restored[0]["n"])}
    await session.tx.execute_query(
        "UPDATE imports SET status = 'undone', undone_at = now(), finished_at = now(), phase = '',"
        " heartbeat_at = NULL, counts = counts || $2::jsonb WHERE id = $1",
        [row["id"], json.dumps({f"undo_{k}": v for k, v in counts.items()})])
    await session.audit(f"{target.object_type}.import_undo", "imports", row["id"],
                        {k: [None, v] for k, v in counts.items()})
    writer.say(f"undone: {counts['removed']:,} records removed, {counts['restored']:,} restored"
               + (f", {counts['kept']:,} kept (other records depend on them)" if counts["kept"] else ""))
    return Outcome("undone", counts, "")
