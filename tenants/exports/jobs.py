"""Exports that run in the background, for lists too big to stream while a person waits (a
million contacts): queued from the list page or the API, written to a file by an arq job
(`kith.jobs.exports`) with its progress shown, downloaded later.

Queueing checks and records the export exactly as the streaming download does (`plan_export`:
'<type>: export', the query, hidden fields, "<type>.export" in the audit log) and keeps the
resolved query, its columns and their headers in the export's row (tenant table export_files),
so the job exports what was asked even if the saved view changes meanwhile. The job acts as the
member who asked, with their role as it is when it runs (a member demoted or deactivated
meanwhile exports nothing), and writes the file with the streaming export's own `export_chunks`
(a CSV by PostgreSQL's COPY, its rows counted from the bytes as they pass; an XLSX, or a CSV
holding custom values only Python prints right, row by row through `export_rows`; either way
the permission is checked again and "<type>.exported" records the row count) into
<KITH_DATA_DIR>/exports/t_<id>/<export id>.<fmt>, through a .part file renamed once complete.

Who may reach an export: the member who asked for it, and owners and admins (who may export
every list anyway); each of them only while their role grants '<type>: export', and a download
also needs every column of the file to be visible to the downloader's role now. The file keeps
the rows of the asker's record scope when it was written; it is deleted KITH_EXPORT_KEEP_DAYS
after it was done (`remove_expired`, daily).

A job may be delivered twice (arq delivers at least once; a retried job overlaps a slow one).
The export's row is claimed with a random token by an atomic UPDATE from queued (or from running
whose heartbeat stopped: its worker died), so one run works on it at a time; every progress
write, the final state and the rename go through that token. A transaction-level advisory lock,
as imports take, would have to stay open on a pooled connection for the whole run, while the
export reads in transactions of its own; a few long exports would then hold the worker's pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from kith.platform.access.actor import Actor
from kith.platform.access.rules import PermissionDenied
from kith.platform.access.session import TenantSession, acting_as
from kith.platform.audit.log import append_entry
from kith.platform.billing.subscriptions import WorkspaceReadOnly
from kith.platform.config import get_settings
from kith.platform.db import tenant_scope
from kith.platform.observability import get_logger
from kith.tenants.exports.copy_csv import CopyOutcome
from kith.tenants.exports.formats import MEDIA_TYPES, ExportTooLarge
from kith.tenants.exports.records import ExportColumn, ExportPlan, plan_export
from kith.tenants.exports.stream import export_chunks
from kith.tenants.imports.runner import member_actor
from kith.tenants.records.custom import load_custom_fields
from kith.tenants.records.kinds import record_kind
from kith.tenants.records.listing import CUSTOM_KINDS, CUSTOM_PREFIX, MAX_LIMIT, ListError, ListQuery, query_records
from kith.tenants.records.refusals import RecordsRefusal

log = get_logger("kith.exports")

OBJECT_TYPES = ("companies", "contacts", "leads", "deals", "tickets")
ACTIVE = ("queued", "running")
FINAL = ("done", "failed", "cancelled")
# roles that reach every member's export files (they may export every list themselves)
KEEPERS = frozenset({"owner", "admin"})
WRITE_EVERY = 1.0  # seconds between progress writes (the heartbeat)
# a running export writes its heartbeat every second; one silent this long has no worker left
STALE_AFTER = timedelta(minutes=2)
# below this many rows (as the planner guesses) the estimate is an exact count, capped here
EXACT_BELOW = 50_000
NOT_FOUND = "There is no such export."


class ExportCancelled(Exception):
    """The export was cancelled (or another run took it over) while it was being written."""


@dataclass(frozen=True)
class Outcome:
    status: str
    rows: int
    message: str


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# --- files ---------------------------------------------------------------------------------


def export_folder(tenant_id: int) -> Path:
    """Where a workspace's export files live: <KITH_DATA_DIR>/exports/t_<id>."""
    return get_settings().data_dir / "exports" / f"t_{int(tenant_id)}"


def export_path(tenant_id: int, export_id: int, fmt: str) -> Path:
    return export_folder(tenant_id) / f"{int(export_id)}.{fmt}"


def _part_path(tenant_id: int, export_id: int, fmt: str, claim: str) -> Path:
    # one .part per run: a run that lost its claim never touches the file of the run that took it
    return export_folder(tenant_id) / f"{int(export_id)}.{fmt}.{claim}.part"


def _remove_files(tenant_id: int, export_id: int) -> None:
    folder = export_folder(tenant_id)
    for path in folder.glob(f"{int(export_id)}.*"):
        if path.name.split(".", 1)[0] == str(int(export_id)):
            path.unlink(missing_ok=True)


# --- pages and the API ---------------------------------------------------------------------


def present(row: dict[str, Any], tenant_id: int) -> dict[str, Any]:
    """An export's row as pages and the API show it."""
    item = dict(row)
    for key in ("query", "columns", "labels"):
        item[key] = _json(item[key])
    status, total = item["status"], item["rows_total"]
    if status == "done":
        item["progress_percent"] = 100
    elif status in ACTIVE and total:
        item["progress_percent"] = min(99, int(100 * item["rows_done"] / total))
    else:
        item["progress_percent"] = None
    heartbeat = item.get("heartbeat_at")
    item["stalled"] = bool(status == "running" and heartbeat is not None
                           and datetime.now(UTC) - heartbeat > STALE_AFTER)
    item["has_file"] = status == "done" and export_path(tenant_id, item["id"], item["format"]).is_file()
    return item


def _refuse_unless_exportable(object_type: str) -> None:
    if object_type not in OBJECT_TYPES or record_kind(object_type) is None:
        raise RecordsRefusal(404, "not_found", f"There is no list of '{object_type}' to export; exports take "
                             f"{', '.join(OBJECT_TYPES)}.")


async def queue_export(actor: Actor, object_type: str, query: ListQuery, *, fmt: str = "csv",
                       view_id: int | None = None, all_columns: bool = False, label: Callable[[str], str] = str,
                       time_zone: str = "UTC", enqueue: bool = True) -> dict[str, Any]:
    """Check and record an export of a list (or saved view) now, and queue the job that writes it.

    Raises as `plan_export` does, before anything is queued: PermissionDenied without
    '<type>: export' or for a hidden field in the query, ListError for a query the list engine
    refuses, RecordsRefusal 404 (unknown list or view) and 422 (unknown format). `label`
    translates the spec fields' English headers into the workspace's language. With
    enqueue=False the caller runs the job (`execute`) itself."""
    from kith.jobs.queue import enqueue_tenant_job  # jobs is above tenants; imported when used

    _refuse_unless_exportable(object_type)
    plan = await plan_export(actor, object_type, query, fmt=fmt, view_id=view_id, all_columns=all_columns)
    labels = [c.label if c.custom else label(c.label) for c in plan.columns]
    stamp = datetime.now(ZoneInfo(time_zone)).strftime("%Y%m%d")  # the workspace's date
    keep_days = get_settings().export_keep_days
    async with acting_as(actor) as session:
        total = await estimate_rows(session, plan)
        rows = await session.tx.execute_query_dict(
            "INSERT INTO export_files (object_type, format, query, view_id, all_columns, columns, labels, rows_total,"
            " file_name, created_by_id, expires_at) VALUES ($1, $2, $3::jsonb, $4, $5, $6::jsonb, $7::jsonb, $8, $9,"
            " $10, now() + make_interval(days => $11)) RETURNING *",
            [object_type, fmt, json.dumps(plan.definition, ensure_ascii=False), view_id, all_columns,
             json.dumps([c.name for c in plan.columns]), json.dumps(labels, ensure_ascii=False), total,
             f"{object_type}-{stamp}.{fmt}", actor.identity_id, keep_days])
    row = rows[0]
    # made now, so the daily cleanup finds every workspace that ever exported (see kith.jobs.exports)
    export_folder(actor.tenant_id).mkdir(parents=True, exist_ok=True, mode=0o700)
    if enqueue:
        try:
            await enqueue_tenant_job("run_export", actor.tenant_id, int(row["id"]),
                                     job_id=f"export:{actor.tenant_id}:{int(row['id'])}")
        except Exception:
            # no job will ever run it: say so on the export rather than leave it waiting
            async with tenant_scope(actor.tenant_id) as tx:
                await tx.execute_query(
                    "UPDATE export_files SET status = 'failed', finished_at = now(), error = $2 WHERE id = $1",
                    [row["id"], "the job queue could not be reached; export again"])
            raise
    return present(row, actor.tenant_id)


class _CountingTransaction:
    """The session's transaction as the list engine sees it while an export is estimated: the one
    statement that would fetch the rows is planned (EXPLAIN) and, when the planner expects fewer
    than EXACT_BELOW rows, counted (capped there) instead of fetched. The estimate so covers the
    filters, search and record scope the export will run with, without a second copy of the
    engine's SQL. Every other statement (custom fields) goes through unchanged."""

    def __init__(self, tx: Any, statement: str) -> None:
        self._tx, self._statement = tx, statement
        self.estimate: int | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    async def execute_query_dict(self, sql: str, values: list[Any] | None = None) -> list[dict[str, Any]]:
        if not sql.startswith(self._statement):
            return cast(list[dict[str, Any]], await self._tx.execute_query_dict(sql, values))
        values = list(values or [])
        planned = await self._tx.execute_query_dict("EXPLAIN (FORMAT JSON) " + sql, values)
        node = _json(planned[0]["QUERY PLAN"])[0]["Plan"]
        if node["Node Type"] == "Limit":  # the page's LIMIT; the rows it would cut from are below it
            node = next((p for p in node.get("Plans", []) if p.get("Parent Relationship") == "Outer"), node)
        guess = int(node["Plan Rows"])
        # the statement ends with the page's LIMIT as its last parameter: counted with the cap instead
        if guess < EXACT_BELOW and values and sql.rstrip().endswith(f"LIMIT ${len(values)}"):
            counted = await self._tx.execute_query_dict(
                f"SELECT count(*) AS n FROM ({sql}) AS export_rows", [*values[:-1], EXACT_BELOW + 1])  # noqa: S608
            exact = int(counted[0]["n"])
            guess = exact if exact <= EXACT_BELOW else max(guess, exact)
        self.estimate = guess
        return []


async def estimate_rows(session: TenantSession, plan: ExportPlan) -> int | None:
    """How many rows the planned export will hold, cheaply: exact for small lists, the planner's
    estimate for big ones (it shows progress; the final count replaces it)."""
    spec = record_kind(plan.object_type).spec  # type: ignore[union-attr]
    counting = _CountingTransaction(session.tx, f"{spec.select_sql} {spec.from_sql}")
    probe = TenantSession(tx=cast(Any, counting), actor=session.actor, policy=session.policy)
    await query_records(probe, spec, ListQuery(filters=list(plan.query.filters), sort=plan.query.sort,
                                               q=plan.query.q, limit=1, columns=plan.query.columns),
                        with_custom_fields=True, audit_reads=False)
    return counting.estimate


async def _load(session: TenantSession, export_id: int, *, lock: bool = False) -> dict[str, Any]:
    """The export, if the actor may reach it: the same 404 for missing and someone else's."""
    rows = await session.tx.execute_query_dict(
        "SELECT * FROM export_files WHERE id = $1" + (" FOR UPDATE" if lock else ""), [int(export_id)])
    if not rows:
        raise RecordsRefusal(404, "not_found", NOT_FOUND)
    row = rows[0]
    session.require(row["object_type"], "export")
    if row["created_by_id"] != session.actor.identity_id and session.actor.role not in KEEPERS:
        raise RecordsRefusal(404, "not_found", NOT_FOUND)
    return row


async def get_export(actor: Actor, export_id: int) -> dict[str, Any]:
    async with acting_as(actor) as session:
        return present(await _load(session, export_id), actor.tenant_id)


async def list_exports(actor: Actor, *, limit: int = 50) -> list[dict[str, Any]]:
    """The actor's latest exports (owners and admins: everyone's) of the lists they may export."""
    async with acting_as(actor) as session:
        kinds = [t for t in OBJECT_TYPES if session.policy.can(t, "export")]
        if not kinds:
            raise PermissionDenied(session.policy.role.name, "contacts: export")
        everyone = actor.role in KEEPERS
        rows = await session.tx.execute_query_dict(
            "SELECT * FROM export_files WHERE object_type = ANY($1::text[])"
            + ("" if everyone else " AND created_by_id = $3") + " ORDER BY id DESC LIMIT $2",
            [kinds, max(1, min(int(limit), 200)), *([] if everyone else [actor.identity_id])])
        return [present(r, actor.tenant_id) for r in rows]


async def _record(session: TenantSession, action: str, row: dict[str, Any], diff: dict[str, Any]) -> None:
    # appended directly, as read entries are: a download or cancel changes no CRM data, so a
    # workspace that is read-only for billing still records them (exports stay allowed there)
    await append_entry(session.tx, session.actor, action=f"{row['object_type']}.{action}",
                       object_type="export_files", object_id=row["id"], diff=diff)


async def cancel_export(actor: Actor, export_id: int) -> dict[str, Any]:
    """Stop a queued or running export; its partial file is deleted. A queued export, or one whose
    worker stopped answering, is cancelled at once; a running one within a second."""
    async with acting_as(actor) as session:
        row = await _load(session, export_id, lock=True)
        if row["status"] not in ACTIVE:
            raise RecordsRefusal(409, "wrong_state", f"This export is {row['status']}; only a queued or running "
                                 "export can be cancelled.")
        heartbeat = row["heartbeat_at"]
        at_once = row["status"] == "queued" or heartbeat is None or datetime.now(UTC) - heartbeat > STALE_AFTER
        rows = await session.tx.execute_query_dict(
            "UPDATE export_files SET cancel_requested = true"
            + (", status = 'cancelled', finished_at = now(), heartbeat_at = NULL" if at_once else "")
            + " WHERE id = $1 RETURNING *", [row["id"]])
        await _record(session, "export_cancel", row, {"status": [row["status"], rows[0]["status"]]})
    if at_once:
        await asyncio.to_thread(_remove_files, actor.tenant_id, row["id"])
    return present(rows[0], actor.tenant_id)


@dataclass(frozen=True)
class ExportDownload:
    path: Path
    file_name: str
    media_type: str


def _guards(object_type: str, columns: list[str]) -> list[str]:
    """The role-hideable fields behind the file's columns."""
    spec = record_kind(object_type).spec  # type: ignore[union-attr]
    guards: list[str] = []
    for name in columns:
        if name.startswith(CUSTOM_PREFIX):
            guards.append("custom")
        elif (field := spec.field(name)) is not None and field.guarded_by():
            guards.append(str(field.guarded_by()))
    return guards


async def export_download(actor: Actor, export_id: int) -> ExportDownload:
    """The finished file, for the member who asked for it (or an owner or admin), recorded as
    "<type>.export_download". Raises RecordsRefusal 404 (no such export, or its file is gone), 409
    (not done), and PermissionDenied when the role no longer exports the list or sees a column."""
    async with acting_as(actor) as session:
        row = await _load(session, export_id)
        if row["status"] != "done":
            raise RecordsRefusal(409, "not_ready", f"This export is {row['status']}; its file can be downloaded "
                                 "once it is done.")
        session.require_fields(row["object_type"], _guards(row["object_type"], _json(row["columns"])))
        path = export_path(actor.tenant_id, row["id"], row["format"])
        if not path.is_file():
            raise RecordsRefusal(404, "not_found", "This export's file is no longer kept; export the list again.")
        await _record(session, "export_download", row, {"rows": row["rows_done"], "format": row["format"],
                                                        "file_size": row["file_size"]})
    return ExportDownload(path, row["file_name"], MEDIA_TYPES[row["format"]])


# --- the job -------------------------------------------------------------------------------


class _Progress:
    """Writes the running export's rows_done and heartbeat every second from a task of its own
    (created outside any transaction, so its writes commit on their own connection at once), and
    reads back whether a cancel was asked for or the claim was lost."""

    def __init__(self, tenant_id: int, export_id: int, claim: str) -> None:
        self.tenant_id, self.export_id, self.claim = tenant_id, export_id, claim
        self.rows = 0
        self.cancelled = False
        self._stop = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _write(self) -> None:
        async with tenant_scope(self.tenant_id) as tx:
            rows = await tx.execute_query_dict(
                "UPDATE export_files SET rows_done = $3, heartbeat_at = now() WHERE id = $1 AND claim = $2"
                " AND status = 'running' RETURNING cancel_requested", [self.export_id, self.claim, self.rows])
        if not rows or rows[0]["cancel_requested"]:
            self.cancelled = True

    async def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=WRITE_EVERY)
            if self._stop.is_set():
                return
            try:
                await self._write()
            except Exception:  # progress is best effort; the work itself decides the outcome
                log.warning("export_progress_write_failed", export_id=self.export_id, exc_info=True)

    async def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            await self._task


async def _claim(tenant_id: int, export_id: int, claim: str) -> dict[str, Any] | Outcome:
    """Take the export for this run: queued, or running with a heartbeat that stopped."""
    async with tenant_scope(tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "UPDATE export_files SET status = 'running', claim = $2, heartbeat_at = now(), rows_done = 0, error = '',"
            " started_at = now() WHERE id = $1 AND NOT cancel_requested AND (status = 'queued' OR (status = 'running'"
            " AND heartbeat_at < now() - make_interval(secs => $3))) RETURNING *",
            [int(export_id), claim, STALE_AFTER.total_seconds()])
        if rows:
            return rows[0]
        found = await tx.execute_query_dict("SELECT status FROM export_files WHERE id = $1", [int(export_id)])
    if not found:
        return Outcome("missing", 0, f"export {export_id} does not exist")
    status = found[0]["status"]
    why = "is already running elsewhere" if status == "running" else f"is {status}: nothing to run"
    return Outcome(status, 0, f"export {export_id} {why}")


async def _job_plan(actor: Actor, row: dict[str, Any]) -> ExportPlan:
    """The export as queued, checked against the member's role as it is now."""
    object_type = row["object_type"]
    spec = record_kind(object_type).spec  # type: ignore[union-attr]
    names: list[str] = _json(row["columns"])
    labels: list[str] = _json(row["labels"])
    definition: dict[str, Any] = _json(row["query"])
    async with acting_as(actor) as session:
        session.require(object_type, "export")
        session.require_fields(object_type, _guards(object_type, names))
        custom = {c.key: c for c in await load_custom_fields(session.tx, object_type)} if spec.custom_fields else {}
    columns: list[ExportColumn] = []
    for name, label in zip(names, labels, strict=True):
        if name.startswith(CUSTOM_PREFIX):
            found = custom.get(name[len(CUSTOM_PREFIX):])
            if found is None:
                raise ListError("columns", f"the custom field '{name[len(CUSTOM_PREFIX):]}' was deleted after "
                                "the export was queued")
            columns.append(ExportColumn(name, label, CUSTOM_KINDS[found.kind], custom=True))
        else:
            field = spec.field(name)
            if field is None:
                raise ListError("columns", f"{object_type} have no field '{name}'")
            columns.append(ExportColumn(name, label, field.kind))
    query = ListQuery(filters=[(f[0], f[1], f[2]) for f in definition.get("filters") or []],
                      sort=definition.get("sort"), q=definition.get("q") or "", limit=MAX_LIMIT, columns=names)
    return ExportPlan(object_type, query, columns, row["format"], row["view_id"], definition)


def _open(path: Path) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path.open("wb")


def _close(handle: Any) -> int:
    handle.flush()
    os.fsync(handle.fileno())  # on disk before the rename makes it the export's file
    size = handle.tell()
    handle.close()
    return int(size)


async def _write(path: Path, chunks: AsyncIterator[bytes]) -> int:
    handle = await asyncio.to_thread(_open, path)
    try:
        # closed at once if writing fails: a COPY behind the chunks stops and its transaction ends
        async with contextlib.aclosing(cast(AsyncGenerator[bytes, None], chunks)):
            async for chunk in chunks:
                await asyncio.to_thread(handle.write, chunk)
    except BaseException:
        await asyncio.to_thread(handle.close)
        raise
    return await asyncio.to_thread(_close, handle)


async def _settle(tenant_id: int, export_id: int, claim: str, status: str, message: str, rows: int) -> None:
    """The final state of a run that did not finish (only while the run still holds its claim)."""
    async with tenant_scope(tenant_id) as tx:
        await tx.execute_query(
            "UPDATE export_files SET status = $3, error = $4, rows_done = $5, finished_at = now(), heartbeat_at = NULL"
            " WHERE id = $1 AND claim = $2 AND status = 'running'", [export_id, claim, status, message, rows])


async def _finish(tenant_id: int, row: dict[str, Any], claim: str, part: Path, rows: int, size: int) -> bool:
    """Mark the export done and rename its file, both or neither; False when a cancel came first
    or another run took the export over."""
    final = export_path(tenant_id, row["id"], row["format"])
    async with tenant_scope(tenant_id) as tx:
        done = await tx.execute_query_dict(
            "UPDATE export_files SET status = 'done', rows_done = $3, rows_total = $3, file_size = $4,"
            " finished_at = now(), heartbeat_at = NULL, expires_at = now() + make_interval(days => $5)"
            " WHERE id = $1 AND claim = $2 AND status = 'running' AND NOT cancel_requested RETURNING id",
            [row["id"], claim, rows, size, get_settings().export_keep_days])
        if done:
            await asyncio.to_thread(os.replace, part, final)  # a failed rename rolls the state back
    return bool(done)


async def _requeue(tenant_id: int, export_id: int, claim: str) -> None:
    """Give the export back to the queue (its worker is stopping; arq runs the job again)."""
    async with tenant_scope(tenant_id) as tx:
        await tx.execute_query(
            "UPDATE export_files SET status = 'queued', claim = '', rows_done = 0, heartbeat_at = NULL"
            " WHERE id = $1 AND claim = $2 AND status = 'running'", [export_id, claim])


async def execute(tenant_id: int, export_id: int, *, time_zone: str = "UTC",
                  time_limit: float | None = None) -> Outcome:
    """Write the queued export's file (the arq job calls this; tests call it in-process).

    `time_limit` is the job's timeout in seconds: cancelled at it, the export fails saying so;
    cancelled before it (the worker is stopping, and arq runs the job again), it is queued again."""
    claim = secrets.token_hex(8)
    claimed = await _claim(tenant_id, export_id, claim)
    if isinstance(claimed, Outcome):
        return claimed
    row = claimed
    started = time.monotonic()
    try:
        actor = await member_actor(tenant_id, row["created_by_id"], f"export #{export_id}")
    except PermissionError:
        message = "the member who asked for this export is no longer an active member of the workspace"
        await _settle(tenant_id, export_id, claim, "failed", message, 0)
        return Outcome("failed", 0, message)
    progress = _Progress(tenant_id, export_id, claim)
    outcome = CopyOutcome()
    part = _part_path(tenant_id, export_id, row["format"], claim)
    try:
        plan = await _job_plan(actor, row)
        # a CSV by COPY (its rows counted from the bytes as they pass, exactly once it ends), else row by row
        chunks = export_chunks(actor, plan, _json(row["labels"]), time_zone, progress=progress, outcome=outcome)
        size = await _write(part, chunks)
        await progress.close()
        if progress.cancelled or not await _finish(tenant_id, row, claim, part, progress.rows, size):
            raise ExportCancelled
    except ExportCancelled:
        await progress.close()
        await _settle(tenant_id, export_id, claim, "cancelled", "", progress.rows)
        return Outcome("cancelled", progress.rows, "cancelled: no file was kept")
    except (PermissionDenied, ListError, RecordsRefusal, ExportTooLarge, WorkspaceReadOnly) as exc:
        await progress.close()
        message = getattr(exc, "message", None) or str(exc)
        await _settle(tenant_id, export_id, claim, "failed", message, progress.rows)
        return Outcome("failed", progress.rows, message)
    except asyncio.CancelledError:
        await progress.close()
        if time_limit is not None and time.monotonic() - started >= time_limit - 5:
            await _settle(tenant_id, export_id, claim, "failed", f"it was stopped after {time_limit / 60:,.0f} "
                          "minutes, the longest an export may run; export fewer rows at a time", progress.rows)
        else:
            await _requeue(tenant_id, export_id, claim)
        raise
    except Exception as exc:
        await progress.close()
        log.exception("export_failed", export_id=export_id)
        await _settle(tenant_id, export_id, claim, "failed",
                      f"an internal error stopped it ({type(exc).__name__}); export again", progress.rows)
        raise
    finally:
        await progress.close()
        await asyncio.to_thread(part.unlink, True)
    log.info("export_done", export_id=export_id, rows=progress.rows, bytes=size, method=outcome.method,
             seconds=round(time.monotonic() - started, 1))
    return Outcome("done", progress.rows, "")


# --- expiry --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cleanup:
    exports: int  # expired exports deleted (rows and files)
    files: int  # files removed, leftovers included


ORPHAN_AGE = timedelta(hours=1)  # a file without a matching row is left this long (a rename may be committing)


async def remove_expired(tenant_id: int) -> Cleanup:
    """Delete the exports past their expiry (rows and files), and files left behind by runs that
    died: a .part whose export is not running, a file whose export is gone or not done."""
    async with tenant_scope(tenant_id) as tx:
        gone = await tx.execute_query_dict(
            "DELETE FROM export_files WHERE expires_at < now() AND NOT (status = 'running' AND coalesce(heartbeat_at"
            " > now() - make_interval(secs => $1), false)) RETURNING id", [STALE_AFTER.total_seconds()])
        rows = await tx.execute_query_dict("SELECT id, status, claim FROM export_files")
    live = {int(r["id"]): r for r in rows}
    removed = await asyncio.to_thread(_sweep, export_folder(tenant_id), live, {int(r["id"]) for r in gone})
    return Cleanup(len(gone), removed)


def _sweep(folder: Path, live: dict[int, dict[str, Any]], expired: set[int]) -> int:
    if not folder.is_dir():
        return 0
    removed = 0
    old = time.time() - ORPHAN_AGE.total_seconds()
    for path in folder.iterdir():
        head, _, rest = path.name.partition(".")
        export_id = int(head) if head.isdigit() else None
        row = live.get(export_id) if export_id is not None else None
        if export_id in expired:
            keep = False
        elif row is None:
            keep = path.stat().st_mtime > old
        elif rest.endswith(".part"):
            keep = row["status"] == "running" and rest.split(".")[1] == row["claim"] or path.stat().st_mtime > old
        else:
            keep = row["status"] == "done" or path.stat().st_mtime > old
        if not keep:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
