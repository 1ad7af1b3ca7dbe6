"""The activities API: calls, meetings, emails and notes (/activities), a record's timeline
(/timeline?company_id=...) and tasks (/tasks). Handlers validate input and call one action or
query with the caller as Actor; the permission checks happen there, below the web layer."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.requests import Request

from kith.tenants.activities import actions, queries, tasks
from kith.tenants.activities.links import LINK_FIELDS, LINK_TYPES, InvalidInput, RecordNotFound
from kith.tenants.activities.schemas import (
    ActivityIn,
    ActivityOut,
    ActivityPage,
    ActivityPatch,
    TaskIn,
    TaskOut,
    TaskPage,
    TaskPatch,
)
from kith.web.api.registry import QueryParam, endpoint
from kith.web.edge import actor_of
from kith.web.errors import ApiError

TAG = "activities"
_KINDS = ("call", "meeting", "email", "note")
_STATUSES = ("open", "done", "cancelled", "any")


def _path_id(request: Request, name: str, noun: str) -> int:
    raw = str(request.path_params[name])
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(404, "not_found", f"There is no such {noun}.")
    return int(raw)


def _limit(request: Request, default: int, most: int) -> int:
    raw = request.query_params.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise ApiError(422, "invalid_input", f"limit must be a whole number from 1 to {most}.",
                       fields={"limit": f"Must be 1 to {most}."})
    return int(raw)


def _invalid(exc: InvalidInput) -> ApiError:
    return ApiError(422, "invalid_input", "Some fields are not valid.", fields=exc.fields)


def _unknown_record(exc: RecordNotFound) -> ApiError:
    names = ", ".join(exc.fields)
    return ApiError(422, "invalid_input", f"No record you can see has the id given in {names}.", fields=exc.fields)


def _bad_cursor(exc: ValueError) -> ApiError:
    return ApiError(422, "invalid_input", str(exc), fields={"cursor": str(exc)})


_LIMIT = QueryParam("limit", "Page size, 1-100 (default 25).", "integer")
_CURSOR = QueryParam("cursor", "next_cursor of the previous page.")


@endpoint("GET", "/activities", summary="List calls, meetings, emails and notes in your scope, newest first",
          permission=("activities", "view"), response=ActivityPage, errors=(401, 403, 422), tag=TAG,
          query=(QueryParam("kind", "Only this kind: call, meeting, email or note."), _LIMIT, _CURSOR))
async def list_activities(request: Request, body: None) -> BaseModel:
    kind = request.query_params.get("kind") or None
    if kind is not None and kind not in _KINDS:
        raise ApiError(422, "invalid_input", "kind must be call, meeting, email or note.",
                       fields={"kind": "Must be call, meeting, email or note."})
    try:
        items, next_cursor = await queries.list_activities(
            actor_of(request), kind=kind, limit=_limit(request, 25, queries.MAX_PAGE),
            cursor=request.query_params.get("cursor"))
    except ValueError as exc:
        raise _bad_cursor(exc) from None
    return ActivityPage(items=[ActivityOut(**i) for i in items], next_cursor=next_cursor)


@endpoint("POST", "/activities", summary="Log a call, meeting, email or note against records",
          permission=("activities", "create"), body=ActivityIn, response=ActivityOut, status=201,
          errors=(400, 401, 403, 422), tag=TAG)
async def create_activity(request: Request, body: ActivityIn) -> BaseModel:
    try:
        return ActivityOut(**await actions.log_activity(actor_of(request), body))
    except InvalidInput as exc:
        raise _invalid(exc) from None
    except RecordNotFound as exc:
        raise _unknown_record(exc) from None


@endpoint("GET", "/activities/{activity_id}", summary="Get one activity or timeline entry",
          permission=("activities", "view"), response=ActivityOut, errors=(401, 403, 404), tag=TAG)
async def get_activity(request: Request, body: None) -> BaseModel:
    try:
        return ActivityOut(**await queries.get_activity(
            actor_of(request), _path_id(request, "activity_id", "activity")))
    except queries.ActivityNotFound:
        raise ApiError(404, "not_found", "There is no such activity.") from None


@endpoint("PATCH", "/activities/{activity_id}", summary="Change an activity (events cannot be changed: 409)",
          permission=("activities", "edit"), body=ActivityPatch, response=ActivityOut,
          errors=(400, 401, 403, 404, 409, 422), tag=TAG)
async def update_activity(request: Request, body: ActivityPatch) -> BaseModel:
    try:
        return ActivityOut(**await actions.update_activity(
            actor_of(request), _path_id(request, "activity_id", "activity"), body))
    except queries.ActivityNotFound:
        raise ApiError(404, "not_found", "There is no such activity.") from None
    except queries.EventIsHistory as exc:
        raise ApiError(409, "event_is_history", str(exc)) from None
    except InvalidInput as exc:
        raise _invalid(exc) from None


@endpoint("DELETE", "/activities/{activity_id}", summary="Delete an activity (events cannot be deleted: 409)",
          permission=("activities", "delete"), status=204, errors=(401, 403, 404, 409), tag=TAG)
async def delete_activity(request: Request, body: None) -> None:
    try:
        await actions.delete_activity(actor_of(request), _path_id(request, "activity_id", "activity"))
    except queries.ActivityNotFound:
        raise ApiError(404, "not_found", "There is no such activity.") from None
    except queries.EventIsHistory as exc:
        raise ApiError(409, "event_is_history", str(exc)) from None


@endpoint("GET", "/timeline", summary="A record's timeline, newest first (give exactly one record)",
          permission=("activities", "view"), response=ActivityPage, errors=(401, 403, 404, 422), tag=TAG,
          query=(*(QueryParam(f, f"The {LINK_TYPES[f][1]} whose timeline to read.", "integer")
                   for f in LINK_FIELDS), QueryParam("limit", "Page size, 1-100 (default 50).", "integer"), _CURSOR))
async def get_timeline(request: Request, body: None) -> BaseModel:
    given = {f: request.query_params[f] for f in LINK_FIELDS if request.query_params.get(f)}
    if len(given) != 1:
        message = "Give exactly one of company_id, contact_id, lead_id or deal_id."
        raise ApiError(422, "invalid_input", message, fields={f: message for f in (given or {"company_id": ""})})
    field, raw = given.popitem()
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(422, "invalid_input", f"{field} must be a record id.", fields={field: "Must be a record id."})
    try:
        items, next_cursor = await queries.record_timeline(
            actor_of(request), field, int(raw), limit=_limit(request, 50, queries.MAX_PAGE),
            before=request.query_params.get("cursor"))
    except RecordNotFound as exc:
        raise ApiError(404, "not_found", f"There is no such {exc.noun}.") from None
    except ValueError as exc:
        raise _bad_cursor(exc) from None
    return ActivityPage(items=[ActivityOut(**i) for i in items], next_cursor=next_cursor)


@endpoint("GET", "/tasks", summary="List tasks by due time: yours, or every task you may see",
          permission=("tasks", "view"), response=TaskPage, errors=(401, 403, 422), tag=TAG,
          query=(QueryParam("assignee", "me (default) or all."),
                 QueryParam("status", "open (default), done, cancelled or any."), _LIMIT, _CURSOR))
async def list_tasks(request: Request, body: None) -> BaseModel:
    assignee = request.query_params.get("assignee", "me")
    status = request.query_params.get("status", "open")
    if assignee not in ("me", "all"):
        raise ApiError(422, "invalid_input", "assignee must be me or all.", fields={"assignee": "Must be me or all."})
    if status not in _STATUSES:
        raise ApiError(422, "invalid_input", "status must be open, done, cancelled or any.",
                       fields={"status": "Must be open, done, cancelled or any."})
    try:
        items, next_cursor = await tasks.list_tasks(
            actor_of(request), mine=assignee == "me", status=None if status == "any" else status,
            limit=_limit(request, 25, tasks.MAX_PAGE), cursor=request.query_params.get("cursor"))
    except ValueError as exc:
        raise _bad_cursor(exc) from None
    return TaskPage(items=[TaskOut(**i) for i in items], next_cursor=next_cursor)


@endpoint("POST", "/tasks", summary="Create a task", permission=("tasks", "create"), body=TaskIn,
          response=TaskOut, status=201, errors=(400, 401, 403, 422), tag=TAG)
async def create_task(request: Request, body: TaskIn) -> BaseModel:
    try:
        return TaskOut(**await tasks.create_task(actor_of(request), body))
    except InvalidInput as exc:
        raise _invalid(exc) from None
    except RecordNotFound as exc:
        raise _unknown_record(exc) from None


@endpoint("GET", "/tasks/{task_id}", summary="Get one task", permission=("tasks", "view"), response=TaskOut,
          errors=(401, 403, 404), tag=TAG)
async def get_task(request: Request, body: None) -> BaseModel:
    try:
        return TaskOut(**await tasks.get_task(actor_of(request), _path_id(request, "task_id", "task")))
    except tasks.TaskNotFound:
        raise ApiError(404, "not_found", "There is no such task.") from None


@endpoint("PATCH", "/tasks/{task_id}", summary="Change some fields of a task", permission=("tasks", "edit"),
          body=TaskPatch, response=TaskOut, errors=(400, 401, 403, 404, 422), tag=TAG)
async def update_task(request: Request, body: TaskPatch) -> BaseModel:
    try:
        return TaskOut(**await tasks.update_task(actor_of(request), _path_id(request, "task_id", "task"), body))
    except tasks.TaskNotFound:
        raise ApiError(404, "not_found", "There is no such task.") from None
    except InvalidInput as exc:
        raise _invalid(exc) from None
    except RecordNotFound as exc:
        raise _unknown_record(exc) from None


@endpoint("POST", "/tasks/{task_id}/complete", summary="Mark a task done", permission=("tasks", "edit"),
          response=TaskOut, errors=(401, 403, 404), tag=TAG)
async def complete_task(request: Request, body: None) -> BaseModel:
    try:
        return TaskOut(**await tasks.complete_task(actor_of(request), _path_id(request, "task_id", "task")))
    except tasks.TaskNotFound:
        raise ApiError(404, "not_found", "There is no such task.") from None


@endpoint("DELETE", "/tasks/{task_id}", summary="Delete a task", permission=("tasks", "delete"), status=204,
          errors=(401, 403, 404), tag=TAG)
async def delete_task(request: Request, body: None) -> None:
    try:
        await tasks.delete_task(actor_of(request), _path_id(request, "task_id", "task"))
    except tasks.TaskNotFound:
        raise ApiError(404, "not_found", "There is no such task.") from None
