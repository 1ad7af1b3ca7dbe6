"""Imports as people see them: upload, map, check, import, cancel, undo (pages, API and CLI).

Each function takes the acting member and works through `acting_as`, so the role's permissions
("<type>: import", plus create or edit as the choices need, and its field-level rules) decide
on every path. The work itself runs in an arq job (`kith.jobs.imports`) or, from the CLI, in the
same process (`runner.execute`).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.rules import PermissionDenied
from kith.platform.access.session import TenantSession, acting_as
from kith.platform.config import get_settings
from kith.tenants.imports.mapping import header_signature, suggest_mapping
from kith.tenants.imports.reading import FileFacts, ImportFileError, inspect_file
from kith.tenants.imports.targets import CUSTOM_PREFIX, TARGETS, ImportTarget
from kith.tenants.records.custom import load_custom_fields
from kith.tenants.records.refusals import RecordsRefusal

MODES = ("skip", "update", "create")
# a running import writes its heartbeat every few seconds; one silent this long has no worker left
STALE_AFTER = timedelta(minutes=2)
FINAL = ("imported", "failed", "cancelled", "undone")


def max_file_bytes() -> int:
    return get_settings().import_max_mb * 1_048_576


def import_folder(tenant_id: int, import_id: int) -> Path:
    """Where an import's file and its rejected rows live: <KITH_DATA_DIR>/imports/t_<id>/<import id>."""
    return get_settings().data_dir / "imports" / f"t_{int(tenant_id)}" / str(int(import_id))


def source_file(tenant_id: int, import_id: int) -> Path:
    return import_folder(tenant_id, import_id) / "source"


def rejected_file(tenant_id: int, import_id: int) -> Path | None:
    """The CSV of the last run's rejected rows, with a Line and a Reason column, if there is one."""
    path = import_folder(tenant_id, import_id) / "rejected.csv"
    return path if path.is_file() else None


def target_of(object_type: str) -> ImportTarget:
    target = TARGETS.get(object_type)
    if target is None:
        raise RecordsRefusal(404, "not_found", f"'{object_type}' cannot be imported; imports take "
                             f"{', '.join(TARGETS)}.")
    return target


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def count_rows(path: Path, facts: FileFacts) -> int | None:
    """The file's data rows, for progress: for CSV its line breaks (quoted line breaks make this an
    over-estimate, never a wrong result); None for XLSX (read once, by the run)."""
    if facts.fmt != "csv":
        return None
    codec = facts.encoding or "utf-8"
    # the codecs that write a BOM before what they encode count the BOM-less form (the file's own
    # BOM says the byte order; without one, these read little-endian)
    codec = {"utf-8-sig": "utf-8", "utf-16": "utf-16-le", "utf-32": "utf-32-le"}.get(codec, codec)
    if codec in ("utf-16-le", "utf-32-le"):
        with path.open("rb") as src:
            if src.read(4).startswith((b"\xfe\xff", b"\x00\x00\xfe\xff")):
                codec = codec.replace("-le", "-be")
    newline = "\n".encode(codec)
    lines = 0
    last = b""
    with path.open("rb") as src:
        while chunk := src.read(1 << 20):
            lines += chunk.count(newline)
            last = chunk
    if last and not last.endswith(newline):
        lines += 1
    return max(0, lines - 1)


def present(row: dict[str, Any], tenant_id: int) -> dict[str, Any]:
    """An import row as pages and the API show it."""
    item = dict(row)
    for key in ("headers", "sample", "mapping", "counts", "rejected_sample"):
        item[key] = _json(item[key])
    item["rows_estimate"] = item.get("rows_estimate")
    estimate = item["rows_estimate"]
    running = item["status"] in ("queued", "running")
    item["progress_percent"] = (min(99, int(100 * item["rows_done"] / estimate))
                                if running and estimate else None)
    heartbeat = item.get("heartbeat_at")
    item["stalled"] = bool(item["status"] == "running" and heartbeat is not None
                           and datetime.now(UTC) - heartbeat > STALE_AFTER)
    item["can_undo"] = item["status"] == "imported"
    item["has_rejected_file"] = rejected_file(tenant_id, item["id"]) is not None
    item["outcome"] = outcome(item)
    return item


def outcome(item: dict[str, Any]) -> str:
    """One sentence on where the import stands."""
    counts, status = item["counts"], item["status"]
    if status == "checked":
        return (f"Checked, nothing written: {counts.get('rows', 0):,} rows, {counts.get('created', 0):,} would be "
                f"created, {counts.get('updated', 0):,} would update existing records, "
                f"{counts.get('rejected', 0):,} rejected.")
    if status == "imported":
        return (f"Imported: {counts.get('created', 0):,} created, {counts.get('updated', 0):,} updated, "
                f"{counts.get('skipped', 0) + counts.get('duplicates_in_file', 0):,} skipped as duplicates, "
                f"{counts.get('rejected', 0):,} rejected.")
    if status == "undone":
        return "Undone: the records it created were removed and the fields it changed were restored."
    if status == "failed":
        return f"Failed, nothing was written (the import was rolled back whole): {item['error']}"
    if status == "cancelled":
        return "Cancelled: nothing was written, the import was rolled back whole."
    if status == "queued":
        return "Waiting for a worker."
    if status == "running":
        return "Running." if not item.get("stalled") else (
            "Its worker stopped answering; nothing it did was kept, and it will be run again.")
    return "Uploaded: choose what each column holds, then check or import."


async def _load(session: TenantSession, import_id: int, *, lock: bool = False) -> dict[str, Any]:
    rows = await session.tx.execute_query_dict(
        "SELECT * FROM imports WHERE id = $1" + (" FOR UPDATE" if lock else ""), [int(import_id)])
    if not rows:
        raise RecordsRefusal(404, "not_found", "There is no such import.")
    row = rows[0]
    session.require(row["object_type"], "import")
    return row


async def import_targets(actor: Actor, object_type: str) -> list[dict[str, Any]]:
    """The fields a column of a file of `object_type` can fill, for the mapping screen: the target's
    own, then the workspace's custom fields; fields hidden from the actor's role are left out."""
    target = target_of(object_type)
    async with acting_as(actor) as session:
        session.require(object_type, "import")
        return await _targets_in(session, target)


async def _targets_in(session: TenantSession, target: ImportTarget) -> list[dict[str, Any]]:
    hidden = session.policy.hidden_fields(target.object_type)
    found = [{"name": f.name, "label": f.label, "required": f.name == "name"}
             for f in target.fields if (f.sensitive_as or f.name) not in hidden]
    if "custom" not in hidden:
        for c in await load_custom_fields(session.tx, target.object_type):
            found.append({"name": CUSTOM_PREFIX + c.key, "label": c.label, "required": c.required})
    return found


async def _suggest(session: TenantSession, target: ImportTarget, headers: list[str]
                   ) -> tuple[dict[int, str], str, str, str]:
    """The mapping for a file with `headers`: the one remembered for them, else a preset's, else by
    header names; with its source, the match key and the choice on duplicates."""
    custom = await load_custom_fields(session.tx, target.object_type)
    allowed = {t["name"] for t in await _targets_in(session, target)}
    remembered = await session.tx.execute_query_dict(
        "SELECT mapping, match_key, on_duplicate FROM import_mappings WHERE object_type = $1 AND signature = $2",
        [target.object_type, header_signature(headers)])
    if remembered:
        mapping = {int(k): v for k, v in _json(remembered[0]["mapping"]).items()
                   if int(k) < len(headers) and v in allowed}
        return mapping, "remembered", remembered[0]["match_key"], remembered[0]["on_duplicate"]
    suggested, source = suggest_mapping(target.object_type, headers, [(c.key, c.label) for c in custom])
    mapping = {k: v for k, v in suggested.items() if v in allowed}
    match_key = next((k.name for k in target.keys if k.field in mapping.values()), "")
    return mapping, source, match_key, "skip"


def _inspect(source: Path, name: str, encoding: str | None, delimiter: str | None) -> FileFacts:
    try:
        return inspect_file(source, file_name=name, encoding=encoding or None, delimiter=delimiter or None)
    except ImportFileError as exc:
        raise RecordsRefusal(422, "unreadable_file", exc.message) from None


async def create_import(actor: Actor, object_type: str, source: Path, file_name: str, *,
                        encoding: str | None = None, delimiter: str | None = None) -> dict[str, Any]:
    """Take an uploaded file: check it can be read, keep it in the import's folder and suggest a
    mapping (the one remembered for these headers, else a preset's, else by header names). The
    file work runs in a thread: a big upload never stalls the web process's other requests."""
    target = target_of(object_type)
    async with acting_as(actor) as session:  # a role that may not import hears that first
        session.require(object_type, "import")
    name = Path(file_name or "import.csv").name[:255] or "import.csv"
    size = source.stat().st_size
    if size == 0:
        raise RecordsRefusal(422, "empty_file", f"'{name}' is empty.")
    if size > max_file_bytes():
        raise RecordsRefusal(413, "file_too_large", f"'{name}' is {size / 1_048_576:,.0f} MB; imports take files "
                             f"up to {get_settings().import_max_mb} MB (KITH_IMPORT_MAX_MB). Split it in parts.")
    facts = await asyncio.to_thread(_inspect, source, name, encoding, delimiter)
    async with acting_as(actor) as session:
        session.require(object_type, "import")
        mapping, mapping_source, match_key, mode = await _suggest(session, target, facts.headers)
        rows = await session.tx.execute_query_dict(
            "INSERT INTO imports (object_type, file_name, file_size, file_format, encoding, delimiter, headers,"
            " sample, mapping, mapping_source, match_key, on_duplicate, created_by_id)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9::jsonb, $10, $11, $12, $13) RETURNING *",
            [object_type, name, size, facts.fmt, facts.encoding, facts.delimiter,
             json.dumps(facts.headers, ensure_ascii=False), json.dumps(facts.sample, ensure_ascii=False),
             json.dumps({str(k): v for k, v in mapping.items()}), mapping_source, match_key, mode,
             actor.identity_id])
        row = rows[0]
        folder = import_folder(actor.tenant_id, row["id"])
        # copied inside the transaction: if the copy fails, the import row is not kept either
        estimate = await asyncio.to_thread(_keep_file, source, folder, facts)
        if estimate is not None:
            await session.tx.execute_query("UPDATE imports SET rows_estimate = $2 WHERE id = $1", [row["id"], estimate])
            row["rows_estimate"] = estimate
        await session.audit(f"{object_type}.import_upload", "imports", row["id"],
                            {"file_name": [None, name], "file_size": [None, size]})
        return present(row, actor.tenant_id)


def _keep_file(source: Path, folder: Path, facts: FileFacts) -> int | None:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.copyfile(source, folder / "source")
    return count_rows(folder / "source", facts)


async def get_import(actor: Actor, import_id: int) -> dict[str, Any]:
    async with acting_as(actor) as session:
        return present(await _load(session, import_id), actor.tenant_id)


async def list_imports(actor: Actor, *, limit: int = 50) -> list[dict[str, Any]]:
    """The workspace's latest imports of the kinds of record the actor may import."""
    async with acting_as(actor) as session:
        kinds = [t for t in TARGETS if session.policy.can(t, "import")]
        if not kinds:
            raise PermissionDenied(session.policy.role.name, "contacts: import")
        rows = await session.tx.execute_query_dict(
            "SELECT * FROM imports WHERE object_type = ANY($1::text[]) ORDER BY id DESC LIMIT $2",
            [kinds, max(1, min(int(limit), 200))])
        return [present(r, actor.tenant_id) for r in rows]


def _refuse_unless(row: dict[str, Any], statuses: tuple[str, ...], doing: str) -> None:
    if row["status"] not in statuses:
        raise RecordsRefusal(409, "wrong_state", f"This import is {row['status']}; it cannot be {doing} now.")


async def configure_import(actor: Actor, import_id: int, *, mapping: dict[int, str], match_key: str,
                           on_duplicate: str, encoding: str | None = None,
                           delimiter: str | None = None) -> dict[str, Any]:
    """Save what each column holds and what to do with duplicates (checked here, so a run never
    starts with a mapping that cannot work), and remember the mapping for files with these headers.

    Given an encoding or delimiter other than the one in use, the file is read again instead and
    a mapping is suggested for its columns as they now read: the mapping sent referred to the old
    columns, so it is not saved (show the new columns, then send the mapping again)."""
    async with acting_as(actor) as session:
        row = await _load(session, import_id, lock=True)
        _refuse_unless(row, ("uploaded", "checked", "failed", "cancelled"), "changed")
        target = target_of(row["object_type"])
        if (encoding and encoding != row["encoding"]) or (delimiter and delimiter != row["delimiter"]):
            return await _reread(session, row, target, encoding, delimiter)
        headers = _json(row["headers"])
        errors: dict[str, str] = {}
        allowed = {t["name"]: t for t in await _targets_in(session, target)}
        known = {f.name for f in target.fields}
        used: dict[str, int] = {}
        clean: dict[int, str] = {}
        for index, name in sorted(mapping.items()):
            if not name:
                continue
            if not 0 <= index < len(headers):
                errors[f"mapping.{index}"] = f"the file has no column {index + 1}"
            elif name not in allowed:
                if name in known or name.startswith(CUSTOM_PREFIX) and name[len(CUSTOM_PREFIX):]:
                    session.require_fields(row["object_type"], [name.split(".")[0] if "." in name else name])
                errors[f"mapping.{index}"] = f"'{name}' is not a field of {row['object_type']}"
            elif name in used:
                errors[f"mapping.{index}"] = (f"'{allowed[name]['label']}' is already filled from column "
                                              f"'{headers[used[name]]}'")
            else:
                used[name] = index
                clean[index] = name
        if "name" not in used and not {"first_name", "last_name"} & set(used):
            errors["mapping"] = "Choose the column that holds the name (or the first and last name columns)."
        if on_duplicate not in MODES:
            errors["on_duplicate"] = f"choose one of {', '.join(MODES)}"
        key = target.key(match_key) if match_key else None
        if match_key and key is None:
            errors["match_key"] = (f"duplicates of {row['object_type']} are found by "
                                   f"{', '.join(k.name for k in target.keys)}")
        elif key is not None and key.field not in used and not (key.field == "name" and "name" not in used
                                                                 and {"first_name", "last_name"} & set(used)):
            errors["match_key"] = f"finding duplicates by {key.label.lower()} needs a column mapped to it"
        if on_duplicate == "update" and not match_key:
            errors["match_key"] = "updating duplicates needs a field to find them by"
        if errors:
            raise RecordsRefusal(422, "invalid_mapping", "; ".join(errors.values()), fields=errors)
        saved = json.dumps({str(k): v for k, v in clean.items()})
        rows = await session.tx.execute_query_dict(
            "UPDATE imports SET mapping = $2::jsonb, match_key = $3, on_duplicate = $4 WHERE id = $1 RETURNING *",
            [row["id"], saved, match_key or "", on_duplicate])
        await session.tx.execute_query(
            "INSERT INTO import_mappings (object_type, signature, mapping, match_key, on_duplicate)"
            " VALUES ($1, $2, $3::jsonb, $4, $5) ON CONFLICT (object_type, signature) DO UPDATE SET"
            " mapping = EXCLUDED.mapping, match_key = EXCLUDED.match_key, on_duplicate = EXCLUDED.on_duplicate,"
            " updated_at = now()",
            [row["object_type"], header_signature(headers), saved, match_key or "", on_duplicate])
        return present(rows[0], actor.tenant_id)


async def _reread(session: TenantSession, row: dict[str, Any], target: ImportTarget, encoding: str | None,
                  delimiter: str | None) -> dict[str, Any]:
    source = source_file(session.actor.tenant_id, row["id"])
    facts = await asyncio.to_thread(_inspect, source, row["file_name"], encoding or row["encoding"],
                                    delimiter or row["delimiter"])
    estimate = await asyncio.to_thread(count_rows, source, facts)
    mapping, mapping_source, match_key, mode = await _suggest(session, target, facts.headers)
    rows = await session.tx.execute_query_dict(
        "UPDATE imports SET encoding = $2, delimiter = $3, headers = $4::jsonb, sample = $5::jsonb,"
        " mapping = $6::jsonb, mapping_source = $7, match_key = $8, on_duplicate = $9, rows_estimate = $10"
        " WHERE id = $1 RETURNING *",
        [row["id"], facts.encoding, facts.delimiter, json.dumps(facts.headers, ensure_ascii=False),
         json.dumps(facts.sample, ensure_ascii=False), json.dumps({str(k): v for k, v in mapping.items()}),
         mapping_source, match_key, mode, estimate])
    return present(rows[0], session.actor.tenant_id)


def required_actions(row: dict[str, Any]) -> list[str]:
    """What a run of this import may do to records, beyond importing: create, and edit on update."""
    actions = ["create"]
    if row["on_duplicate"] == "update":
        actions.append("edit")
    return actions


async def start_import(actor: Actor, import_id: int, *, check_only: bool, enqueue: bool = True) -> dict[str, Any]:
    """Queue a check (dry run) or the import itself; with enqueue=False the caller runs it (the CLI,
    through `runner.execute`)."""
    from kith.jobs.queue import enqueue_tenant_job  # jobs is above tenants; imported when used

    async with acting_as(actor) as session:
        row = await _load(session, import_id, lock=True)
        _refuse_unless(row, ("uploaded", "checked", "failed", "cancelled"), "started")
        if not _json(row["mapping"]):
            raise RecordsRefusal(422, "invalid_mapping", "Choose what the file's columns hold first.")
        if not check_only:
            for action in required_actions(row):
                session.require(row["object_type"], action)
        kind = "check" if check_only else "import"
        rows = await session.tx.execute_query_dict(
            "UPDATE imports SET status = 'queued', run_kind = $2, phase = '', rows_done = 0, error = '',"
            " cancel_requested = false, heartbeat_at = NULL, started_at = NULL, finished_at = NULL"
            " WHERE id = $1 RETURNING *", [row["id"], kind])
        if not check_only:
            await session.audit(f"{row['object_type']}.import_start", "imports", row["id"],
                                {"file_name": [None, row["file_name"]], "on_duplicate": [None, row["on_duplicate"]],
                                 "match_key": [None, row["match_key"]]})
    if enqueue:
        await enqueue_tenant_job("run_import", actor.tenant_id, int(import_id), kind,
                                 job_id=f"import:{actor.tenant_id}:{int(import_id)}:{kind}:{rows[0]['id']}:"
                                        f"{datetime.now(UTC).timestamp()}")
    return present(rows[0], actor.tenant_id)


async def cancel_import(actor: Actor, import_id: int) -> dict[str, Any]:
    """Stop a queued or running import; everything it did is rolled back. A run whose worker died
    (no heartbeat for a while) is marked cancelled at once."""
    async with acting_as(actor) as session:
        row = await _load(session, import_id, lock=True)
        _refuse_unless(row, ("queued", "running"), "cancelled")
        heartbeat = row["heartbeat_at"]
        stale = heartbeat is None or datetime.now(UTC) - heartbeat > STALE_AFTER
        if row["status"] == "queued" or stale:
            sql = ("UPDATE imports SET status = CASE WHEN run_kind = 'undo' THEN 'imported' ELSE 'cancelled' END,"
                   " cancel_requested = true, finished_at = now(), phase = '' WHERE id = $1 RETURNING *")
        else:
            sql = "UPDATE imports SET cancel_requested = true WHERE id = $1 RETURNING *"
        rows = await session.tx.execute_query_dict(sql, [row["id"]])
        await session.audit(f"{row['object_type']}.import_cancel", "imports", row["id"])
        return present(rows[0], actor.tenant_id)


async def undo_import(actor: Actor, import_id: int, *, enqueue: bool = True) -> dict[str, Any]:
    """Queue the undo of an import: the records it created removed, the fields it changed restored."""
    from kith.jobs.queue import enqueue_tenant_job

    async with acting_as(actor) as session:
        row = await _load(session, import_id, lock=True)
        _refuse_unless(row, ("imported",), "undone")
        session.require(row["object_type"], "delete")
        if row["on_duplicate"] == "update":
            session.require(row["object_type"], "edit")
        rows = await session.tx.execute_query_dict(
            "UPDATE imports SET status = 'queued', run_kind = 'undo', phase = '', rows_done = 0,"
            " cancel_requested = false, heartbeat_at = NULL WHERE id = $1 RETURNING *", [row["id"]])
        await session.audit(f"{row['object_type']}.import_undo_start", "imports", row["id"])
    if enqueue:
        await enqueue_tenant_job("run_import", actor.tenant_id, int(import_id), "undo",
                                 job_id=f"import:{actor.tenant_id}:{int(import_id)}:undo")
    return present(rows[0], actor.tenant_id)
