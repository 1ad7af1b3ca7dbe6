"""The imports API: upload a CSV or XLSX file of contacts, companies or leads, say what its columns
hold, check it (a dry run), import it, follow its progress, cancel it, undo it, and download the
rows it rejected.

Handlers read the request and call one action of kith.tenants.imports.service, which checks the
role's permissions ('<kind of record>: import', plus create, edit or delete as the step needs)
and the field-level rules. The declared permission is 'contacts: import': the built-in roles
that may import one kind of record may import all three, so the role matrix holds for each; an
import of leads is refused naming 'leads: import'. The work runs in an arq job; follow it with
GET /imports/{import_id} (status, phase, rows_done, progress_percent).

The endpoints are declared in an order one import can be walked through (map, run, cancel,
check), which the role matrix (tests/matrix_imports.py) relies on.

POST /imports takes multipart/form-data (the file streams to disk; memory stays flat), so it is
described in the OpenAPI document by its summary; every other body is JSON.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from kith.tenants.imports import service
from kith.tenants.imports.service import max_file_bytes
from kith.tenants.imports.targets import TARGETS
from kith.tenants.records.refusals import RecordsRefusal
from kith.web.api.registry import endpoint
from kith.web.edge import actor_of
from kith.web.errors import ApiError

T = TypeVar("T")
TAG = "imports"
PERMISSION = ("contacts", "import")
OBJECT_TYPES = tuple(TARGETS)

Status = Literal["uploaded", "queued", "running", "checked", "imported", "failed", "cancelled", "undone"]


class RejectedRowOut(BaseModel):
    line: int = Field(description="The row's line in the file (the header is line 1; XLSX: the sheet's row).")
    reason: str = Field(description="Why the row was rejected, naming the column.")
    cells: list[str] = Field(description="The row's cells as read.")


class ImportOut(BaseModel):
    id: int
    object_type: Literal["contacts", "companies", "leads"]
    status: Status = Field(description="uploaded -> queued -> running -> checked (dry run) | imported | failed | "
                                       "cancelled; imported -> queued (undo) -> running -> undone.")
    run_kind: Literal["", "check", "import", "undo"] = Field(description="What the queued or running work is, "
                                                                        "or the last one was.")
    file_name: str
    file_size: int = Field(description="Bytes.")
    file_format: Literal["csv", "xlsx"]
    encoding: str = Field(description="The codec the CSV file is read with (empty for XLSX).")
    delimiter: str = Field(description="The CSV file's delimiter (empty for XLSX).")
    headers: list[str] = Field(description="The file's header row.")
    sample: list[list[str]] = Field(description="The file's first rows, for choosing the mapping.")
    mapping: dict[str, str] = Field(description="Column index (from 0, as text) -> target field; a column left "
                                                "out is not imported.")
    mapping_source: str = Field(description="Where the suggested mapping came from: remembered (these headers "
                                            "were mapped before), hubspot, salesforce or headers.")
    match_key: str = Field(description="The field duplicates are found by (email, phone, name, domain); empty: "
                                       "duplicates are not looked for.")
    on_duplicate: Literal["skip", "update", "create"]
    phase: str = Field(description="What the running work is doing.")
    rows_done: int = Field(description="Rows read so far by the running work (or the last one).")
    rows_estimate: int | None = Field(description="The file's data rows as counted at upload (CSV only).")
    progress_percent: int | None = Field(description="While queued or running, when the size is known.")
    stalled: bool = Field(description="Running, but its worker stopped reporting; cancel it to start again.")
    heartbeat_at: datetime | None
    cancel_requested: bool
    counts: dict[str, int] = Field(description="The last check's or import's counts: rows, valid, rejected, "
                                               "created, updated, skipped, duplicates_in_file, out_of_scope; "
                                               "after an undo also undo_removed, undo_kept, undo_restored.")
    rejected_sample: list[RejectedRowOut] = Field(description="The first rejected rows with their reasons.")
    has_rejected_file: bool = Field(description="GET /imports/{import_id}/rejected.csv has every rejected row.")
    error: str = Field(description="Why the last run failed.")
    outcome: str = Field(description="One sentence on where the import stands.")
    can_undo: bool
    created_by_id: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    imported_at: datetime | None
    undone_at: datetime | None


class ImportList(BaseModel):
    items: list[ImportOut] = Field(description="Newest first, of the kinds of record you may import.")


class MappingIn(BaseModel):
    """What each column of the file holds, and what to do with duplicates."""

    model_config = ConfigDict(extra="forbid")

    mapping: dict[str, str] = Field(
        description='Column index (from 0, as text) -> target field, e.g. {"0": "name", "2": "email"}; see GET '
                    '/imports/targets/{object_type}. A column left out (or mapped to "") is not imported.')
    match_key: str = Field("", description="Find duplicates by this field (email, phone or name; companies: domain "
                                           "or name); empty: do not look for duplicates.")
    on_duplicate: Literal["skip", "update", "create"] = Field(
        "skip", description="skip the row, update the existing record with the row's non-empty cells, or create "
                            "a record anyway.")
    encoding: str | None = Field(None, description="Read the CSV file with this codec instead (see reading "
                                                   "ENCODINGS, e.g. gb18030, utf-8, cp950).")
    delimiter: str | None = Field(None, description="Read the CSV file with this delimiter instead: , ; | or a tab.")


class TargetOut(BaseModel):
    name: str = Field(description="What a mapping names: name, email, custom.<key>...")
    label: str
    required: bool


class MatchKeyOut(BaseModel):
    name: str
    label: str
    field: str = Field(description="The target field that must be mapped to find duplicates by this key.")


class TargetsOut(BaseModel):
    object_type: str
    fields: list[TargetOut] = Field(description="Fields hidden from your role are left out.")
    match_keys: list[MatchKeyOut]


async def _run(action: Awaitable[T]) -> T:
    """Await an imports action, turning its refusals into API errors (PermissionDenied is the
    app's 403 answer, naming the permission)."""
    try:
        return await action
    except RecordsRefusal as exc:
        raise ApiError(exc.status, exc.code, exc.message, fields=exc.fields) from None


def _import_id(request: Request) -> int:
    raw = str(request.path_params["import_id"])
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(404, "not_found", "There is no such import.")
    return int(raw)


def import_out(item: dict[str, Any]) -> ImportOut:
    return ImportOut.model_validate({k: v for k, v in item.items() if k in ImportOut.model_fields})


def too_large(content_length: str | None) -> str | None:
    """The refusal for a request whose declared size is over the import limit (before reading it)."""
    if content_length and content_length.isdigit() and int(content_length) > max_file_bytes() + 1_048_576:
        # the multipart framing adds a little; a file just under the limit is still read
        return (f"The file is larger than imports take ({max_file_bytes() // 1_048_576} MB, KITH_IMPORT_MAX_MB). "
                "Split it in parts.")
    return None


@asynccontextmanager
async def upload_path(upload: UploadFile) -> AsyncIterator[Path]:
    """A real file holding the upload, for create_import (which copies it into the import's folder):
    Starlette spools uploads to an anonymous temporary file, so it is copied to a named one,
    removed afterwards."""
    with tempfile.NamedTemporaryFile(prefix="kith-import-", suffix=Path(upload.filename or "").suffix[:10]) as copy:
        await upload.seek(0)
        await run_in_threadpool(shutil.copyfileobj, upload.file, copy, 1 << 20)
        copy.flush()
        yield Path(copy.name)


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


@endpoint("GET", "/imports", summary="List the workspace's latest imports (of the kinds of record you may import)",
          tag=TAG, permission=PERMISSION, response=ImportList, errors=(401, 403))
async def list_imports(request: Request, body: None) -> BaseModel:
    items = await _run(service.list_imports(actor_of(request)))
    return ImportList(items=[import_out(i) for i in items])


@endpoint("POST", "/imports",
          summary="Upload a CSV or XLSX file to import (multipart/form-data: file, object_type = contacts, companies "
                  "or leads, optional encoding and delimiter); answers the import with its suggested mapping",
          tag=TAG, permission=PERMISSION, response=ImportOut, status=201, errors=(400, 401, 403, 404, 413, 422))
async def create_import(request: Request, body: None) -> BaseModel:
    refused = too_large(request.headers.get("content-length"))
    if refused:
        raise ApiError(413, "file_too_large", refused)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(400, "not_multipart", "Send the file as multipart/form-data, in a field named 'file'.")
    async with request.form() as form:
        upload = form.get("file")
        object_type = _text(form, "object_type")
        errors: dict[str, str] = {}
        if not isinstance(upload, UploadFile):
            errors["file"] = "Attach the file to import (a multipart field named 'file')."
        if object_type not in OBJECT_TYPES:
            errors["object_type"] = f"Choose what the file holds: {', '.join(OBJECT_TYPES)}."
        if errors:
            raise ApiError(422, "invalid_input", " ".join(errors.values()), fields=errors)
        assert isinstance(upload, UploadFile)
        async with upload_path(upload) as path:
            item = await _run(service.create_import(
                actor_of(request), object_type, path, upload.filename or "import.csv",
                encoding=_text(form, "encoding") or None, delimiter=_delimiter(form)))
    return import_out(item)


def _delimiter(form: Any) -> str | None:
    value = form.get("delimiter")
    if not isinstance(value, str) or not value:
        return None
    # a tab survives multipart, but people type it as a word or an escape
    return "\t" if value.strip().lower() in ("tab", "\\t") else value


@endpoint("GET", "/imports/targets/{object_type}",
          summary="The fields a column can be mapped to, and the keys duplicates can be found by",
          tag=TAG, permission=PERMISSION, response=TargetsOut, errors=(401, 403, 404))
async def import_targets(request: Request, body: None) -> BaseModel:
    object_type = str(request.path_params["object_type"])
    fields = await _run(service.import_targets(actor_of(request), object_type))
    target = TARGETS[object_type]
    return TargetsOut(object_type=object_type, fields=[TargetOut(**f) for f in fields],
                      match_keys=[MatchKeyOut(name=k.name, label=k.label, field=k.field) for k in target.keys])


@endpoint("GET", "/imports/{import_id}", summary="An import: its file, mapping, progress and outcome",
          tag=TAG, permission=PERMISSION, response=ImportOut, errors=(401, 403, 404))
async def get_import(request: Request, body: None) -> BaseModel:
    return import_out(await _run(service.get_import(actor_of(request), _import_id(request))))


@endpoint("PUT", "/imports/{import_id}/mapping",
          summary="Say what each column holds and what to do with duplicates (remembered for files with these "
                  "headers)", tag=TAG, permission=PERMISSION, body=MappingIn, response=ImportOut,
          errors=(400, 401, 403, 404, 409, 422))
async def configure_import(request: Request, body: MappingIn) -> BaseModel:
    bad = {f"mapping.{k}": f"'{k}' is not a column index (0 for the first column)"
           for k in body.mapping if not k.isdigit() or len(k) > 4}
    if bad:
        raise ApiError(422, "invalid_mapping", "; ".join(bad.values()), fields=bad)
    mapping = {int(k): v for k, v in body.mapping.items()}
    return import_out(await _run(service.configure_import(
        actor_of(request), _import_id(request), mapping=mapping, match_key=body.match_key,
        on_duplicate=body.on_duplicate, encoding=body.encoding or None, delimiter=body.delimiter or None)))


@endpoint("POST", "/imports/{import_id}/run",
          summary="Import the file (needs create, and edit when duplicates update); queued, all or nothing",
          tag=TAG, permission=PERMISSION, response=ImportOut, status=202, errors=(401, 403, 404, 409, 422))
async def run_import(request: Request, body: None) -> BaseModel:
    return import_out(await _run(service.start_import(actor_of(request), _import_id(request), check_only=False)))


@endpoint("POST", "/imports/{import_id}/cancel",
          summary="Cancel a queued or running check, import or undo; everything it did is rolled back",
          tag=TAG, permission=PERMISSION, response=ImportOut, errors=(401, 403, 404, 409))
async def cancel_import(request: Request, body: None) -> BaseModel:
    return import_out(await _run(service.cancel_import(actor_of(request), _import_id(request))))


@endpoint("POST", "/imports/{import_id}/check",
          summary="Check the import (a dry run: counts and rejected rows, nothing written); queued",
          tag=TAG, permission=PERMISSION, response=ImportOut, status=202, errors=(401, 403, 404, 409, 422))
async def check_import(request: Request, body: None) -> BaseModel:
    return import_out(await _run(service.start_import(actor_of(request), _import_id(request), check_only=True)))


@endpoint("POST", "/imports/{import_id}/undo",
          summary="Undo an import (needs delete): the records it created are removed, the fields it changed "
                  "restored; queued", tag=TAG, permission=PERMISSION, response=ImportOut, status=202,
          errors=(401, 403, 404, 409))
async def undo_import(request: Request, body: None) -> BaseModel:
    return import_out(await _run(service.undo_import(actor_of(request), _import_id(request))))


@endpoint("GET", "/imports/{import_id}/rejected.csv",
          summary="The last check's or import's rejected rows as CSV (UTF-8 with BOM), with Line and Reason columns",
          tag=TAG, permission=PERMISSION, errors=(401, 403, 404))
async def rejected_rows(request: Request, body: None) -> Response:
    return await rejected_response(request, _import_id(request))


async def rejected_response(request: Request, import_id: int) -> Response:
    """The import's rejected rows as a download, after checking the caller may see the import.
    Raises ApiError 404 when it has none."""
    actor = actor_of(request)
    item = await _run(service.get_import(actor, import_id))
    path = service.rejected_file(actor.tenant_id, import_id)
    if path is None:
        raise ApiError(404, "not_found", "This import has no rejected rows file: it has not been checked or run yet.")
    stem = Path(item["file_name"]).stem or "import"
    return FileResponse(path, media_type="text/csv; charset=utf-8", filename=f"{stem}-rejected.csv",
                        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
