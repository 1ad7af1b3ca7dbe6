"""Imports in the browser: the workspace's imports (/t/<slug>/imports), the upload form
(/imports/new), and one import's page (/imports/<id>), which is the mapping screen while the
import waits for its mapping or a new try, its progress while a check, import or undo runs, and
its outcome (counts, the first rejected rows, the rejected-rows download, Undo) afterwards.

Everything works as plain GET and POST forms. While work is queued or running, a small script on
the page polls /imports/<id>/progress (JSON, the page's own session; the /api/v1 routes take API
tokens only) to move the progress bar, and reloads the page when the work is done; without
JavaScript a <meta refresh> inside <noscript> reloads the page instead. Permission checks happen
in kith.tenants.imports.service (a refusal is the 403 page); fields hidden from the role are not
offered.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from kith.platform.access.rules import PermissionDenied, permission_label
from kith.platform.access.session import acting_as
from kith.tenants.imports import service
from kith.tenants.imports.reading import DELIMITERS, ENCODINGS
from kith.tenants.imports.targets import TARGETS
from kith.tenants.records.refusals import RecordsRefusal
from kith.tenants.records.views import load_members
from kith.web.api.imports import rejected_response, too_large, upload_path
from kith.web.backup_pages import size_text
from kith.web.edge import actor_of
from kith.web.errors import ApiError, title_for
from kith.web.forms import form_str, read_form, render

OBJECT_TYPES = tuple(TARGETS)
DETECT = "detect"
TAB = "tab"
EDITABLE = ("uploaded", "checked", "failed", "cancelled")
ACTIVE = ("queued", "running")
SAMPLES_SHOWN = 3
POLL_MS = 1500
NOSCRIPT_REFRESH_SECONDS = 3


def _base(request: Request) -> str:
    return f"/t/{request.state.caller.tenant.slug}"


def _import_id(request: Request) -> int | None:
    raw = str(request.path_params["import_id"])
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


def _error(request: Request, status: int, message: str) -> Response:
    return render(request, "error.html", {"status": status, "title": title_for(status), "message": message},
                  status=status)


def _importable(request: Request) -> list[str]:
    """The kinds of record the caller's role may import (the page offers these; the actions check)."""
    policy = request.state.policy
    return [t for t in OBJECT_TYPES if policy is None or policy.can(t, "import")]


def _refuse_without_import(request: Request, object_type: str = "contacts") -> None:
    if not _importable(request):
        raise PermissionDenied(request.state.policy.role.name, permission_label(object_type, "import"))


# --- the list ------------------------------------------------------------------------------


async def _member_emails(request: Request) -> dict[int, str]:
    """Who started each import: the workspace's members by id."""
    async with acting_as(actor_of(request)) as session:
        return {m.identity_id: m.email for m in await load_members(session)}


async def imports_page(request: Request) -> Response:
    items = await service.list_imports(actor_of(request))
    return render(request, "imports/list.html", {
        "items": items, "importable": _importable(request), "size_text": size_text, "base": _base(request),
        "members": await _member_emails(request) if items else {}})


# --- upload --------------------------------------------------------------------------------


def _upload_context(request: Request, **extra: Any) -> dict[str, Any]:
    importable = _importable(request)
    wanted = request.query_params.get("type", "")
    return {"importable": importable, "encodings": ENCODINGS, "delimiters": _form_delimiters(DELIMITERS),
            "detect": DETECT,
            "values": {"object_type": wanted if wanted in importable else importable[0], "encoding": DETECT,
                       "delimiter": DETECT},
            "errors": {}, "max_mb": service.max_file_bytes() // 1_048_576, "base": _base(request), **extra}


def refuse_too_large(request: Request) -> Response | None:
    """Before the upload is read: the form again with a 413, when the request says it is larger than
    imports take (for the app's form guard, which otherwise reads the whole body first)."""
    refused = too_large(request.headers.get("content-length"))
    if refused is None:
        return None
    _refuse_without_import(request)
    return render(request, "imports/new.html", _upload_context(request, errors={"file": refused}), status=413)


def _choice(value: str) -> str | None:
    """An encoding or delimiter from a form: None for "detect", a tab for "tab"."""
    if not value or value == DETECT:
        return None
    return "\t" if value == TAB else value


def _form_delimiters(choices: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    # a tab in an <option value> is easy to lose on the way (copying, editors): it travels as "tab"
    return [(TAB if value == "\t" else value, label) for value, label in choices]


async def new_import_page(request: Request) -> Response:
    _refuse_without_import(request, request.query_params.get("type") or "contacts")
    if request.method == "GET":
        return render(request, "imports/new.html", _upload_context(request))
    form = await read_form(request)  # read already by the app's form guard (its CSRF check)
    try:
        return refuse_too_large(request) or await _take_upload(request, form)
    finally:
        await form.close()  # the spooled upload; create_import keeps its own copy


async def _take_upload(request: Request, form: FormData) -> Response:
    values = {"object_type": form_str(form, "object_type"), "encoding": form_str(form, "encoding") or DETECT,
              "delimiter": form_str(form, "delimiter") or DETECT}
    upload = form.get("file")
    errors: dict[str, str] = {}
    if values["object_type"] not in OBJECT_TYPES:
        errors["object_type"] = "Choose what the file holds: contacts, companies or leads."
    if not isinstance(upload, UploadFile) or not upload.filename:
        errors["file"] = "Choose the file to import."
    if errors or not isinstance(upload, UploadFile):
        return render(request, "imports/new.html", _upload_context(request, values=values, errors=errors),
                      status=422)
    try:
        async with upload_path(upload) as path:
            item = await service.create_import(actor_of(request), values["object_type"], path,
                                               upload.filename or "import.csv",
                                               encoding=_choice(values["encoding"]),
                                               delimiter=_choice(values["delimiter"]))
    except RecordsRefusal as exc:
        return render(request, "imports/new.html",
                      _upload_context(request, values=values, errors={"file": exc.message}), status=exc.status)
    return RedirectResponse(f"{_base(request)}/imports/{item['id']}", status_code=303)


new_import_page.refuse_before_form = refuse_too_large  # type: ignore[attr-defined]


# --- one import ----------------------------------------------------------------------------


def _columns(item: dict[str, Any], mapping: dict[str, str]) -> list[dict[str, Any]]:
    sample = item["sample"]
    return [{"index": i, "header": header,
             "samples": [row[i] for row in sample[:SAMPLES_SHOWN] if i < len(row) and row[i].strip()],
             "selected": mapping.get(str(i), "")}
            for i, header in enumerate(item["headers"])]


def _reading_choices(current: str, known: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    """The encodings (or delimiters) a person can choose, with the one in use among them."""
    choices = list(known)
    if current and current not in {value for value, _ in choices}:
        choices.insert(0, (current, current))
    return choices


async def _import_screen(request: Request, item: dict[str, Any], *, chosen: dict[str, Any] | None = None,
                         errors: dict[str, str] | None = None, status: int = 200) -> Response:
    actor = actor_of(request)
    editable = item["status"] in EDITABLE
    chosen = chosen or {}
    mapping = chosen.get("mapping", item["mapping"])
    target = TARGETS[item["object_type"]]
    notice = request.query_params.get("done", "")
    return render(request, "imports/detail.html", {
        "item": item, "base": _base(request), "editable": editable, "active": item["status"] in ACTIVE,
        "columns": _columns(item, mapping) if editable else [],
        "targets": await service.import_targets(actor, item["object_type"]) if editable else [],
        "keys": target.keys, "match_key": chosen.get("match_key", item["match_key"]),
        "on_duplicate": chosen.get("on_duplicate", item["on_duplicate"]),
        "encodings": _reading_choices(item["encoding"], ENCODINGS),
        "delimiters": _form_delimiters(_reading_choices(item["delimiter"], DELIMITERS)),
        "current_delimiter": TAB if item["delimiter"] == "\t" else item["delimiter"],
        "errors": errors or {}, "notice": notice, "size_text": size_text,
        "can_undo": item["can_undo"] and request.state.policy is not None
                    and request.state.policy.can(item["object_type"], "delete"),
        "poll_ms": POLL_MS, "refresh_seconds": NOSCRIPT_REFRESH_SECONDS,
    }, status=status)


def _mapping_from(form: FormData, width: int) -> dict[str, str]:
    return {str(i): form_str(form, f"map.{i}") for i in range(width) if form_str(form, f"map.{i}")}


def _refusal_errors(exc: RecordsRefusal) -> dict[str, str]:
    errors = dict(exc.fields) if exc.fields else {}
    errors.setdefault("form", exc.message)
    return errors


async def import_page(request: Request) -> Response:
    import_id = _import_id(request)
    if import_id is None:
        return _error(request, 404, "There is no such import.")
    actor = actor_of(request)
    try:
        item = await service.get_import(actor, import_id)
    except RecordsRefusal as exc:
        return _error(request, exc.status, exc.message)
    if request.method == "GET":
        return await _import_screen(request, item)
    form = await read_form(request)
    action = form_str(form, "action")
    chosen = {"mapping": _mapping_from(form, len(item["headers"])), "match_key": form_str(form, "match_key"),
              "on_duplicate": form_str(form, "on_duplicate") or "skip"}
    encoding, delimiter = form_str(form, "encoding"), _choice(form_str(form, "delimiter")) or ""
    reread = item["file_format"] == "csv" and ((encoding and encoding != item["encoding"])
                                               or (delimiter and delimiter != item["delimiter"]))
    try:
        await service.configure_import(
            actor, import_id, mapping={int(k): v for k, v in chosen["mapping"].items()},
            match_key=chosen["match_key"], on_duplicate=chosen["on_duplicate"],
            encoding=encoding if reread else None, delimiter=delimiter if reread else None)
        if reread:
            # the columns may have changed: show them before anything runs
            done = "reread"
        elif action in ("check", "import"):
            await service.start_import(actor, import_id, check_only=action == "check")
            done = "started"
        else:
            done = "saved"
    except RecordsRefusal as exc:
        if exc.status == 404:
            return _error(request, 404, exc.message)
        item = await service.get_import(actor, import_id)
        return await _import_screen(request, item, chosen=chosen, errors=_refusal_errors(exc), status=exc.status)
    return RedirectResponse(f"{_base(request)}/imports/{import_id}?{urlencode({'done': done})}", status_code=303)


async def import_progress(request: Request) -> Response:
    """Where the import stands, as JSON, for the page's progress script (session-authenticated)."""
    import_id = _import_id(request)
    if import_id is None:
        return JSONResponse({"error": "There is no such import."}, status_code=404)
    try:
        item = await service.get_import(actor_of(request), import_id)
    except RecordsRefusal as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    return JSONResponse({k: item[k] for k in ("id", "status", "run_kind", "phase", "rows_done", "rows_estimate",
                                              "progress_percent", "stalled", "cancel_requested")},
                        headers={"Cache-Control": "no-store"})


async def cancel_page(request: Request) -> Response:
    await read_form(request)
    import_id = _import_id(request)
    if import_id is None:
        return _error(request, 404, "There is no such import.")
    try:
        await service.cancel_import(actor_of(request), import_id)
    except RecordsRefusal as exc:
        return await _refused_step(request, import_id, exc)
    return RedirectResponse(f"{_base(request)}/imports/{import_id}?done=cancel", status_code=303)


async def _refused_step(request: Request, import_id: int, exc: RecordsRefusal) -> Response:
    """A step refused (e.g. the import moved on meanwhile): the import's page with the reason."""
    if exc.status == 404:
        return _error(request, 404, exc.message)
    item = await service.get_import(actor_of(request), import_id)
    return await _import_screen(request, item, errors={"form": exc.message}, status=exc.status)


async def undo_page(request: Request) -> Response:
    import_id = _import_id(request)
    if import_id is None:
        return _error(request, 404, "There is no such import.")
    actor = actor_of(request)
    if request.method == "GET":
        try:
            item = await service.get_import(actor, import_id)
        except RecordsRefusal as exc:
            return _error(request, exc.status, exc.message)
        if not item["can_undo"]:
            return await _import_screen(request, item, status=409, errors={
                "form": f"This import is {item['status']}; only an import that has run can be undone."})
        return render(request, "imports/undo.html", {"item": item, "base": _base(request)})
    await read_form(request)
    try:
        await service.undo_import(actor, import_id)
    except RecordsRefusal as exc:
        return await _refused_step(request, import_id, exc)
    return RedirectResponse(f"{_base(request)}/imports/{import_id}?done=undo", status_code=303)


async def rejected_download(request: Request) -> Response:
    import_id = _import_id(request)
    if import_id is None:
        return _error(request, 404, "There is no such import.")
    try:
        return await rejected_response(request, import_id)
    except (ApiError, RecordsRefusal) as exc:
        return _error(request, exc.status, exc.message)


routes: list[Route] = [
    Route("/t/{slug}/imports", imports_page, methods=["GET"]),
    Route("/t/{slug}/imports/new", new_import_page, methods=["GET", "POST"]),
    Route("/t/{slug}/imports/{import_id}", import_page, methods=["GET", "POST"]),
    Route("/t/{slug}/imports/{import_id}/progress", import_progress, methods=["GET"]),
    Route("/t/{slug}/imports/{import_id}/cancel", cancel_page, methods=["POST"]),
    Route("/t/{slug}/imports/{import_id}/undo", undo_page, methods=["GET", "POST"]),
    Route("/t/{slug}/imports/{import_id}/rejected.csv", rejected_download, methods=["GET"]),
]
