"""Activities and tasks in the browser: logging a call, meeting, email or note from a record's
timeline (web/templates/activities/_timeline.html, included by the record pages), changing and
deleting it, and the task list with its create, edit, complete and delete pages.

Forms take local dates and times in the workspace's time zone; they are stored in UTC. A form
posted from a record page carries the page's path as `return`; only paths inside the same
workspace are followed back. Permission checks happen in the actions (a refusal is the 403 page).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.tenants.activities import actions, queries, tasks
from kith.tenants.activities.links import RECORD_TYPES, InvalidInput, RecordNotFound
from kith.tenants.activities.schemas import ActivityIn, ActivityPatch, TaskIn, TaskPatch
from kith.web.edge import actor_of
from kith.web.errors import validation_fields
from kith.web.forms import form_str, read_form, render
from kith.web.i18n import gettext_for, local_time

_SAFE_PATH = re.compile(r"^/t/[a-z0-9-]+/[A-Za-z0-9/_\-.?=&%]*$")
_TIME = re.compile(r"^\d{2}:\d{2}$")
NO_SUCH_ACTIVITY = {"status": 404, "message": "There is no such activity."}
NO_SUCH_TASK = {"status": 404, "message": "There is no such task."}
DEFAULT_DUE_TIME = time(9, 0)
TASK_STATUSES = ("open", "done", "cancelled")
_NOTICES = ("task_created", "task_saved", "task_done", "task_deleted")


def _slug(request: Request) -> str:
    return str(request.state.caller.tenant.slug)


def _locale(request: Request) -> str:
    return str(request.state.caller.tenant.locale)


def _zone(request: Request) -> ZoneInfo:
    try:
        return ZoneInfo(str(request.state.caller.tenant.time_zone))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _t(request: Request, message: str) -> str:
    return gettext_for(_locale(request), message)


def _errors(request: Request, errors: dict[str, str]) -> dict[str, str]:
    return {k: _t(request, v) for k, v in errors.items()}


def safe_return(request: Request, raw: str, fallback: str) -> str:
    """`raw` when it is a path inside this workspace (no scheme, host or `//`), else `fallback`."""
    if raw and _SAFE_PATH.match(raw) and raw.startswith(f"/t/{_slug(request)}/") and "//" not in raw \
            and ".." not in raw:
        return raw
    return fallback


def with_notice(path: str, notice: str) -> str:
    """`path` with `notice=1` in its query (replacing an earlier notice of this page)."""
    base, _, query = path.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in _NOTICES]
    return f"{base}?{urlencode([*kept, (notice, '1')])}"


def local_to_utc(request: Request, day: str, clock: str, field: str, *, default: time | None) -> datetime | None:
    """A local date and time typed in the workspace's time zone, in UTC; None when no date is
    given. Raises InvalidInput naming `field` (the date's field, or `<field>_time`)."""
    day, clock = day.strip(), clock.strip()
    if not day:
        if clock:
            raise InvalidInput({field: "Give a date with the time."})
        return None
    try:
        when_day = date.fromisoformat(day) if re.match(r"^\d{4}-\d{2}-\d{2}$", day) else None
    except ValueError:
        when_day = None
    if when_day is None:
        raise InvalidInput({field: "Enter a date as YYYY-MM-DD."})
    when_time = default
    if clock:
        try:
            when_time = time.fromisoformat(clock) if _TIME.match(clock) else None
        except ValueError:
            when_time = None
        if when_time is None:
            raise InvalidInput({f"{field}_time": "Enter a time as HH:MM."})
    local = datetime.combine(when_day, when_time or time(0, 0), tzinfo=_zone(request))
    return local.astimezone(UTC)


def _local_parts(request: Request, value: datetime | None) -> tuple[str, str]:
    if value is None:
        return "", ""
    local = local_time(value, str(request.state.caller.tenant.time_zone))
    return local.strftime("%Y-%m-%d"), local.strftime("%H:%M")


def _record_of(form: FormData | dict[str, str]) -> dict[str, Any] | None:
    """{"type": ..., "id": ...} of the record a form names, if it names a known one."""
    record_type = str(form.get("record_type", "") or "")
    record_id = str(form.get("record_id", "") or "")
    if record_type in RECORD_TYPES and record_id.isdigit() and len(record_id) <= 18:
        return {"type": record_type, "id": int(record_id)}
    return None


def _record_path(request: Request, record: dict[str, Any] | None) -> str:
    if record is None:
        return f"/t/{_slug(request)}/tasks"
    return f"/t/{_slug(request)}/{record['type']}/{record['id']}"


def _first_record(row: dict[str, Any]) -> dict[str, Any] | None:
    for object_type, field in RECORD_TYPES.items():
        if row.get(field):
            return {"type": object_type, "id": row[field]}
    return None


def _validation(request: Request, exc: ValidationError) -> dict[str, str]:
    return validation_fields(exc, _locale(request))


async def _source(request: Request) -> Any:
    """The query of a GET, or the form of a POST after its CSRF check."""
    return request.query_params if request.method == "GET" else await read_form(request)


# ---- activities -------------------------------------------------------------------------------

def _activity_values(form: FormData) -> dict[str, str]:
    return {k: form_str(form, k) for k in ("kind", "subject", "body", "occurred_date", "occurred_time",
                                           "duration_minutes")}


def _activity_data(request: Request, values: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {k: values[k] for k in ("kind", "subject", "body")}
    occurred = local_to_utc(request, values["occurred_date"], values["occurred_time"], "occurred_date",
                            default=time(12, 0))
    if occurred is not None:
        data["occurred_at"] = occurred
    if values["duration_minutes"].strip():
        data["duration_minutes"] = values["duration_minutes"].strip()
    return data


def _activity_form(request: Request, context: dict[str, Any], status: int = 200) -> Response:
    base = {"values": {"kind": "call"}, "errors": {}, "activity": None, "record": None, "return_to": ""}
    return render(request, "activities/form.html", {**base, **context}, status=status)


async def activity_new(request: Request) -> Response:
    actor = actor_of(request)
    source = await _source(request)
    record = _record_of(source)
    if record is None:
        return render(request, "error.html", {"status": 404, "message": "There is no such record."}, status=404)
    return_to = safe_return(request, str(source.get("return", "") or ""), _record_path(request, record))
    context = {"record": record, "return_to": return_to}
    if request.method == "GET":
        return _activity_form(request, context)
    values = _activity_values(source)
    try:
        link = {RECORD_TYPES[record["type"]]: record["id"]}
        data = ActivityIn.model_validate({**_activity_data(request, values), **link})
        await actions.log_activity(actor, data)
    except ValidationError as exc:
        return _activity_form(request, {**context, "values": values, "errors": _validation(request, exc)}, 422)
    except InvalidInput as exc:
        return _activity_form(request, {**context, "values": values, "errors": _errors(request, exc.fields)}, 422)
    except RecordNotFound as exc:
        return render(request, "error.html", {"status": 404, "message": str(exc)}, status=404)
    return RedirectResponse(return_to, status_code=303)


async def _load_activity(request: Request) -> dict[str, Any] | None:
    raw = str(request.path_params["activity_id"])
    if not raw.isdigit() or len(raw) > 18:
        return None
    try:
        return await queries.get_activity(actor_of(request), int(raw))
    except queries.ActivityNotFound:
        return None


async def activity_edit(request: Request) -> Response:
    source = await _source(request)  # a POST's CSRF token is checked first
    activity = await _load_activity(request)
    if activity is None:
        return render(request, "error.html", NO_SUCH_ACTIVITY, status=404)
    day, clock = _local_parts(request, activity["occurred_at"])
    values = {"kind": activity["kind"], "subject": activity.get("subject", ""), "body": activity.get("body", ""),
              "occurred_date": day, "occurred_time": clock,
              "duration_minutes": "" if activity["duration_minutes"] is None else str(activity["duration_minutes"])}
    fallback = _record_path(request, _first_record(activity))
    return_to = safe_return(request, str(source.get("return", "") or ""), fallback)
    context = {"activity": activity, "values": values, "return_to": return_to}
    if activity["kind"] == "event":
        return render(request, "error.html", {"status": 409, "message": "This entry is part of the record's "
                                              "history and cannot be changed."}, status=409)
    if request.method == "GET":
        return _activity_form(request, context)
    values = _activity_values(source)
    try:
        data = _activity_data(request, values)
        if "duration_minutes" not in data:
            data["duration_minutes"] = None
        await actions.update_activity(actor_of(request), activity["id"], ActivityPatch.model_validate(data))
    except ValidationError as exc:
        return _activity_form(request, {**context, "values": values, "errors": _validation(request, exc)}, 422)
    except InvalidInput as exc:
        return _activity_form(request, {**context, "values": values, "errors": _errors(request, exc.fields)}, 422)
    except queries.ActivityNotFound:
        return render(request, "error.html", NO_SUCH_ACTIVITY, status=404)
    return RedirectResponse(return_to, status_code=303)


async def activity_delete(request: Request) -> Response:
    source = await _source(request)  # a POST's CSRF token is checked first
    activity = await _load_activity(request)
    if activity is None:
        return render(request, "error.html", NO_SUCH_ACTIVITY, status=404)
    fallback = _record_path(request, _first_record(activity))
    return_to = safe_return(request, str(source.get("return", "") or ""), fallback)
    if request.method == "GET":
        return render(request, "activities/confirm.html", {
            "heading": "Delete activity", "name": activity.get("subject") or activity["kind"],
            "action": f"/t/{_slug(request)}/activities/{activity['id']}/delete", "return_to": return_to})
    try:
        await actions.delete_activity(actor_of(request), activity["id"])
    except queries.ActivityNotFound:
        pass  # deleted meanwhile: the outcome the person asked for
    except queries.EventIsHistory as exc:
        return render(request, "error.html", {"status": 409, "message": str(exc)}, status=409)
    return RedirectResponse(return_to, status_code=303)


async def record_timeline_page(request: Request) -> Response:
    """A record's whole timeline, page by page, with the forms to log an activity or add a task
    (the same partial the record pages include)."""
    record = _record_of({"record_type": str(request.path_params["record_type"]),
                         "record_id": str(request.path_params["record_id"])})
    if record is None:
        return render(request, "error.html", {"status": 404, "message": "There is no such record."}, status=404)
    before = request.query_params.get("before") or None
    try:
        entries, next_cursor = await queries.record_timeline(
            actor_of(request), RECORD_TYPES[record["type"]], record["id"], limit=50, before=before)
    except RecordNotFound as exc:
        return render(request, "error.html", {"status": 404, "message": str(exc)}, status=404)
    except ValueError:
        return RedirectResponse(request.url.path, status_code=303)
    return render(request, "activities/timeline.html", {"timeline": entries, "record": record,
                                                        "next_cursor": next_cursor, "before": before})


# ---- tasks --------------------------------------------------------------------------------------

async def task_list(request: Request) -> Response:
    scope = request.query_params.get("scope", "mine")
    scope = scope if scope in ("mine", "all") else "mine"
    status = request.query_params.get("status", "open")
    status = status if status in (*TASK_STATUSES, "any") else "open"
    cursor = request.query_params.get("cursor")
    actor = actor_of(request)
    kwargs: dict[str, Any] = {"mine": scope == "mine", "status": None if status == "any" else status, "limit": 50}
    try:
        items, next_cursor = await tasks.list_tasks(actor, cursor=cursor, **kwargs)
    except ValueError:
        cursor = None
        items, next_cursor = await tasks.list_tasks(actor, **kwargs)
    return render(request, "activities/tasks.html", {"tasks": items, "next_cursor": next_cursor, "cursor": cursor,
                                                     "scope": scope, "status": status})


def _task_values(form: FormData) -> dict[str, str]:
    return {k: form_str(form, k) for k in ("title", "notes", "due_date", "due_time", "assignee_id", "status")}


def _task_data(request: Request, values: dict[str, str], *, partial: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"title": values["title"], "notes": values["notes"]}
    due = local_to_utc(request, values["due_date"], values["due_time"], "due_date", default=DEFAULT_DUE_TIME)
    if due is not None or partial:
        data["due_at"] = due
    if values["assignee_id"].strip():
        data["assignee_id"] = values["assignee_id"].strip()
    if values["status"]:
        data["status"] = values["status"]
    return data


async def _task_form(request: Request, context: dict[str, Any], status: int = 200) -> Response:
    base = {"values": {}, "errors": {}, "task": None, "record": None, "return_to": "",
            "members": await tasks.assignable_members(actor_of(request)), "statuses": TASK_STATUSES}
    return render(request, "activities/task_form.html", {**base, **context}, status=status)


async def task_new(request: Request) -> Response:
    actor = actor_of(request)
    source = await _source(request)
    record = _record_of(source)
    return_to = safe_return(request, str(source.get("return", "") or ""), f"/t/{_slug(request)}/tasks")
    context: dict[str, Any] = {"record": record, "return_to": return_to,
                               "values": {"assignee_id": str(actor.identity_id or "")}}
    if request.method == "GET":
        return await _task_form(request, context)
    values = _task_values(source)
    values["status"] = ""
    try:
        data = _task_data(request, values, partial=False)
        if record is not None:
            data[RECORD_TYPES[record["type"]]] = record["id"]
        await tasks.create_task(actor, TaskIn.model_validate(data))
    except ValidationError as exc:
        return await _task_form(request, {**context, "values": values, "errors": _validation(request, exc)}, 422)
    except InvalidInput as exc:
        return await _task_form(request, {**context, "values": values, "errors": _errors(request, exc.fields)}, 422)
    except RecordNotFound as exc:
        return render(request, "error.html", {"status": 404, "message": str(exc)}, status=404)
    return RedirectResponse(with_notice(return_to, "task_created"), status_code=303)


async def _load_task(request: Request) -> dict[str, Any] | None:
    raw = str(request.path_params["task_id"])
    if not raw.isdigit() or len(raw) > 18:
        return None
    try:
        return await tasks.get_task(actor_of(request), int(raw))
    except tasks.TaskNotFound:
        return None


async def task_edit(request: Request) -> Response:
    source = await _source(request)  # a POST's CSRF token is checked first
    task = await _load_task(request)
    if task is None:
        return render(request, "error.html", NO_SUCH_TASK, status=404)
    day, clock = _local_parts(request, task["due_at"])
    values = {"title": task.get("title", ""), "notes": task.get("notes", ""), "due_date": day, "due_time": clock,
              "assignee_id": str(task["assignee_id"] or ""), "status": task["status"]}
    return_to = safe_return(request, str(source.get("return", "") or ""), f"/t/{_slug(request)}/tasks")
    context = {"task": task, "values": values, "return_to": return_to}
    if request.method == "GET":
        return await _task_form(request, context)
    values = _task_values(source)
    try:
        data = _task_data(request, values, partial=True)
        await tasks.update_task(actor_of(request), task["id"], TaskPatch.model_validate(data))
    except ValidationError as exc:
        return await _task_form(request, {**context, "values": values, "errors": _validation(request, exc)}, 422)
    except InvalidInput as exc:
        return await _task_form(request, {**context, "values": values, "errors": _errors(request, exc.fields)}, 422)
    except (tasks.TaskNotFound, RecordNotFound):
        return render(request, "error.html", NO_SUCH_TASK, status=404)
    return RedirectResponse(with_notice(return_to, "task_saved"), status_code=303)


async def task_complete(request: Request) -> Response:
    form = await read_form(request)
    return_to = safe_return(request, form_str(form, "return"), f"/t/{_slug(request)}/tasks")
    raw = str(request.path_params["task_id"])
    try:
        if not raw.isdigit() or len(raw) > 18:
            raise tasks.TaskNotFound(raw)
        await tasks.complete_task(actor_of(request), int(raw))
    except tasks.TaskNotFound:
        return render(request, "error.html", NO_SUCH_TASK, status=404)
    return RedirectResponse(with_notice(return_to, "task_done"), status_code=303)


async def task_delete(request: Request) -> Response:
    source = await _source(request)  # a POST's CSRF token is checked first
    task = await _load_task(request)
    if task is None:
        return render(request, "error.html", NO_SUCH_TASK, status=404)
    return_to = safe_return(request, str(source.get("return", "") or ""), f"/t/{_slug(request)}/tasks")
    if request.method == "GET":
        return render(request, "activities/confirm.html", {
            "heading": "Delete task", "name": task.get("title") or "",
            "action": f"/t/{_slug(request)}/tasks/{task['id']}/delete", "return_to": return_to})
    try:
        await tasks.delete_task(actor_of(request), task["id"])
    except tasks.TaskNotFound:
        pass  # deleted meanwhile: the outcome the person asked for
    return RedirectResponse(with_notice(return_to, "task_deleted"), status_code=303)


routes = [
    Route("/t/{slug}/activities/new", activity_new, methods=["GET", "POST"]),
    Route("/t/{slug}/activities/{activity_id}/edit", activity_edit, methods=["GET", "POST"]),
    Route("/t/{slug}/activities/{activity_id}/delete", activity_delete, methods=["GET", "POST"]),
    Route("/t/{slug}/timeline/{record_type}/{record_id}", record_timeline_page),
    Route("/t/{slug}/tasks", task_list),
    Route("/t/{slug}/tasks/new", task_new, methods=["GET", "POST"]),
    Route("/t/{slug}/tasks/{task_id}/edit", task_edit, methods=["GET", "POST"]),
    Route("/t/{slug}/tasks/{task_id}/complete", task_complete, methods=["POST"]),
    Route("/t/{slug}/tasks/{task_id}/delete", task_delete, methods=["GET", "POST"]),
]
